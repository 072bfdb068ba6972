#!/usr/bin/env bash
# SFT launcher: torchrun around `python -m training.sft.train`, one process per GPU.
#
#   bash launch/sft.sh [launcher options] [--] [SFTConfig flags ...]
#
# Launcher options (environment variable in brackets):
#   --nproc_per_node N   processes per node [NPROC_PER_NODE; default: visible GPUs, else 1]
#   --nnodes N           number of nodes [NNODES; default 1]
#   --node_rank R        this node's rank, 0..NNODES-1 [NODE_RANK; default 0]
#   --master_addr HOST   address of node 0 [MASTER_ADDR; default 127.0.0.1]
#   --master_port PORT   port on node 0 [MASTER_PORT; default 29500]
#   --config FILE        YAML recipe [default configs/sft/paper.yaml]
#   --quickstart [DIR]   toy run after `launch/synthesize.sh --quickstart DIR/synthesis`: LoRA on
#                        its SFT rows with its tiny Qwen3-VL, 2 CPU processes, ZeRO-2, then a
#                        merged checkpoint in DIR/sft/merged [DIR default outputs/quickstart]
#   -h, --help           this help; `--help-config` lists every SFTConfig flag
# Everything else is passed to the trainer as SFTConfig overrides, e.g.
#   --model_name_or_path models/Qwen3-VL-8B-Instruct --train_file data/sft.jsonl \
#   --deepspeed configs/deepspeed/zero3.json --output_dir outputs/sft --resume_from_checkpoint auto
#
# Examples:
#   bash launch/sft.sh --nproc_per_node 8 --train_file dataset/train_sft.jsonl
#   # two nodes: run on each, with its own --node_rank
#   bash launch/sft.sh --nnodes 2 --node_rank 0 --master_addr node0 --nproc_per_node 8
#   # CPU smoke test (tiny checkpoint from `python -m inference.toy.checkpoints DIR`)
#   DS_ACCELERATOR=cpu bash launch/sft.sh --nproc_per_node 2 --config configs/sft/tiny.yaml \
#     --model_name_or_path DIR --train_file rows.jsonl --deepspeed configs/deepspeed/zero2.json
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/lib/torchrun.sh
launcher_init training.sft.train configs/sft/paper.yaml 2,27
launcher_parse "$@"

if [[ -n "$QUICKSTART" ]]; then
  ROWS=$QUICKSTART/synthesis/run/dataset/sft/train.jsonl
  CKPT=$QUICKSTART/synthesis/models/tiny_qwen3_vl
  if [[ ! -s "$ROWS" || ! -f "$CKPT/config.json" ]]; then
    echo "error: $ROWS or $CKPT missing; run bash launch/synthesize.sh --quickstart $QUICKSTART/synthesis first" >&2
    exit 2
  fi
  CONFIG=configs/sft/tiny.yaml
  launcher_quickstart_env "${QUICKSTART_MASTER_PORT:-29511}"
  ARGS=(--model_name_or_path "$CKPT" --train_file "$ROWS" --output_dir "$QUICKSTART/sft"
        --deepspeed configs/deepspeed/zero2.json --per_device_train_batch_size 1 "${ARGS[@]}")
fi
launcher_check
launcher_run
"$PYTHON" -m training.merge_lora --adapter "$QUICKSTART/sft/final" --output "$QUICKSTART/sft/merged" --dtype float32
echo "SFT adapter: $QUICKSTART/sft/final; merged checkpoint: $QUICKSTART/sft/merged"
