"""How many of the positions a run computes are padding: before (every batch padded to T = 200, the old
default) and after (T fitted to the data, evaluation batches grouped by length, every batch cut to its
longest window; in training, the channel maps computed on the real positions of a packed batch, and each
batch's rows computed in groups of similar length).

Counts the real batches the engine builds for one training epoch (causal mode) and for the validation
and test evaluations; no training, so it runs in seconds.

    python benchmarks/padding.py --dataset sports --dataset ml-1m
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import append_result, load_dataset  # noqa: E402
from engine.core.config import RunConfig  # noqa: E402
from engine.data.sequences import build_sequences  # noqa: E402
from engine.models.automlp import PACK_BELOW  # noqa: E402
from engine.training.batches import row_groups, training_batches  # noqa: E402
from engine.training.runner import fit_to_data  # noqa: E402


def padding_of_training(data, config: RunConfig) -> tuple[int, int]:
    batches = training_batches(data, config, np.random.default_rng(0), torch.device("cpu"))
    computed = sum(b.inputs.numel() for b in batches)
    return computed, computed - sum(int((b.inputs > 0).sum()) for b in batches)


def padding_of_channel_maps(data, config: RunConfig) -> tuple[int, int]:
    """As training's channel maps compute one epoch: packed to real positions where at most PACK_BELOW of a
    batch is real (engine.models.automlp.packed_rows), else the whole cut window."""
    batches = training_batches(data, config, np.random.default_rng(0), torch.device("cpu"))
    computed = padding = 0
    for batch in batches:
        real, total = int((batch.inputs > 0).sum()), batch.inputs.numel()
        packed = real <= PACK_BELOW * total
        computed += real if packed else total
        padding += 0 if packed else total - real
    return computed, padding


def padding_of_row_groups(data, config: RunConfig) -> tuple[int, int]:
    """As training computes one epoch with each batch's rows in groups of similar length
    (engine.training.batches.row_groups): every map of a group sees the group's cut window."""
    batches = training_batches(data, config, np.random.default_rng(0), torch.device("cpu"))
    computed = real = 0
    for batch in batches:
        lengths = (batch.inputs > 0).sum(1).numpy()
        computed += sum(len(rows) * width for rows, width in row_groups(lengths, batch.inputs.shape[1]))
        real += int(lengths.sum())
    return computed, computed - real


def padding_of_evaluation(data, config: RunConfig, split: str, batch_size: int = 256) -> tuple[int, int]:
    """As engine.evaluation.metrics.evaluate batches the users (by history length, trimmed)."""
    order = np.argsort(data.history_lengths(split), kind="stable")
    computed = padding = 0
    for start in range(0, data.n_users, batch_size):
        inputs = data.histories(split, config.max_length, order[start:start + batch_size], trim=True)
        computed += inputs.size
        padding += int((inputs == 0).sum())
    return computed, padding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", action="append", required=True)
    args = parser.parse_args()
    for name in args.dataset:
        data = build_sequences(load_dataset(name))
        fitted = fit_to_data(RunConfig(), data)
        for split in ("valid", "test"):
            lengths = np.minimum(data.history_lengths(split), 200)
            before = 1 - lengths.sum() / (data.n_users * 200)
            computed, padding = padding_of_evaluation(data, fitted, split)
            append_result("padding.jsonl", {"dataset": name, "part": f"{split} evaluation", "T_before": 200,
                                            "T_after": fitted.max_length, "padding_before": round(float(before), 4),
                                            "padding_after": round(padding / computed, 4)})
        old = fitted.replace(max_length=200, candidate_lengths=[5, 10, 20, 50, 100])
        batches = training_batches(data, old, np.random.default_rng(0), torch.device("cpu"))
        real = sum(int((b.inputs > 0).sum()) for b in batches)
        before = 1 - real / (sum(len(b.inputs) for b in batches) * 200)  # each padded to T = 200
        computed, padding = padding_of_training(data, fitted)
        append_result("padding.jsonl", {"dataset": name, "part": "training epoch (causal)", "T_before": 200,
                                        "T_after": fitted.max_length, "padding_before": round(float(before), 4),
                                        "padding_after": round(padding / computed, 4),
                                        "K_after": fitted.candidate_lengths})
        cut_windows = padding_of_training(data, fitted)[0]
        for part, count in (("channel maps", padding_of_channel_maps), ("rows in length groups", padding_of_row_groups)):
            computed, padding = count(data, fitted)
            append_result("padding.jsonl", {"dataset": name, "part": f"training epoch (causal), {part}",
                                            "T_before": 200, "T_after": fitted.max_length,
                                            "padding_before": round(float(before), 4),
                                            "padding_after": round(padding / computed, 4),
                                            "computed_positions_against_cut_windows": round(computed / cut_windows, 4)})

if __name__ == "__main__":
    main()
