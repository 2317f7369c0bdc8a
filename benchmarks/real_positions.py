"""What computing only real positions saves a training step: channel maps on packed real positions,
narrow banded token maps as one dense band on short windows, and each batch's rows in groups of similar
length, against the padded computation.

    python benchmarks/real_positions.py --dataset sports --dataset ml-1m

One epoch's training batches of the real data with the defaults fitted to it (T, K, loss), then, for
the search's supernet and the retraining model (the shortest candidate), full training steps (loss,
backward, Adam) on the same batches with both computations, alternating, `--rounds` times. Medians of
the rounds; the ratio is measured in the same process, so a shared machine's noise cancels. One JSON line
per model in benchmarks/results/real_positions.jsonl.
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
from engine.models import automlp  # noqa: E402
from engine.training import batches as batch_module  # noqa: E402
from engine.models.automlp import ModelShape, build_model  # noqa: E402
from engine.training.batches import batch_loss, training_batches  # noqa: E402
from engine.training.device import subnormals_flushed  # noqa: E402

COMPUTATIONS = {  # module constants of engine.models.automlp and engine.training.batches
    "padded": {(automlp, "PACK_BELOW"): 0.0, (automlp, "DIAGONALS_PER_POSITION"): 0, (batch_module, "MAX_ROW_GROUPS"): 1},
    "real positions": {(automlp, "PACK_BELOW"): automlp.PACK_BELOW,
                       (automlp, "DIAGONALS_PER_POSITION"): automlp.DIAGONALS_PER_POSITION,
                       (batch_module, "MAX_ROW_GROUPS"): 1},
    "rows in length groups": {(automlp, "PACK_BELOW"): automlp.PACK_BELOW,
                              (automlp, "DIAGONALS_PER_POSITION"): automlp.DIAGONALS_PER_POSITION,
                              (batch_module, "MAX_ROW_GROUPS"): batch_module.MAX_ROW_GROUPS},
}


def steps_seconds(model, optimizer, batches, config, computation: str) -> float:
    for (module, name), value in COMPUTATIONS[computation].items():
        setattr(module, name, value)
    model.train()
    started = time.perf_counter()
    for batch in batches:
        loss = batch_loss(model, batch, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - started) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", action="append", choices=["sports", "ml-1m", "beauty", "ml-100k"])
    parser.add_argument("--steps", type=int, default=20, help="training steps per round and computation")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for name in args.dataset or ["sports"]:
        data = build_sequences(load_dataset(name), 0)
        config = RunConfig().fitted_to(data.history_lengths("train"), data.n_items)
        rng = np.random.default_rng(0)
        batches = training_batches(data, config, rng, torch.device("cpu"))[:args.steps]
        real = sum(int((b.inputs > 0).sum()) for b in batches) / sum(b.inputs.numel() for b in batches)
        for model_name, candidates in (("search supernet", config.candidate_lengths),
                                       ("retraining model", config.candidate_lengths[:1])):
            torch.manual_seed(0)
            model = build_model(ModelShape.from_config(config, data.n_items, candidates, data.features),
                                data.features)
            optimizer = torch.optim.Adam(model.network_parameters(), lr=config.lr)
            times = {computation: [] for computation in COMPUTATIONS}
            with subnormals_flushed(torch.device("cpu")):
                steps_seconds(model, optimizer, batches[:2], config, "padded")  # warm the allocator
                for _ in range(args.rounds):
                    for computation in COMPUTATIONS:
                        times[computation].append(steps_seconds(model, optimizer, batches, config, computation))
            medians = {c: statistics.median(t) for c, t in times.items()}
            append_result("real_positions.jsonl", {
                "benchmark": "real_positions", "dataset": name, "model": model_name,
                "max_length": config.max_length, "candidates": list(candidates), "loss": config.loss,
                "threads": torch.get_num_threads(), "real_share_of_batch_positions": round(real, 3),
                "steps": args.steps, "rounds": args.rounds,
                "step_ms_median": {c: round(1000 * m, 1) for c, m in medians.items()},
                "ratio": round(medians["real positions"] / medians["padded"], 3),
                "ratio_rows_in_length_groups": round(medians["rows in length groups"] / medians["padded"], 3)})
    for (module, name), value in COMPUTATIONS["rows in length groups"].items():
        setattr(module, name, value)


if __name__ == "__main__":
    main()
