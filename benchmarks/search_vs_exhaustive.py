"""The differentiable search against exhaustive search (paper Figure 6, AutoMLP vs AutoMLP-s): train one
model per candidate length and pick the best on validation, versus search once and retrain the choice.

    python benchmarks/search_vs_exhaustive.py --dataset ml-100k
    python benchmarks/search_vs_exhaustive.py --dataset ml-1m --set retrain_epochs=20

Prints one JSON line (each candidate's best validation NDCG@10 and time, both choices, the wall-time
ratio) and appends it to benchmarks/results/search_vs_exhaustive.jsonl.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import append_result, load_dataset  # noqa: E402
from engine.config import RunConfig, parse_override  # noqa: E402
from engine.search import search  # noqa: E402
from engine.sequences import build_sequences  # noqa: E402
from engine.training import retrain  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=["ml-1m", "beauty", "ml-100k"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    overrides = dict(parse_override(text) for text in args.overrides)
    config = RunConfig().replace(**overrides) if overrides else RunConfig()
    data = build_sequences(load_dataset(args.dataset), config.min_user_interactions)

    started = time.monotonic()
    found = search(data, config)
    chosen_run = retrain(data, config, found.chosen_length)
    differentiable_seconds = time.monotonic() - started

    per_length = {}
    for length in config.candidate_lengths:
        started = time.monotonic()
        run = chosen_run if length == found.chosen_length else retrain(data, config, length)
        seconds = chosen_run.seconds if length == found.chosen_length else time.monotonic() - started
        per_length[str(length)] = {"valid_ndcg10": run.best_valid["NDCG@10"], "best_epoch": run.best_epoch,
                                   "seconds": seconds}
    exhaustive_seconds = sum(entry["seconds"] for entry in per_length.values())
    best = max(per_length, key=lambda k: per_length[k]["valid_ndcg10"])
    append_result("search_vs_exhaustive.jsonl", {
        "benchmark": "search_vs_exhaustive", "dataset": args.dataset, "overrides": overrides,
        "users": data.n_users, "items": data.n_items, "candidates": config.candidate_lengths,
        "search_choice": found.chosen_length, "search_weights": found.final_weights,
        "search_decisive": found.decisive, "exhaustive_choice": int(best), "per_length": per_length,
        "search_choice_gap_ndcg10": per_length[best]["valid_ndcg10"]
        - per_length[str(found.chosen_length)]["valid_ndcg10"],
        "seconds": {"search": found.seconds,
                    "differentiable_total": differentiable_seconds, "exhaustive_total": exhaustive_seconds},
        "time_ratio": differentiable_seconds / exhaustive_seconds,
    })


if __name__ == "__main__":
    main()
