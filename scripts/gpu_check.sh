#!/usr/bin/env bash
# The GPU checks in one go (about 6 minutes on one H100/H200): the CUDA tests, then training
# tokens/s and MFU of a 100M-parameter model in bf16 (eager and compiled), then trace tokens/s.
# Needs a python with torch (CUDA build), transformers, tokenizers, safetensors, pyarrow, pyyaml,
# tqdm, matplotlib and pytest; it runs from the source tree (no install, no network).
#
#   bash scripts/gpu_check.sh                 # log in ./gpu_check.log (or $OUT/gpu_check.log)
#   PRESET=llama-300m BATCH=16 bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PRESET=${PRESET:-llama-100m}
BATCH=${BATCH:-32}
SEQ=${SEQ:-1024}
STEPS=${STEPS:-60}
DEVICE=${DEVICE:-cuda}
LOG=${OUT:-.}/gpu_check.log
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
status=0
step() { echo; echo "== $*"; "$@" || status=1; }
checks() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'device', torch.cuda.get_device_name() if torch.cuda.is_available() else None, 'transformers', transformers.__version__)"
  if [ "$DEVICE" = cuda ]; then step $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py; fi
  for compile in false true; do
    DENSE=$([ $compile = true ] && echo --no-dense)  # checkpoint cost measured once, uncompiled
    step $PY benchmarks/train_throughput.py --preset "$PRESET" --batch "$BATCH" --seq-len "$SEQ" \
      --steps "$STEPS" --set train.device="$DEVICE" --set train.dtype=bf16 --set train.compile=$compile $DENSE \
      --set model.max_seq_len="$SEQ"
  done
  step $PY benchmarks/trace_throughput.py --preset "$PRESET" --steps 20 --n-seqs 256 --seq-len "$SEQ" \
    --batch 32 --set trace.device="$DEVICE" --set trace.dtype=bf16
  echo; echo "gpu_check: exit $status"
  return $status
}
checks 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
