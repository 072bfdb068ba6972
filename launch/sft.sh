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

PYTHON=${PYTHON:-python}
[[ -x .venv/bin/python && -z "${VIRTUAL_ENV:-}" && "$PYTHON" == python ]] && PYTHON=.venv/bin/python
if command -v nvidia-smi >/dev/null 2>&1; then
  GPUS=$(nvidia-smi --list-gpus 2>/dev/null | wc -l)
else
  GPUS=0
fi
NPROC_PER_NODE=${NPROC_PER_NODE:-$(( GPUS > 0 ? GPUS : 1 ))}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
CONFIG=configs/sft/paper.yaml
ARGS=()
QUICKSTART=

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --help-config) exec "$PYTHON" -m training.sft.train --help ;;
    --nproc_per_node) NPROC_PER_NODE=$2; shift 2 ;;
    --nnodes) NNODES=$2; shift 2 ;;
    --node_rank) NODE_RANK=$2; shift 2 ;;
    --master_addr) MASTER_ADDR=$2; shift 2 ;;
    --master_port) MASTER_PORT=$2; shift 2 ;;
    --config) CONFIG=$2; shift 2 ;;
    --quickstart)
      QUICKSTART=outputs/quickstart; shift
      if [[ $# -gt 0 && "$1" != --* ]]; then QUICKSTART=$1; shift; fi ;;
    --) shift; ARGS+=("$@"); break ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

if [[ -n "$QUICKSTART" ]]; then
  ROWS=$QUICKSTART/synthesis/run/dataset/sft/train.jsonl
  CKPT=$QUICKSTART/synthesis/models/tiny_qwen3_vl
  if [[ ! -s "$ROWS" || ! -f "$CKPT/config.json" ]]; then
    echo "error: $ROWS or $CKPT missing; run bash launch/synthesize.sh --quickstart $QUICKSTART/synthesis first" >&2
    exit 2
  fi
  CONFIG=configs/sft/tiny.yaml
  NPROC_PER_NODE=2 NNODES=1 NODE_RANK=0
  MASTER_PORT=${QUICKSTART_MASTER_PORT:-29511}
  if (( GPUS == 0 )); then export DS_ACCELERATOR=cpu; fi
  export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$HOME/.cache/videopro_torch_ext}
  export WANDB_MODE=${WANDB_MODE:-offline}
  ARGS=(--model_name_or_path "$CKPT" --train_file "$ROWS" --output_dir "$QUICKSTART/sft"
        --deepspeed configs/deepspeed/zero2.json --per_device_train_batch_size 1 "${ARGS[@]}")
fi
if [[ ! -f "$CONFIG" ]]; then
  echo "error: config $CONFIG not found (pass --config FILE)" >&2; exit 2
fi
if (( NODE_RANK < 0 || NODE_RANK >= NNODES )); then
  echo "error: --node_rank $NODE_RANK must be in 0..$((NNODES - 1))" >&2; exit 2
fi

export TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
TORCHRUN=("$PYTHON" -m torch.distributed.run
  --nproc_per_node "$NPROC_PER_NODE" --nnodes "$NNODES" --node_rank "$NODE_RANK"
  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT"
  -m training.sft.train --config "$CONFIG" "${ARGS[@]}")
if [[ -z "$QUICKSTART" ]]; then
  set -x
  exec "${TORCHRUN[@]}"
fi
"${TORCHRUN[@]}"
"$PYTHON" -m training.merge_lora --adapter "$QUICKSTART/sft/final" --output "$QUICKSTART/sft/merged" --dtype float32
echo "SFT adapter: $QUICKSTART/sft/final; merged checkpoint: $QUICKSTART/sft/merged"
