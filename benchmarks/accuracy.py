"""One AutoMLP run on a real dataset: accuracy under both protocols, the search's choice, time and memory;
with `--baseline sasrec`, the SASRec baseline trained with the same configuration in the same run.

    python benchmarks/accuracy.py --dataset ml-1m --preset paper-ml1m --label default
    python benchmarks/accuracy.py --dataset beauty --preset paper-beauty --set lr=0.002 --label lr2e-3
    python benchmarks/accuracy.py --dataset ml-1m --preset paper-ml1m --set retrain_epochs=40 --baseline sasrec

The baseline (engine/models/sasrec.py) has the configuration's T, L, D, dropout and R_c as its
feed-forward width (`--sasrec-variant sasrec_plus`: SASRec.pytorch's block, FFN width D, as SASRec+ trains
it), and is trained by AutoMLP's retraining loop: the same batches, loss, optimiser, validation protocol,
early stopping and test evaluation. Prints one JSON line per model and appends them to
benchmarks/results/accuracy.jsonl (benchmarks/report.py turns the results into BENCHMARKS.md tables).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import append_result, load_dataset, peak_memory_mib  # noqa: E402
from engine.cli.progress_bar import ProgressBarObserver  # noqa: E402
from engine.core.config import RunConfig, parse_override  # noqa: E402
from engine.core.presets import PRESETS, load_preset  # noqa: E402
from engine.data.sequences import build_sequences  # noqa: E402
from engine.models.automlp import count_parameters  # noqa: E402
from engine.models.sasrec import VARIANTS  # noqa: E402
from engine.training.baseline import run_baseline  # noqa: E402
from engine.training.runner import run_automlp  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=["ml-1m", "beauty", "ml-100k"])
    parser.add_argument("--preset", choices=sorted(PRESETS))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--label", default="")
    parser.add_argument("--results", default="accuracy.jsonl")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--baseline", choices=["sasrec"], help="also train this baseline in the same run")
    parser.add_argument("--heads", type=int, default=1, help="the baseline's attention heads")
    parser.add_argument("--sasrec-variant", choices=VARIANTS, default="pre_norm",
                        help="the baseline's block: ours, or SASRec.pytorch's as SASRec+ trains it")
    parser.add_argument("--skip-automlp", action="store_true", help="train the baseline only")
    parser.add_argument("--ids-only", action="store_true",
                        help="drop the item features the loader adds (Beauty's attributes, ML-100k's genres), as "
                             "the published ID-only rows train")
    args = parser.parse_args()
    config = load_preset(args.preset) if args.preset else RunConfig()
    overrides = dict(parse_override(text) for text in args.overrides)
    config = config.replace(**overrides) if overrides else config

    started = time.monotonic()
    log = load_dataset(args.dataset)
    if args.ids_only:
        log = dataclasses.replace(log, item_features={})
    data = build_sequences(log, config.min_user_interactions)
    load_seconds = time.monotonic() - started
    common = {"benchmark": "accuracy", "label": args.label, "dataset": args.dataset, "preset": args.preset,
              "overrides": overrides, "ids_only": args.ids_only, "users": data.n_users, "items": data.n_items,
              "interactions": data.n_interactions}
    if not args.skip_automlp:
        started = time.monotonic()
        result = run_automlp(data, config, ProgressBarObserver(quiet=args.quiet))
        append_result(args.results, {"model": "automlp", **common, **run_record(result, started, load_seconds)})
    if args.baseline == "sasrec":
        reset_peak_memory()
        started = time.monotonic()
        result = run_baseline(data, config, ProgressBarObserver(quiet=args.quiet), num_heads=args.heads,
                              variant=args.sasrec_variant)
        append_result(args.results, {"model": "sasrec", "heads": args.heads, "variant": args.sasrec_variant, **common,
                                     **run_record(result, started, load_seconds)})


def run_record(result, started: float, load_seconds: float) -> dict:
    """The JSON fields of one model's run (RunResult of run_automlp or run_baseline)."""
    summary = result.summary()
    search = summary.get("search", {})
    epochs = summary["epochs"]
    return {
        "config": summary["config"], "device": summary["device"], "parameters": count_parameters(result.model),
        "chosen_length": summary["chosen_length"],
        "search": {k: search[k] for k in ("final_weights", "margin", "noise", "decisive", "steps")} if search else None,
        "valid_protocol": summary["valid_protocol"], "best_epoch": summary["best_epoch"],
        "epochs_run": len(epochs), "valid_ndcg10_per_epoch": [round(e["NDCG@10"], 4) for e in epochs],
        "test": summary["test_metrics"], "seconds": {**summary["seconds"], "load": load_seconds,
                                                      "total": time.monotonic() - started + load_seconds},
        "retrain_seconds_per_epoch": summary["seconds"]["retrain"] / max(1, len(epochs)),
        **peak_memory_mib(),
    }


def reset_peak_memory() -> None:
    """So that the second model's peak GPU memory is its own (the CPU's RSS peak cannot be reset)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


if __name__ == "__main__":
    main()
