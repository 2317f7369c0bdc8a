"""A dataset end to end with the default settings: import into a fresh store, search, retrain, evaluate.

    python benchmarks/end_to_end.py                   # automlp import sasrec_ml-1m.txt; automlp run --dataset ml-1m
    python benchmarks/end_to_end.py --dataset sports  # Amazon Sports with its times file, --min-user 0

Prints one JSON line (wall time per stage, peak memory, chosen length, metrics under both protocols) and
appends it to benchmarks/results/end_to_end.jsonl.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DATA, append_result, peak_memory_mib  # noqa: E402
from engine.cli.progress_bar import ProgressBarObserver  # noqa: E402
from engine.core.config import RunConfig  # noqa: E402
from engine.data.importers import import_file  # noqa: E402
from engine.data.store import open_store  # noqa: E402
from engine.experiments.stored_run import run_on_dataset  # noqa: E402

FILES = {  # dataset: (interaction file, times file), as a user would import them
    "ml-1m": ("ml-1m/sasrec_ml-1m.txt", None),
    "sports": ("amazon-sports/Sports_and_Outdoors.txt", "amazon-sports/Sports_time.txt"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(FILES), default="ml-1m")
    name = parser.parse_args().dataset
    interactions, times = FILES[name]
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{folder}/store.sqlite")
        report = import_file(store, DATA / interactions, name=name, min_user_interactions=0,
                             times_file=DATA / times if times else None)
        imported = time.monotonic()
        config = RunConfig()
        run_id, result = run_on_dataset(store, name, config, ProgressBarObserver())
        finished = time.monotonic()
        store.close()
    summary = result.summary()
    append_result("end_to_end.jsonl", {
        "benchmark": "end_to_end", "dataset": f"{name} ({Path(interactions).name})", "config": config.to_dict(),
        "fitted": {k: summary["config"][k] for k in ("max_length", "candidate_lengths")},
        "device": summary["device"], "interactions": report.to_dict().get("interactions"),
        "chosen_length": result.chosen_length,
        "search": {k: summary["search"][k] for k in ("final_weights", "margin", "decisive", "steps")},
        "best_epoch": summary["best_epoch"], "epochs_run": len(summary["epochs"]),
        "valid_ndcg10_per_epoch": [round(e["NDCG@10"], 4) for e in summary["epochs"]],
        "test": summary["test_metrics"],
        "seconds": {"import": imported - started, **summary["seconds"], "total": finished - started},
        **peak_memory_mib(),
    })


if __name__ == "__main__":
    main()
