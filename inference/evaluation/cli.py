"""``videopro-eval``: benchmark records, batch runs, shard merges and reports (docs/evaluation.md).

    videopro-eval records --benchmark lvbench --root /data/LVBench > lvbench.jsonl   # summary on stderr
    videopro-eval run --benchmark lvbench --root /data/LVBench --output_dir runs/lvbench \\
        --api_base http://127.0.0.1:8007/v1 --num_workers 16
    videopro-eval merge runs/lvbench                   # after `run --shard i/n` on n nodes
    videopro-eval report runs/lvbench-native runs/lvbench --out reports/lvbench

``run`` takes every ``EvalConfig``, ``RunnerConfig`` (the paper's runner settings: τ, refinement
rounds, temperature, max new tokens, final-answer rule, seed) and ``ModuleConfig`` field as a
flag and ``--config recipe.yaml`` (e.g. configs/inference/paper.yaml); ``videopro-eval run --help``
lists them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

SUBCOMMANDS = ("records", "run", "merge", "report")


def _records(argv: Sequence[str]) -> int:
    from inference.evaluation.benchmarks import BENCHMARKS, load_benchmark

    parser = argparse.ArgumentParser(prog="videopro-eval records",
                                     description="Print a benchmark's QA records as JSONL (stdout) and what could "
                                                 "not be used, with reasons (stderr).")
    parser.add_argument("--benchmark", required=True, choices=sorted(BENCHMARKS))
    parser.add_argument("--root", required=True, help="Folder of the benchmark's download.")
    parser.add_argument("--split", default=None, help="Split (default: the paper's).")
    parser.add_argument("--video_map", "--video-map", default=None, help="LVBench: key -> video file map.")
    parser.add_argument("--videomme_subset", "--videomme-subset", default=None,
                        help="Video-MME subset by label: long (default), medium, short, all.")
    parser.add_argument("--videomme_min_duration_s", "--videomme-min-duration-s", type=float, default=None,
                        help="Video-MME: select by probed video length instead of the label.")
    parser.add_argument("--no_require_video", "--no-require-video", action="store_true",
                        help="Keep records whose video file is missing.")
    parser.add_argument("--training_files", "--training-files", nargs="*", default=None,
                        help="CG-Bench: synthesis outputs to check for video overlap.")
    parser.add_argument("--summary_only", "--summary-only", action="store_true", help="Print only the summary.")
    args = parser.parse_args(list(argv))
    options = {"require_video": not args.no_require_video, "video_map": args.video_map,
               "training_files": args.training_files}
    if args.benchmark == "videomme":
        options.update(subset=args.videomme_subset, min_duration_s=args.videomme_min_duration_s)
    elif args.videomme_subset or args.videomme_min_duration_s is not None:
        parser.error("--videomme_* options apply to --benchmark videomme only")
    if args.benchmark != "lvbench" and args.video_map:
        parser.error("--video_map applies to --benchmark lvbench only")
    if args.benchmark != "cgbench" and args.training_files:
        parser.error("--training_files applies to --benchmark cgbench only")
    try:
        data = load_benchmark(args.benchmark, args.root, args.split, **options)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.summary_only:
        for record in data.records:
            sys.stdout.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
    summary = data.summary()
    print(f"{data.benchmark}/{data.split}: {summary['records']} records"
          + ("" if data.labelled else " (no ground truth: predictions only)")
          + f", {summary['skipped']} skipped, {summary['unscorable']} unscorable", file=sys.stderr)
    for title, key in (("skipped", "skipped_by_reason"), ("unscorable", "unscorable_by_reason")):
        for group in summary[key]:
            print(f"  {title}: {group['count']} x {group['reason']} (e.g. {', '.join(group['ids'][:3])})",
                  file=sys.stderr)
    for name, value in summary["settings"].items():
        if value is not None:
            print(f"  setting {name}: {json.dumps(value, default=str)[:400]}", file=sys.stderr)
    for note in summary["notes"]:
        print(f"  note: {note}", file=sys.stderr)
    return 0


def _run(argv: Sequence[str]) -> int:
    from inference.config import parse_configs
    from inference.evaluation.batch import EvalConfig, evaluate
    from inference.modules import ModuleConfig
    from inference.runner import RunnerConfig

    cfg, runner, modules = parse_configs((EvalConfig, RunnerConfig, ModuleConfig), argv)
    try:
        cfg.validate()
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    if cfg.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if not cfg.checkpoint and modules.vlm_backend == "openai":
        from inference.cli import _check_endpoint

        for base in cfg.api_base or [modules.vlm_base_url]:
            _check_endpoint(base)
    try:
        outcome = evaluate(cfg, modules, runner, argv=list(argv))
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"{outcome.results_path}: {outcome.already_done + outcome.ran}/{outcome.total} questions done "
          f"({outcome.ran} this run, {outcome.errors} errors, {outcome.wall_time_s:.1f} s)", file=sys.stderr)
    if outcome.errors:  # recorded as lines (wrong answers), so the run itself completed
        print(f"warning: {outcome.errors} question(s) ended in an error (see their lines' 'error'); rerun with "
              "--retry_errors to try them again", file=sys.stderr)
    return 0


def _merge(argv: Sequence[str]) -> int:
    from inference.evaluation.batch import merge_shards

    parser = argparse.ArgumentParser(prog="videopro-eval merge",
                                     description="Combine results.shard-i-of-n.jsonl files into results.jsonl, "
                                                 "checking for missing shards, duplicate and missing ids.")
    parser.add_argument("output_dir", help="Folder with the shard files (and where results.jsonl is written).")
    parser.add_argument("--shard_dirs", "--shard-dirs", nargs="*", default=[],
                        help="Further folders holding shard files (e.g. copied back from other nodes).")
    parser.add_argument("--allow_missing", "--allow-missing", action="store_true",
                        help="Write the merge even if some ids have no result (they are listed).")
    args = parser.parse_args(list(argv))
    try:
        info = merge_shards(args.output_dir, shard_dirs=args.shard_dirs, allow_missing=args.allow_missing)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"merged {info['shards']} shards: {info['rows']} rows -> {info['results']}"
          + (f" ({len(info['missing'])} missing ids)" if info["missing"] else ""), file=sys.stderr)
    return 0


def _report(argv: Sequence[str]) -> int:
    from inference.evaluation.reports import PAPER_TABLE1, SWEEP_THRESHOLDS, write_report

    parser = argparse.ArgumentParser(prog="videopro-eval report",
                                     description="Markdown tables and PNG plots from stored results (offline).")
    parser.add_argument("runs", nargs="+", help="Results folders (one per paradigm and/or benchmark).")
    parser.add_argument("--out", required=True, help="Folder for report.md, report.json and the plots.")
    models = sorted({k.replace(" + VideoPro", "") for k in PAPER_TABLE1})
    parser.add_argument("--paper_model", "--paper-model", default="Qwen3-VL-8B", choices=models,
                        help="Which backbone's paper rows to compare with.")
    parser.add_argument("--thresholds", nargs="*", type=float, default=list(SWEEP_THRESHOLDS),
                        help="τ values of the threshold sweep (Figure 4).")
    args = parser.parse_args(list(argv))
    try:
        data = write_report(args.runs, args.out, paper_model=args.paper_model, thresholds=args.thresholds)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for run in data["runs"]:
        s = run["summaries"]["last"]
        value = "–" if s["headline"] is None else f"{s['headline']:.2f}"
        print(f"{run['label']}: {s['headline_definition']} {value}% over {s['labelled']} labelled questions",
              file=sys.stderr)
    print(f"wrote {args.out}/report.md and {len(data['files']) - 2} plots", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print(f"\nsubcommands: {', '.join(SUBCOMMANDS)} (each has --help)")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f"error: unknown subcommand {command!r}; choose one of {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    return {"records": _records, "run": _run, "merge": _merge, "report": _report}[command](rest)


if __name__ == "__main__":
    sys.exit(main())
