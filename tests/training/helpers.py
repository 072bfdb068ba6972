"""Helpers of the training tests: losses from a trainer's log and full parameter copies."""

from __future__ import annotations

from collections.abc import Sequence
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
