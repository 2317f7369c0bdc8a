"""Step time of data-parallel training against one process, at the same global batch.

    python benchmarks/ddp_scaling.py [--steps 20] [--device cpu|cuda]

Planted data (2,000 users, 1,000 items, histories of 20 to 60), T = 32, K = 1, 2, 4, 8, D = 64, L = 2,
global batch 256, causal mode, full softmax. Times the search step (alpha step + W step) and the W step
alone (what the retraining does), medians over `--steps` steps after 3 warm-up steps, in three settings:
one process as today (WORLD_SIZE unset) with 1 thread and with 2 threads, and 2 processes under torchrun
(gloo on the CPU, nccl on CUDA) with 1 thread each. One JSON line per setting in
benchmarks/results/ddp_scaling.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, append_result  # noqa: E402
from engine.core.config import RunConfig  # noqa: E402
from engine.data.sequences import build_sequences  # noqa: E402
from engine.data.synthetic import planted_log  # noqa: E402
from engine.models.automlp import ModelShape, build_model  # noqa: E402
from engine.training.batches import training_batches, validation_batches  # noqa: E402
from engine.training.device import resolve_device, seed_everything, subnormals_flushed  # noqa: E402
from engine.training.distributed import join_group  # noqa: E402
from engine.training.search import Architect, weight_step  # noqa: E402

WARM_UP = 3


def step_seconds(steps: int, device_name: str) -> dict:
    """Median seconds of a search step and of a W step, in this process (distributed under torchrun)."""
    config = RunConfig(candidate_lengths=[1, 2, 4, 8], max_length=32, num_layers=2, embedding_dim=64,
                       sequence_hidden=64, channel_hidden=128, batch_size=256, dropout=0.0, loss="ce",
                       device=device_name, seed=0)
    data = build_sequences(planted_log(n_users=2000, n_items=1000, min_length=20, max_length=60, seed=0))
    device = resolve_device(config.device)
    group = join_group(device)
    device = group.device if group is not None else device
    rng = seed_everything(config.seed)
    model = build_model(ModelShape.from_config(config, data.n_items, config.candidate_lengths, data.features), data.features,
                        device)
    optimizer = torch.optim.Adam(model.network_parameters(), lr=config.lr)
    architect = Architect(model, config, group)
    batches, valid = training_batches(data, config, rng, device), validation_batches(data, config, rng, device)
    search, weights = [], []
    with subnormals_flushed(device):
        model.train()
        for index, (train_batch, valid_batch) in enumerate(zip(batches, valid)):
            if index >= WARM_UP + steps:
                break
            synchronize(device)
            started = time.perf_counter()
            architect.step(train_batch, valid_batch)
            synchronize(device)
            middle = time.perf_counter()
            weight_step(model, optimizer, train_batch, config, group)
            synchronize(device)
            if index >= WARM_UP:
                search.append(time.perf_counter() - started)
                weights.append(time.perf_counter() - middle)
    return {"search_step_s": round(float(np.median(search)), 4), "w_step_s": round(float(np.median(weights)), 4),
            "steps": len(search)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_in_subprocess(processes: int, threads: int, steps: int, device: str) -> dict:
    """Runs this script's --worker in a fresh interpreter (one process) or under torchrun; rank 0's times."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    env.pop("WORLD_SIZE", None)
    worker = [__file__, "--worker", "--steps", str(steps), "--device", device]
    if processes == 1:
        command = [sys.executable, *worker]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   *worker]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        times = step_seconds(args.steps, args.device)
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps(times), flush=True)
        return
    settings = [(1, 1), (1, 2), (2, 1)] if args.device == "cpu" else [(1, 1), (2, 1)]
    for processes, threads in settings:
        times = measure_in_subprocess(processes, threads, args.steps, args.device)
        append_result("ddp_scaling.jsonl", {"device": args.device, "processes": processes,
                                            "threads_per_process": threads, "global_batch": 256,
                                            "load_average_1min": round(os.getloadavg()[0], 1), **times})


if __name__ == "__main__":
    main()
