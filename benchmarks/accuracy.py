"""One AutoMLP run on a real dataset: accuracy under both protocols, the search's choice, time and memory.

    python benchmarks/accuracy.py --dataset ml-1m --preset paper-ml1m --label default
    python benchmarks/accuracy.py --dataset beauty --preset paper-beauty --set lr=0.002 --label lr2e-3

Prints one JSON line and appends it to benchmarks/results/accuracy.jsonl (benchmarks/report.py turns
the results into BENCHMARKS.md tables).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import append_result, load_dataset, peak_memory_mib  # noqa: E402
from engine.progress_bar import ProgressBarObserver  # noqa: E402
from engine.config import RunConfig, parse_override  # noqa: E402
from engine.presets import PRESETS  # noqa: E402
from engine.runner import run_automlp  # noqa: E402
from engine.sequences import build_sequences  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=["ml-1m", "beauty", "ml-100k"])
    parser.add_argument("--preset", choices=sorted(PRESETS))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--label", default="")
    parser.add_argument("--results", default="accuracy.jsonl")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    config = PRESETS[args.preset]() if args.preset else RunConfig()
    overrides = dict(parse_override(text) for text in args.overrides)
    config = config.replace(**overrides) if overrides else config

    started = time.monotonic()
    data = build_sequences(load_dataset(args.dataset), config.min_user_interactions)
    load_seconds = time.monotonic() - started
    result = run_automlp(data, config, ProgressBarObserver(quiet=args.quiet))
    summary = result.summary()
    search = summary.get("search", {})
    epochs = summary["epochs"]
    append_result(args.results, {
        "benchmark": "accuracy", "label": args.label, "dataset": args.dataset, "preset": args.preset,
        "overrides": overrides, "users": data.n_users, "items": data.n_items,
        "interactions": data.n_interactions, "config": summary["config"], "device": summary["device"],
        "chosen_length": summary["chosen_length"],
        "search": {k: search[k] for k in ("final_weights", "margin", "noise", "decisive", "steps")} if search else None,
        "valid_protocol": summary["valid_protocol"], "best_epoch": summary["best_epoch"],
        "epochs_run": len(epochs), "valid_ndcg10_per_epoch": [round(e["NDCG@10"], 4) for e in epochs],
        "test": summary["test_metrics"], "seconds": {**summary["seconds"], "load": load_seconds,
                                                      "total": time.monotonic() - started},
        "retrain_seconds_per_epoch": summary["seconds"]["retrain"] / max(1, len(epochs)),
        **peak_memory_mib(),
    })


if __name__ == "__main__":
    main()
