"""Full softmax cross-entropy against the sampled softmax (the batch's targets plus uniform draws,
logQ-corrected): training seconds per epoch and test accuracy after the same epochs, same seed.

    python benchmarks/sampled_softmax.py --dataset sports --epochs 10 --k 5

The data-fitted defaults (T, K) with the short-term length fixed at --k (no search, so that only the loss
differs). The timing runs alternate between the losses, so that both see the same machine load. One JSON line per
loss in benchmarks/results/sampled_softmax.jsonl.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import append_result, load_dataset, peak_memory_mib  # noqa: E402
from engine.core.config import RunConfig  # noqa: E402
from engine.data.sequences import build_sequences  # noqa: E402
from engine.evaluation.metrics import evaluate  # noqa: E402
from engine.models.automlp import ModelShape, build_model  # noqa: E402
from engine.training.batches import batch_loss, training_batches  # noqa: E402
from engine.training.device import resolve_device, seed_everything  # noqa: E402
from engine.training.fit import retrain  # noqa: E402
from engine.training.runner import fit_to_data  # noqa: E402


def epoch_seconds(data, config: RunConfig, k: int, device: torch.device) -> float:
    """Wall time of one training epoch (batches built, forward, backward, Adam), no validation."""
    rng = seed_everything(config.seed)
    model = build_model(ModelShape.from_config(config, data.n_items, [k], data.features), data.features, device)
    optimizer = torch.optim.Adam(model.network_parameters(), lr=config.lr)
    started = time.perf_counter()
    for batch in training_batches(data, config, rng, device):
        loss = batch_loss(model, batch, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="sports")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--negatives", type=int, default=3000)
    parser.add_argument("--timing-runs", type=int, default=3)
    args = parser.parse_args()
    data = build_sequences(load_dataset(args.dataset))
    losses = {"ce": {}, "sampled_softmax": {"sampled_negatives": args.negatives}}
    configs = {loss: fit_to_data(RunConfig(loss=loss, retrain_epochs=args.epochs, patience=args.epochs, **extra), data)
               for loss, extra in losses.items()}
    device = resolve_device("auto")
    timings = {loss: [] for loss in losses}
    for _ in range(args.timing_runs):
        for loss, config in configs.items():
            timings[loss].append(epoch_seconds(data, config, args.k, device))
    for loss, config in configs.items():
        result = retrain(data, config, args.k)
        test = evaluate(result.model, data, "test", "full")
        append_result("sampled_softmax.jsonl", {
            "dataset": args.dataset, "n_items": data.n_items, "loss": loss, "k": args.k,
            "T": config.max_length, "epochs": args.epochs, "negatives": args.negatives if loss != "ce" else None,
            "epoch_seconds_median": round(float(np.median(timings[loss])), 2),
            "epoch_seconds": [round(t, 2) for t in timings[loss]],
            "best_epoch": result.best_epoch, "valid_ndcg10_per_epoch": [round(e["NDCG@10"], 4) for e in result.history],
            "test_full": {m: round(test[m], 4) for m in ("HR@10", "NDCG@10", "MRR@10", "HR@20", "NDCG@20")},
            **peak_memory_mib()})


if __name__ == "__main__":
    main()
