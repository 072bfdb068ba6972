#!/usr/bin/env bash
# Data synthesis: teacher programs, native-confidence labels, R1-R4 trajectories, SFT/GRPO sets.
#
#   bash launch/synthesize.sh --config configs/synthesis/cgbench_gpt5.yaml            # one process
#   bash launch/synthesize.sh --config configs/synthesis/cgbench_gpt5.yaml --shard 3/8  # shard 3 of 8
#   bash launch/synthesize.sh --config configs/synthesis/cgbench_gpt5.yaml --stages export
#   bash launch/synthesize.sh --quickstart [OUT_DIR]   # synthetic videos, teacher replayed from
#                                                      # the recorded cache, tiny models, no network
#   bash launch/synthesize.sh --help                   # this text and every option
#
# Every stage resumes: rerun the same command after a crash and finished questions are skipped.
# The teacher key is read from $OPENAI_API_KEY (or teacher_api_key_env); OPENAI_BASE_URL or
# --teacher_api_base points at any OpenAI-compatible endpoint. Docs: docs/data_synthesis.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python3
if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  sed -n '2,13p' "$0"
  echo
  exec "$PY" -m data_synthesis --help
fi
if [[ "${1:-}" == "--quickstart" ]]; then
  shift
  exec "$PY" -m data_synthesis.quickstart "$@"
fi
exec "$PY" -m data_synthesis "$@"
