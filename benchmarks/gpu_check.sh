#!/usr/bin/env bash
# GPU check: short SFT, PPO and GRPO runs on a ~100M-parameter GPT-2 in bf16 autocast, printing
# tokens/s, step times and peak GPU memory per stage (see benchmarks/gpu_check.py).
#
#   bash benchmarks/gpu_check.sh                      # on a machine with an NVIDIA GPU
#   bash benchmarks/gpu_check.sh --device cpu --tiny  # CPU smoke test of the Python part
#
# Exits with status 2 and a message when no CUDA device is present (unless --device cpu), and
# stops the run after GPU_CHECK_TIMEOUT_S seconds (default 480) whatever happens.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [[ -z "${VIRTUAL_ENV:-}" && -f .venv/bin/activate ]]; then
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
python="${PYTHON:-python}"

device=cuda
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --device) device="${args[i + 1]:-}" ;;
    --device=*) device="${args[i]#--device=}" ;;
  esac
done

if [[ "$device" == cuda* ]]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: error: no NVIDIA GPU found (nvidia-smi is missing or lists no device). Run this on a" \
         "machine with an NVIDIA GPU, or pass --device cpu --tiny for the CPU smoke test." >&2
    exit 2
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
status=0
timeout "${GPU_CHECK_TIMEOUT_S:-480}" "$python" -m benchmarks.gpu_check "$@" || status=$?
if [[ $status -eq 124 ]]; then
  echo "gpu_check: error: did not finish within ${GPU_CHECK_TIMEOUT_S:-480} s." >&2
fi
exit $status
