#!/usr/bin/env bash
# The CUDA check, run on a lent GPU machine through the device tool (not in CI): the engine tests with
# device "auto" resolving to CUDA, then ML-1M runs with per-epoch figures. Needs .whl/ (SQLAlchemy,
# alembic, mako, platformdirs, tomli-w wheels for that machine's Python) and .devdata/ml-1m/sasrec_ml-1m.txt
# carried along; writes logs and results under $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD AUTOMLP_DATA=$PWD/.devdata PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))"
timeout 170 python3 -m pytest -q tests/engine -p no:cacheprovider 2>&1 | tail -25 | tee "$OUT/engine_tests.log"
run() { timeout "$1" python3 benchmarks/accuracy.py --dataset ml-1m --results gpu.jsonl "${@:3}" 2>"$OUT/$2.log" | cut -c1-400; }
run 100 causal-default --preset paper-ml1m --label gpu-causal-default --set retrain_epochs=100
run 80 causal-lr3e-3 --preset paper-ml1m --label gpu-causal-lr3e-3 --set lr=0.003 --set retrain_epochs=100
run 80 sampled --preset paper-ml1m --label gpu-sampled --set mode=sampled --set retrain_epochs=100
run 60 first-order --preset paper-ml1m --label gpu-causal-first-order --set search_order=first --set retrain_epochs=60
cp benchmarks/results/gpu.jsonl "$OUT/" 2>/dev/null
