# Shared by the training launchers (launch/sft.sh, launch/grpo.sh): torchrun options, the
# defaults they take from the machine and the environment, and the launch itself. Source it
# from the repository root; each launcher keeps its own help text and quickstart wiring.
#
#   launcher_init MODULE DEFAULT_CONFIG HELP_LINES   # e.g. training.sft.train configs/sft/paper.yaml 2,27
#   launcher_parse "$@"                             # fills NPROC_PER_NODE ... CONFIG, QUICKSTART, ARGS
#   launcher_check                                  # config exists, node rank in range
#   launcher_run                                    # exec torchrun (or run it, for a quickstart)

launcher_init() {
  LAUNCH_MODULE=$1
  CONFIG=$2
  LAUNCH_HELP_LINES=$3
  PYTHON=${PYTHON:-python}
  if [[ -x .venv/bin/python && -z "${VIRTUAL_ENV:-}" && "$PYTHON" == python ]]; then PYTHON=.venv/bin/python; fi
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
  ARGS=()
  QUICKSTART=
}

launcher_parse() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) sed -n "${LAUNCH_HELP_LINES}p" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
      --help-config) exec "$PYTHON" -m "$LAUNCH_MODULE" --help ;;
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
}

# A quickstart: two CPU processes (DeepSpeed's CPU accelerator when there is no GPU), offline W&B.
launcher_quickstart_env() {
  NPROC_PER_NODE=2 NNODES=1 NODE_RANK=0
  MASTER_PORT=$1
  if (( GPUS == 0 )); then export DS_ACCELERATOR=cpu; fi
  export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$HOME/.cache/videopro_torch_ext}
  export WANDB_MODE=${WANDB_MODE:-offline}
}

launcher_check() {
  if [[ ! -f "$CONFIG" ]]; then
    echo "error: config $CONFIG not found (pass --config FILE)" >&2; exit 2
  fi
  if (( NODE_RANK < 0 || NODE_RANK >= NNODES )); then
    echo "error: --node_rank $NODE_RANK must be in 0..$((NNODES - 1))" >&2; exit 2
  fi
}

launcher_run() {
  export TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false}
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  local torchrun=("$PYTHON" -m torch.distributed.run
    --nproc_per_node "$NPROC_PER_NODE" --nnodes "$NNODES" --node_rank "$NODE_RANK"
    --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT"
    -m "$LAUNCH_MODULE" --config "$CONFIG" "${ARGS[@]}")
  if [[ -z "$QUICKSTART" ]]; then
    set -x
    exec "${torchrun[@]}"
  fi
  "${torchrun[@]}"
}
