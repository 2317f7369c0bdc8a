"""Training speed on MovieLens-1M: median seconds per step of each training mode and search order, the
epoch time they imply, throughput, and how the step time grows with the maximum length T.

    python benchmarks/training_speed.py                 # all cases, 5 timed steps each
    python benchmarks/training_speed.py --lengths 50 100 200 400

Prints one JSON line per case and appends them to benchmarks/results/training_speed.jsonl.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import append_result, load_dataset  # noqa: E402
from engine.core.config import RunConfig  # noqa: E402
from engine.data.sequences import build_sequences  # noqa: E402
from engine.models.automlp import ModelShape, build_model  # noqa: E402
from engine.training.batches import (  # noqa: E402
    batch_loss,
    steps_per_epoch,
    training_batches,
    validation_batches,
)
from engine.training.search import Architect, weight_step  # noqa: E402


def median_step_seconds(step, batches, repeats: int) -> float:
    step(batches[0])  # warm-up
    times = []
    for batch in batches[1:repeats + 1]:
        started = time.perf_counter()
        step(batch)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_case(data, config: RunConfig, phase: str, repeats: int) -> dict:
    device = torch.device("cpu")
    rng = np.random.default_rng(0)
    batches = training_batches(data, config, rng, device)
    torch.manual_seed(0)
    candidates = config.candidate_lengths if phase == "search" else config.candidate_lengths[:1]
    model = build_model(ModelShape.from_config(config, data.n_items, candidates), device=device)
    optimizer = torch.optim.Adam(model.network_parameters(), lr=config.lr)
    if phase == "search":
        architect, valid = Architect(model, config), validation_batches(data, config, rng, device)

        def step(batch):
            architect.step(batch, next(valid))
            weight_step(model, optimizer, batch, config)
    else:
        def step(batch):
            loss = batch_loss(model, batch, config)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    seconds = median_step_seconds(step, batches, repeats)
    steps = steps_per_epoch(data, config)
    return {"mode": config.mode, "phase": phase, "search_order": config.search_order if phase == "search" else None,
            "T": config.max_length, "candidates": candidates, "batch_size": config.batch_size,
            "step_seconds": round(seconds, 4), "steps_per_epoch": steps,
            "epoch_seconds": round(seconds * steps, 1), "sequences_per_second": round(config.batch_size / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lengths", type=int, nargs="*", default=[50, 100, 200, 400])
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    data = build_sequences(load_dataset("ml-1m"))
    base = RunConfig()
    cases = [(base.replace(candidate_lengths=[5]), "retrain"),
             (base.replace(candidate_lengths=[5], mode="sampled"), "retrain"),
             (base.replace(candidate_lengths=[5], mode="faithful"), "retrain"),
             (base, "search"), (base.replace(search_order="second"), "search")]
    cases += [(base.replace(candidate_lengths=[5], max_length=t), "retrain") for t in args.lengths if t != 200]
    cases += [(base.replace(candidate_lengths=[5], max_length=t, mode="sampled"), "retrain") for t in args.lengths]
    for config, phase in cases:
        append_result("training_speed.jsonl", {"benchmark": "training_speed", "dataset": "ml-1m",
                                               **time_case(data, config, phase, args.repeats)})


if __name__ == "__main__":
    main()
