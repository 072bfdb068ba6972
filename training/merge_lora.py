"""Merge a LoRA adapter into its base model and write a standalone checkpoint.

    python -m training.merge_lora --adapter outputs/sft/final --output models/sft-merged
    python -m training.merge_lora --adapter outputs/sft/checkpoint-900 --base models/Qwen3-VL-8B-Instruct \\
        --output models/sft-merged --dtype bfloat16

The output directory holds safetensors weights, ``config.json`` (with ``use_cache`` on),
the processor (tokenizer, chat template, image and video processor configs) and the base
model's ``generation_config.json``, and the SFT run's ``sft_config.json`` (its frame policy)
and ``videopro_versions.json`` (prompt and module-library versions) when the adapter folder has
them: it loads with ``AutoModelForImageTextToText.from_pretrained`` /
``AutoProcessor.from_pretrained`` and is servable by ``vllm serve``. ``python -m
training.release`` builds a Hub release (model card, sampling settings, upload) on top of it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from training.common.model import load_model, load_processor

_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


def base_model_of(adapter_dir: str | Path) -> str:
    """The ``base_model_name_or_path`` recorded in an adapter's ``adapter_config.json``."""
    cfg_path = Path(adapter_dir) / "adapter_config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{adapter_dir} has no adapter_config.json; pass a LoRA adapter directory "
                                f"(a training checkpoint-* or <output_dir>/final)")
    base = json.loads(cfg_path.read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{cfg_path} does not record base_model_name_or_path; pass --base")
    return base


def merge_lora(adapter_dir: str | Path, output_dir: str | Path, base: str | None = None,
               dtype: str = "bfloat16", max_shard_size: str | int = "5GB") -> Path:
    """Load ``base`` (default: the adapter's recorded base), apply and merge the adapter, and
    save a standalone checkpoint to ``output_dir`` in safetensors shards of at most
    ``max_shard_size`` (with ``model.safetensors.index.json`` when there are several). Returns
    ``output_dir``."""
    from peft import PeftModel
    from transformers import GenerationConfig

    adapter_dir, out = Path(adapter_dir), Path(output_dir)
    base = base or base_model_of(adapter_dir)
    model = load_model(base, dtype=dtype, attn_implementation="sdpa")
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.config.use_cache = True
    try:
        merged.generation_config = GenerationConfig.from_pretrained(base)
    except OSError:  # the base has no generation_config.json: keep the model's own
        pass
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out), safe_serialization=True, max_shard_size=max_shard_size)
    has_processor = any((adapter_dir / f).is_file() for f in _PROCESSOR_FILES)
    load_processor(adapter_dir if has_processor else base).save_pretrained(str(out))
    # The frame policy the model was trained with travels with the weights, so inference can
    # sample whole videos the same way (inference.modules warns on a mismatch).
    # So do the GRPO recipe and the prompt / module-library versions it learnt
    # (training.common.versions).
    for name in ("sft_config.json", "grpo_config.json", "videopro_versions.json"):
        for candidate in (adapter_dir / name, adapter_dir.parent / "final" / name):
            if candidate.is_file():
                shutil.copyfile(candidate, out / name)
                break
    (out / "merge_info.json").write_text(json.dumps(
        {"base_model": str(base), "adapter": str(adapter_dir.resolve()), "dtype": dtype}, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.merge_lora",
        description="Merge a LoRA adapter into its base Qwen-VL model and write a standalone "
                    "checkpoint (weights, processor, generation config) for transformers and vLLM.")
    parser.add_argument("--adapter", required=True, help="LoRA adapter directory (checkpoint-* or final/)")
    parser.add_argument("--output", required=True, help="directory to write the merged checkpoint to")
    parser.add_argument("--base", default=None,
                        help="base checkpoint (default: base_model_name_or_path from adapter_config.json)")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"),
                        help="dtype of the merged weights (default: bfloat16)")
    parser.add_argument("--max_shard_size", default="5GB",
                        help="largest safetensors shard, e.g. 5GB or 500MB (default: 5GB)")
    args = parser.parse_args(argv)
    try:
        out = merge_lora(args.adapter, args.output, args.base, args.dtype, args.max_shard_size)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"merged": str(out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
