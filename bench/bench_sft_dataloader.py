"""SFT dataloader throughput (samples/s) with and without the preprocessed-video cache.

    .venv/bin/python bench/bench_sft_dataloader.py [--videos 4] [--rows 32] [--duration 120]
        [--workers 0 2] [--family qwen3_vl] [--out results.json]

Workload: ``--videos`` synthetic videos (``inference/toy/synthetic_video.py``, 640x360, 4 fps,
``--duration`` s each) and ``--rows`` SFT rows spread over them (several questions per video,
as in the real datasets), processed the paper's way (2 fps capped at 64 frames, 50176 pixels
per frame, bf16 pixel tensors) with a Qwen-VL processor (the tiny checkpoint's processor has
the real patch sizes, so the pixel and token arithmetic is that of the real model). Each
configuration iterates the whole dataset once through a ``torch.utils.data.DataLoader`` with
``SFTCollator`` (batch 2):

- ``no cache``: every row decodes, samples, resizes and processes its video;
- ``cache, cold``: the first epoch with an empty cache (each video decoded once, then read);
- ``cache, warm``: a second epoch, every row reads the cached tensors.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch


def _iterate(dataset: Any, collate: Any, workers: int) -> tuple[float, int]:
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=workers, collate_fn=collate)
    start = time.perf_counter()
    n = sum(len(batch["input_ids"]) for batch in loader)
    return time.perf_counter() - start, n


def run(videos: int, rows: int, duration: float, workers: list[int], family: str, work: Path) -> dict[str, Any]:
    from transformers import AutoProcessor

    from inference.toy import build_toy_assets
    from inference.toy.synthetic_video import generate_synthetic_video
    from training.common.video import VideoLoader, VideoSampling
    from training.sft.data import SFTCollator, SFTDataset

    assets = build_toy_assets(work / "toy", qwen2_5_vl=family == "qwen2_5_vl")
    ckpt = assets.qwen2_5_vl if family == "qwen2_5_vl" else assets.qwen3_vl
    proc = AutoProcessor.from_pretrained(ckpt)
    paths = [generate_synthetic_video(work / f"v{i}", duration_s=duration, seed=i, size=(640, 360)).video_path
             for i in range(videos)]
    data = [{"messages": [{"role": "user", "content": f"<video>Question {i}?"},
                          {"role": "assistant", "content": "<planning>p</planning>\n<code>\nx\n</code>"}],
             "videos": [str(paths[i % videos])]} for i in range(rows)]
    sampling = VideoSampling()  # the paper's: 2 fps, <= 64 frames, <= 50176 pixels per frame
    collate = SFTCollator(proc.tokenizer.pad_token_id)
    results = []
    for w in workers:
        plain = SFTDataset(data, proc, VideoLoader(proc, sampling, None, pixel_dtype=torch.bfloat16))
        secs, n = _iterate(plain, collate, w)
        results.append({"workers": w, "mode": "no cache", "seconds": secs, "samples": n})
        cache_dir = work / f"cache_w{w}"
        shutil.rmtree(cache_dir, ignore_errors=True)
        cached = SFTDataset(data, proc, VideoLoader(proc, sampling, cache_dir, pixel_dtype=torch.bfloat16))
        for mode in ("cache, cold", "cache, warm"):
            secs, n = _iterate(cached, collate, w)
            results.append({"workers": w, "mode": mode, "seconds": secs, "samples": n})
    for r in results:
        r["samples_per_s"] = r["samples"] / r["seconds"]
    sample = SFTDataset(data[:1], proc, VideoLoader(proc, sampling, None, pixel_dtype=torch.bfloat16))[0]
    entry = next((work / "cache_w0").glob("*/*.pt"), None) if (work / "cache_w0").exists() else None
    return {"date": date.today().isoformat(), "machine": f"{platform.machine()} {platform.processor()}".strip(),
            "cpus": __import__("os").cpu_count(), "torch": torch.__version__, "family": family,
            "videos": videos, "rows": rows, "duration_s": duration,
            "video_tokens_per_row": int(sample["video_grid_thw"].prod()) // 4,
            "grid_thw": sample["video_grid_thw"][0].tolist(),
            "cache_entry_mb": round(entry.stat().st_size / 2**20, 2) if entry else None,
            "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=4, help="number of distinct videos")
    parser.add_argument("--rows", type=int, default=32, help="SFT rows spread over the videos")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds per synthetic video")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to try")
    parser.add_argument("--family", default="qwen3_vl", choices=("qwen3_vl", "qwen2_5_vl"))
    parser.add_argument("--workdir", default=None, help="where videos and caches go (default: a temp dir)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_sft_dl_"))
    work.mkdir(parents=True, exist_ok=True)
    res = run(args.videos, args.rows, args.duration, args.workers, args.family, work)
    print(f"| workers | mode | samples/s | seconds for {res['rows']} rows |\n|---|---|---|---|")
    for r in res["results"]:
        print(f"| {r['workers']} | {r['mode']} | {r['samples_per_s']:.2f} | {r['seconds']:.2f} |")
    print(json.dumps({k: v for k, v in res.items() if k != "results"}))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
