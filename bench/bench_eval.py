"""Benchmark: questions per minute of the batch evaluator against a served model, at 1/2/4 workers.

By default it starts a local vLLM OpenAI server (CPU build) for the tiny random Qwen3-VL with the
flags of ``launch/serve.sh`` (``--trust-request-mm-kwargs``, image/video limits, ``max_pixels``),
writes a synthetic benchmark in LongVideoBench's format (``inference.toy.benchmark``: the toy
videos' known-answer questions), and runs ``videopro-eval``'s evaluator on it in the ``native``
and ``adaptive_refine`` paradigms with 1, 2 and 4 workers, each run in a fresh output folder with
an in-memory call cache only (no reuse between runs), after an unmeasured warm-up of two
questions per paradigm. ``--api-base URL[,URL...]`` measures
against running servers instead (e.g. an 8B model on a GPU node; pass ``--model``), and
``--module-config`` a ``ModuleConfig`` YAML for that setting.

The tiny model writes no valid program (random weights), so ``adaptive_refine`` exercises the
full generate -> execute -> bug-fix loop with two generations per question; ``--max-new-tokens``
bounds each (default 256; the paper's 4096 would measure how long a random model rambles).

Run: ``python bench/bench_eval.py [--workers 1 2 4] [--videos 2] [--json out.json]``; prints a
markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--paradigms", nargs="+", default=["native", "adaptive_refine"])
    parser.add_argument("--videos", type=int, default=2, help="synthetic videos (7 questions each)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--video-max-frames", type=int, default=16)
    parser.add_argument("--api-base", default=None, help="measure against running server(s) instead")
    parser.add_argument("--model", default=None, help="served model name (with --api-base)")
    parser.add_argument("--module-config", default=None, help="ModuleConfig YAML (with --api-base)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from inference.config import load_yaml_overrides
    from inference.evaluation.batch import EvalConfig, evaluate
    from inference.modules import ModuleConfig
    from inference.runner import RunnerConfig
    from inference.toy import build_toy_assets
    from inference.toy.benchmark import write_synthetic_longvideobench
    from inference.toy.synthetic_video import generate_synthetic_video
    from inference.vllm_utils import VLLMServer

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_eval_"))
    assets = build_toy_assets(work / "assets")
    videos = [assets.video] + [generate_synthetic_video(work / "assets" / "videos", duration_s=40.0, seed=s)
                               for s in range(1, args.videos)]
    bench = write_synthetic_longvideobench(videos, work / "bench")
    questions = sum(len(v.qa_records) for v in videos)
    server = None
    if args.api_base:
        bases, model = [b for b in args.api_base.split(",") if b], args.model
        fields = load_yaml_overrides(args.module_config, ModuleConfig) if args.module_config else {}
        modules = ModuleConfig(**fields)
        what = f"served model {model or '(first listed)'} at {len(bases)} endpoint(s)"
    else:
        server = VLLMServer(assets.qwen3_vl, served_model_name="tiny-qwen3-vl", log_path=work / "server.log",
                            max_model_len=8192, limit_mm_per_prompt={"image": 16, "video": 1},
                            # vLLM's CPU build kills the engine on a seeded request whose prompt is
                            # prefilled in chunks ("CPU Generator does not use offset"): one chunk
                            extra_args=["--trust-request-mm-kwargs", "--mm-processor-kwargs",
                                        json.dumps({"size": {"longest_edge": 200704, "shortest_edge": 3136}}),
                                        "--max-num-batched-tokens", "8192", "--no-enable-chunked-prefill"])
        t0 = time.perf_counter()
        server.start()
        server.wait_until_ready(600)
        print(f"server ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        bases, model = [server.base_url], server.model
        modules = assets.module_config(vlm_backend="openai", vlm_base_url=server.base_url, vlm_model=model,
                                       vlm_checkpoint=str(assets.qwen3_vl), max_query_frames=8)
        what = "tiny random Qwen3-VL served by vLLM (CPU build) on this machine"
    modules.video_max_frames = args.video_max_frames
    runner = RunnerConfig(max_new_tokens=args.max_new_tokens)
    rows: list[dict[str, Any]] = []
    try:
        # Warm-up (not measured): the server's first requests, sandbox start-up, model loads.
        for paradigm in args.paradigms:
            modules.clip_dir = str(work / "clips-warmup")
            warm = EvalConfig(benchmark="longvideobench", root=str(bench), output_dir=str(work / f"warmup-{paradigm}"),
                              paradigm=paradigm, api_base=bases, model=model, num_workers=1, quiet=True, limit=2,
                              call_cache_dir="none")
            evaluate(warm, modules, runner)
        for paradigm in args.paradigms:
            for workers in args.workers:
                out = work / f"runs/{paradigm}-w{workers}"
                cfg = EvalConfig(benchmark="longvideobench", root=str(bench), output_dir=str(out), paradigm=paradigm,
                                 api_base=bases, model=model, num_workers=workers, quiet=True, call_cache_dir="none")
                modules.clip_dir = str(work / f"clips-{paradigm}-w{workers}")
                t0 = time.perf_counter()
                outcome = evaluate(cfg, modules, runner)
                wall = time.perf_counter() - t0
                rows.append({"paradigm": paradigm, "workers": workers, "questions": outcome.ran,
                             "errors": outcome.errors, "wall_s": round(wall, 1),
                             "questions_per_min": round(60.0 * outcome.ran / wall, 1)})
                print(json.dumps(rows[-1]), file=sys.stderr)
    finally:
        if server is not None:
            server.stop()
    base = {r["paradigm"]: r["questions_per_min"] for r in rows if r["workers"] == min(args.workers)}
    print(f"\n{questions} questions; {what}; {os.cpu_count()} CPUs ({platform.processor() or platform.machine()})\n")
    print("| paradigm | workers | questions | errors | wall s | questions/min | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        speed = r["questions_per_min"] / base[r["paradigm"]] if base.get(r["paradigm"]) else float("nan")
        print(f"| {r['paradigm']} | {r['workers']} | {r['questions']} | {r['errors']} | {r['wall_s']} | "
              f"{r['questions_per_min']} | {speed:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"what": what, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
