"""Quickstart, evaluation part: ``videopro-eval`` end to end on a synthetic benchmark, offline.

    python -m inference.toy.eval_demo --workdir outputs/quickstart/evaluation

1. the toy models and synthetic video (``inference.toy.build_toy_assets``; reused when present);
2. the video's QA records written as a LongVideoBench-style download
   (``inference.toy.benchmark.write_synthetic_longvideobench``: ``lvb_val.json``, ``videos/``,
   ``subtitles/``), read back by the real LongVideoBench loader;
3. two paradigms with the tiny Qwen3-VL in-process: ``native`` and ``adaptive_refine`` (the
   paper's default), each a results folder with its provenance. The demo evaluates afresh each
   time (its earlier toy runs are removed first: after a code update their settings would
   differ, and a real run refuses to resume such a folder);
4. the report over both: ``report/report.md`` (accuracy, breakdowns, Tables 2 and 5, the paper
   comparison, both final-answer rules, failures) and the PNG plots (Figures 2 and 4).

The tiny model's weights are random: it writes no valid program and its answers are noise, so
the numbers are meaningless; what matters is that every step runs and every table is written.
``--max-new-tokens`` is small (the paper's 4096 would only make the random model ramble longer).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.toy.eval_demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="outputs/quickstart/evaluation", help="Output folder.")
    parser.add_argument("--assets", default=None, help="Toy assets folder (default: <workdir>/../inference).")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="Token budget of a generated program.")
    parser.add_argument("--workers", type=int, default=2, help="Questions evaluated in parallel.")
    args = parser.parse_args(argv)

    from inference.evaluation.batch import EvalConfig, evaluate
    from inference.evaluation.reports import write_report
    from inference.runner import RunnerConfig
    from inference.toy import build_toy_assets
    from inference.toy.benchmark import write_synthetic_longvideobench

    workdir = Path(args.workdir)
    assets = build_toy_assets(Path(args.assets) if args.assets else workdir.parent / "inference")
    bench = write_synthetic_longvideobench([assets.video], workdir / "synthetic_longvideobench")
    print(f"== benchmark: {len(assets.video.qa_records)} questions in LongVideoBench format under {bench}")
    modules = assets.module_config(video_max_frames=8, max_query_frames=8, clip_dir=str(workdir / "clips"))
    runs = []
    for paradigm in ("native", "adaptive_refine"):
        out = workdir / f"runs/{paradigm}"
        shutil.rmtree(out, ignore_errors=True)  # toy outputs only: see the module docstring
        cfg = EvalConfig(benchmark="longvideobench", root=str(bench), output_dir=str(out), paradigm=paradigm,
                         checkpoint=str(assets.qwen3_vl), num_workers=args.workers)
        t0 = time.perf_counter()
        outcome = evaluate(cfg, modules, RunnerConfig(max_new_tokens=args.max_new_tokens),
                           argv=[f"paradigm={paradigm}"])
        print(f"== {paradigm}: {outcome.already_done + outcome.ran}/{outcome.total} questions "
              f"({outcome.ran} run now, {time.perf_counter() - t0:.1f} s) -> {outcome.results_path}")
        runs.append(out)
    data = write_report(runs, workdir / "report")
    for run in data["runs"]:
        s = run["summaries"]["last"]
        print(f"   {run['label']}: accuracy {s['accuracy']:.1f}% of {s['labelled']}, no valid answer "
              f"{s['failures']['no_valid_answer']}, refinement {s['refinement_ratio']:.0f}%")
    print(f"== report: {workdir / 'report' / 'report.md'} (+ {len(data['files']) - 2} plots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
