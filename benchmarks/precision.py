"""The training step with the loss's item scores in bfloat16 against float32 (RunConfig.precision): median
seconds per retraining step of each, taken in turns over the same batches so that both see the same load,
and their ratio.

    python benchmarks/precision.py                        # ML-1M (full softmax) and Sports (sampled softmax)
    python benchmarks/precision.py --datasets beauty --rounds 5
    python benchmarks/precision.py --datasets ml-1m --memory-epochs 3   # resident memory: a process per precision

Appends one JSON line per dataset to benchmarks/results/precision.jsonl.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
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
from engine.training.batches import batch_loss, training_batches  # noqa: E402
from engine.training.device import native_bf16, resolve_device  # noqa: E402
from engine.training.fit import fit  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def time_dataset(name: str, rounds: int, steps: int, device: torch.device) -> dict:
    data = build_sequences(load_dataset(name))
    config = RunConfig().fitted_to(data.history_lengths("train"), data.n_items)
    batches = training_batches(data, config, np.random.default_rng(0), device)[:steps + 1]
    torch.manual_seed(0)
    model = build_model(ModelShape.from_config(config, data.n_items, config.candidate_lengths[:1]), device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    def step(batch, precision: str) -> None:
        loss = batch_loss(model, batch, config.replace(precision=precision))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    medians = {precision: [] for precision in PRECISIONS}
    for _ in range(rounds):
        for precision in PRECISIONS:
            step(batches[0], precision)  # warm-up
            times = []
            for batch in batches[1:]:
                started = time.perf_counter()
                step(batch, precision)
                times.append(time.perf_counter() - started)
            medians[precision].append(statistics.median(times))
    fp32, bf16 = (statistics.median(medians[p]) for p in PRECISIONS)
    return {"benchmark": "precision", "dataset": name, "device": str(device), "native_bf16": native_bf16(device),
            "threads": torch.get_num_threads(), "T": config.max_length, "loss": config.loss,
            "n_items": data.n_items, "rounds": rounds, "steps": steps,
            "fp32_step_seconds": round(fp32, 4), "bf16_step_seconds": round(bf16, 4),
            "bf16_over_fp32": round(bf16 / fp32, 3), "round_medians": medians}


def resident_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def memory_of_training(name: str, precision: str, epochs: int) -> dict:
    """Resident memory after each of `epochs` retraining epochs (the first candidate), and the peak."""
    data = build_sequences(load_dataset(name))
    config = RunConfig(precision=precision, retrain_epochs=epochs, patience=epochs)
    config = config.fitted_to(data.history_lengths("train"), data.n_items)
    torch.manual_seed(0)
    model = build_model(ModelShape.from_config(config, data.n_items, config.candidate_lengths[:1]))
    after_epoch = []
    started = time.monotonic()
    fit(model, data, config, np.random.default_rng(0), on_epoch_end=lambda _: after_epoch.append(round(resident_mib())))
    return {"precision": precision, "resident_mib_after_epoch": after_epoch,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "seconds_per_epoch": round((time.monotonic() - started) / epochs, 1)}


def memory_line(name: str, epochs: int) -> dict:
    """memory_of_training for each precision, each in a fresh process so that neither sees the other's peak."""
    runs = []
    for precision in PRECISIONS:
        child = subprocess.run([sys.executable, __file__, "--child-memory", precision, "--epochs", str(epochs),
                                "--datasets", name], check=True, capture_output=True, text=True)
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    return {"benchmark": "precision_memory", "dataset": name, "epochs": epochs,
            "threads": torch.get_num_threads(), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=["ml-1m", "sports"],
                        choices=["ml-1m", "ml-100k", "beauty", "sports"])
    parser.add_argument("--rounds", type=int, default=3, help="turns of each precision")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per turn")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--memory-epochs", type=int, help="measure resident memory over this many epochs instead")
    parser.add_argument("--child-memory", choices=PRECISIONS, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory:
        print(json.dumps(memory_of_training(args.datasets[0], args.child_memory, args.epochs)))
        return
    if args.memory_epochs:
        for name in args.datasets:
            append_result("precision.jsonl", memory_line(name, args.memory_epochs))
        return
    device = resolve_device(args.device)
    for name in args.datasets:
        append_result("precision.jsonl", time_dataset(name, args.rounds, args.steps, device))


if __name__ == "__main__":
    main()
