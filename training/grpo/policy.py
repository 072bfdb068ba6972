"""The trained policy: process group, model with LoRA, the training engine (DeepSpeed ZeRO-2/3
or plain PyTorch), rollout mode, and the log-prob forward.

- ``setup_distributed``: one process per device under ``torchrun`` (gloo on CPU, NCCL on GPUs);
  a single process needs nothing, except that DeepSpeed wants a process group, so it gets a
  one-rank group on 127.0.0.1.
- ``build_policy``: the SFT stage's model loading and LoRA (``training.common.model``); under
  ZeRO-3 the base weights load partitioned. AdamW on the adapters, a transformers scheduler.
- ``DeepSpeedEngine`` / ``PlainEngine``: the same small interface (``__call__`` forward,
  ``backward``, ``step`` that updates at the accumulation boundary, ``save``/``load`` of the
  optimiser and scheduler state). DeepSpeed uses ``configs/deepspeed/*.json``; their
  ``"auto"`` entries are filled here from the config the way the transformers integration
  fills them.
- ``rollout_mode``: eval mode (no LoRA dropout) for sampling and rewards; under ZeRO-3 the full
  parameters are gathered and DeepSpeed's fetch/release hooks removed meanwhile, so every
  rank can run any number of local forward passes (generation lengths and reward VLM calls
  differ between ranks; TRL's ``unwrap_model_for_generation`` does the same).
- ``completion_logprobs``: per-token log-probs (and entropy) of the completions of a micro-batch,
  logits divided by the sampling temperature, Qwen2.5-VL with the reference M-RoPE positions.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.common.model import apply_lora, load_model, with_reference_positions
from training.grpo.config import GRPOConfig
from training.grpo.core_algos import token_entropy, token_logprobs

# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup_distributed(needs_group: bool) -> DistInfo:
    """Join (or create) the default process group. Under ``torchrun`` the environment names the
    rank and world; a lone process gets a one-rank group only when ``needs_group`` (DeepSpeed)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if "WORLD_SIZE" not in os.environ:
        if not needs_group:
            return DistInfo()
        os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                           "MASTER_PORT": str(_free_port())})
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def device_for(info: DistInfo) -> torch.device:
    return torch.device(f"cuda:{info.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# DeepSpeed configuration
# ---------------------------------------------------------------------------------------------

def _text_hidden_size(model_path: str) -> int:
    cfg = json.loads((Path(model_path) / "config.json").read_text())
    text = cfg.get("text_config") or cfg
    return int(text["hidden_size"])


def deepspeed_config(cfg: GRPOConfig, world_size: int) -> dict[str, Any]:
    """``cfg.deepspeed``'s JSON with every ``"auto"`` filled from ``cfg`` (as the transformers
    integration fills them): batch sizes, gradient clipping, bf16/fp16, bucket sizes from the
    hidden size, the optimiser's hyper-parameters. ZeRO-3's prefetch bucket is set to 0, as
    ms-swift does for GRPO (ms-swift#3237: prefetching hangs with generation in the loop)."""
    path = Path(cfg.deepspeed)
    if not path.is_file():
        raise FileNotFoundError(f"deepspeed config {str(path)!r} does not exist (see configs/deepspeed/)")
    ds = json.loads(path.read_text())
    hidden = _text_hidden_size(cfg.model_name_or_path) if Path(cfg.model_name_or_path, "config.json").is_file() \
        else 4096
    fill = {
        "train_micro_batch_size_per_gpu": cfg.per_device_train_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "train_batch_size": cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * world_size,
        "gradient_clipping": cfg.max_grad_norm,
    }
    for key, value in fill.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
    for key, on in (("bf16", cfg.torch_dtype == "bfloat16"), ("fp16", cfg.torch_dtype == "float16")):
        if isinstance(ds.get(key), dict) and ds[key].get("enabled") == "auto":
            ds[key]["enabled"] = on
    zero = ds.setdefault("zero_optimization", {})
    for key, value in (("reduce_bucket_size", hidden * hidden), ("stage3_prefetch_bucket_size", 0),
                       ("stage3_param_persistence_threshold", 10 * hidden)):
        if zero.get(key) == "auto":
            zero[key] = value
    if zero.get("stage") == 3:
        zero["stage3_prefetch_bucket_size"] = 0
    if "optimizer" in ds:
        params = ds["optimizer"].setdefault("params", {})
        for key, value in (("lr", cfg.learning_rate), ("betas", [cfg.adam_beta1, cfg.adam_beta2]),
                           ("eps", cfg.adam_epsilon), ("weight_decay", cfg.weight_decay)):
            if params.get(key, "auto") == "auto":
                params[key] = value
    if "optimizer" not in ds:  # the loop passes its own AdamW (DeepSpeed's name for that: "untested")
        ds["zero_allow_untested_optimizer"] = True
    left = [k for k, v in _walk(ds) if v == "auto"]
    if left:
        raise ValueError(f"deepspeed config {path}: cannot fill 'auto' for {left}; set them explicitly")
    return ds


def _walk(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{prefix}{k}.")
    else:
        yield prefix.rstrip("."), node


# ---------------------------------------------------------------------------------------------
# Training engines
# ---------------------------------------------------------------------------------------------

def _scheduler(cfg: GRPOConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    from transformers import get_scheduler

    warmup = math.ceil(cfg.warmup_ratio * total_steps) if cfg.warmup_ratio < 1 else int(cfg.warmup_ratio)
    return get_scheduler(cfg.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


def _adamw(cfg: GRPOConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                             eps=cfg.adam_epsilon, weight_decay=cfg.weight_decay)


class PlainEngine:
    """Plain PyTorch: gradient accumulation, an all-reduce of the (LoRA) gradients across
    ranks at the boundary, clipping, AdamW and the scheduler."""

    zero_stage: int | None = None

    def __init__(self, module: torch.nn.Module, cfg: GRPOConfig, total_steps: int, info: DistInfo):
        self.module = module
        self.info = info
        self.accumulation = cfg.gradient_accumulation_steps
        self.max_grad_norm = cfg.max_grad_norm
        self.trainable = [p for p in module.parameters() if p.requires_grad]
        if info.world_size > 1:  # every rank starts from rank 0's adapters
            import torch.distributed as dist

            for p in self.trainable:
                dist.broadcast(p.data, src=0)
        self.optimizer = _adamw(cfg, self.trainable)
        self.scheduler = _scheduler(cfg, self.optimizer, total_steps)
        self.micro_steps = 0
        self.grad_norm = 0.0

    def __call__(self, **inputs: Any) -> Any:
        return self.module(**inputs)

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.accumulation).backward()

    def step(self) -> bool:
        """Count a micro-batch; at the accumulation boundary update the weights. Returns whether it did."""
        self.micro_steps += 1
        if self.micro_steps % self.accumulation:
            return False
        if self.info.world_size > 1:
            import torch.distributed as dist

            for p in self.trainable:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)
                p.grad /= self.info.world_size
        self.grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trainable, self.max_grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return True

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def save(self, directory: Path) -> None:
        """Optimiser, scheduler and the trainable weights (identical on every rank: rank 0 writes)."""
        if self.info.is_main:
            state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                     "micro_steps": self.micro_steps,
                     "trainable": {n: p.detach().cpu() for n, p in self.module.named_parameters() if p.requires_grad}}
            torch.save(state, directory / "engine_state.pt")

    def load(self, directory: Path) -> None:
        state = torch.load(directory / "engine_state.pt", map_location="cpu", weights_only=False)
        params = dict(self.module.named_parameters())
        with torch.no_grad():
            for name, value in state["trainable"].items():
                params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.micro_steps = int(state["micro_steps"])


class DeepSpeedEngine:
    """A ``deepspeed.DeepSpeedEngine`` behind the same interface as :class:`PlainEngine`."""

    def __init__(self, module: torch.nn.Module, cfg: GRPOConfig, total_steps: int, info: DistInfo,
                 ds_config: dict[str, Any]):
        import deepspeed

        trainable = [p for p in module.parameters() if p.requires_grad]
        own_optimizer = "optimizer" not in ds_config
        optimizer = _adamw(cfg, trainable) if own_optimizer else None
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=module, optimizer=optimizer, model_parameters=None if own_optimizer else trainable,
            lr_scheduler=lambda opt: _scheduler(cfg, opt, total_steps), config=ds_config)
        self.module = self.engine.module
        self.info = info
        self.zero_stage = int(self.engine.zero_optimization_stage())
        self.grad_norm = 0.0

    def __call__(self, **inputs: Any) -> Any:
        return self.engine(**inputs)

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)  # divides by the accumulation steps

    def step(self) -> bool:
        boundary = self.engine.is_gradient_accumulation_boundary()
        self.engine.step()
        if boundary:
            norm = self.engine.get_global_grad_norm()
            self.grad_norm = float(norm) if norm is not None else 0.0
        return bool(boundary)

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def save(self, directory: Path) -> None:
        """Engine state (optimiser partitions, fp32 master weights of the adapters, scheduler) in
        ``directory/deepspeed``; frozen base weights are not written."""
        self.engine.save_checkpoint(str(directory), tag="deepspeed", exclude_frozen_parameters=True)

    def load(self, directory: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(directory), tag="deepspeed", load_module_strict=False,
                                              load_optimizer_states=True, load_lr_scheduler_states=True)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed state under {directory}/deepspeed")

    def destroy(self) -> None:
        self.engine.destroy()


TrainEngine = PlainEngine | DeepSpeedEngine


def build_policy(cfg: GRPOConfig, info: DistInfo, total_steps: int) -> tuple[TrainEngine, Any]:
    """Load the model (partitioned under ZeRO-3), freeze it, add LoRA and wrap it in the
    training engine. Returns the engine and the object that must outlive it (the transformers
    ZeRO-3 config that made the load partitioned, else ``None``)."""
    ds_config = deepspeed_config(cfg, info.world_size) if cfg.deepspeed else None
    keep_alive = None
    if ds_config is not None and ds_config.get("zero_optimization", {}).get("stage") == 3:
        from transformers.integrations import HfDeepSpeedConfig

        keep_alive = HfDeepSpeedConfig(ds_config)  # from_pretrained now loads under zero.Init
    torch.manual_seed(cfg.seed)  # the same LoRA initialisation on every rank
    model = load_model(cfg.model_name_or_path, cfg.torch_dtype, cfg.attn_implementation)
    to_save = [m.strip() for m in cfg.lora_modules_to_save.split(",") if m.strip()]
    model = apply_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules, to_save)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if ds_config is None:
        model.to(device_for(info))
        return PlainEngine(model, cfg, total_steps, info), keep_alive
    return DeepSpeedEngine(model, cfg, total_steps, info, ds_config), keep_alive


# ---------------------------------------------------------------------------------------------
# Rollout mode
# ---------------------------------------------------------------------------------------------

def _zero3_offload(ds_engine: Any) -> Any:
    optimizer = getattr(ds_engine, "optimizer", None)
    if optimizer is None:
        return None
    return getattr(optimizer, "parameter_offload", optimizer)


@contextlib.contextmanager
def rollout_mode(engine: TrainEngine) -> Iterator[torch.nn.Module]:
    """Eval mode for sampling and reward VLM calls; under ZeRO-3 with gathered parameters and
    DeepSpeed's per-module hooks removed (restored afterwards), so forward passes are local."""
    module = engine.module
    was_training = module.training
    module.eval()
    try:
        if engine.zero_stage != 3:
            yield module
            return
        import deepspeed

        offload = _zero3_offload(engine.engine)
        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            if offload is not None:
                for p in module.parameters():
                    p.ds_active_sub_modules.clear()
                for hook in offload.forward_hooks + offload.backward_hooks:
                    hook.remove()
                offload.forward_hooks, offload.backward_hooks = [], []
            try:
                yield module
            finally:
                if offload is not None:
                    offload._register_deepspeed_module(offload.module)
    finally:
        module.train(was_training)


# ---------------------------------------------------------------------------------------------
# Log-probs of completions
# ---------------------------------------------------------------------------------------------

def completion_logprobs(engine: TrainEngine, inputs: dict[str, torch.Tensor], completion_ids: torch.Tensor,
                        temperature: float, with_entropy: bool = False, suppressed: tuple[int, ...] = ()
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs ``[B, C]`` of ``completion_ids`` (the last ``C`` columns of
    ``inputs["input_ids"]``) and optionally their entropy, from logits divided by
    ``temperature``, with the ``suppressed`` token ids (never sampled: the vision placeholders)
    removed from the distribution. Only the ``C + 1`` last positions go through ``lm_head``."""
    device = next(engine.module.parameters()).device
    batch = {k: v.to(device) for k, v in inputs.items()}
    if "pixel_values_videos" in batch:
        batch["pixel_values_videos"] = batch["pixel_values_videos"].to(next(engine.module.parameters()).dtype)
    batch = with_reference_positions(engine.module, batch)
    width = completion_ids.shape[1]
    logits = engine(**batch, logits_to_keep=width + 1, use_cache=False).logits[:, :-1]
    if suppressed:
        logits = logits.index_fill(-1, torch.tensor(list(suppressed), device=logits.device), float("-inf"))
    logp = token_logprobs(logits, completion_ids.to(logits.device), temperature)
    entropy = token_entropy(logits.detach(), temperature) if with_entropy else None
    return logp, entropy


def reference_disabled(engine: TrainEngine) -> contextlib.AbstractContextManager:
    """The reference policy: the base model, i.e. the policy with its LoRA adapters disabled."""
    return engine.module.disable_adapter()
