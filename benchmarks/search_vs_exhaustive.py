"""The differentiable search against exhaustive search (paper Figure 6, AutoMLP vs AutoMLP-s): train one
model per candidate length and pick the best on validation, versus search once and retrain the choice.

    python benchmarks/search_vs_exhaustive.py --dataset ml-100k                 everything, one process
    python benchmarks/search_vs_exhaustive.py --dataset ml-1m --seed 1 --part search
    python benchmarks/search_vs_exhaustive.py --dataset ml-1m --seed 1 --part 20  (one candidate's retraining)
    python benchmarks/search_vs_exhaustive.py --combine                          one line per (dataset, seed)

The parts of one seed can run as separate processes (in parallel on a GPU); each appends one JSON line to
benchmarks/results/search_vs_exhaustive_parts.jsonl, and `--combine` joins the parts of each seed into
the comparison (both choices, the validation gap, the wall-time ratio). The retraining of the search's
choice is the exhaustive part of that length: the same configuration and seed train the same model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, append_result, load_dataset  # noqa: E402
from engine.core.config import RunConfig, parse_override  # noqa: E402
from engine.data.sequences import build_sequences  # noqa: E402
from engine.evaluation.metrics import evaluate  # noqa: E402
from engine.training.fit import retrain  # noqa: E402
from engine.training.search import search  # noqa: E402

PARTS = "search_vs_exhaustive_parts.jsonl"


def run_part(data, config: RunConfig, part: str) -> dict:
    """`search`: the search's choice and time; a length: that candidate retrained alone."""
    if part == "search":
        found = search(data, config)
        return {"search_choice": found.chosen_length, "search_weights": found.final_weights,
                "search_decisive": found.decisive, "seconds": found.seconds}
    length = int(part)
    started = time.monotonic()
    run = retrain(data, config, length)
    test = evaluate(run.model, data, "test", "full", config.eval_negatives, config.seed)
    return {"valid_ndcg10": run.best_valid["NDCG@10"], "test_ndcg10_full": test["NDCG@10"],
            "test_hr10_full": test["HR@10"], "best_epoch": run.best_epoch, "seconds": time.monotonic() - started}


def combine(parts: list[dict]) -> list[dict]:
    """One comparison per (dataset, seed, overrides) whose search and every candidate are present."""
    groups: dict[str, dict] = {}
    for part in parts:
        key = json.dumps([part["dataset"], part["seed"], part["overrides"]], sort_keys=True)
        groups.setdefault(key, {})[part["part"]] = part  # a later line for the same part wins
    comparisons = []
    for key, group in groups.items():
        found = group.get("search")
        if found is None or any(str(k) not in group for k in found["candidates"]):
            continue
        per_length = {str(k): group[str(k)] for k in found["candidates"]}
        best = max(per_length, key=lambda k: per_length[k]["valid_ndcg10"])
        chosen = str(found["search_choice"])
        differentiable = found["seconds"] + per_length[chosen]["seconds"]
        exhaustive = sum(entry["seconds"] for entry in per_length.values())
        comparisons.append({
            "dataset": found["dataset"], "seed": found["seed"], "overrides": found["overrides"],
            "machine": found["machine"], "date": found["date"], "candidates": found["candidates"],
            "search_choice": int(chosen), "search_weights": found["search_weights"],
            "search_decisive": found["search_decisive"], "exhaustive_choice": int(best),
            "valid_ndcg10": {k: v["valid_ndcg10"] for k, v in per_length.items()},
            "test_ndcg10_full": {k: v["test_ndcg10_full"] for k, v in per_length.items()},
            "search_choice_gap_ndcg10": per_length[best]["valid_ndcg10"] - per_length[chosen]["valid_ndcg10"],
            "seconds": {"search": found["seconds"], "differentiable_total": differentiable,
                        "exhaustive_total": exhaustive},
            "time_ratio": differentiable / exhaustive})
    return comparisons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["ml-1m", "beauty", "ml-100k"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--part", help="`search` or one candidate length; default: every part in turn")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--combine", action="store_true", help="join the recorded parts; train nothing")
    args = parser.parse_args()
    if not args.combine:
        if args.dataset is None:
            parser.error("--dataset is needed unless --combine")
        overrides = dict(parse_override(text) for text in args.overrides)
        config = RunConfig().replace(seed=args.seed, **overrides)
        data = build_sequences(load_dataset(args.dataset), config.min_user_interactions)
        parts = [args.part] if args.part else ["search", *map(str, config.candidate_lengths)]
        for part in parts:
            append_result(PARTS, {"benchmark": "search_vs_exhaustive_part", "dataset": args.dataset,
                                  "seed": args.seed, "overrides": overrides, "part": part,
                                  "candidates": config.candidate_lengths, **run_part(data, config, part)})
        if args.part:
            return
    lines = (RESULTS / PARTS).read_text().splitlines() if (RESULTS / PARTS).exists() else []
    for comparison in combine([json.loads(line) for line in lines]):
        print(json.dumps(comparison))


if __name__ == "__main__":
    main()
