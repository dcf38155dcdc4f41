#!/usr/bin/env bash
# The prepared GPU check of SPIRAL (docs/scaling.md): a few self-play steps on CUDA (vLLM sampling where it is
# installed), behaviour vs learner log-probs, tokens/s, step time, weight-sync cost -> docs/results/gpu_check.md.
# At most 10 minutes on one GPU. Usage: scripts/gpu_check.sh [MODEL_SPEC_OR_FOLDER] [extra gpu_check.py flags]
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline PYTHONUNBUFFERED=1
export MPLCONFIGDIR="${MPLCONFIGDIR:-/tmp/mpl}"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
MODEL="${1:-smollm2-135m-instruct}"
shift || true
PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" timeout 600 "$PY" benchmarks/gpu_check.py --model "$MODEL" \
  --out docs/results/gpu_check.md "$@"
