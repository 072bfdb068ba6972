"""Which frames of a video a Qwen-VL model sees, and at what size: one policy for training
and inference (DESIGN.md §4, "give vLLM and the trainer the same sampled frames and video
metadata").

A whole video becomes model input in two steps, done here for every consumer (SFT data,
the runner's policy prompt, ``query_native``):

1. **sample** ``n`` frames: ``fps`` frames per second of video, clamped to
   ``[min_frames, max_frames]`` and rounded down to an even number, as qwen-vl-utils'
   ``smart_nframes`` (and so ms-swift's ``FPS``/``FPS_MAX_FRAMES``) does; the ``n`` frames
   are spread uniformly over the video and decoded by seeking (``VideoStore.decode_window``);
2. **resize** every frame to one size whose sides are multiples of the vision tower's
   ``patch_size * merge_size`` (Qwen2.5-VL 28, Qwen3-VL 32) and whose area lies in
   ``[min_pixels, max_pixels]`` (qwen-vl-utils' ``smart_resize``; ms-swift's ``VIDEO_MAX_PIXELS``).

``sample_video`` returns the uint8 frames and their ``video_metadata_for`` dict (source fps,
frame indices in the source video), the pair that transformers (``hf_video_kwargs``) and
vLLM (``vllm_multi_modal_data``) both take. The checkpoint's processor does the rest
(rescale, normalise, patchify) on each side.

The policy is declared once, as the config fields of :class:`FramePolicy` (``video_fps``,
``video_min_frames``, ``video_max_frames``, ``video_min_pixels``, ``video_max_pixels``), which
every stage config inherits (``training.sft.config.SFTConfig``,
``inference.modules.ModuleConfig``, the GRPO and evaluation configs): one set of values gives
the trainer, the rollouts and the runner the same frames, and the fields cannot drift apart.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from inference.config import config_field

FRAME_FACTOR = 2  # the vision tower's temporal patch: frame counts are kept even
DEFAULT_PATCH_FACTOR = 32  # Qwen3-VL (the paper's model): patch 16 x merge 2; Qwen2.5-VL: 28


@dataclass(frozen=True)
class VideoSampling:
    """How many frames to take from a video and how large each may be.

    Attributes:
        fps: frames sampled per second of video before the frame caps apply.
        min_frames: lower bound on the number of sampled frames.
        max_frames: upper bound on the number of sampled frames (ms-swift ``FPS_MAX_FRAMES``).
        min_pixels: lower bound on the pixels of one resized frame.
        max_pixels: upper bound on the pixels of one resized frame (ms-swift ``VIDEO_MAX_PIXELS``).
    """

    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 64
    min_pixels: int = 3136
    max_pixels: int = 50176

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"video fps must be positive, got {self.fps}")
        if not FRAME_FACTOR <= self.min_frames <= self.max_frames:
            raise ValueError(f"need {FRAME_FACTOR} <= video min_frames <= max_frames, got "
                             f"min_frames={self.min_frames}, max_frames={self.max_frames}")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"need 0 < video min_pixels <= max_pixels, got min_pixels="
                             f"{self.min_pixels}, max_pixels={self.max_pixels}")

    @classmethod
    def from_config(cls, cfg: Any) -> VideoSampling:
        """From a config carrying the :class:`FramePolicy` fields (any stage config)."""
        return cls(fps=float(cfg.video_fps), min_frames=int(cfg.video_min_frames),
                   max_frames=int(cfg.video_max_frames), min_pixels=int(cfg.video_min_pixels),
                   max_pixels=int(cfg.video_max_pixels))


_DEFAULT = VideoSampling()


@dataclass
class FramePolicy:
    """The frame-policy fields of every stage config (inherit it; do not redeclare them).

    A checkpoint must be run with the policy it was trained with: SFT writes these fields into
    ``sft_config.json``, merged checkpoints carry it, and the runtime warns when they differ
    (``inference.modules.warn_if_frame_policy_differs``).
    """

    video_fps: float = config_field(_DEFAULT.fps, "Frames sampled per second of a whole video, before the frame "
                                                  "caps (qwen-vl-utils / ms-swift FPS).")
    video_min_frames: int = config_field(_DEFAULT.min_frames, "Fewest frames sampled from a whole video "
                                                              "(even, >= 2).")
    video_max_frames: int = config_field(_DEFAULT.max_frames, "Most frames sampled from a whole video "
                                                              "(ms-swift FPS_MAX_FRAMES; the paper: 64).")
    video_min_pixels: int = config_field(_DEFAULT.min_pixels, "Fewest pixels of one resized whole-video frame "
                                                              "(ms-swift VIDEO_MIN_PIXELS).")
    video_max_pixels: int = config_field(_DEFAULT.max_pixels, "Most pixels of one resized whole-video frame "
                                                              "(ms-swift VIDEO_MAX_PIXELS; the paper: 50176).")

    def video_sampling(self) -> VideoSampling:
        """This policy as the sampler takes it (validates the values)."""
        return VideoSampling.from_config(self)


#: The names of the frame-policy fields, in declaration order.
FRAME_POLICY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(FramePolicy))


def num_sampled_frames(total_frames: int, video_fps: float, sampling: VideoSampling) -> int:
    """qwen-vl-utils' ``smart_nframes`` for ``fps`` sampling: an even count in
    ``[min_frames, max_frames]``, never more frames than the video has (a video shorter than
    two frames is repeated by the processor's temporal padding)."""
    if total_frames < 1:
        raise ValueError("video has no frames")
    lo = math.ceil(sampling.min_frames / FRAME_FACTOR) * FRAME_FACTOR
    hi = math.floor(min(sampling.max_frames, total_frames) / FRAME_FACTOR) * FRAME_FACTOR
    wanted = total_frames / video_fps * sampling.fps
    n = math.floor(min(max(wanted, lo), hi, total_frames) / FRAME_FACTOR) * FRAME_FACTOR
    return max(n, min(total_frames, FRAME_FACTOR))


def frame_size(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """qwen-vl-utils' ``smart_resize``: sides are multiples of ``factor``, the area lies in
    ``[min_pixels, max_pixels]`` (at least one ``factor`` square) and the aspect ratio is kept."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"video aspect ratio {width}x{height} is beyond 200:1; crop the video")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic, antialiased resize of uint8 ``[T, H, W, 3]`` frames (as qwen-vl-utils), back to uint8."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as tvF

    if frames.shape[1:3] == (height, width):
        return frames
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    out = tvF.resize(video.float(), [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def checkpoint_patch_factor(checkpoint: str | Path | None) -> int | None:
    """``patch_size * spatial_merge_size`` of a local Qwen-VL checkpoint's vision tower (from
    its ``config.json``); ``None`` when ``checkpoint`` is not a local folder with that config."""
    if not checkpoint:
        return None
    path = Path(checkpoint) / "config.json"
    if not path.is_file():
        return None
    try:
        vision = json.loads(path.read_text()).get("vision_config") or {}
        return int(vision["patch_size"]) * int(vision["spatial_merge_size"])
    except (KeyError, TypeError, ValueError):
        return None


def sample_video(path: str | Path, sampling: VideoSampling, factor: int,
                 store: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode (with ``store``, an ``inference.video_store.VideoStore``), sample and resize a video.

    Args:
        path: a video file, or a clip file of ``store`` (its frame indices are then counted
            from the clip's start, as vLLM and the processor count them).
        sampling: frame count and size policy.
        factor: side multiple of the resized frames, the vision tower's
            ``patch_size * merge_size`` (``checkpoint_patch_factor``; the processor's
            ``patch_size * merge_size``).
        store: the ``VideoStore`` that decodes.

    Returns:
        uint8 frames ``[T, h, w, 3]`` and their metadata (``video_metadata_for``: source fps,
        frame indices in the source, total frames), ready for both transformers and vLLM.
    """
    from inference.vlm_inputs import video_metadata_for

    path = str(path)
    info = store.probe(path)
    fps = float(info.fps) or 1.0
    n = num_sampled_frames(info.num_frames, fps, sampling)
    frames, times = store.decode_window(path, n)
    frames = np.asarray(frames)
    origin = store.clip_origin(path)
    offset = origin[1] if origin else 0.0  # decode_window reports times in the source video
    indices = [min(info.num_frames - 1, max(0, int(round((float(t) - offset) * fps)))) for t in times]
    indices = [int(i) for i in np.maximum.accumulate(indices)] if indices else indices
    h, w = frame_size(frames.shape[1], frames.shape[2], factor,
                      min(sampling.min_pixels, sampling.max_pixels), sampling.max_pixels)
    frames = resize_frames(frames, h, w)
    meta = video_metadata_for(frames, fps=fps, indices=indices,
                              total_num_frames=max(info.num_frames, max(indices) + 1))
    return frames, meta
