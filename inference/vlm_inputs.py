"""Give transformers and vLLM the same frames and video metadata (DESIGN.md §4).

Qwen3-VL writes each temporal patch's timestamp (``<0.5 seconds>``) into the prompt and
Qwen2.5-VL turns the sampling rate into ``second_per_grid_ts`` for its M-RoPE, both computed
from the video metadata. A training forward pass and a vLLM rollout therefore agree only when
both see the same pre-sampled frames *and* the same metadata, with frame sampling switched
off on both sides. This module builds that pair once and formats it for each consumer:

- ``video_metadata_for(frames, fps, indices)``: the metadata dict of pre-sampled frames;
- ``hf_video_kwargs(videos)``: keyword arguments for a transformers Qwen-VL processor call;
- ``vllm_multi_modal_data(images, videos)``: the ``multi_modal_data`` of a vLLM prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# A video as both consumers take it: uint8 frames [T, H, W, 3] and their metadata dict.
VideoWithMetadata = tuple[np.ndarray, dict[str, Any]]


def _check_frames(frames: np.ndarray) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"video frames must be an array of shape [T, H, W, 3]; got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"video frames must be uint8 RGB; got dtype {arr.dtype} "
                         "(convert with np.clip(x, 0, 255).astype(np.uint8))")
    if arr.shape[0] < 1:
        raise ValueError("video has no frames; sample at least one frame")
    return arr


def video_metadata_for(frames: np.ndarray | int, fps: float,
                       indices: Sequence[int] | None = None,
                       total_num_frames: int | None = None,
                       video_backend: str = "pyav") -> dict[str, Any]:
    """Metadata of pre-sampled video frames, in the form vLLM and transformers both accept.

    Args:
        frames: the sampled frames ``[T, H, W, 3]`` (or just their number ``T``).
        fps: frame rate of the *original* video the frames were taken from.
        indices: index of each sampled frame in the original video (its frame number); by
            default ``0..T-1``, i.e. the frames are the whole video.
        total_num_frames: number of frames of the original video; by default
            ``max(indices) + 1``.
        video_backend: decoder name recorded in the metadata (informational).

    Returns:
        ``{"fps", "duration", "total_num_frames", "frames_indices", "video_backend",
        "do_sample_frames": False}``. ``do_sample_frames: False`` tells vLLM not to resample;
        ``hf_video_kwargs`` passes the same switch to transformers.
    """
    num = int(frames) if isinstance(frames, (int, np.integer)) else int(np.asarray(frames).shape[0])
    if num < 1:
        raise ValueError(f"video metadata: need at least one frame, got {num}")
    if not fps or fps <= 0:
        raise ValueError(f"video metadata: fps must be positive, got {fps!r} (use the source video's fps)")
    idx = list(range(num)) if indices is None else [int(i) for i in indices]
    if len(idx) != num:
        raise ValueError(f"video metadata: {len(idx)} frame indices for {num} frames; give one index per frame")
    if any(b < a for a, b in zip(idx, idx[1:])) or (idx and idx[0] < 0):
        raise ValueError(f"video metadata: frame indices must be non-negative and non-decreasing, got {idx}")
    total = max(idx) + 1 if total_num_frames is None else int(total_num_frames)
    if total <= max(idx):
        raise ValueError(f"video metadata: total_num_frames={total} but a frame index is {max(idx)}")
    return {"fps": float(fps), "duration": total / float(fps), "total_num_frames": total,
            "frames_indices": idx, "video_backend": video_backend, "do_sample_frames": False}


def _hf_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    # transformers' VideoMetadata has no do_sample_frames field: that switch is a processor
    # argument there (vLLM strips it the same way before calling the HF processor).
    return {k: v for k, v in metadata.items() if k != "do_sample_frames"}


def hf_video_kwargs(videos: Sequence[VideoWithMetadata]) -> dict[str, Any]:
    """Keyword arguments for a transformers Qwen-VL processor call with pre-sampled videos.

    ``processor(text=..., images=..., **hf_video_kwargs([(frames, meta)]), return_tensors="pt")``
    processes exactly what ``vllm_multi_modal_data(videos=[(frames, meta)])`` makes vLLM process.
    """
    if not videos:
        return {}
    frames, metas = [], []
    for i, item in enumerate(videos):
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict)):
            raise TypeError(f"videos[{i}] must be a (frames, metadata dict) pair from video_metadata_for")
        arr = _check_frames(item[0])
        if len(item[1].get("frames_indices", ())) != arr.shape[0]:
            raise ValueError(f"videos[{i}]: metadata lists {len(item[1].get('frames_indices', ()))} frame "
                             f"indices for {arr.shape[0]} frames; rebuild it with video_metadata_for")
        frames.append(arr)
        metas.append(_hf_metadata(item[1]))
    return {"videos": frames, "video_metadata": metas, "do_sample_frames": False}


def vllm_multi_modal_data(images: Sequence[Any] | None = None,
                          videos: Sequence[VideoWithMetadata] | None = None) -> dict[str, Any]:
    """The ``multi_modal_data`` of a vLLM prompt: ``{"image": [...], "video": [(frames, meta)]}``.

    Images are passed through (PIL images or uint8 arrays); videos must be
    ``(frames, video_metadata_for(...))`` pairs. Empty modalities are left out, because vLLM
    counts every listed modality against ``limit_mm_per_prompt``.
    """
    data: dict[str, Any] = {}
    if images:
        data["image"] = list(images)
    if videos:
        hf_video_kwargs(videos)  # same validation as the transformers side
        data["video"] = [(np.asarray(f), dict(m)) for f, m in videos]
    return data


def reference_mrope_position_ids(model: Any, inputs: Any) -> Any:
    """M-RoPE position ids ``[3, batch, seq]`` under the reference rule that vLLM follows.

    After a vision block, the reference implementations (Qwen's original code, vLLM) continue
    the text at ``max(all earlier positions) + 1``. transformers 5.19's Qwen2.5-VL
    ``get_rope_index`` continues at ``block start + max(h, w) / merge`` instead, which is lower
    when a video has more than one temporal patch (its temporal positions advance by
    ``second_per_grid_ts * tokens_per_second`` per patch). The text after such a video then
    gets different positions in a transformers forward pass than in a vLLM rollout, and the
    log-probs differ (by ~1e-3 on the tiny model, more on a trained one). Passing
    ``position_ids=reference_mrope_position_ids(model, inputs)`` to the forward pass makes
    them agree. For Qwen3-VL (one temporal patch per block) and for images it returns the
    model's own positions unchanged.

    Args:
        model: a Qwen2.5-VL / Qwen3-VL ``...ForConditionalGeneration`` (or its inner model).
        inputs: the processor's output (``input_ids``, ``attention_mask``,
            ``mm_token_type_ids`` and the grids / ``second_per_grid_ts`` it returned).
    """
    import torch

    inner = getattr(model, "model", model)
    if not hasattr(inner, "get_rope_index"):
        raise TypeError(f"{type(model).__name__} has no get_rope_index: pass a Qwen-VL model")
    if "mm_token_type_ids" not in inputs:
        raise ValueError("inputs lack mm_token_type_ids: call the processor with its default "
                         "return_mm_token_type_ids=True")
    kwargs = {k: inputs[k] for k in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts",
                                     "attention_mask") if inputs.get(k) is not None}
    positions, _ = inner.get_rope_index(inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"],
                                        **kwargs)
    positions = positions.clone()
    mask = inputs.get("attention_mask")
    for b in range(positions.shape[1]):
        valid = mask[b].bool() if mask is not None else torch.ones_like(inputs["input_ids"][b], dtype=torch.bool)
        pos = positions[:, b, valid]
        types = inputs["mm_token_type_ids"][b][valid]
        # Starts of text runs that follow a vision run.
        starts = ((types[1:] == 0) & (types[:-1] != 0)).nonzero().flatten() + 1
        for s in starts.tolist():
            shift = pos[:, :s].max() + 1 - pos[:, s].min()
            if shift > 0:
                pos[:, s:] += shift
        positions[:, b, valid] = pos
    return positions
