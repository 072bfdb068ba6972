"""Benchmark: the video store against the original release's way of doing the same work.

Measures, on one synthetic video (default 60 minutes, 640x360, 4 fps, keyframe every 2 s):

* clip splitting into 10 s clips: ``VideoStore.split_clips`` (one stream-copy pass, no
  decoding) vs one ``ffmpeg`` process per clip (``-ss`` before ``-i``, ``-c copy``, falling
  back to a libx264 re-encode when the copy fails), run on the same number of workers;
* sampling 64 frames from the whole video: ``sample_frames`` + ``load_frames`` (seek to the
  keyframe before each frame, decode forward) vs moviepy's ``VideoFileClip.get_frame`` at
  the same 64 times (the original has no trimmed file when there is no window);
* sampling 64 frames from a 30 s window: the same store calls vs a moviepy-written trimmed
  file (``subclipped(...).write_videofile``, libx264) read back with a decoder (PyAV).

Sampling timings are medians over ``--repeats`` windows spread over the video (the same
windows for both methods; the frame cache is off). Results are printed as JSON and as a
Markdown table for docs/benchmarks.md.

Needs ``ffmpeg`` on PATH and moviepy (requirements/bench.txt).

    python bench/bench_video_store.py --duration 3600 --work-dir /tmp/videopro_bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.toy.synthetic_video import corner_colour, generate_synthetic_video  # noqa: E402
from inference.video_store import VideoStore  # noqa: E402


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# ----------------------------------------------------------------------------- baseline

def baseline_split(src: Path, out_dir: Path, duration: float, clip_len: float,
                   workers: int) -> dict[str, Any]:
    """One ffmpeg process per clip: ``-ss`` before ``-i`` and stream copy, re-encoding with
    libx264 when the copy fails (the original release's splitter)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    starts = list(np.arange(0.0, duration, clip_len))
    fallbacks = []

    def one(i: int, start: float) -> None:
        out = out_dir / f"clip_{i:05d}.mp4"
        base = ["ffmpeg", "-y", "-loglevel", "error", "-ss", f"{start:.3f}", "-i", str(src),
                "-t", f"{clip_len:.3f}"]
        r = subprocess.run(base + ["-c", "copy", str(out)], capture_output=True)
        if r.returncode != 0 or not out.exists() or out.stat().st_size == 0:
            fallbacks.append(i)
            subprocess.run(base + ["-c:v", "libx264", "-preset", "veryfast", "-an", str(out)],
                           capture_output=True, check=True)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda a: one(*a), enumerate(starts)))
    return {"clips": len(starts), "reencode_fallbacks": len(fallbacks)}


def baseline_whole(src: Path, times: list[float]) -> list[np.ndarray]:
    from moviepy import VideoFileClip

    with VideoFileClip(str(src), audio=False) as clip:
        return [np.asarray(clip.get_frame(t)) for t in times]


def baseline_window(src: Path, start: float, end: float, n: int, tmp_dir: Path) -> list[np.ndarray]:
    """moviepy writes the trimmed window to a file, which a decoder then reads back."""
    import av
    from moviepy import VideoFileClip

    out = tmp_dir / f"window_{start:.0f}_{end:.0f}.mp4"
    with VideoFileClip(str(src), audio=False) as clip:
        clip.subclipped(start, end).write_videofile(str(out), codec="libx264", audio=False,
                                                    logger=None)
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    out.unlink()
    idx = sorted({int((k + 0.5) * len(frames) / n) for k in range(n)})
    return [frames[i] for i in idx]


# ----------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=3600.0, help="video length in seconds")
    ap.add_argument("--fps", type=float, default=4.0)
    ap.add_argument("--size", default="640x360", help="WIDTHxHEIGHT")
    ap.add_argument("--workers", type=int, default=2, help="workers for both splitters")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--window", type=float, default=30.0, help="window length in seconds")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "videopro_bench"))
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args(argv)
    if not args.skip_baseline and shutil.which("ffmpeg") is None:
        ap.error("ffmpeg is not on PATH (apt-get install ffmpeg), or pass --skip-baseline")
    w, h = (int(v) for v in args.size.lower().split("x"))
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)

    gen_s, video = _timed(lambda: generate_synthetic_video(
        work / "video", duration_s=args.duration, fps=args.fps, size=(w, h), seed=0))
    src = video.video_path
    res: dict[str, Any] = {
        "video": {"duration_s": video.duration, "fps": video.fps, "size": f"{w}x{h}",
                  "frames": video.num_frames, "bytes": src.stat().st_size,
                  "keyframe_interval_s": video.keyframe_interval_s,
                  "generate_s_or_cached": round(gen_s, 2)},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "workers": args.workers,
    }

    # -- clip splitting
    clip_root = work / "clips_store"
    shutil.rmtree(clip_root, ignore_errors=True)
    store = VideoStore(clip_root, clip_duration=10.0, workers=args.workers, frame_cache_size=0)
    store.probe(src)   # probing is shared by every later call; time the split itself
    split_s, clips = _timed(lambda: store.split_clips(src))
    cached_s, _ = _timed(lambda: store.split_clips(src))
    os.unlink(clips[len(clips) // 2].path)
    repair_s, _ = _timed(lambda: store.split_clips(src))
    res["split"] = {"store_s": round(split_s, 3), "store_clips": len(clips),
                    "store_mode": store.last_split["mode"], "store_cached_call_s": round(cached_s, 4),
                    "store_repair_one_clip_s": round(repair_s, 3)}
    if not args.skip_baseline:
        base_dir = work / "clips_baseline"
        shutil.rmtree(base_dir, ignore_errors=True)
        bsplit_s, binfo = _timed(lambda: baseline_split(src, base_dir, video.duration, 10.0,
                                                        args.workers))
        res["split"].update({"baseline_s": round(bsplit_s, 3), "baseline": binfo,
                             "speedup": round(bsplit_s / split_s, 1)})
        shutil.rmtree(base_dir, ignore_errors=True)

    # -- frame sampling (the same windows for both methods)
    n = args.frames
    r = args.repeats
    starts = [video.duration * (k + 0.5) / r - args.window / 2 for k in range(r)]
    windows = [(round(max(0.0, s), 3), round(max(0.0, s) + args.window, 3)) for s in starts]

    def ours(start: float | None, end: float | None) -> list[np.ndarray]:
        fresh = VideoStore(clip_root, workers=args.workers, frame_cache_size=0)
        fresh.probe(src)
        return fresh.load_frames(fresh.sample_frames(src, n, start, end))

    whole_times = [f.time for f in store.sample_frames(src, n)]
    checks = []
    ours_whole = []
    for _ in range(r):
        t, frames = _timed(lambda: ours(None, None))
        ours_whole.append(t)
    checks.append(all(corner_colour(img) == video.content_at(tt).background
                      for img, tt in zip(frames, whole_times)))
    ours_win = []
    for s, e in windows:
        t, frames = _timed(lambda s=s, e=e: ours(s, e))
        ours_win.append(t)
        times = [f.time for f in store.sample_frames(src, n, s, e)]
        checks.append(all(corner_colour(img) == video.content_at(tt).background
                          for img, tt in zip(frames, times)))
    res["sample_whole"] = {"store_median_s": round(statistics.median(ours_whole), 4),
                           "store_runs_s": [round(x, 4) for x in ours_whole]}
    res["sample_window"] = {"store_median_s": round(statistics.median(ours_win), 4),
                            "store_runs_s": [round(x, 4) for x in ours_win],
                            "windows": windows}
    res["store_frames_match_known_content"] = all(checks)
    if not args.skip_baseline:
        base_whole = [_timed(lambda: baseline_whole(src, whole_times))[0] for _ in range(r)]
        tmp = work / "windows_tmp"
        tmp.mkdir(exist_ok=True)
        base_win = [_timed(lambda s=s, e=e: baseline_window(src, s, e, n, tmp))[0] for s, e in windows]
        for key, runs, mine in (("sample_whole", base_whole, ours_whole),
                                ("sample_window", base_win, ours_win)):
            res[key].update({"baseline_median_s": round(statistics.median(runs), 4),
                             "baseline_runs_s": [round(x, 4) for x in runs],
                             "speedup": round(statistics.median(runs) / statistics.median(mine), 1)})
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    if not args.skip_baseline:
        sp, sw, sn = res["split"], res["sample_whole"], res["sample_window"]
        print("\n| work | VideoStore | original release | ratio |\n|---|---|---|---|")
        print(f"| split into 10 s clips ({sp['store_clips']} clips) | {sp['store_s']:.2f} s | "
              f"{sp['baseline_s']:.2f} s | {sp['speedup']}x |")
        print(f"| {n} frames, whole video (median of {r}) | {sw['store_median_s']:.3f} s | "
              f"{sw['baseline_median_s']:.3f} s | {sw['speedup']}x |")
        print(f"| {n} frames, {args.window:.0f} s window (median of {r}) | "
              f"{sn['store_median_s']:.3f} s | {sn['baseline_median_s']:.3f} s | {sn['speedup']}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
