"""Loading Qwen2.5-VL / Qwen3-VL for training and wrapping them with LoRA (SFT and GRPO).

- ``load_model``: transformers' ``AutoModelForImageTextToText`` in the requested dtype, with
  flash-attention 2 when the package is installed and a GPU is present, SDPA otherwise. Under
  DeepSpeed ZeRO-3 call it after creating the ``TrainingArguments``, so that the weights are
  partitioned while they load.
- ``language_model_linear_targets``: a PEFT ``target_modules`` regex that matches every linear
  layer of the language model and nothing in the vision tower, the vision-language merger or
  ``lm_head`` (ms-swift ``--target_modules all-linear --freeze_vit true``).
- ``apply_lora``: freeze every base weight (vision tower included) and add LoRA adapters.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

SUPPORTED_MODEL_TYPES = ("qwen3_vl", "qwen2_5_vl")

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def torch_dtype(name: str) -> torch.dtype:
    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {name!r}")
    return _DTYPES[name]


def resolve_attn_implementation(requested: str = "auto") -> str:
    """``auto`` -> ``flash_attention_2`` when flash-attn is importable and CUDA is available,
    else ``sdpa``. Any other value is passed to transformers unchanged."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def load_processor(path: str | Path) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(path))


def load_model(path: str | Path, dtype: str = "bfloat16", attn_implementation: str = "auto") -> Any:
    """Load a Qwen2.5-VL or Qwen3-VL checkpoint for training (``use_cache`` off)."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(str(path))
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"{path}: model_type {config.model_type!r} is not supported; "
                         f"expected one of {SUPPORTED_MODEL_TYPES}")
    model = AutoModelForImageTextToText.from_pretrained(
        str(path), dtype=torch_dtype(dtype), attn_implementation=resolve_attn_implementation(attn_implementation))
    model.config.use_cache = False
    return model


def _is_language_model_module(name: str) -> bool:
    return ".language_model." in f".{name}." and not re.search(r"(^|\.)(visual|vision_tower|lm_head)(\.|$)", name)


def language_model_linear_targets(model: torch.nn.Module) -> str:
    """A regex (PEFT matches it with ``re.fullmatch``) naming every ``nn.Linear`` of the
    language model; vision tower, merger and ``lm_head`` excluded."""
    leaves = sorted({name.rsplit(".", 1)[-1] for name, mod in model.named_modules()
                     if isinstance(mod, torch.nn.Linear) and _is_language_model_module(name)})
    if not leaves:
        raise ValueError(f"{type(model).__name__}: found no linear layer under a 'language_model' module")
    return rf"^(.*\.)?language_model\..*\.({'|'.join(map(re.escape, leaves))})$"


def apply_lora(model: torch.nn.Module, rank: int = 64, alpha: int = 16, dropout: float = 0.05,
               target_modules: str | Sequence[str] = "all-linear",
               modules_to_save: Sequence[str] = ()) -> Any:
    """Freeze the base model and add LoRA adapters; returns the ``PeftModel``.

    ``target_modules="all-linear"`` means every linear layer of the language model (see
    ``language_model_linear_targets``); otherwise a PEFT ``target_modules`` value (a regex
    string or a list of module-name suffixes). ``modules_to_save`` (e.g. ``["lm_head"]``) are
    trained in full alongside the adapters and saved with them.
    """
    from peft import LoraConfig, get_peft_model

    for p in model.parameters():
        p.requires_grad_(False)
    targets = language_model_linear_targets(model) if target_modules == "all-linear" else target_modules
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                        bias="none", task_type="CAUSAL_LM", modules_to_save=list(modules_to_save) or None)
    peft_model = get_peft_model(model, config)
    bad = [n for n, p in peft_model.named_parameters()
           if p.requires_grad and "lora_" not in n and "modules_to_save" not in n]
    if bad:
        raise RuntimeError(f"non-LoRA parameters left trainable: {bad[:5]}")
    return peft_model


def trainable_summary(model: torch.nn.Module) -> dict[str, int]:
    numel = lambda p: int(getattr(p, "ds_numel", p.numel()))  # noqa: E731  (ZeRO-3 partitions)
    total = sum(numel(p) for p in model.parameters())
    trainable = sum(numel(p) for p in model.parameters() if p.requires_grad)
    return {"total_params": total, "trainable_params": trainable}


def rope_index_module(model: torch.nn.Module) -> Any:
    """The Qwen-VL module that owns ``get_rope_index`` (``Qwen2_5_VLModel``, ``Qwen3VLModel``),
    found under any DeepSpeed / DDP / PEFT wrappers; ``None`` when there is none."""
    for module in model.modules():
        if hasattr(module, "get_rope_index"):
            return module
    return None


def with_reference_positions(model: torch.nn.Module, inputs: dict[str, Any]) -> dict[str, Any]:
    """``inputs`` plus ``position_ids`` from ``inference.vlm_inputs.reference_mrope_position_ids``
    when ``model`` is a Qwen2.5-VL and the batch holds images or videos.

    transformers' own Qwen2.5-VL positions for the text after a video with more than one
    temporal patch differ from those of vLLM and Qwen's original code; a model trained on them
    would be served with other positions than it learnt (see that function's docstring).
    Qwen3-VL batches, text-only batches and inputs that already carry ``position_ids`` are
    returned unchanged. The positions depend on token ids and grids only (no weights), so this
    works under ZeRO-3 too.
    """
    if "position_ids" in inputs or (inputs.get("video_grid_thw") is None and inputs.get("image_grid_thw") is None):
        return inputs
    owner = rope_index_module(model)
    if owner is None or getattr(owner.config, "model_type", None) != "qwen2_5_vl":
        return inputs
    from inference.vlm_inputs import reference_mrope_position_ids

    with torch.no_grad():
        positions = reference_mrope_position_ids(owner, inputs)
    return {**inputs, "position_ids": positions}
