#!/usr/bin/env bash
# GRPO launcher: torchrun around `python -m training.grpo.train`, one process per GPU.
#
#   bash launch/grpo.sh [launcher options] [--] [GRPOConfig flags ...]
#
# Launcher options (environment variable in brackets):
#   --nproc_per_node N   processes per node [NPROC_PER_NODE; default: visible GPUs, else 1]
#   --nnodes N           number of nodes [NNODES; default 1]
#   --node_rank R        this node's rank, 0..NNODES-1 [NODE_RANK; default 0]
#   --master_addr HOST   address of node 0 [MASTER_ADDR; default 127.0.0.1]
#   --master_port PORT   port on node 0 [MASTER_PORT; default 29500]
#   --config FILE        YAML recipe [default configs/grpo/paper.yaml]
#   --quickstart [DIR]   toy run after `launch/sft.sh --quickstart DIR`: a few GRPO steps on the
#                        synthesised GRPO rows with the merged tiny SFT checkpoint, 2 CPU processes,
#                        ZeRO-2, the project's reward (rewards.score_completions) executing the
#                        sampled programs with the toy modules [DIR default outputs/quickstart]
#   -h, --help           this help; `--help-config` lists every GRPOConfig flag
# Everything else is passed to the trainer as GRPOConfig overrides, e.g.
#   --model_name_or_path models/sft-merged --train_file dataset/train_grpo.jsonl \
#   --deepspeed configs/deepspeed/zero3.json --output_dir outputs/grpo --resume_from_checkpoint auto
#
# Examples:
#   bash launch/grpo.sh --nproc_per_node 4 --train_file dataset/train_grpo.jsonl   # the paper's 4 GPUs
#   # two nodes: run on each, with its own --node_rank
#   bash launch/grpo.sh --nnodes 2 --node_rank 0 --master_addr node0 --nproc_per_node 8
#   # CPU smoke test (tiny checkpoint from `python -m inference.toy.checkpoints DIR`)
#   DS_ACCELERATOR=cpu bash launch/grpo.sh --nproc_per_node 2 --config configs/grpo/tiny.yaml \
#     --model_name_or_path DIR --train_file rows.jsonl --deepspeed configs/deepspeed/zero2.json
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/lib/torchrun.sh
launcher_init training.grpo.train configs/grpo/paper.yaml 2,28
launcher_parse "$@"

if [[ -n "$QUICKSTART" ]]; then
  ROWS=$QUICKSTART/synthesis/run/dataset/grpo/train.jsonl
  CKPT=$QUICKSTART/sft/merged
  MODULES=$QUICKSTART/synthesis/modules.yaml
  if [[ ! -s "$ROWS" || ! -f "$CKPT/config.json" ]]; then
    echo "error: $ROWS or $CKPT missing; run bash launch/sft.sh --quickstart $QUICKSTART first" >&2
    exit 2
  fi
  CONFIG=configs/grpo/tiny.yaml
  launcher_quickstart_env "${QUICKSTART_MASTER_PORT:-29512}"
  ARGS=(--model_name_or_path "$CKPT" --train_file "$ROWS" --output_dir "$QUICKSTART/grpo"
        --deepspeed configs/deepspeed/zero2.json --reward_module_config "$MODULES" --max_steps 2
        --per_device_train_batch_size 2 --gradient_accumulation_steps 1 "${ARGS[@]}")
fi
launcher_check
launcher_run
echo "GRPO adapter: $QUICKSTART/grpo/final (merge: python -m training.merge_lora --adapter $QUICKSTART/grpo/final --output DIR)"
