"""Helpers of the training tests: losses from a trainer's log and full parameter copies."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def log_history_losses(log_history: Sequence[dict[str, Any]]) -> dict[int, float]:
    """``{step: training loss}`` from a trainer's ``state.log_history``."""
    return {int(e["step"]): float(e["loss"]) for e in log_history if "loss" in e}


def gathered_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Full copies of every parameter, gathering ZeRO-3 partitions (collective: call on every rank)."""
    out = {}
    for name, p in model.named_parameters():
        if hasattr(p, "ds_id"):  # a ZeRO-3 partitioned parameter
            import deepspeed

            with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
                out[name] = p.detach().float().clone().cpu()
        else:
            out[name] = p.detach().float().clone().cpu()
    return out


#: DeepSpeed's JIT-built CPU ops, shared by every torchrun test (built once, ~1 min on 2 cores).
TORCH_EXTENSIONS_DIR = Path.home() / ".cache" / "videopro_torch_ext"


def run_torchrun_scenarios(script: Path, spec: dict[str, Any], work: Path, *, timeout_s: float,
                           env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``script spec.json results.json`` under ``torchrun --standalone --nproc_per_node 2`` on
    the CPU (DeepSpeed's CPU accelerator, offline), and return the results JSON it wrote. A
    failed launch fails the test with the tail of the log (``work/torchrun.log``)."""
    import json
    import os
    import subprocess
    import sys
    import time

    import pytest

    repo = Path(__file__).resolve().parents[2]
    spec_path, out = work / "spec.json", work / "results.json"
    spec_path.write_text(json.dumps(spec))
    TORCH_EXTENSIONS_DIR.mkdir(parents=True, exist_ok=True)
    for lock in TORCH_EXTENSIONS_DIR.glob("**/lock"):  # an interrupted JIT build blocks later ones forever
        if time.time() - lock.stat().st_mtime > 900:
            lock.unlink(missing_ok=True)
    full_env = dict(os.environ, DS_ACCELERATOR="cpu", TORCH_EXTENSIONS_DIR=str(TORCH_EXTENSIONS_DIR),
                    WANDB_MODE="offline", WANDB_DIR=str(work), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
                    PYTHONPATH=str(repo), TOKENIZERS_PARALLELISM="false", **(env or {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(spec_path), str(out)]
    log = work / "torchrun.log"
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, env=full_env, cwd=repo, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout_s)
    if proc.returncode != 0 or not out.is_file():
        tail = "\n".join(log.read_text().splitlines()[-60:])
        pytest.fail(f"torchrun failed (rc={proc.returncode}); log {log}:\n{tail}", pytrace=False)
    return json.loads(out.read_text())


def dry_run_listing(printed: str) -> dict[str, int]:
    """``{file: size}`` from the lines ``<file> <size> bytes`` that ``release --dry-run`` prints."""
    listed = {}
    for line in printed.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "bytes":
            listed[parts[0]] = int(parts[1].replace(",", ""))
    return listed
