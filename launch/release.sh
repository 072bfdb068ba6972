#!/usr/bin/env bash
# Release a trained VideoPro checkpoint: merge the LoRA adapter, write the release folder (sharded
# safetensors, processor and chat template, the paper's sampling in generation_config.json, the frame
# policy, versions, the model card with the evaluation tables) and upload it to the Hugging Face Hub.
#
#   bash launch/release.sh --adapter outputs/grpo/final --output_dir releases/videopro-qwen3vl \
#       --eval_report reports/table1 --repo_id your-name/videopro-qwen3vl --tag v1.0 --dry-run
#   bash launch/release.sh --output_dir releases/videopro-qwen3vl --repo_id your-name/videopro-qwen3vl --tag v1.0
#   bash launch/release.sh --quickstart [DIR]    # the quickstart's GRPO (else SFT) adapter and report, dry run
#
# Main options (every ReleaseConfig flag: --help-config):
#   --adapter DIR        LoRA adapter to merge (SFT/GRPO <output_dir>/final or checkpoint-*)
#   --checkpoint DIR     or an already merged checkpoint (training.merge_lora output, an earlier release)
#   --base DIR           base to merge into (default: the one recorded in adapter_config.json)
#   --output_dir DIR     release folder to write; given alone: a built release folder to upload
#   --eval_report DIR..  `videopro-eval report --out` folders whose tables go into the card
#   --synthesis_dir DIR  data-synthesis output (stats.json); default: found from the train_file
#   --repo_id NS/NAME    Hub repository; --revision BRANCH, --tag TAG, --private, --replace_remote
#   --dry-run            build and print every file with its size and the card; upload nothing
# The upload uses the token in HF_TOKEN (or the login saved by `hf auth login`); rerun the same command
# to resume an interrupted upload. Docs: docs/release.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[[ -x .venv/bin/python && -z "${VIRTUAL_ENV:-}" && "$PY" == python ]] && PY=.venv/bin/python
case "${1:-}" in
  ""|-h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  --help-config) exec "$PY" -m training.release --help ;;
  --quickstart)
    DIR=${2:-outputs/quickstart}
    ADAPTER=$DIR/grpo/final   # the last training stage the quickstart ran
    [[ -f "$ADAPTER/adapter_config.json" ]] || ADAPTER=$DIR/sft/final
    [[ -f "$ADAPTER/adapter_config.json" ]] || {
      echo "error: $DIR/grpo/final and $DIR/sft/final are missing; run bash launch/quickstart.sh (or" \
           "launch/sft.sh --quickstart $DIR)" >&2
      exit 2; }
    REPORT=()
    [[ -f "$DIR/evaluation/report/report.json" ]] && REPORT=(--eval_report "$DIR/evaluation/report")
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    exec "$PY" -m training.release --adapter "$ADAPTER" --output_dir "$DIR/release" --overwrite \
      --dtype float32 --model_name videopro-quickstart "${REPORT[@]}" --dry-run ;;
  *) exec "$PY" -m training.release "$@" ;;
esac
