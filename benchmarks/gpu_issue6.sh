#!/usr/bin/env bash
# Issue 6 on a lent GPU machine, through the device tool (about 5 minutes on an H200): the SASRec baseline's
# CUDA sanity check, the cost sweep (T = 50..400, AutoMLP and SASRec, causal and sampled modes) and one
# MovieLens-1M accuracy run of AutoMLP and SASRec with the same configuration. Needs what gpu_check.sh needs
# (.whl/ with the wheels that machine lacks, .devdata/ml-1m/sasrec_ml-1m.txt) carried along. Copies the
# results and logs to $OUT; run `python benchmarks/report.py` here on the fetched *.jsonl for tables and plot.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD AUTOMLP_DATA=$PWD/.devdata PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
timeout 60 python3 - <<'EOF' 2>&1 | tee "$OUT/sasrec_cuda.log"
import torch
from engine.config import RunConfig
from engine.sasrec import SASRecShape, build_sasrec
model = build_sasrec(SASRecShape.from_config(RunConfig(max_length=200), 3416), device="cuda").train()
inputs = torch.randint(1, 3417, (128, 200), device="cuda")
inputs[:64, :150] = 0  # left padding; the first rows fully padded
inputs[:4] = 0
hidden = model.hidden(inputs, all_positions=True)
hidden.sum().backward()
finite = torch.isfinite(hidden).all().item() and all(torch.isfinite(p.grad).all().item() for p in model.parameters())
model.eval()
with torch.no_grad():
    gap = (model.hidden(inputs) - model.hidden(inputs, all_positions=True)[:, -1]).abs().max().item()
print("torch", torch.__version__, torch.cuda.get_device_name(0), "finite", finite, "last-position gap", gap)
EOF
timeout 150 python3 benchmarks/cost_vs_length.py --quick 2>"$OUT/cost.log" | cut -c1-300
timeout 400 python3 benchmarks/accuracy.py --dataset ml-1m --preset paper-ml1m --set retrain_epochs=40 \
    --baseline sasrec --label gpu-issue6-40-epochs --quiet 2>"$OUT/accuracy.log" | cut -c1-300
cp benchmarks/results/cost_vs_length.jsonl benchmarks/results/accuracy.jsonl "$OUT/" 2>/dev/null
