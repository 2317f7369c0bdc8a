"""What subnormal floats cost a settled search step on the CPU, and what flushing them saves.

    python benchmarks/subnormals.py

One forward and backward pass of the Amazon Sports model shape (18,357 items, T = 16, K = 1, 2, 3, 5, 10,
batch 128) with uniform architecture weights and with settled ones (one candidate ~1, the others ~1e-44),
each with and without `subnormals_flushed`. Medians of 7 passes; one JSON line per case in
benchmarks/results/subnormals.jsonl.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import append_result  # noqa: E402
from engine.core.config import RunConfig  # noqa: E402
from engine.models.automlp import AutoMLP, ModelShape  # noqa: E402
from engine.training.device import subnormals_flushed  # noqa: E402

SETTLED = [60.0, -40.0, -40.0, -40.0, -40.0]  # softmax: 1 and four weights of ~4e-44


def pass_seconds(model: AutoMLP, inputs: torch.Tensor, runs: int = 7) -> float:
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        model.hidden(inputs, all_positions=True).sum().backward()
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:]))  # the first pass warms the allocator


def main() -> None:
    torch.manual_seed(0)
    config = RunConfig(candidate_lengths=[1, 2, 3, 5, 10], max_length=16, loss="ce")
    model = AutoMLP(ModelShape.from_config(config, n_items=18_357))
    inputs = torch.randint(1, 18_357, (128, 16))
    for weights in ("uniform", "settled"):
        with torch.no_grad():
            model.alpha.copy_(torch.tensor(SETTLED if weights == "settled" else [0.0] * 5))
        for flushed in (False, True):
            if flushed:
                with subnormals_flushed(torch.device("cpu")):
                    seconds = pass_seconds(model, inputs)
            else:
                seconds = pass_seconds(model, inputs)
            append_result("subnormals.jsonl", {"weights": weights, "flushed": flushed,
                                               "pass_seconds_median": round(seconds, 4)})


if __name__ == "__main__":
    main()
