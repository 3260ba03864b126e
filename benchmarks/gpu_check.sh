#!/usr/bin/env bash
# GPU readiness for training (issue 4): throughput + MFU of CQA-r100 vs bare iResNet-100, then the
# suite's GPU tests. Needs only what the device image has (PyTorch, safetensors, tqdm); < 8 min on
# one H100. Run from the repository root:   bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python}
status=0
echo "== $(date -u +%FT%TZ) $($PY -c 'import torch;print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA")')"

echo "== throughput, eager bf16: CQA-Face r100 vs iResNet-100 + CosFace (batch 128)"
timeout 120 $PY benchmarks/train_throughput.py --stem r100 --batch-size 128 --steps 30 --warmup 5 || status=1
echo "== throughput, torch.compile bf16 (batch 128)"
timeout 200 $PY benchmarks/train_throughput.py --stem r100 --batch-size 128 --steps 30 --warmup 5 --compile || status=1

echo "== GPU tests"
if $PY -c "import pytest" 2>/dev/null; then
  timeout 120 $PY -m pytest -q -m gpu tests/test_train_gpu.py -p no:cacheprovider || status=1
else
  echo "(pytest not installed: running the plain-python smoke script)"
  timeout 120 $PY benchmarks/gpu_smoke.py || status=1
fi
exit $status
