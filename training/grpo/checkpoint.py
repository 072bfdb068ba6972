"""GRPO checkpoints that resume exactly, and the final adapter.

``<output_dir>/checkpoint-<step>/`` holds:

- ``adapter_model.safetensors``, ``adapter_config.json``: the LoRA adapter (gathered from the
  ZeRO-3 partitions), loadable by PEFT and ``python -m training.merge_lora --adapter``;
- the processor files and ``grpo_config.json``; ``sft_config.json`` (the frame policy) carried
  over from the base checkpoint when the run used the same ``video_*`` values, so a merged
  checkpoint keeps telling inference how it was trained to see videos;
- ``deepspeed/`` (DeepSpeed: optimiser partitions, fp32 master adapters, scheduler) or
  ``engine_state.pt`` (plain PyTorch: optimiser, scheduler, adapters);
- ``trainer_state.json``: optimiser step, rollout batch (the data position), epoch;
- ``rng_state_<rank>.pth``: every rank's Python, NumPy, torch (and CUDA) generator states.

The directory is written as ``checkpoint-<step>.tmp`` and renamed when complete, so a crash
mid-save never leaves a checkpoint that ``resume_from_checkpoint auto`` would pick.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.config import config_to_dict
from training.common.versions import write_versions
from training.grpo.config import GRPOConfig
from training.grpo.policy import DistInfo, TrainEngine

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class TrainState:
    """Where the run is: ``step`` optimiser steps done, ``rollout_batch`` rollout batches done."""

    step: int = 0
    rollout_batch: int = 0
    epoch: int = 0


def _barrier(info: DistInfo) -> None:
    import torch.distributed as dist

    if info.world_size > 1 and dist.is_initialized():
        dist.barrier()


def adapter_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Full copies of the trainable (LoRA) parameters, gathering ZeRO-3 partitions
    (a collective under ZeRO-3: call on every rank)."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    partitioned = [p for _, p in named if hasattr(p, "ds_id")]
    if partitioned:
        import deepspeed

        with deepspeed.zero.GatheredParameters(partitioned, modifier_rank=None):
            return {n: p.detach().cpu().clone() for n, p in named}
    return {n: p.detach().cpu().clone() for n, p in named}


def save_adapter(module: torch.nn.Module, processor: Any, cfg: GRPOConfig, out: Path, info: DistInfo) -> None:
    """The adapter, processor and run config in ``out`` (collective: call on every rank)."""
    state = adapter_state(module)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        module.save_pretrained(str(out), state_dict=state, safe_serialization=True)
        processor.save_pretrained(str(out))
        (out / "grpo_config.json").write_text(json.dumps(config_to_dict(cfg), indent=2))
        # The prompt and module-library versions the policy trained with (read by training.release).
        write_versions(out, stage="grpo")
        base_policy = Path(cfg.model_name_or_path) / "sft_config.json"
        if base_policy.is_file():
            trained = json.loads(base_policy.read_text())
            from inference.video_sampling import FRAME_POLICY_FIELDS

            if all(trained.get(f, getattr(cfg, f)) == getattr(cfg, f) for f in FRAME_POLICY_FIELDS):
                shutil.copyfile(base_policy, out / "sft_config.json")


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(output_dir: str | Path, state: TrainState, engine: TrainEngine, processor: Any,
                    cfg: GRPOConfig, info: DistInfo) -> Path:
    """Write ``checkpoint-<step>`` (collective: call on every rank) and drop the oldest beyond
    ``save_total_limit``. Returns the checkpoint's path."""
    final = Path(output_dir) / f"checkpoint-{state.step}"
    tmp = final.with_name(final.name + ".tmp")
    if info.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier(info)
    engine.save(tmp)
    save_adapter(engine.module, processor, cfg, tmp, info)
    torch.save(_rng_state(), tmp / f"rng_state_{info.rank}.pth")
    _barrier(info)
    if info.is_main:
        (tmp / "trainer_state.json").write_text(json.dumps(asdict(state), indent=2))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        rotate_checkpoints(output_dir, cfg.save_total_limit)
    _barrier(info)
    return final


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := CHECKPOINT_RE.match(p.name)) and (p / "trainer_state.json").is_file()]
    return [p for _, p in sorted(found)]


def rotate_checkpoints(output_dir: str | Path, limit: int) -> None:
    if limit and limit > 0:
        for old in list_checkpoints(output_dir)[:-limit]:
            shutil.rmtree(old, ignore_errors=True)


def resolve_resume(cfg: GRPOConfig) -> Path | None:
    """``resume_from_checkpoint``: '' -> None, 'auto' -> the latest complete checkpoint or None."""
    if not cfg.resume_from_checkpoint:
        return None
    if cfg.resume_from_checkpoint == "auto":
        found = list_checkpoints(cfg.output_dir)
        return found[-1] if found else None
    path = Path(cfg.resume_from_checkpoint)
    if not (path / "trainer_state.json").is_file():
        raise FileNotFoundError(f"resume_from_checkpoint {str(path)!r} is not a GRPO checkpoint "
                                f"(no trainer_state.json)")
    return path


def load_checkpoint(path: Path, engine: TrainEngine, info: DistInfo) -> TrainState:
    """Restore the engine (adapters, optimiser, scheduler), this rank's RNG and the position."""
    engine.load(path)
    rng = path / f"rng_state_{info.rank}.pth"
    if not rng.is_file():
        raise FileNotFoundError(f"{rng} is missing: resume with the world size the checkpoint was written with")
    _set_rng_state(torch.load(rng, map_location="cpu", weights_only=False))
    return TrainState(**json.loads((path / "trainer_state.json").read_text()))
