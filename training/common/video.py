"""Video inputs for training, processed the Qwen-VL way and cached on disk.

A training row names a video file. Turning it into model inputs takes three steps:

1. **sample** ``n`` frames: ``fps`` frames per second of video, clamped to
   ``[min_frames, max_frames]`` and rounded down to an even number, as qwen-vl-utils'
   ``smart_nframes`` (and so ms-swift's ``FPS``/``FPS_MAX_FRAMES``) does;
2. **resize** every frame to one size whose sides are multiples of the vision tower's
   ``patch_size * merge_size`` and whose area lies in ``[min_pixels, max_pixels]``
   (qwen-vl-utils' ``smart_resize``; ms-swift's ``VIDEO_MAX_PIXELS``);
3. **process** with the checkpoint's own video processor (rescale, normalise, patchify), with
   frame sampling and resizing switched off because steps 1-2 did them, and with the video
   metadata (source fps, frame indices) that Qwen3-VL needs for its ``<t seconds>`` prompt
   timestamps and Qwen2.5-VL for ``second_per_grid_ts``.

The frames are decoded by seeking (``inference.video_store``); the metadata is built by
``inference.vlm_inputs.video_metadata_for``, the same dict the vLLM rollouts receive.

``VideoTensorCache`` stores the result of step 3 per (video file, settings, processor) under
one directory. Entries are written atomically and computed under an exclusive file lock, so
ranks and dataloader workers that ask for the same video at the same time decode it once;
every decode is appended to ``decodes.jsonl`` in the cache directory.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

FRAME_FACTOR = 2  # the vision tower's temporal patch: frame counts are kept even


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
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as tvF

    if frames.shape[1:3] == (height, width):
        return frames
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    out = tvF.resize(video.float(), [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def spatial_factor(processor: Any) -> int:
    """Side multiple the video processor needs: ``patch_size * merge_size`` (28 or 32)."""
    vp = processor.video_processor
    return int(vp.patch_size) * int(vp.merge_size)


def sample_video(path: str | Path, sampling: VideoSampling, factor: int,
                 store: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode (with ``store``, an ``inference.video_store.VideoStore``), sample and resize one video file.

    Returns uint8 frames ``[T, h, w, 3]`` and their metadata (``video_metadata_for``: source
    fps, frame indices in the source, total frames), ready for both transformers and vLLM.
    """
    from inference.video_store import probe_video
    from inference.vlm_inputs import video_metadata_for

    info = probe_video(path)
    n = num_sampled_frames(info.num_frames, info.fps, sampling)
    frames, times = store.decode_window(str(path), n)
    frames = np.asarray(frames)
    indices = [min(info.num_frames - 1, max(0, int(round(float(t) * info.fps)))) for t in times]
    indices = list(np.maximum.accumulate(indices)) if indices else indices
    h, w = frame_size(frames.shape[1], frames.shape[2], factor,
                      min(sampling.min_pixels, sampling.max_pixels), sampling.max_pixels)
    frames = resize_frames(frames, h, w)
    meta = video_metadata_for(frames, fps=info.fps, indices=indices,
                              total_num_frames=max(info.num_frames, max(indices) + 1))
    return frames, meta


def process_video(processor: Any, frames: np.ndarray, metadata: dict[str, Any],
                  pixel_dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Run the checkpoint's video processor on already sampled and resized frames.

    Returns ``pixel_values_videos`` (in ``pixel_dtype``; the model casts pixels to its vision
    tower's dtype, so storing them in that dtype loses nothing), ``video_grid_thw`` ``[1, 3]``
    and ``video_metadata`` (a plain dict, for the prompt's timestamps).
    """
    from inference.vlm_inputs import hf_video_kwargs

    out = processor.video_processor(**hf_video_kwargs([(frames, metadata)]), do_resize=False,
                                    return_metadata=True, return_tensors="pt")
    meta = out["video_metadata"][0]
    meta = {f.name: getattr(meta, f.name) for f in dataclasses.fields(meta)} \
        if dataclasses.is_dataclass(meta) else dict(meta)
    return {"pixel_values_videos": out["pixel_values_videos"].to(pixel_dtype),
            "video_grid_thw": out["video_grid_thw"].to(torch.long),
            "video_metadata": meta}


def processor_fingerprint(processor: Any) -> dict[str, Any]:
    """What of the processor changes the processed pixels (normalisation, patching)."""
    vp = processor.video_processor
    return {"class": type(vp).__name__, "patch_size": vp.patch_size, "merge_size": vp.merge_size,
            "temporal_patch_size": vp.temporal_patch_size,
            "mean": list(np.asarray(vp.image_mean, dtype=float)),
            "std": list(np.asarray(vp.image_std, dtype=float)),
            "rescale_factor": float(vp.rescale_factor)}


class VideoTensorCache:
    """Processed video tensors on disk, computed once per key across processes.

    ``get(key_parts, compute)`` returns the cached entry for ``key_parts`` (any JSON-able
    description of what determines the tensors) or runs ``compute()`` under an exclusive
    ``flock`` on the entry's lock file, writes the result atomically and returns it. Two
    processes asking for one missing entry at once: the second waits and then reads.

    Attributes:
        hits, misses: counts in this process.
    """

    def __init__(self, cache_dir: str | Path):
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(key_parts: Any) -> str:
        return hashlib.sha256(json.dumps(key_parts, sort_keys=True, default=str).encode()).hexdigest()[:32]

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.pt"

    def _load(self, path: Path) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        return torch.load(path, map_location="cpu", weights_only=False)

    def get(self, key_parts: Any, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        key = self.key(key_parts)
        path = self._path(key)
        entry = self._load(path)
        if entry is not None:
            self.hits += 1
            return entry
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                entry = self._load(path)  # another process may have written it meanwhile
                if entry is not None:
                    self.hits += 1
                    return entry
                start = time.perf_counter()
                entry = compute()
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                torch.save(entry, tmp)
                os.replace(tmp, path)
                self.misses += 1
                with open(self.dir / "decodes.jsonl", "a") as log:
                    log.write(json.dumps({"key": key, "pid": os.getpid(), "seconds":
                                          round(time.perf_counter() - start, 4),
                                          "parts": key_parts}, default=str) + "\n")
                return entry
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class VideoLoader:
    """Processed tensors of a video file for one processor and sampling, through the cache.

    ``VideoLoader(processor, sampling, cache_dir=...)(path)`` -> ``process_video`` output.
    Without ``cache_dir`` every call decodes.
    """

    def __init__(self, processor: Any, sampling: VideoSampling, cache_dir: str | Path | None = None,
                 pixel_dtype: torch.dtype = torch.float32):
        self.processor = processor
        self.sampling = sampling
        self.pixel_dtype = pixel_dtype
        self.cache = VideoTensorCache(cache_dir) if cache_dir else None
        self._store = None
        self._fingerprint = processor_fingerprint(processor)

    def _compute(self, path: str) -> dict[str, Any]:
        from inference.video_store import VideoStore

        if self._store is None:  # frames only: the clip folder stays empty
            clip_dir = self.cache.dir / "clips" if self.cache else Path(tempfile.gettempdir()) / "videopro_clips"
            self._store = VideoStore(clip_dir, frame_cache_size=0)
        frames, meta = sample_video(path, self.sampling, spatial_factor(self.processor), self._store)
        return process_video(self.processor, frames, meta, self.pixel_dtype)

    def __call__(self, path: str | Path) -> dict[str, Any]:
        path = str(Path(path).resolve())
        if self.cache is None:
            return self._compute(path)
        st = os.stat(path)
        parts = {"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                 "sampling": dataclasses.asdict(self.sampling), "processor": self._fingerprint,
                 "dtype": str(self.pixel_dtype)}
        return self.cache.get(parts, lambda: self._compute(path))
