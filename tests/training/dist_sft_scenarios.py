"""Distributed SFT scenarios, run under ``torchrun`` by ``test_sft_distributed.py``.

    DS_ACCELERATOR=cpu torchrun --nproc_per_node 2 tests/training/dist_sft_scenarios.py SPEC.json OUT.json

``SPEC.json``: ``{"scenarios": [{"name": ..., "config": {SFTConfig overrides}, "resume_step": k}]}``.
For each scenario, in one process group (so the suite pays the start-up cost once):

1. an uninterrupted run with the real stage code (``training.sft.trainer``), which saves a
   checkpoint every ``save_steps``; every parameter is gathered (ZeRO-3 partitions included)
   before the first and after the last step;
2. a second run in a fresh output directory resuming from the first run's ``checkpoint-k``.

Rank 0 writes the per-step losses of both runs, the names of LoRA parameters that did not
change and of frozen parameters that did, eval losses and paths to ``OUT.json``.
"""

from __future__ import annotations

import gc
import json
import math
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

from tests.training.helpers import gathered_parameters, log_history_losses
from training.common.model import load_processor
from training.sft.config import SFTConfig
from training.sft.trainer import build_datasets, build_model, build_trainer, save_final, training_arguments


class ParameterSnapshots(TrainerCallback):
    """Full copies of every parameter at the start and the end of training."""

    def __init__(self):
        self.before: dict[str, torch.Tensor] = {}
        self.after: dict[str, torch.Tensor] = {}
        self.trainable: set[str] = set()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = gathered_parameters(model)
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.after = gathered_parameters(model)


def _reset_accelerate_state() -> None:
    """Let the next Trainer build its own DeepSpeed plugin; keep the process group."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)


def _run(cfg: SFTConfig, resume: str | None, snapshots: ParameterSnapshots | None) -> tuple[dict, list]:
    _reset_accelerate_state()
    processor = load_processor(cfg.model_name_or_path)
    train_ds, eval_ds = build_datasets(cfg, processor)
    args = training_arguments(cfg, has_eval=eval_ds is not None)
    model = build_model(cfg)
    trainer = build_trainer(cfg, args, model, processor, train_ds, eval_ds,
                            callbacks=[snapshots] if snapshots else [])
    trainer.train(resume_from_checkpoint=resume)
    final = str(save_final(trainer, cfg, processor))
    history = list(trainer.state.log_history)
    info = {"final": final, "world_size": args.world_size,
            "deepspeed_stage": trainer.accelerator.state.deepspeed_plugin.zero_stage
            if trainer.accelerator.state.deepspeed_plugin else None,
            "cache_hits": train_ds.video_loader.cache.hits if train_ds.video_loader.cache else None}
    if hasattr(trainer.model_wrapped, "destroy"):
        trainer.model_wrapped.destroy()
    del trainer, model
    gc.collect()
    return info, history


def run_scenario(spec: dict) -> dict:
    base = SFTConfig(**spec["config"])
    snaps = ParameterSnapshots()
    full_info, full_hist = _run(base, None, snaps)
    k = int(spec["resume_step"])
    resumed_cfg = SFTConfig(**{**spec["config"], "output_dir": base.output_dir + "_resumed",
                               "report_to": "none"})
    res_info, res_hist = _run(resumed_cfg, str(Path(base.output_dir) / f"checkpoint-{k}"), None)

    lora = sorted(n for n in snaps.trainable)
    frozen = sorted(set(snaps.before) - snaps.trainable)
    changed = {n: float((snaps.after[n] - snaps.before[n]).abs().max()) for n in snaps.before}
    return {
        "name": spec["name"],
        "full": {**full_info, "losses": log_history_losses(full_hist),
                 "eval_losses": {int(e["step"]): float(e["eval_loss"]) for e in full_hist if "eval_loss" in e},
                 "log_history": full_hist},
        "resumed": {**res_info, "losses": log_history_losses(res_hist),
                    "eval_losses": {int(e["step"]): float(e["eval_loss"]) for e in res_hist if "eval_loss" in e}},
        "num_lora": len(lora), "num_frozen": len(frozen),
        "lora_unchanged": [n for n in lora if changed[n] == 0.0],
        "frozen_changed": [n for n in frozen if changed[n] != 0.0],
        "lora_not_named_lora": [n for n in lora if "lora_" not in n],
        "vision_lora": [n for n in lora if ".visual." in n],
        "nonfinite_params": [n for n in snaps.after if not math.isfinite(float(snaps.after[n].sum()))],
    }


def main() -> int:
    spec_path, out_path = sys.argv[1], sys.argv[2]
    spec = json.loads(Path(spec_path).read_text())
    results = [run_scenario(s) for s in spec["scenarios"]]
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        Path(out_path).write_text(json.dumps({"scenarios": results}, indent=2, default=str))
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
