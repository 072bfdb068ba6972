"""Rollout engines: the interface the GRPO loop samples completions through, and the
transformers ``generate`` engine.

An engine receives, per prompt, exactly what the training forward receives:

- ``prompt_ids``: the rendered prompt's token ids with every video placeholder expanded
  (``<|vision_start|><|video_pad|>*n<|vision_end|>``, Qwen3-VL's ``<t seconds>`` blocks) - the
  same ids the training forward puts before the completion. An engine that re-expands the
  placeholders itself (vLLM) collapses each run of pad tokens first
  (:func:`collapse_vision_pads`);
- ``videos``: ``(frames uint8 [T, H, W, 3], metadata dict)`` per video, from the run's frame
  policy; ``metadata`` is ``inference.vlm_inputs.video_metadata_for``'s dict (source fps, frame
  indices, ``do_sample_frames: False``), which both ``hf_video_kwargs`` and vLLM's
  ``multi_modal_data`` take unchanged. The engine must neither resample nor resize them.

It returns, per prompt, ``num_samples`` completions (token ids, end-of-turn token included
when one was generated), optionally the sampler's own per-token log-probs (for the
importance-sampling correction), the finish reason, and the number of visual tokens it fed the
model (the loop checks it against the training input). The loop calls ``sync_weights(model)``
after every optimiser step and ``close()`` at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from training.common.video import process_video

VideoWithMetadata = tuple[np.ndarray, dict[str, Any]]


@dataclass
class SamplingSettings:
    """How completions are sampled (the same for every engine).

    Attributes:
        max_new_tokens: completion budget; a completion that reaches it without an end-of-turn
            token is truncated.
        temperature, top_p, top_k, repetition_penalty: sampling parameters (``top_k`` 0 and
            ``top_p`` 1.0 disable those filters).
        stop_token_ids: end-of-turn tokens; generation of a completion stops after one.
        suppress_token_ids: tokens that must never be sampled: the vision placeholders
            (``<|image_pad|>``, ``<|video_pad|>``). The training forward reads every such id in
            its input as a slot for vision features, so one sampled by a (young or random) policy
            would break it; the trainer masks the same ids out of its log-softmax, so sampler and
            trainer distributions stay equal.
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    stop_token_ids: tuple[int, ...] = ()
    suppress_token_ids: tuple[int, ...] = ()


@dataclass
class RolloutRequest:
    """One prompt to sample ``num_samples`` completions for (see the module docstring)."""

    prompt_ids: list[int]
    videos: list[VideoWithMetadata]
    num_samples: int = 1


@dataclass
class Completion:
    """One sampled completion.

    Attributes:
        token_ids: generated ids, the end-of-turn token included when generation stopped on one.
        logprobs: the sampler's log-prob of each of ``token_ids`` under the distribution it
            sampled from (temperature and top-k/top-p applied), or ``None`` if not reported.
        finish_reason: ``stop`` (end-of-turn token) or ``length`` (budget reached).
    """

    token_ids: list[int]
    logprobs: list[float] | None = None
    finish_reason: str = "stop"

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass
class RolloutOutput:
    """The completions of one request and what the engine fed the model for it."""

    completions: list[Completion] = field(default_factory=list)
    num_visual_tokens: int = 0


@runtime_checkable
class RolloutEngine(Protocol):
    """What the GRPO loop needs from a rollout engine."""

    def generate(self, requests: Sequence[RolloutRequest], sampling: SamplingSettings) -> list[RolloutOutput]:
        """Sample ``request.num_samples`` completions for every request, in request order."""

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Make the engine sample from ``model``'s current weights (after each optimiser step)."""

    def close(self) -> None:
        """Release the engine's resources."""


def collapse_vision_pads(token_ids: Sequence[int], pad_token_ids: Sequence[int]) -> list[int]:
    """Replace every run of a vision pad token (``<|video_pad|>``, ``<|image_pad|>``) by one
    occurrence: the form an engine that expands placeholders from the media itself (vLLM)
    expects (verl does the same before handing token ids to vLLM)."""
    pads = set(int(t) for t in pad_token_ids)
    out: list[int] = []
    for t in token_ids:
        if t in pads and out and out[-1] == t:
            continue
        out.append(int(t))
    return out


def vision_placeholder_ids(processor: Any) -> tuple[int, ...]:
    """The ids of ``<|image_pad|>`` and ``<|video_pad|>`` (see ``SamplingSettings.suppress_token_ids``)."""
    tok = processor.tokenizer
    ids = [tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>")]
    return tuple(int(i) for i in ids if isinstance(i, int) and i >= 0 and i != tok.unk_token_id)


def count_visual_tokens(video_grid_thw: torch.Tensor, merge_size: int) -> int:
    """Placeholder tokens the vision tower's output fills for these grids: ``t * h * w / merge^2`` each."""
    return int((video_grid_thw.prod(-1) // (merge_size ** 2)).sum())


def generation_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module to call ``generate`` on: a PEFT model's underlying transformers model (its
    LoRA layers are injected in place, so they act), otherwise ``model`` itself. Its ``.model``
    is the Qwen-VL inner model that owns ``get_rope_index`` (the reference positions need it)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def reference_generate_positions(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{"position_ids": [4, B, S]}`` for ``generate`` on a Qwen2.5-VL prompt with a video: the
    reference M-RoPE positions the training forward uses (``training.common.model.
    with_reference_positions``), text positions first; ``{}`` for every other model."""
    from training.common.model import rope_index_module, with_reference_positions

    owner = rope_index_module(model)
    if owner is None or getattr(owner.config, "model_type", None) != "qwen2_5_vl":
        return {}
    mrope = with_reference_positions(model, inputs)["position_ids"]
    mask = inputs["attention_mask"]
    text = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    return {"position_ids": torch.cat([text[None].to(mrope.device), mrope], dim=0)}


class TransformersEngine:
    """Rollouts with transformers ``generate`` on the training model itself.

    The frames of each request are processed here with the checkpoint's video processor
    (``training.common.video.process_video``: no resampling, no resizing), the path any
    engine takes from ``(frames, metadata)`` to pixels; the number of visual tokens that gives
    must equal the number of video placeholders in ``prompt_ids`` (else ``ValueError``, the
    transformers form of vLLM's "N multimodal tokens for M placeholders").

    ``sync_weights`` has nothing to copy (generation runs on the live weights). The caller puts
    the model in eval mode and, under ZeRO-3, gathers its parameters around ``generate``
    (``training.grpo.policy.rollout_mode``).
    """

    def __init__(self, model: torch.nn.Module, processor: Any, pad_token_id: int):
        self.model = model
        self.processor = processor
        self.pad_token_id = int(pad_token_id)
        tok = processor.tokenizer
        self.video_pad_id = int(tok.convert_tokens_to_ids("<|video_pad|>"))
        self.merge_size = int(processor.video_processor.merge_size)
        self.weights_version = 0

    def _vision_inputs(self, request: RolloutRequest) -> tuple[dict[str, torch.Tensor], int]:
        if not request.videos:
            return {}, 0
        processed = [process_video(self.processor, frames, meta) for frames, meta in request.videos]
        grid = torch.cat([p["video_grid_thw"] for p in processed])
        out = {"pixel_values_videos": torch.cat([p["pixel_values_videos"] for p in processed]),
               "video_grid_thw": grid}
        if "second_per_grid_ts" in self.processor.model_input_names:
            from transformers.video_utils import VideoMetadata

            tps = self.processor.video_processor.temporal_patch_size
            out["second_per_grid_ts"] = torch.tensor(
                [tps / VideoMetadata(**p["video_metadata"]).sampled_fps for p in processed], dtype=torch.float32)
        return out, count_visual_tokens(grid, self.merge_size)

    def generate(self, requests: Sequence[RolloutRequest], sampling: SamplingSettings) -> list[RolloutOutput]:
        from transformers import GenerationConfig

        model = generation_model(self.model)
        device = next(model.parameters()).device
        stop = set(int(t) for t in sampling.stop_token_ids)
        config = GenerationConfig(
            do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
            repetition_penalty=sampling.repetition_penalty, max_new_tokens=sampling.max_new_tokens,
            eos_token_id=sorted(stop) or None, pad_token_id=self.pad_token_id, use_cache=True,
            output_scores=True, return_dict_in_generate=True,
            suppress_tokens=list(sampling.suppress_token_ids) or None)
        outputs = []
        for request in requests:
            vision, num_visual = self._vision_inputs(request)
            placeholders = sum(1 for t in request.prompt_ids if t == self.video_pad_id)
            if placeholders != num_visual:
                raise ValueError(f"the prompt holds {placeholders} video placeholder tokens but its frames give "
                                 f"{num_visual} visual tokens; the frames were resized or resampled after the "
                                 f"prompt was built")
            n = request.num_samples
            ids = torch.tensor([request.prompt_ids] * n, dtype=torch.long)
            inputs: dict[str, torch.Tensor] = {
                "input_ids": ids, "attention_mask": torch.ones_like(ids),
                "mm_token_type_ids": torch.tensor(self.processor.create_mm_token_type_ids([request.prompt_ids]) * n,
                                                  dtype=torch.long)}
            if vision:
                inputs["pixel_values_videos"] = vision["pixel_values_videos"].repeat(n, 1)
                inputs["video_grid_thw"] = vision["video_grid_thw"].repeat(n, 1)
                if "second_per_grid_ts" in vision:
                    inputs["second_per_grid_ts"] = vision["second_per_grid_ts"].repeat(n)
            inputs = {k: v.to(device) for k, v in inputs.items()}
            if "pixel_values_videos" in inputs:
                inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(next(model.parameters()).dtype)
            positions = reference_generate_positions(model, inputs)
            with torch.no_grad():
                out = model.generate(**inputs, **positions, generation_config=config)
            new = out.sequences[:, ids.shape[1]:].cpu()
            scores = torch.stack(out.scores, dim=1).float().cpu()  # [n, steps, V], processed (sampled-from)
            logps = torch.log_softmax(scores, dim=-1).gather(-1, new[..., None]).squeeze(-1)
            completions = []
            for row, row_logp in zip(new.tolist(), logps.tolist()):
                end = next((i + 1 for i, t in enumerate(row) if t in stop), None)
                if end is None:  # no end-of-turn token within the budget
                    completions.append(Completion(row, row_logp, "length"))
                else:
                    completions.append(Completion(row[:end], row_logp[:end], "stop"))
            outputs.append(RolloutOutput(completions, num_visual))
        return outputs

    def sync_weights(self, model: torch.nn.Module) -> None:
        self.model = model
        self.weights_version += 1

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


def make_rollout_engine(name: str, model: torch.nn.Module, processor: Any, pad_token_id: int, *,
                        cfg: Any = None, rows: Sequence[dict[str, Any]] = (), info: Any = None) -> RolloutEngine:
    """The engine ``name`` (config ``rollout_engine``). The colocated vLLM engine
    (``training.grpo.vllm_engine``) also needs the config, the rows (to size its context) and the
    process's ``DistInfo``."""
    if name == "transformers":
        return TransformersEngine(model, processor, pad_token_id)
    if name == "vllm":
        if cfg is None or info is None:
            raise ValueError("rollout_engine vllm needs cfg= and info= (training.grpo.train passes them)")
        from training.grpo.vllm_engine import VLLMEngine

        return VLLMEngine(cfg, model, processor, rows, info)
    raise ValueError(f"rollout_engine {name!r} is not available; expected 'transformers' or 'vllm'")


def stop_token_ids(processor: Any, checkpoint: str) -> tuple[int, ...]:
    """End-of-turn tokens: the checkpoint's generation ``eos_token_id`` (Qwen: ``<|im_end|>`` and
    ``<|endoftext|>``) plus ``<|im_end|>`` itself: where every engine stops a completion (the same
    set the in-process transformers backend stops on)."""
    from transformers import GenerationConfig

    ids = set()
    try:
        eos = GenerationConfig.from_pretrained(checkpoint).eos_token_id
        ids.update(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    except OSError:
        pass
    im_end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end >= 0:
        ids.add(im_end)
    if processor.tokenizer.eos_token_id is not None:
        ids.add(processor.tokenizer.eos_token_id)
    return tuple(sorted(int(i) for i in ids))
