#!/usr/bin/env bash
# Issue 6 on a lent GPU machine, through the device tool (under 9 minutes on an H200), not in CI.
#  1. alone on the GPU: the cost sweep (T = 50..400, AutoMLP and SASRec, causal and sampled) and a resume
#     check on CUDA;
#  2. then, as parallel processes sharing the GPU (each is launch-bound: small kernels), MovieLens-1M
#     accuracy of AutoMLP and SASRec at D = 64 and D = 128 (40 epochs), and the search against exhaustive
#     search for seeds 0 and 1 (one process per part: the search, or one candidate's retraining).
# Needs .whl/ (wheels that machine's Python 3.12 lacks: SQLAlchemy, alembic, mako, platformdirs, tomli-w)
# and .devdata/ml-1m/sasrec_ml-1m.txt carried along. Copies results and logs to $OUT; then, here,
# `python benchmarks/report.py` on the fetched *.jsonl makes the tables and the plot.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD AUTOMLP_DATA=$PWD/.devdata PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
save() { cp benchmarks/results/*.jsonl "$OUT/" 2>/dev/null; }
trap save EXIT

timeout 120 python3 benchmarks/cost_vs_length.py --quick 2>"$OUT/cost.log" | cut -c1-200
timeout 40 python3 - <<'EOF' 2>&1 | tail -3
import torch
from engine.config import RunConfig
from engine.events import Cancelled, EpochFinished, RecordingObserver
from engine.runner import run_automlp
from engine.sequences import build_sequences
from engine.synthetic import planted_log
data = build_sequences(planted_log(n_users=200, n_items=100, seed=1))
config = RunConfig(candidate_lengths=[1, 2, 4], max_length=20, search_epochs=2, retrain_epochs=3, device="cuda")
whole = run_automlp(data, config)
stop = RecordingObserver(cancel_when=lambda e: isinstance(e, EpochFinished) and (e.phase, e.epoch) == ("retrain", 1))
try:
    run_automlp(data, config, stop, checkpoint_path="/tmp/c.safetensors")
except Cancelled:
    pass
from engine.checkpoint import load_checkpoint
resumed = run_automlp(data, config, resume=load_checkpoint("/tmp/c.safetensors"))
print("cuda resume:", torch.cuda.get_device_name(0), "same k", whole.chosen_length == resumed.chosen_length,
      "NDCG@10 full", whole.test_metrics["full"]["NDCG@10"], resumed.test_metrics["full"]["NDCG@10"])
EOF

export OMP_NUM_THREADS=1
{
  for d in 64 128; do
    echo "accuracy.py --dataset ml-1m --preset paper-ml1m --set retrain_epochs=40 --set embedding_dim=$d --label gpu-d$d --quiet"
    echo "accuracy.py --dataset ml-1m --preset paper-ml1m --set retrain_epochs=40 --set embedding_dim=$d --baseline sasrec --skip-automlp --label gpu-d$d --quiet"
  done
  for seed in 0 1; do
    for part in search 5 10 20 50 100; do
      echo "search_vs_exhaustive.py --dataset ml-1m --seed $seed --part $part"
    done
  done
} > /tmp/jobs
# Twelve processes share the GPU (no MPS: time-sliced); every job records its own time under that load.
xargs -P 12 -I{} sh -c 'timeout 320 python3 benchmarks/{} >/dev/null 2>>"$OUT/jobs.log"' < /tmp/jobs
python3 benchmarks/search_vs_exhaustive.py --combine | cut -c1-600
