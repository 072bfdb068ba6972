#!/usr/bin/env bash
# The whole pipeline at toy scale on this machine, offline, in a few minutes:
#
#   1. inference:      tiny Qwen3-VL checkpoint, a synthetic video with known content, every
#                      module of the library called on it, then the adaptive runner
#                      (generate -> execute -> refine) with the tiny model;
#   2. data synthesis: R1-R4 trajectories from synthetic videos, the teacher replayed from the
#                      recorded request cache that ships with the project;
#   3. SFT:            DeepSpeed + LoRA on the synthesised toy dataset (2 CPU processes);
#   4. GRPO:           a few steps on the SFT model's output, the reward executing the sampled
#                      programs with the toy modules (2 CPU processes);
#   5. evaluation:     `videopro-eval` on a synthetic benchmark in LongVideoBench's format with the
#                      tiny model (native and adaptive + refine), and its report (tables, plots);
#   6. release:        the GRPO adapter merged into a release folder with its model card (the
#                      evaluation tables of step 5), shown as a dry run: nothing is uploaded.
#
#   bash launch/quickstart.sh [--workdir DIR]     (default outputs/quickstart; `make quickstart`)
#
# Everything is written under DIR; rerunning reuses what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKDIR=outputs/quickstart
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workdir) WORKDIR=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
mkdir -p "$WORKDIR"

echo "== [1/6] inference: modules and the adaptive runner on a synthetic video"
"$PY" -m inference.toy.demo --workdir "$WORKDIR/inference"

echo "== [2/6] data synthesis: R1-R4 trajectories, teacher replayed from the shipped cache"
bash launch/synthesize.sh --quickstart "$WORKDIR/synthesis"

echo "== [3/6] SFT: LoRA on the synthesised toy dataset with a tiny checkpoint"
bash launch/sft.sh --quickstart "$WORKDIR"

echo "== [4/6] GRPO: a few steps on the SFT model, G = 4, 2 CPU processes"
bash launch/grpo.sh --quickstart "$WORKDIR"

echo "== [5/6] evaluation: a synthetic LongVideoBench-format benchmark, tiny model, report"
"$PY" -m inference.toy.eval_demo --workdir "$WORKDIR/evaluation" --assets "$WORKDIR/inference"

echo "== [6/6] release: the last adapter as a release folder with its model card (dry run, no upload)"
bash launch/release.sh --quickstart "$WORKDIR" > "$WORKDIR/release_dry_run.txt"
echo "   $(grep -m1 '^dry run:' "$WORKDIR/release_dry_run.txt")"

echo "== done: outputs under $WORKDIR (evaluation report: $WORKDIR/evaluation/report/report.md;"
echo "   release folder: $WORKDIR/release, its card: $WORKDIR/release/README.md)"
