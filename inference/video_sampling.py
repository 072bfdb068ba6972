"""Which frames of a video a Qwen-VL model sees, and at what size: one policy for training
and inference (DESIGN.md §4, "give vLLM and the trainer the same sampled frames and video
metadata").

A whole video becomes model input in two steps, done here for every consumer (SFT data,
the runner's policy prompt, ``query_native``):

1. **sample** ``n`` frames: ``fps`` frames per second of video, clamped to
   ``[min_frames, max_frames]`` and rounded down to an even number (qwen-vl-utils'
   ``smart_nframes``, which ms-swift drives with its ``FPS``/``FPS_MAX_FRAMES`` variables).
   Which ``n`` frames is ``frame_rule``:

   - ``"linspace"`` (default): frame numbers ``round(linspace(0, total - 1, n))`` over the
     video's ``total`` frames, qwen-vl-utils' rule (its decord, torchcodec and torchvision
     readers), so ms-swift's ``swift sft`` sees the same frames and ``<t seconds>`` stamps;
   - ``"centres"``: the frame at the centre of each of ``n`` equal segments (what this
     project did before, and what ``VideoStore.sample_frames`` does for programs).

   The frames are decoded by seeking (``VideoStore``): frame ``i`` is the frame shown at
   ``i / fps``, which is decord's frame ``i`` on constant-frame-rate video;
2. **resize** every frame to one size whose sides are multiples of the vision tower's
   ``patch_size * merge_size`` (Qwen2.5-VL 28, Qwen3-VL 32), keeping the aspect ratio, with
   qwen-vl-utils' ``smart_resize``. The area bounds are ``pixel_rule``:

   - ``"stated"`` (default): ``[min_pixels, max_pixels]`` as given (the paper states 50,176
     px per frame). ms-swift gives the same sizes with ``VIDEO_MIN_PIXELS`` and
     ``VIDEO_MAX_PIXELS`` both set (``VIDEO_MIN_PIXELS=3136 VIDEO_MAX_PIXELS=50176``), except
     that it rounds them down to whole tokens (3136 px is 3 tokens, 3,072 px, on Qwen3-VL), so
     a frame that resizes to exactly 32x96 px is enlarged here and not there;
   - ``"qwen_vl_utils"``: the bounds ms-swift ends up with when only ``VIDEO_MAX_PIXELS`` is
     set (the paper's stated variables) under qwen-vl-utils 0.0.14 (``frame_pixel_bounds``):
     qwen-vl-utils keeps its own minimum of 128 tokens per frame, which then also lifts the
     maximum; a 320x240 video gets 320x448 frames instead of 192x256.

``sample_video`` returns the uint8 frames and their ``video_metadata_for`` dict (source fps,
frame indices in the source video), the pair that transformers (``hf_video_kwargs``) and
vLLM (``vllm_multi_modal_data``) both take. The checkpoint's processor does the rest
(rescale, normalise, patchify) on each side.

The policy is declared once, as the config fields of :class:`FramePolicy` (``video_fps``,
``video_min_frames``, ``video_max_frames``, ``video_min_pixels``, ``video_max_pixels``,
``video_frame_rule``, ``video_pixel_rule``), which every stage config inherits
(``training.sft.config.SFTConfig``, ``inference.modules.ModuleConfig``, the GRPO and
evaluation configs): one set of values gives the trainer, the rollouts and the runner the
same frames, and the fields cannot drift apart.
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

FRAME_RULES = ("linspace", "centres")
PIXEL_RULES = ("stated", "qwen_vl_utils")
# qwen-vl-utils 0.0.14 (vision_process.py) constants behind the "qwen_vl_utils" pixel rule:
# VIDEO_MIN_TOKEN_NUM (its per-frame minimum, in merged tokens, when VIDEO_MIN_PIXELS is unset)
# and the default MODEL_SEQ_LEN of its total-pixel budget.
QWEN_VL_UTILS_VIDEO_MIN_TOKENS = 128
QWEN_VL_UTILS_MODEL_SEQ_LEN = 128000


@dataclass(frozen=True)
class VideoSampling:
    """How many frames to take from a video and how large each may be.

    Attributes:
        fps: frames sampled per second of video before the frame caps apply (ms-swift ``FPS``).
        min_frames: lower bound on the number of sampled frames (ms-swift ``FPS_MIN_FRAMES``).
        max_frames: upper bound on the number of sampled frames (ms-swift ``FPS_MAX_FRAMES``).
        min_pixels: lower bound on the pixels of one resized frame (ms-swift
            ``VIDEO_MIN_PIXELS``; unused by the ``"qwen_vl_utils"`` pixel rule).
        max_pixels: upper bound on the pixels of one resized frame (ms-swift ``VIDEO_MAX_PIXELS``).
        frame_rule: which frames: ``"linspace"`` (qwen-vl-utils / ms-swift) or ``"centres"``
            (segment centres); see the module docstring.
        pixel_rule: which area bounds: ``"stated"`` (``[min_pixels, max_pixels]``) or
            ``"qwen_vl_utils"`` (ms-swift's effective bounds with only ``VIDEO_MAX_PIXELS``
            set); see ``frame_pixel_bounds``.
    """

    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 64
    min_pixels: int = 3136
    max_pixels: int = 50176
    frame_rule: str = "linspace"
    pixel_rule: str = "stated"

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"video fps must be positive, got {self.fps}")
        if not FRAME_FACTOR <= self.min_frames <= self.max_frames:
            raise ValueError(f"need {FRAME_FACTOR} <= video min_frames <= max_frames, got "
                             f"min_frames={self.min_frames}, max_frames={self.max_frames}")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"need 0 < video min_pixels <= max_pixels, got min_pixels="
                             f"{self.min_pixels}, max_pixels={self.max_pixels}")
        if self.frame_rule not in FRAME_RULES:
            raise ValueError(f"video frame_rule must be one of {', '.join(FRAME_RULES)}, got "
                             f"{self.frame_rule!r}")
        if self.pixel_rule not in PIXEL_RULES:
            raise ValueError(f"video pixel_rule must be one of {', '.join(PIXEL_RULES)}, got "
                             f"{self.pixel_rule!r}")

    @classmethod
    def from_config(cls, cfg: Any) -> VideoSampling:
        """From a config carrying the :class:`FramePolicy` fields (any stage config)."""
        return cls(fps=float(cfg.video_fps), min_frames=int(cfg.video_min_frames),
                   max_frames=int(cfg.video_max_frames), min_pixels=int(cfg.video_min_pixels),
                   max_pixels=int(cfg.video_max_pixels), frame_rule=str(cfg.video_frame_rule),
                   pixel_rule=str(cfg.video_pixel_rule))


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
    video_frame_rule: str = config_field(_DEFAULT.frame_rule, "Which whole-video frames: linspace (qwen-vl-utils / "
                                                              "ms-swift: frame numbers round(linspace(0, total-1, "
                                                              "n))) or centres (the centre frame of n equal "
                                                              "segments, this project's rule before).")
    video_pixel_rule: str = config_field(_DEFAULT.pixel_rule, "Frame area bounds: stated ([video_min_pixels, "
                                                              "video_max_pixels]; ms-swift with VIDEO_MIN_PIXELS=3136 "
                                                              "VIDEO_MAX_PIXELS=50176) or qwen_vl_utils (what "
                                                              "ms-swift does with only VIDEO_MAX_PIXELS set: "
                                                              "qwen-vl-utils 0.0.14's 128-token minimum per frame "
                                                              "wins, 4,480 instead of 1,536 video tokens on a "
                                                              "320x240 video).")

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


def frame_indices(total_frames: int, num_frames: int) -> list[int]:
    """The ``"linspace"`` frame rule: ``round(linspace(0, total_frames - 1, num_frames))``, the
    frame numbers qwen-vl-utils' video readers take. Computed as they compute it, with
    ``torch.linspace`` in float32: on long videos float32 spacing error reaches a hundredth of
    a frame, enough for float64 to round some frame the other way."""
    import torch

    if total_frames < 1 or num_frames < 1:
        raise ValueError(f"need at least one frame, got total_frames={total_frames}, num_frames={num_frames}")
    return [int(i) for i in torch.linspace(0, total_frames - 1, num_frames).round().long().tolist()]


def frame_pixel_bounds(sampling: VideoSampling, factor: int, num_frames: int) -> tuple[float, float]:
    """``(min_pixels, max_pixels)`` of one resized frame under ``sampling.pixel_rule``.

    ``"stated"``: ``(sampling.min_pixels, sampling.max_pixels)``.

    ``"qwen_vl_utils"``: what qwen-vl-utils 0.0.14's ``fetch_video`` applies under ms-swift
    when only ``VIDEO_MAX_PIXELS`` is set. ms-swift turns that variable into whole merged
    tokens (``VIDEO_MAX_TOKEN_NUM = VIDEO_MAX_PIXELS // factor**2``); qwen-vl-utils keeps its
    ``VIDEO_MIN_TOKEN_NUM`` of 128 tokens as the minimum, caps the maximum by its total budget
    (``MODEL_SEQ_LEN * factor**2 * 0.9 / num_frames * 2``) and lifts it to at least
    ``int(1.05 * minimum)``. ``sampling.min_pixels`` plays no part (ms-swift's
    ``VIDEO_TOTAL_PIXELS`` neither: 0.0.14 does not read it).
    """
    if sampling.pixel_rule == "stated":
        return float(sampling.min_pixels), float(sampling.max_pixels)
    area = factor * factor
    low = QWEN_VL_UTILS_VIDEO_MIN_TOKENS * area
    total = QWEN_VL_UTILS_MODEL_SEQ_LEN * area * 0.9
    high = max(min((sampling.max_pixels // area) * area, total / max(num_frames, 1) * FRAME_FACTOR),
               int(low * 1.05))
    return float(low), float(high)


def frame_size(height: int, width: int, factor: int, min_pixels: float, max_pixels: float) -> tuple[int, int]:
    """qwen-vl-utils' ``smart_resize``: sides are multiples of ``factor``, the area lies in
    ``[min_pixels, max_pixels]`` (at least one ``factor`` square) and the aspect ratio is kept.
    As there, growing a frame to ``min_pixels`` rounds its sides up and may pass ``max_pixels``."""
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
        sampling: frame count, frame rule and size policy.
        factor: side multiple of the resized frames, the vision tower's
            ``patch_size * merge_size`` (``checkpoint_patch_factor``; the processor's
            ``patch_size * merge_size``).
        store: the ``VideoStore`` that decodes.

    Returns:
        uint8 frames ``[T, h, w, 3]`` and their metadata (``video_metadata_for``: source fps,
        frame indices in the source, total frames), ready for both transformers and vLLM.
    """
    from inference.types import Frame
    from inference.vlm_inputs import video_metadata_for

    path = str(path)
    info = store.probe(path)
    fps = float(info.fps) or 1.0
    n = num_sampled_frames(info.num_frames, fps, sampling)
    origin = store.clip_origin(path)
    offset = origin[1] if origin else 0.0  # times of frames in a clip are reported in the source
    if sampling.frame_rule == "linspace":
        indices = frame_indices(info.num_frames, n)
        handles = [Frame(source=path, time=round(i / fps, 6), video_time=round(offset + i / fps, 6))
                   for i in indices]
        frames = np.stack(store.load_frames(handles))
    else:  # "centres": the store's uniform sampling, frame numbers recovered from its times
        frames, times = store.decode_window(path, n)
        frames = np.asarray(frames)
        indices = [min(info.num_frames - 1, max(0, int(round((float(t) - offset) * fps)))) for t in times]
        indices = [int(i) for i in np.maximum.accumulate(indices)] if indices else indices
    low, high = frame_pixel_bounds(sampling, factor, len(indices))
    h, w = frame_size(frames.shape[1], frames.shape[2], factor, min(low, high), high)
    frames = resize_frames(frames, h, w)
    meta = video_metadata_for(frames, fps=fps, indices=indices,
                              total_num_frames=max(info.num_frames, max(indices) + 1))
    return frames, meta
