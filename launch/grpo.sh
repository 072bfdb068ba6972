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
CONFIG=configs/grpo/paper.yaml
ARGS=()
QUICKSTART=

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --help-config) exec "$PYTHON" -m training.grpo.train --help ;;
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
  ROWS=$QUICKSTART/synthesis/run/dataset/grpo/train.jsonl
  CKPT=$QUICKSTART/sft/merged
  MODULES=$QUICKSTART/synthesis/modules.yaml
  if [[ ! -s "$ROWS" || ! -f "$CKPT/config.json" ]]; then
    echo "error: $ROWS or $CKPT missing; run bash launch/sft.sh --quickstart $QUICKSTART first" >&2
    exit 2
  fi
  if [[ " ${ARGS[*]:-} " != *" --reward_fn "* ]] && ! "$PYTHON" -c "from rewards import score_completions" >/dev/null 2>&1; then
    echo "GRPO quickstart skipped: the reward (rewards.score_completions, issue 12) is not installed yet" >&2
    exit 0
  fi
  CONFIG=configs/grpo/tiny.yaml
  NPROC_PER_NODE=2 NNODES=1 NODE_RANK=0
  MASTER_PORT=${QUICKSTART_MASTER_PORT:-29512}
  if (( GPUS == 0 )); then export DS_ACCELERATOR=cpu; fi
  export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$HOME/.cache/videopro_torch_ext}
  export WANDB_MODE=${WANDB_MODE:-offline}
  ARGS=(--model_name_or_path "$CKPT" --train_file "$ROWS" --output_dir "$QUICKSTART/grpo"
        --deepspeed configs/deepspeed/zero2.json --reward_module_config "$MODULES" --max_steps 2
        --per_device_train_batch_size 2 --gradient_accumulation_steps 1 "${ARGS[@]}")
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
  -m training.grpo.train --config "$CONFIG" "${ARGS[@]}")
if [[ -z "$QUICKSTART" ]]; then
  set -x
  exec "${TORCHRUN[@]}"
fi
"${TORCHRUN[@]}"
echo "GRPO adapter: $QUICKSTART/grpo/final (merge: python -m training.merge_lora --adapter $QUICKSTART/grpo/final --output DIR)"
