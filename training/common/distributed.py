"""Distributed setup that the transformers/accelerate defaults get wrong on CPU.

With a DeepSpeed config and no CUDA device (``DS_ACCELERATOR=cpu`` under ``torchrun``, the CPU
test set-up of DESIGN.md §5), accelerate's ``PartialState`` finds no communication backend,
falls back to "no distributed training" and reports one process, so DeepSpeed's batch-size
check fails (``train_batch_size 1 != 1 * 1 * 2``). ``configure_cpu_deepspeed_state``
creates the state with the gloo backend first; the ``TrainingArguments`` then reuse it
(``accelerator_config={"use_configured_state": True}``). On GPU nodes it does nothing.
"""

from __future__ import annotations

import os

import torch


def needs_cpu_deepspeed_state(deepspeed_config: str | None) -> bool:
    return bool(deepspeed_config) and not torch.cuda.is_available() and "LOCAL_RANK" in os.environ


def configure_cpu_deepspeed_state(deepspeed_config: str | None) -> dict:
    """Set up accelerate's shared state for DeepSpeed on CPU when needed; returns the
    ``accelerator_config`` to give ``TrainingArguments`` (empty when nothing was done)."""
    if not needs_cpu_deepspeed_state(deepspeed_config):
        return {}
    from accelerate import PartialState

    previous = os.environ.get("ACCELERATE_USE_DEEPSPEED")
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    try:
        PartialState(backend="gloo")
    finally:
        if previous is None:
            del os.environ["ACCELERATE_USE_DEEPSPEED"]
        else:
            os.environ["ACCELERATE_USE_DEEPSPEED"] = previous
    return {"use_configured_state": True}


def teardown_distributed() -> None:
    """Wait for every rank, then destroy the default process group if one exists."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
