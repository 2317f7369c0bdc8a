"""Validation NDCG@10 per epoch of a retraining with a fixed short-term length under the defaults, with the
engine of this checkout or of another commit: how fast a kind of training batches learns.

    python benchmarks/batch_grouping.py --k 50 --epochs 8                       # shuffled batches (now)
    git worktree add /tmp/grouped ed4c25a
    python benchmarks/batch_grouping.py --k 50 --epochs 8 --engine /tmp/grouped  # batches grouped by length

ed4c25a is the last commit whose training batches were grouped by length (shuffle, sort each run of 50
batches' worth of windows by length, cut, shuffle the batches). One JSON line per run in this checkout's
benchmarks/results/batch_grouping.jsonl.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--engine", type=Path, default=HERE, help="checkout whose engine/ trains")
    args = parser.parse_args()
    sys.path[:0] = [str(args.engine.resolve()), str(HERE)]  # its engine first; this checkout's benchmarks
    from benchmarks.common import append_result, load_dataset
    from engine.core.config import RunConfig
    from engine.data.sequences import build_sequences
    from engine.training.fit import retrain
    from engine.training.runner import fit_to_data

    data = build_sequences(load_dataset(args.dataset))
    config = fit_to_data(RunConfig(retrain_epochs=args.epochs, patience=args.epochs), data)
    result = retrain(data, config, args.k)
    append_result("batch_grouping.jsonl", {"dataset": args.dataset, "k": args.k, "engine": str(args.engine),
                                           "valid_ndcg10_per_epoch": [round(e["NDCG@10"], 4) for e in result.history]})


if __name__ == "__main__":
    main()
