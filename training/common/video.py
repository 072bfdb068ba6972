"""Video inputs for training, processed the Qwen-VL way and cached on disk.

A training row names a video file. Turning it into model inputs takes three steps; steps 1-2
are ``inference.video_sampling`` (``VideoSampling``, ``sample_video``), the same code that
gives the runner's policy and ``query_native`` their frames, so a model sees at inference
the frames it was trained on:

1. **sample** ``n`` frames: ``fps`` frames per second of video, clamped to
   ``[min_frames, max_frames]`` and rounded down to an even number (qwen-vl-utils'
   ``smart_nframes``, driven by ms-swift's ``FPS``/``FPS_MAX_FRAMES``), at frame numbers
   ``round(linspace(0, total - 1, n))`` as qwen-vl-utils takes them (``frame_rule``);
2. **resize** every frame to one size whose sides are multiples of the vision tower's
   ``patch_size * merge_size`` and whose area lies in ``[min_pixels, max_pixels]``
   (qwen-vl-utils' ``smart_resize``; ms-swift gives the same with both ``VIDEO_MIN_PIXELS``
   and ``VIDEO_MAX_PIXELS`` set, and ``pixel_rule="qwen_vl_utils"`` reproduces what it does
   with ``VIDEO_MAX_PIXELS`` alone);
3. **process** with the checkpoint's own video processor (rescale, normalise, patchify), with
   frame sampling and resizing switched off because steps 1-2 did them, and with the video
   metadata (source fps, frame indices) that Qwen3-VL needs for its ``<t seconds>`` prompt
   timestamps and Qwen2.5-VL for ``second_per_grid_ts``.

The frames are decoded by seeking (``inference.video_store``); the metadata is built by
``inference.vlm_inputs.video_metadata_for``, the same dict the vLLM rollouts receive.
``VideoLoader.sample(path)`` returns steps 1-2 (frames and metadata) without processing.

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
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The sampling and resizing policy lives in the inference package, which the runner shares.
from inference.video_sampling import (  # noqa: F401  (re-exported)
    FRAME_FACTOR,
    VideoSampling,
    frame_size,
    num_sampled_frames,
    resize_frames,
    sample_video,
)


def spatial_factor(processor: Any) -> int:
    """Side multiple the video processor needs: ``patch_size * merge_size`` (28 or 32)."""
    vp = processor.video_processor
    return int(vp.patch_size) * int(vp.merge_size)


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

    def sample(self, path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
        """Steps 1-2 only: the sampled, resized uint8 frames and their metadata (what
        ``inference.modules.ModuleRuntime.video_inputs`` gives the runner's policy)."""
        from inference.video_store import VideoStore

        if self._store is None:  # frames only: the clip folder stays empty
            clip_dir = self.cache.dir / "clips" if self.cache else Path(tempfile.gettempdir()) / "videopro_clips"
            self._store = VideoStore(clip_dir, frame_cache_size=0)
        return sample_video(path, self.sampling, spatial_factor(self.processor), self._store)

    def _compute(self, path: str) -> dict[str, Any]:
        frames, meta = self.sample(path)
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
