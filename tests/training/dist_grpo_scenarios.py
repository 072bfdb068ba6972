"""Distributed GRPO scenarios, run under ``torchrun`` by ``test_grpo_distributed.py``.

    DS_ACCELERATOR=cpu torchrun --nproc_per_node 2 tests/training/dist_grpo_scenarios.py SPEC.json OUT.json

``SPEC.json``: ``{"scenarios": [{"name": ..., "config": {GRPOConfig overrides}, "resume_step": k}]}``.
For each scenario, in one process group: an uninterrupted run with the real stage code
(``training.grpo.train.train``), every parameter gathered (ZeRO-3 partitions included) before
the first and after the last step; then a run in a fresh output directory resumed from the
first run's ``checkpoint-k``. Rank 0 writes per-step losses of both runs and the names of LoRA
parameters that did not change and of frozen parameters that did to ``OUT.json``.
"""

from __future__ import annotations

import gc
import json
import math
import sys
from pathlib import Path

from tests.training.helpers import gathered_parameters
from training.grpo.config import GRPOConfig
from training.grpo.train import train


class Snapshots:
    def on_train_begin(self, engine):
        self.before = gathered_parameters(engine.module)
        self.trainable = {n for n, p in engine.module.named_parameters() if p.requires_grad}

    def on_train_end(self, engine):
        self.after = gathered_parameters(engine.module)


def run_scenario(spec: dict) -> dict:
    cfg = GRPOConfig(**spec["config"])
    snaps = Snapshots()
    full = train(cfg, observer=snaps)
    gc.collect()
    k = int(spec["resume_step"])
    resumed = train(GRPOConfig(**{**spec["config"], "output_dir": cfg.output_dir + "_resumed",
                                  "resume_from_checkpoint": str(Path(cfg.output_dir) / f"checkpoint-{k}")}))
    gc.collect()
    lora = sorted(snaps.trainable)
    frozen = sorted(set(snaps.before) - snaps.trainable)
    changed = {n: float((snaps.after[n] - snaps.before[n]).abs().max()) for n in snaps.before}
    strip = lambda h: {key: v for key, v in h.items() if not key.startswith("time/")}  # noqa: E731
    return {
        "name": spec["name"], "world_size": full["world_size"], "zero_stage": full["zero_stage"],
        "full": {"losses": {i + 1: h["loss"] for i, h in enumerate(full["history"])},
                 "history": [strip(h) for h in full["history"]], "final": full["final_adapter"]},
        "resumed": {"losses": {k + 1 + i: h["loss"] for i, h in enumerate(resumed["history"])}},
        "num_lora": len(lora), "num_frozen": len(frozen),
        "lora_unchanged": [n for n in lora if changed[n] == 0.0],
        "frozen_changed": [n for n in frozen if changed[n] != 0.0],
        "nonfinite_params": [n for n in snaps.after if not math.isfinite(float(snaps.after[n].sum()))],
    }


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    results = [run_scenario(s) for s in spec["scenarios"]]
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        Path(sys.argv[2]).write_text(json.dumps({"scenarios": results}, indent=2, default=str))
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
