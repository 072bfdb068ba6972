"""Colocated vLLM rollouts for GRPO (``rollout_engine: vllm``): the paper's ``--use_vllm true
--vllm_mode colocate`` behind ``training.grpo.engines.RolloutEngine``.

Every training process holds a ``vllm.LLM`` next to its trainer. What happens, and which known
failure of TRL / verl / ms-swift users (``shared/notes/grpo-anchors.md``) each step rules out:

**Engine** (:class:`VLLMEngine`). In-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) with
``distributed_executor_backend="external_launcher"`` under ``torchrun``; ranks form
tensor-parallel groups of ``vllm_tensor_parallel_size`` consecutive ranks, each group one engine
seeded ``seed + group index``. A group's prompts (token ids and videos) are gathered, generated
together on every rank of the group and sliced back. Prompts are the training input's token ids
with each video's expanded placeholder block folded back to ``<|vision_start|><|video_pad|>
<|vision_end|>`` (:func:`unexpand_vision_placeholders`: vLLM re-expands it from the frames,
Qwen3-VL's per-patch timestamps included) and the video passed as ``(frames, metadata)`` with
``do_sample_frames: False`` and ``do_resize: False``; vLLM's re-expanded ids must equal the
training ids token for token, else the rollout is refused (the ms-swift/verl "frames resized
twice" bug cannot pass silently). ``max_model_len`` and ``max_num_batched_tokens`` are sized from
the rows and the frame policy (:func:`engine_lengths`). Log-probs are
``logprobs_mode="processed_logprobs"``: the distribution sampled from (temperature, top-k/top-p,
the vision placeholders masked), which the trainer matches at the same temperature. Each request
carries a seed derived from the run seed, the weights version and its position, so a resumed run
samples what the uninterrupted one would have.

**Weight sync** (:meth:`VLLMEngine.sync_weights`, after every optimiser step). The parameters
are split into groups (:func:`sync_groups`: the decoder layers in ``move_model_batches`` groups,
embeddings + head, the vision tower); group by group they are gathered (ZeRO-3, one group at a
time, never the whole model), LoRA is folded in out of place (``W + sum_a B_a A_a * s_a``, peft's
``get_delta_weight``; the trainer's own weights are never modified, so there is nothing to
unmerge and no bf16 drift of the frozen base), names are mapped to the checkpoint's
(:func:`checkpoint_name`: ``base_model.model.`` and ``.base_layer`` dropped, ``lora_*`` and
``original_module`` skipped, ``modules_to_save.<adapter>.`` unwrapped) and streamed into vLLM's
``reload_weights`` (its layer-wise reload repacks them for the CPU/GPU kernels). Only groups that
hold trainable parameters are pushed unless ``vllm_sync_all_weights`` (or after a sleep-level-2
wake-up: then everything). Then the prefix cache, the encoder cache (vision features keyed by the
media hash: a prefix-cache reset alone would serve the old features or fail with "Encoder cache
miss") and the multimodal processor cache are reset, and the weights version - part of the
reward's call-cache key - moves. ``vllm_weight_sync: adapter`` sends only the adapter instead
(vLLM LoRA, a new adapter id per step).

**Memory modes** (:meth:`VLLMEngine.rollout_context`). ``sleep_level 0`` (paper): vLLM stays
resident; ``offload_model`` / ``offload_optimizer`` move the trainer's frozen weights and the
optimiser state to CPU memory for the rollouts and the reward (:class:`TrainerOffload`).
``sleep_level 1``: vLLM's weights go to CPU and its KV cache is freed while training; the sync
wakes the weights and pushes the changed groups. ``sleep_level 2``: weights discarded; the wake-up
is followed by a full push from the trainer (vLLM's own reload from disk would lose the adapter).
Sleep and tensor parallelism need a GPU: on vLLM's CPU build they are refused with a message.

**The reward's VLM calls** (:class:`VLLMPolicyVLM`): the programs' ``query_*`` calls are answered
by the same engine at the current weights, a batch per call; its ``identity()`` carries the
weights version. With tensor parallelism the calls of a group's ranks are served in lockstep
(:class:`LockstepService`), since every rank of a group must run the same requests.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import math
import os
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

from inference.backends.vlm import GenerateRequest, Generation, VideoWithMetadata, VLMBackend, build_chat
from training.grpo.engines import Completion, RolloutOutput, RolloutRequest, SamplingSettings, stop_token_ids

logger = logging.getLogger("videopro.grpo.vllm")

# Per temporal patch, Qwen3-VL writes "<t seconds>" (up to ~10 tokens) plus its own vision
# start/end tokens around the patch's placeholders.
_TIMESTAMP_TOKENS_BOUND = 12
# Text of a module call's prompt (question, choices, instructions) and its answer, for sizing.
_MODULE_CALL_TEXT_TOKENS = 1024
_MODULE_CALL_NEW_TOKENS = 512


def on_gpu() -> bool:
    return bool(torch.cuda.is_available())


# ---------------------------------------------------------------------------------------------
# Prompts: the training input's ids -> what vLLM takes
# ---------------------------------------------------------------------------------------------

def unexpand_vision_placeholders(token_ids: Sequence[int], vision_start_id: int, vision_end_id: int,
                                 pad_ids: Sequence[int]) -> list[int]:
    """Fold every expanded vision block of ``token_ids`` back into the chat template's
    ``<|vision_start|><|*_pad|><|vision_end|>``, the form vLLM expands from the media itself.

    A block runs from a ``<|vision_start|>`` to its matching ``<|vision_end|>`` (nesting counted:
    Qwen3-VL writes ``<|vision_start|><0.5 seconds><|vision_start|>pads<|vision_end|>...
    <|vision_end|>`` for a video); blocks without a pad token are left alone. For Qwen2.5-VL
    (``<|vision_start|>pads<|vision_end|>``) this is the same as collapsing each pad run."""
    pads = {int(t) for t in pad_ids}
    ids = [int(t) for t in token_ids]
    out: list[int] = []
    i = 0
    while i < len(ids):
        if ids[i] != vision_start_id:
            out.append(ids[i])
            i += 1
            continue
        depth, j, pad = 0, i, None
        while j < len(ids):
            if ids[j] == vision_start_id:
                depth += 1
            elif ids[j] == vision_end_id:
                depth -= 1
                if depth == 0:
                    break
            elif ids[j] in pads and pad is None:
                pad = ids[j]
            j += 1
        if pad is None or j >= len(ids):
            out.append(ids[i])
            i += 1
            continue
        out += [vision_start_id, pad, vision_end_id]
        i = j + 1
    return out


def first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    """Index of the first position where ``a`` and ``b`` differ (the shorter length if one is a prefix)."""
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return k
    return min(len(a), len(b))


# ---------------------------------------------------------------------------------------------
# Sizing the engine from the data
# ---------------------------------------------------------------------------------------------

def _vision_geometry(checkpoint: str) -> dict[str, Any]:
    import json

    cfg = json.loads((Path(checkpoint) / "config.json").read_text())
    vision = cfg.get("vision_config") or {}
    return {"model_type": cfg.get("model_type", ""), "patch": int(vision.get("patch_size", 14)),
            "merge": int(vision.get("spatial_merge_size", 2)),
            "temporal": int(vision.get("temporal_patch_size", 2))}


def _video_sampling(cfg: Any) -> Any:
    from inference.video_sampling import VideoSampling

    return cfg.video_sampling() if hasattr(cfg, "video_sampling") else VideoSampling.from_config(cfg)


def video_token_bound(cfg: Any, checkpoint: str) -> int:
    """Most prompt tokens one video can take under the run's frame policy: temporal patches at
    ``video_max_frames`` times merged tokens per patch at the largest frame area the pixel rule
    allows (Qwen3-VL: plus each patch's timestamp and vision start/end tokens)."""
    from inference.video_sampling import FRAME_FACTOR, frame_pixel_bounds

    geo = _vision_geometry(checkpoint)
    factor = geo["patch"] * geo["merge"]
    frames = max(FRAME_FACTOR, int(cfg.video_max_frames))
    low, high = frame_pixel_bounds(_video_sampling(cfg), factor, frames)
    # smart_resize grows a small frame to min_pixels by rounding its sides up: allow for that.
    area = max(high, low * 1.25)
    patches = math.ceil(frames / geo["temporal"])
    per_patch = math.ceil(area / (factor * factor))
    overhead = _TIMESTAMP_TOKENS_BOUND if geo["model_type"] == "qwen3_vl" else 2
    return patches * (per_patch + overhead) + 2


def prompt_token_bound(cfg: Any, processor: Any, rows: Sequence[dict[str, Any]], checkpoint: str) -> int:
    """Longest prompt of ``rows`` as the rollout sees it: the rendered text (chat template,
    generation prompt, one placeholder per video) plus :func:`video_token_bound` per video."""
    from training.grpo.data import prompt_messages
    from training.sft.data import to_chat_messages

    per_video = video_token_bound(cfg, checkpoint)
    longest = 0
    for row in rows:
        text = processor.apply_chat_template(to_chat_messages(prompt_messages(row)), tokenize=False,
                                             add_generation_prompt=True)
        n_text = len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])
        longest = max(longest, n_text + per_video * len(row.get("videos") or []))
    return longest


def module_call_token_bound(cfg: Any, checkpoint: str, max_images: int, image_max_pixels: int) -> int:
    """Longest module call of the reward's programs: the whole video (``query_native``) or
    ``max_images`` frames of at most ``image_max_pixels`` (``query_mc``), plus question and answer."""
    geo = _vision_geometry(checkpoint)
    factor = geo["patch"] * geo["merge"]
    per_image = math.ceil(image_max_pixels * 1.25 / (factor * factor)) + 2
    visual = max(video_token_bound(cfg, checkpoint), max_images * per_image)
    return visual + _MODULE_CALL_TEXT_TOKENS + _MODULE_CALL_NEW_TOKENS


@dataclass
class EngineLengths:
    max_model_len: int
    max_num_batched_tokens: int
    longest_prompt: int
    max_images: int
    max_videos: int


def engine_lengths(cfg: Any, processor: Any, rows: Sequence[dict[str, Any]]) -> EngineLengths:
    """``max_model_len`` (longest prompt + ``max_completion_length``, or the longest module call
    when the policy answers the reward's calls and that is longer) and ``max_num_batched_tokens``
    (the same, so a whole prompt is prefilled in one step), unless the config sets them."""
    from inference.config import load_yaml_overrides
    from inference.modules import ModuleConfig

    checkpoint = cfg.model_name_or_path
    longest = prompt_token_bound(cfg, processor, rows, checkpoint)
    need = longest + int(cfg.max_completion_length)
    max_images = 0
    if cfg.reward_vlm == "policy":
        module_values = load_yaml_overrides(cfg.reward_module_config, ModuleConfig) if cfg.reward_module_config \
            else {}
        defaults = {f: getattr(ModuleConfig, f, None) for f in ("max_query_frames", "frame_max_pixels")}
        max_images = int(module_values.get("max_query_frames", defaults["max_query_frames"]) or 64)
        image_px = int(module_values.get("frame_max_pixels", defaults["frame_max_pixels"]) or 50176)
        need = max(need, module_call_token_bound(cfg, checkpoint, max_images, image_px))
    max_model_len = int(cfg.vllm_max_model_len) or need
    batched = int(cfg.vllm_max_num_batched_tokens) or max_model_len
    if not on_gpu():
        # vLLM's CPU build kills its engine on a seeded request whose prompt is prefilled in
        # chunks (docs/benchmarks.md): prefill every prompt whole.
        batched = max(batched, max_model_len)
    max_videos = max([len(r.get("videos") or []) for r in rows] + [1])
    return EngineLengths(max_model_len, batched, longest, max_images, max_videos)


# ---------------------------------------------------------------------------------------------
# Weight groups and names
# ---------------------------------------------------------------------------------------------

_VISION_PATTERN = re.compile(r"(^|\.)(visual|vision_tower|vision_model)(\.|$)")


@dataclass
class SyncGroup:
    """Parameters gathered, merged and loaded together (names as ``model.named_parameters()``)."""

    name: str
    params: list[str] = field(default_factory=list)
    trainable: bool = False


def _decoder_layers_prefix(model: torch.nn.Module) -> str:
    """Module path of the language model's decoder ``ModuleList`` (the longest one outside the
    vision tower)."""
    best, size = None, -1
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and not _VISION_PATTERN.search(name) and len(module) > size:
            best, size = name, len(module)
    if best is None:
        raise ValueError("no decoder layer list found in the policy model; cannot split it into sync groups")
    return best


def sync_groups(model: torch.nn.Module, move_model_batches: int) -> list[SyncGroup]:
    """The weight-sync groups of ``model`` (ms-swift's ``split_batches`` shape): the decoder layers
    in ``move_model_batches`` groups of consecutive layers, then one group with everything else of
    the language model (embeddings, final norm, head), then the vision tower. A LoRA layer's
    adapters sit in the group of its base weight."""
    prefix = _decoder_layers_prefix(model) + "."
    layers = len(model.get_submodule(prefix[:-1]))
    per_group = math.ceil(layers / max(1, move_model_batches))
    decoder = [SyncGroup(f"layers[{g * per_group}:{min(layers, (g + 1) * per_group)}]")
               for g in range(math.ceil(layers / per_group))]
    rest, vision = SyncGroup("embeddings+head"), SyncGroup("vision")
    for name, param in model.named_parameters():
        if name.startswith(prefix):
            group = decoder[int(name[len(prefix):].split(".", 1)[0]) // per_group]
        elif _VISION_PATTERN.search(name):
            group = vision
        else:
            group = rest
        group.params.append(name)
        group.trainable = group.trainable or param.requires_grad
    return [g for g in decoder + [rest, vision] if g.params]


_LORA_PARAM = re.compile(r"\.lora_(A|B|embedding_A|embedding_B|magnitude_vector)(\.|$)")


def checkpoint_name(param_name: str) -> str | None:
    """The checkpoint (transformers / vLLM ``load_weights``) name of a policy parameter, or
    ``None`` for parameters vLLM does not hold: LoRA matrices (folded into their base weight) and a
    ``modules_to_save`` wrapper's frozen ``original_module`` copy."""
    name = param_name.removeprefix("base_model.model.")
    if _LORA_PARAM.search(name) or ".original_module." in name:
        return None
    name = name.replace(".base_layer.", ".")
    name = re.sub(r"\.modules_to_save\.[^.]+\.", ".", name)
    return name


def _lora_layers(model: torch.nn.Module) -> dict[str, Any]:
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:
        return {}
    return {name: m for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)}


@contextlib.contextmanager
def gathered(params: Sequence[torch.nn.Parameter]) -> Iterator[None]:
    """Full values of ``params`` for reading: under ZeRO-3 (``ds_id`` on the parameters) gathered
    on every rank for the duration (a collective: every rank must enter with the same list),
    otherwise as they are."""
    if params and any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(params), modifier_rank=None):
            yield
    else:
        yield


def merged_tensors(model: torch.nn.Module, group: SyncGroup, lora_layers: dict[str, Any], *,
                   merge_lora: bool = True, dtype: torch.dtype | None = None,
                   device: torch.device | str | None = None) -> list[tuple[str, torch.Tensor]]:
    """``(checkpoint name, tensor)`` for every parameter of ``group`` vLLM holds, LoRA folded in
    (``merge_lora``) out of place. Copies: the trainer's parameters are left as they were."""
    params = dict(model.named_parameters())
    out: list[tuple[str, torch.Tensor]] = []
    with gathered([params[n] for n in group.params]), torch.no_grad():
        for name in group.params:
            target = checkpoint_name(name)
            if target is None:
                continue
            value = params[name].detach()
            if merge_lora and ".base_layer." in name and name.endswith(".weight"):
                layer = lora_layers.get(name.rsplit(".base_layer.", 1)[0])
                if layer is not None and not getattr(layer, "merged", False):
                    for adapter in layer.active_adapters:
                        if adapter in getattr(layer, "lora_A", {}) or adapter in getattr(layer, "lora_embedding_A", {}):
                            value = value + layer.get_delta_weight(adapter).to(value.dtype)
            value = value.to(device=device or value.device, dtype=dtype or value.dtype, copy=True)
            out.append((target, value.contiguous()))
    return out


# ---------------------------------------------------------------------------------------------
# Offloading the trainer during rollouts (offload_model / offload_optimizer)
# ---------------------------------------------------------------------------------------------

def _inner_optimizer(train_engine: Any) -> Any:
    opt = getattr(train_engine, "optimizer", None)
    while opt is not None and not isinstance(opt, torch.optim.Optimizer) and hasattr(opt, "optimizer"):
        opt = opt.optimizer
    return opt


class TrainerOffload:
    """Moves the trainer's memory to the CPU for the rollouts and back afterwards.

    ``offload_model``: the frozen parameters (under ZeRO-3 their local partition ``ds_tensor``)
    and the buffers. Trainable parameters (the adapters) stay: the training engines keep them as
    views into flat buffers (DeepSpeed's bit16 groups) that a per-tensor move would cut loose;
    under LoRA they are well below 1 % of the weights. ``offload_optimizer``: the optimiser state
    tensors and the optimiser's own parameter tensors that are not module parameters (DeepSpeed's
    fp32 master partitions). Each tensor's ``.data`` is swapped, so every reference stays valid.
    """

    _logged_cpu = False

    def __init__(self, train_engine: Any, model: bool, optimizer: bool) -> None:
        self.train_engine, self.model, self.optimizer = train_engine, model, optimizer
        self.moved: list[tuple[torch.Tensor, torch.device]] = []
        self.bytes_moved = 0

    def _tensors(self) -> Iterator[torch.Tensor]:
        module = self.train_engine.module
        module_params = {id(p) for p in module.parameters()}
        if self.model:
            for p in module.parameters():
                if not p.requires_grad:
                    yield p.ds_tensor if hasattr(p, "ds_tensor") else p
            yield from module.buffers()
        if self.optimizer:
            opt = _inner_optimizer(self.train_engine)
            if opt is not None:
                for state in opt.state.values():
                    for value in state.values():
                        if isinstance(value, torch.Tensor):
                            yield value
                for group in opt.param_groups:
                    for p in group["params"]:
                        if id(p) not in module_params:
                            yield p

    def offload(self) -> TrainerOffload:
        seen: set[int] = set()
        with torch.no_grad():
            for t in self._tensors():
                if id(t) in seen or t.device.type == "cpu":
                    continue
                seen.add(id(t))
                self.moved.append((t, t.device))
                self.bytes_moved += t.numel() * t.element_size()
                t.data = t.data.to("cpu", non_blocking=True)
        if self.moved:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        elif not TrainerOffload._logged_cpu and (self.model or self.optimizer):
            TrainerOffload._logged_cpu = True
            logger.info("offload_model/offload_optimizer: the trainer is already in CPU memory; nothing to move")
        return self

    def reload(self) -> None:
        with torch.no_grad():
            for t, device in self.moved:
                t.data = t.data.to(device, non_blocking=True)
        if self.moved:
            torch.cuda.synchronize()
        self.moved = []


# ---------------------------------------------------------------------------------------------
# Lockstep serving of the reward's calls within a tensor-parallel group
# ---------------------------------------------------------------------------------------------

class LockstepService:
    """Serves requests made on any rank of a process group by answering, on every rank, the
    union of everyone's pending requests in the same order (what a tensor-parallel vLLM group
    needs: its ranks must run identical engine steps).

    ``run(fn)`` runs ``fn`` in a worker thread of each rank; the thread's :meth:`submit` calls
    are queued; meanwhile the calling thread loops: gather every rank's pending requests and
    whether its ``fn`` is done (one ``all_gather_object`` over ``group``), answer them all with
    ``answer(requests) -> results`` (the same call on every rank), hand each rank its own, until
    every rank's ``fn`` has returned. ``window_s`` is how long a round waits for a first request.
    """

    def __init__(self, answer: Callable[[list[Any]], list[Any]], group: Any, window_s: float = 0.02) -> None:
        self.answer, self.group, self.window_s = answer, group, window_s
        self._queue: queue.Queue[tuple[list[Any], dict[str, Any]]] = queue.Queue()
        self.rounds = 0
        self.requests = 0

    def submit(self, requests: list[Any]) -> list[Any]:
        """From inside ``fn``: block until ``requests`` are answered (``answer``'s results, in order)."""
        box: dict[str, Any] = {"event": threading.Event()}
        self._queue.put((list(requests), box))
        box["event"].wait()
        if "error" in box:
            raise box["error"]
        return box["results"]

    def run(self, fn: Callable[[], Any]) -> Any:
        import torch.distributed as dist

        result: dict[str, Any] = {}

        def worker() -> None:
            try:
                result["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                result["error"] = exc

        thread = threading.Thread(target=worker, name="lockstep-fn", daemon=True)
        thread.start()
        world = dist.get_world_size(self.group)
        while True:
            pending: list[tuple[list[Any], dict[str, Any]]] = []
            deadline = time.monotonic() + self.window_s
            while True:
                try:
                    pending.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            done = not thread.is_alive() and self._queue.empty()
            mine = [r for reqs, _ in pending for r in reqs]
            everyone: list[Any] = [None] * world
            dist.all_gather_object(everyone, {"requests": mine, "done": done and not pending}, group=self.group)
            if all(e["done"] for e in everyone):
                break
            flat = [r for e in everyone for r in e["requests"]]
            if not flat:
                continue
            self.rounds += 1
            self.requests += len(flat)
            me = dist.get_rank(self.group)
            start = sum(len(e["requests"]) for e in everyone[:me])
            try:
                answers = self.answer(flat)
                error = None
            except BaseException as exc:  # noqa: BLE001 - every caller of the round sees it
                answers, error = None, exc
            for reqs, box in pending:
                if error is not None:
                    box["error"] = error
                else:
                    box["results"] = answers[start:start + len(reqs)]
                start += len(reqs)
                box["event"].set()
        thread.join()
        if "error" in result:
            raise result["error"]
        return result.get("value")


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------

def _seed_for(*parts: Any) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _vllm_lora_rank(rank: int) -> int:
    for allowed in (8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= allowed:
            return allowed
    raise ValueError(f"lora_rank {rank} is larger than vLLM's largest LoRA rank (512); use vllm_weight_sync merged")


@dataclass
class SyncStats:
    """What the last weight sync did (logged per step as ``vllm/*``)."""

    seconds: float = 0.0
    tensors: int = 0
    megabytes: float = 0.0
    groups: int = 0
    full: bool = False
    mode: str = ""


class VLLMEngine:
    """The colocated vLLM rollout engine (see the module docstring).

    Args:
        cfg: the ``GRPOConfig`` (``vllm_*``, ``sleep_level``, ``offload_*``, ``move_model_batches``,
            sampling seed, dtype, frame policy).
        model: the policy being trained (PEFT model; ZeRO-3 partitioned or not).
        processor: the checkpoint's processor.
        rows: the run's GRPO rows (sizes ``max_model_len``).
        info: this process's ``DistInfo`` (rank, world size).
    """

    generate_is_collective = True

    def __init__(self, cfg: Any, model: torch.nn.Module, processor: Any, rows: Sequence[dict[str, Any]],
                 info: Any) -> None:
        self.cfg, self.model, self.processor, self.info = cfg, model, processor, info
        self.tp_size = int(cfg.vllm_tensor_parallel_size)
        self._check_device_settings()
        if info.world_size % self.tp_size:
            raise ValueError(f"vllm_tensor_parallel_size {self.tp_size} does not divide the world size "
                             f"{info.world_size}; set --vllm_tensor_parallel_size to a divisor of it")
        self.group_index = info.rank // self.tp_size
        self.tp_group = self._make_tp_group()
        tok = processor.tokenizer
        self.vision_start_id = int(tok.convert_tokens_to_ids("<|vision_start|>"))
        self.vision_end_id = int(tok.convert_tokens_to_ids("<|vision_end|>"))
        self.pad_ids = tuple(int(tok.convert_tokens_to_ids(t)) for t in ("<|image_pad|>", "<|video_pad|>"))
        self.lengths = engine_lengths(cfg, processor, rows)
        self.adapter_mode = cfg.vllm_weight_sync == "adapter"
        if self.adapter_mode:
            self._check_adapter_mode()
        self.weights_version = 0
        self._calls_at_version = 0
        self._lora_layers = _lora_layers(model)
        self._groups = sync_groups(model, cfg.move_model_batches)
        self._lock = threading.RLock()
        self._weights_asleep = False
        self._kv_asleep = False
        self._needs_full_push = False
        self._base_synced = True  # vLLM starts from the checkpoint the trainer's frozen base came from
        self._pending = True  # adapters from a resumed checkpoint (or any start) are pushed before the first use
        self._lora_request: Any = None
        self._adapter_dirs: list[Path] = []
        self.last_sync = SyncStats()
        self.sync_count = 0
        self._reward_service: LockstepService | None = None
        self.llm = self._start_engine()

    # ---- construction ------------------------------------------------------------------------

    def _check_device_settings(self) -> None:
        if on_gpu():
            return
        if self.cfg.sleep_level:
            raise ValueError(f"sleep_level {self.cfg.sleep_level} needs a GPU: vLLM's CPU build has no sleep mode "
                             "(enable_sleep_mode is refused and sleep/wake_up do nothing there); use sleep_level 0")
        if self.tp_size > 1:
            raise ValueError(f"vllm_tensor_parallel_size {self.tp_size} needs GPUs (this machine has none); use "
                             "vllm_tensor_parallel_size 1 on CPU (one engine per training process)")

    def _check_adapter_mode(self) -> None:
        if self.cfg.lora_modules_to_save.strip():
            raise ValueError("vllm_weight_sync adapter cannot carry lora_modules_to_save (vLLM's LoRA applies "
                             "adapter matrices only); use vllm_weight_sync merged")
        vision = [n for n in self._lora_layers_names() if _VISION_PATTERN.search(n)]
        if vision:
            raise ValueError(f"vllm_weight_sync adapter: LoRA on the vision tower ({vision[0]}, ...) is not applied "
                             "by vLLM's LoRA; use vllm_weight_sync merged")

    def _lora_layers_names(self) -> list[str]:
        return list(_lora_layers(self.model))

    def _make_tp_group(self) -> Any:
        if self.tp_size == 1:
            return None
        import torch.distributed as dist

        groups = [list(range(g * self.tp_size, (g + 1) * self.tp_size))
                  for g in range(self.info.world_size // self.tp_size)]
        group, _ = dist.new_subgroups_by_enumeration(groups)
        return group

    def _start_engine(self) -> Any:
        import torch.distributed as dist

        from inference.vllm_utils import make_offline_llm

        # In-process engine core: its model is reachable for weight sync, and external_launcher
        # requires it (deterministic scheduling across the ranks of a group).
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        cfg = self.cfg
        kwargs: dict[str, Any] = {
            "tensor_parallel_size": self.tp_size,
            "max_num_batched_tokens": self.lengths.max_num_batched_tokens,
            "logprobs_mode": "processed_logprobs",
            "enable_prefix_caching": bool(cfg.vllm_enable_prefix_caching),
        }
        if dist.is_available() and dist.is_initialized() and "RANK" in os.environ:
            # torchrun (or the one-rank group DeepSpeed gets): one engine per training process over
            # the trainer's process group. (A group vLLM's own single-process executor created
            # earlier in this process has no RANK in the environment and is simply reused.)
            kwargs["distributed_executor_backend"] = "external_launcher"
        if on_gpu():
            kwargs["gpu_memory_utilization"] = float(cfg.vllm_gpu_memory_utilization)
            if cfg.sleep_level:
                kwargs["enable_sleep_mode"] = True
        else:
            kwargs["enable_chunked_prefill"] = False
        if self.adapter_mode:
            kwargs.update(enable_lora=True, max_lora_rank=_vllm_lora_rank(int(cfg.lora_rank)), max_loras=1)
        limits = {"image": self.lengths.max_images, "video": self.lengths.max_videos}
        start = time.perf_counter()
        with _root_log_levels_kept():
            llm = make_offline_llm(cfg.model_name_or_path, dtype=cfg.torch_dtype,
                                   max_model_len=self.lengths.max_model_len,
                                   limit_mm_per_prompt=limits, seed=int(cfg.seed) + self.group_index,
                                   enforce_eager=True if not on_gpu() else bool(cfg.vllm_enforce_eager),
                                   kv_cache_space_gib=int(cfg.vllm_cpu_kv_cache_gib), **kwargs)
        self.start_seconds = time.perf_counter() - start
        if self.info.rank == 0:
            logger.info("vLLM engine up in %.1fs (%s executor): tp %d, max_model_len %d (longest prompt %d + %d new "
                        "tokens), max_num_batched_tokens %d, sleep_level %d, weight sync %s", self.start_seconds,
                        kwargs.get("distributed_executor_backend", "single-process"), self.tp_size,
                        self.lengths.max_model_len, self.lengths.longest_prompt, cfg.max_completion_length,
                        self.lengths.max_num_batched_tokens, cfg.sleep_level, cfg.vllm_weight_sync)
        return llm

    # ---- rollouts ------------------------------------------------------------------------------

    def _gather_group(self, items: list[Any]) -> tuple[list[Any], int, int]:
        """Every rank's ``items`` of this TP group concatenated; this rank's slice (start, count)."""
        if self.tp_group is None:
            return items, 0, len(items)
        import torch.distributed as dist

        parts: list[Any] = [None] * self.tp_size
        dist.all_gather_object(parts, items, group=self.tp_group)
        me = dist.get_rank(self.tp_group)
        start = sum(len(p) for p in parts[:me])
        return [x for p in parts for x in p], start, len(items)

    def vllm_prompt(self, prompt_ids: Sequence[int], videos: Sequence[VideoWithMetadata]) -> dict[str, Any]:
        """The vLLM prompt of a rollout request (see the module docstring)."""
        from inference.vlm_inputs import vllm_multi_modal_data

        prompt: dict[str, Any] = {"prompt_token_ids": unexpand_vision_placeholders(
            prompt_ids, self.vision_start_id, self.vision_end_id, self.pad_ids)}
        if videos:
            prompt["multi_modal_data"] = vllm_multi_modal_data(videos=list(videos))
            prompt["mm_processor_kwargs"] = {"do_resize": False}
        return prompt

    def sampling_params(self, sampling: SamplingSettings, n: int, seed: int) -> Any:
        from vllm import SamplingParams

        return SamplingParams(
            n=n, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
            repetition_penalty=sampling.repetition_penalty, max_tokens=sampling.max_new_tokens,
            stop_token_ids=list(sampling.stop_token_ids), logprobs=0, seed=seed, detokenize=False,
            logit_bias={int(t): float("-inf") for t in sampling.suppress_token_ids} or None)

    def generate(self, requests: Sequence[RolloutRequest], sampling: SamplingSettings) -> list[RolloutOutput]:
        """Completions for ``requests`` (a collective within the TP group, and under ZeRO-3 also the
        first call after a sync: every rank calls it, possibly with no requests)."""
        self.ensure_synced()
        local = [(list(r.prompt_ids), list(r.videos), int(r.num_samples)) for r in requests]
        everything, start, count = self._gather_group(local)
        outputs: list[RolloutOutput] = []
        if everything:
            call = self._calls_at_version
            self._calls_at_version += 1
            prompts, params = [], []
            for k, (ids, videos, n) in enumerate(everything):
                longest = len(ids) + sampling.max_new_tokens
                if longest > self.lengths.max_model_len:
                    raise ValueError(f"a prompt of {len(ids)} tokens plus max_completion_length "
                                     f"{sampling.max_new_tokens} exceeds the vLLM engine's max_model_len "
                                     f"{self.lengths.max_model_len}; raise vllm_max_model_len")
                prompts.append(self.vllm_prompt(ids, videos))
                params.append(self.sampling_params(sampling, n, _seed_for(
                    self.cfg.seed, self.group_index, self.weights_version, call, k)))
            with self._lock:
                results = self.llm.generate(prompts, params, use_tqdm=False, lora_request=self._lora_request)
            outputs = [self._rollout_output(out, ids) for out, (ids, _, _) in zip(results, everything)]
        return outputs[start:start + count]

    def _rollout_output(self, out: Any, expected_ids: list[int]) -> RolloutOutput:
        got = list(out.prompt_token_ids or [])
        if got != expected_ids:
            at = first_difference(got, expected_ids)
            raise ValueError(f"vLLM expanded the prompt to {len(got)} tokens but the training input has "
                             f"{len(expected_ids)} (first difference at position {at}: vLLM "
                             f"{got[at:at + 8]}, training {expected_ids[at:at + 8]}); the frames or their "
                             f"metadata were changed after the prompt was built, or vLLM's processor "
                             f"resized/resampled them")
        num_visual = sum(1 for t in got if t in self.pad_ids)
        completions = []
        for c in out.outputs:
            ids = list(c.token_ids)
            logprobs = [float(step[t].logprob) for step, t in zip(c.logprobs or [], ids)]
            if len(logprobs) != len(ids):
                raise RuntimeError("vLLM returned no log-prob for some sampled tokens (logprobs=0 was requested)")
            if c.finish_reason not in ("stop", "length"):
                raise RuntimeError(f"vLLM finished a completion with reason {c.finish_reason!r}")
            completions.append(Completion(ids, logprobs, c.finish_reason))
        return RolloutOutput(completions, num_visual)

    # ---- weight sync ---------------------------------------------------------------------------

    def sync_weights(self, model: torch.nn.Module) -> None:
        """The optimiser stepped: vLLM must sample from ``model``'s weights now. Pushed at once when
        vLLM's weights are resident (sleep_level 0), else on the next wake-up (a collective under
        ZeRO-3 and tensor parallelism: every rank calls it)."""
        self.model = model
        self.weights_version += 1
        self._calls_at_version = 0
        self._pending = True
        if not self._weights_asleep:
            self._push()

    def set_weights_version(self, version: int) -> None:
        """The optimiser step the current weights belong to (after a resume), for seeds and the
        reward's call-cache identity."""
        self.weights_version = int(version)
        self._calls_at_version = 0

    def ensure_synced(self) -> None:
        """Wake vLLM's weights if asleep and push what is pending (a collective)."""
        if self._weights_asleep:
            self.llm.wake_up(tags=["weights"])
            self._weights_asleep = False
            if self.cfg.sleep_level == 2:  # discarded: everything comes back from the trainer
                self._needs_full_push = True
                self._pending = True
        if self._pending:
            self._push()

    def _push(self) -> None:
        start = time.perf_counter()
        full = self._needs_full_push or bool(self.cfg.vllm_sync_all_weights)
        stats = SyncStats(full=full, mode=self.cfg.vllm_weight_sync)
        if self.adapter_mode:
            if full or not self._base_synced:
                self._push_groups(self._groups, merge_lora=False, stats=stats)
                self._base_synced = True
            self._push_adapter(stats)
        else:
            groups = self._groups if full else [g for g in self._groups if g.trainable]
            self._push_groups(groups, merge_lora=True, stats=stats)
        self.reset_caches()
        self._pending = False
        self._needs_full_push = False
        stats.seconds = time.perf_counter() - start
        self.last_sync = stats
        self.sync_count += 1

    def _push_groups(self, groups: Sequence[SyncGroup], merge_lora: bool, stats: SyncStats) -> None:
        dtype = _torch_dtype(self.cfg.torch_dtype)
        device = torch.device(f"cuda:{torch.cuda.current_device()}") if on_gpu() else torch.device("cpu")

        def weights() -> Iterator[tuple[str, torch.Tensor]]:
            # One group gathered, merged and copied at a time; vLLM's layer-wise reload consumes a
            # layer's tensors as soon as all of them have arrived.
            for group in groups:
                tensors = merged_tensors(self.model, group, self._lora_layers, merge_lora=merge_lora,
                                         dtype=dtype, device=device)
                stats.groups += 1
                stats.tensors += len(tensors)
                stats.megabytes += sum(t.numel() * t.element_size() for _, t in tensors) / 2**20
                yield from tensors
                del tensors

        with self._lock:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights(),
                                                              "is_checkpoint_format": True})

    def _adapter_root(self) -> Path:
        return Path(self.cfg.output_dir) / "vllm_adapters" / f"rank{self.info.rank}"

    def _push_adapter(self, stats: SyncStats) -> None:
        """Write the current adapter (gathered group by group under ZeRO-3) for vLLM's LoRA."""
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file
        from vllm.lora.request import LoRARequest

        params = dict(self.model.named_parameters())
        state: dict[str, torch.Tensor] = {}
        for group in self._groups:
            lora = [n for n in group.params if _LORA_PARAM.search(n)]
            with gathered([params[n] for n in lora]):
                state.update({n: params[n].detach().to("cpu", copy=True) for n in lora})
        adapter_state = get_peft_model_state_dict(self.model, state_dict=state)
        stats.tensors += len(adapter_state)
        stats.megabytes += sum(t.numel() * t.element_size() for t in adapter_state.values()) / 2**20
        folder = self._adapter_root() / f"v{self.weights_version}"
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in adapter_state.items()}, str(tmp / "adapter_model.safetensors"))
        peft_config = self.model.peft_config[getattr(self.model, "active_adapter", "default")]
        peft_config.save_pretrained(str(tmp))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        self._lora_request = LoRARequest(f"policy-v{self.weights_version}", self.weights_version + 1, str(folder))
        self._adapter_dirs.append(folder)
        while len(self._adapter_dirs) > 2:  # vLLM has loaded the one before the last by now
            shutil.rmtree(self._adapter_dirs.pop(0), ignore_errors=True)

    def reset_caches(self) -> None:
        """Forget everything computed with the old weights: the prefix (KV) cache, the encoder cache
        (vision features, keyed by the media's hash) and the multimodal processor cache."""
        with self._lock:
            if self.llm.reset_prefix_cache() is False:
                raise RuntimeError("vLLM refused to reset its prefix cache (requests still running)")
            self.llm.llm_engine.reset_encoder_cache()
            self.llm.reset_mm_cache()

    # ---- memory modes --------------------------------------------------------------------------

    @contextlib.contextmanager
    def rollout_context(self, train_engine: Any) -> Iterator[None]:
        """Around the rollouts and the reward: pending weights pushed, the trainer offloaded
        (``offload_model`` / ``offload_optimizer``), vLLM's KV cache woken; afterwards vLLM put to
        sleep (``sleep_level`` 1/2) and the trainer brought back. Every rank enters it."""
        self.ensure_synced()
        offload = TrainerOffload(train_engine, bool(self.cfg.offload_model), bool(self.cfg.offload_optimizer))
        offload.offload()
        self.offloaded_megabytes = offload.bytes_moved / 2**20
        try:
            if self._kv_asleep:
                self.llm.wake_up(tags=["kv_cache"])
                self._kv_asleep = False
            yield
        finally:
            try:
                if self.cfg.sleep_level:
                    self.reset_caches()
                    self.llm.sleep(level=int(self.cfg.sleep_level))
                    self._weights_asleep = self._kv_asleep = True
            finally:
                offload.reload()

    # ---- the reward's VLM ----------------------------------------------------------------------

    def policy_vlm(self) -> VLLMPolicyVLM:
        """The reward's answering VLM on this engine (``reward_vlm: policy``)."""
        return VLLMPolicyVLM(self)

    def reward_runner(self) -> Callable[[Callable[[], Any]], Any]:
        """How the loop must call the reward so its VLM calls reach this engine: directly with one
        rank per engine; with tensor parallelism inside a :class:`LockstepService` round loop."""
        if self.tp_group is None:
            return lambda fn: fn()

        def run(fn: Callable[[], Any]) -> Any:
            self._reward_service = LockstepService(self._answer_now, self.tp_group)
            try:
                return self._reward_service.run(fn)
            finally:
                self._reward_service = None

        return run

    def answer(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Module calls answered at the current weights (one ``generate`` for the batch)."""
        if self.tp_group is not None:
            if self._reward_service is None:
                raise RuntimeError("with vllm_tensor_parallel_size > 1 the policy VLM answers only inside the "
                                   "loop's reward call (reward_runner), where the group's ranks serve in lockstep")
            return self._reward_service.submit(list(requests))
        return self._answer_now(list(requests))

    def _answer_now(self, requests: list[GenerateRequest]) -> list[Generation]:
        from vllm import SamplingParams

        from inference.vlm_inputs import vllm_multi_modal_data

        if not requests:
            return []
        defaults = self.llm.get_default_sampling_params()
        stop = set(stop_token_ids(self.processor, self.cfg.model_name_or_path))
        prompts, params = [], []
        for r in requests:
            images = [np.asarray(im) for im in r.images]
            chat = build_chat(r.prompt, r.messages, len(images), len(r.videos))
            text = self.processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            prompt: dict[str, Any] = {"prompt": text}
            mm = vllm_multi_modal_data(images=images, videos=list(r.videos))
            if mm:
                prompt["multi_modal_data"] = mm
            prompts.append(prompt)
            sampled = r.temperature > 0
            params.append(SamplingParams(
                n=1, temperature=float(r.temperature), max_tokens=int(r.max_new_tokens), repetition_penalty=1.0,
                top_p=float(r.top_p if r.top_p is not None else (defaults.top_p if sampled else 1.0)),
                top_k=int(r.top_k if r.top_k is not None else (defaults.top_k if sampled else 0)),
                logprobs=max(0, int(r.top_logprobs)), seed=r.seed, stop_token_ids=sorted(stop),
                skip_special_tokens=True))
        with self._lock:
            outs = self.llm.generate(prompts, params, use_tqdm=False, lora_request=self._lora_request)
        return [self._generation(o.outputs[0], stop, r.top_logprobs) for o, r in zip(outs, requests)]

    def _generation(self, c: Any, stop: set[int], top_logprobs: int) -> Generation:
        tok = self.processor.tokenizer
        ids = list(c.token_ids)
        steps = list(c.logprobs or [])
        finish = "stop" if c.finish_reason == "stop" else "length"
        answer = len(ids) - 1 if finish == "stop" and ids and ids[-1] in stop else len(ids)
        token_logprobs = [float(steps[i][ids[i]].logprob) for i in range(answer)]
        tops: list[dict[str, float]] = []
        if top_logprobs:
            for i in range(answer):
                row: dict[str, float] = {}
                for tid, lp in sorted(steps[i].items(), key=lambda kv: kv[1].rank or 0):
                    if lp.rank is not None and lp.rank <= top_logprobs:
                        row.setdefault(tok.decode([tid]), float(lp.logprob))
                tops.append(row)
        text = tok.decode(ids[:answer], skip_special_tokens=True).rstrip("\ufffd")
        return Generation(text=text, token_logprobs=token_logprobs, tokens=[tok.decode([t]) for t in ids[:answer]],
                          top_logprobs=tops, num_tokens=len(ids), finish_reason=finish)

    # ---- metrics and teardown -----------------------------------------------------------------

    def step_metrics(self) -> dict[str, float]:
        """The last sync's cost and the engine's memory moves, for the step's log record."""
        s = self.last_sync
        return {"vllm/sync_s": s.seconds, "vllm/sync_tensors": float(s.tensors), "vllm/sync_mb": s.megabytes,
                "vllm/sync_groups": float(s.groups), "vllm/sync_full": float(s.full),
                "vllm/weights_version": float(self.weights_version),
                "vllm/offloaded_mb": float(getattr(self, "offloaded_megabytes", 0.0))}

    def close(self) -> None:
        """Shut the engine down, leaving the trainer's process group alone: vLLM's shutdown ends by
        destroying torch's default process group, which belongs to the training loop here."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        import torch.distributed as dist

        with mock.patch.object(dist, "destroy_process_group", lambda *args, **kwargs: None):
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception as exc:  # noqa: BLE001 - teardown must not mask the run's result
                logger.warning("vLLM engine shutdown: %s", exc)
        del llm
        gc.collect()
        for folder in self._adapter_dirs:
            shutil.rmtree(folder, ignore_errors=True)
        self._adapter_dirs = []


@contextlib.contextmanager
def _root_log_levels_kept() -> Iterator[None]:
    """Starting vLLM loads its entry-point plugins; ms-swift's (installed next to it) sets every
    root logging handler to ERROR when imported, which would silence the training loop's log from
    then on. Put the root handlers' levels back."""
    root = logging.getLogger()
    levels = [(h, h.level) for h in root.handlers]
    try:
        yield
    finally:
        for handler, level in levels:
            handler.setLevel(level)


def _torch_dtype(name: str) -> torch.dtype:
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


class VLLMPolicyVLM(VLMBackend):
    """The reward's answering VLM on the colocated engine: the programs' ``query_*`` calls are
    answered by the policy at its current weights, a batch per :meth:`generate_batch` call (the
    rewards' ``BatchingVLM`` gathers concurrent calls into one). Same chat prompts, images, videos
    (the checkpoint's processor, as the in-process transformers backend), greedy answers and Eq. 2
    log-probs (greedy: the raw log-softmax) as ``inference.backends.vlm.TransformersVLM``.

    ``identity()`` names the weights version (the optimiser step), which the engine moves at every
    sync and the loop sets on resume, so the module-call cache never serves older weights' answers.
    """

    name = "vllm-policy"

    def __init__(self, engine: VLLMEngine) -> None:
        self.engine = engine
        self.checkpoint = str(engine.cfg.model_name_or_path)

    @property
    def weights_version(self) -> int:
        return self.engine.weights_version

    @weights_version.setter
    def weights_version(self, value: int) -> None:
        self.engine.set_weights_version(int(value))

    def identity(self) -> str:
        return f"vllm-policy:{self.checkpoint}@step{self.engine.weights_version}"

    def generate(self, prompt: str | None = None, *, messages: Sequence[dict[str, Any]] | None = None,
                 images: Sequence[np.ndarray] = (), videos: Sequence[VideoWithMetadata] = (),
                 max_new_tokens: int = 512, temperature: float = 0.0, top_p: float | None = None,
                 top_k: int | None = None, top_logprobs: int = 0, seed: int | None = None) -> Generation:
        return self.generate_batch([GenerateRequest(prompt, messages, tuple(images), tuple(videos), max_new_tokens,
                                                    temperature, top_p, top_k, top_logprobs, seed)])[0]

    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        return self.engine.answer(list(requests))
