#!/usr/bin/env bash
# Benchmark evaluation (docs/evaluation.md): loaders, resumable batch runs, merges, reports.
#
#   bash launch/eval.sh run --benchmark lvbench --root /data/LVBench --output_dir runs/lvbench/adaptive_refine \
#       --api_base http://127.0.0.1:8007/v1 --num_workers 16
#   bash launch/eval.sh table2 --benchmark lvbench --root /data/LVBench --out runs/lvbench \
#       --api_base http://127.0.0.1:8007/v1 [any `run` flag]   # the four paradigms + one report
#   bash launch/eval.sh records --benchmark mlvu --root /data/MLVU_Test > mlvu.jsonl
#   bash launch/eval.sh merge runs/lvbench/adaptive_refine     # after `run --shard i/n` on n nodes
#   bash launch/eval.sh report runs/lvbench/* --out reports/lvbench
#   bash launch/eval.sh --quickstart [DIR]                     # synthetic benchmark, tiny model, offline
#   bash launch/eval.sh --help | run --help | ...              # this text; a subcommand's flags
#
# Runs resume: rerun the same command after a crash or kill and finished questions are skipped.
# Serve the model first with launch/serve.sh (or pass --checkpoint DIR to run it in-process).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python3
case "${1:-}" in
  ""|-h|--help) sed -n '2,15p' "$0"; exit 0 ;;
  --quickstart) shift; exec "$PY" -m inference.toy.eval_demo --workdir "${1:-outputs/quickstart/evaluation}" ;;
  table2)
    shift
    OUT="" ARGS=()
    while [[ $# -gt 0 ]]; do
      case "$1" in
        --out) OUT=$2; shift 2 ;;
        --help|-h) echo "table2: --out DIR plus the flags of \`run\` (without --output_dir/--paradigm)"; exit 0 ;;
        *) ARGS+=("$1"); shift ;;
      esac
    done
    [[ -n "$OUT" ]] || { echo "eval.sh table2: --out DIR is required" >&2; exit 2; }
    for paradigm in native program adaptive adaptive_refine; do
      echo "== $paradigm" >&2
      "$PY" -m inference.evaluation run "${ARGS[@]}" --paradigm "$paradigm" --output_dir "$OUT/$paradigm"
    done
    exec "$PY" -m inference.evaluation report "$OUT/native" "$OUT/program" "$OUT/adaptive" \
      "$OUT/adaptive_refine" --out "$OUT/report" ;;
  *) exec "$PY" -m inference.evaluation "$@" ;;
esac
