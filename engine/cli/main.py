"""The `automlp` command line: everything the GUI does, headless.

    automlp run --synthetic                      search -> retrain -> evaluate on generated data
    automlp run interactions.csv --set lr=0.002  the same on any file `automlp import` reads
    automlp run --dataset ml-1m --preset paper-ml1m  on a stored dataset, recorded in the store
    automlp runs                                 the store's runs, which of them can be resumed
    automlp resume 7                             continue run 7 from its last checkpoint
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from pathlib import Path

from engine.cli.data_commands import (
    add_data_commands,
    add_store_argument,
    open_cli_store,
)
from engine.cli.model_commands import add_model_commands
from engine.cli.progress_bar import ProgressBarObserver
from engine.cli.text import local_minute, printable
from engine.core.config import STRATEGIES, ConfigError, RunConfig, parse_override
from engine.core.events import Cancelled
from engine.core.files import kind_of
from engine.core.presets import PRESETS, load_preset
from engine.data.formats import ImportFailed

# torch, pandas, SQLAlchemy and the training code load when a command runs (inside the handlers), so
# that `automlp --help` and a mistyped flag answer at once.


def read_log(path: Path):
    """Any interaction file the importers understand (format detected), without storing it, as an
    InteractionLog."""
    from engine.data.readers import read_interactions
    from engine.data.sequences import InteractionLog

    frame = read_interactions(path)
    timestamps = frame["timestamp"].to_numpy() if "timestamp" in frame else None
    return InteractionLog(frame["user"].to_numpy(), frame["item"].to_numpy(), timestamps, name=path.stem)


class OutputError(ValueError):
    """A file the command was asked to write (`--json`) cannot be written; the message names it."""


def check_writable(path: Path | None, option: str = "--json") -> None:
    """OutputError now, before a run of minutes or hours, if `path` could not be written at its end: a
    folder, a device, a missing or read-only folder. Nothing is truncated: a file there stays as it is,
    and one the probe created is removed again."""
    if path is None:
        return
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise OutputError(f"{option} {path} cannot be written: {error.strerror or error}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputError(f"{option} {path} cannot be written: not a regular file ({kind_of(mode)})")
    try:
        with open(path, "a"):
            pass
    except OSError as error:
        raise OutputError(f"{option} {path} cannot be written: {error.strerror or error}") from None
    if mode is None:
        path.unlink()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="automlp", description="AutoMLP Studio from the command line")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="search the short-term length, retrain, evaluate")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", type=Path, help="an interaction file (any format `automlp import` reads)")
    source.add_argument("--dataset", metavar="NAME", help="a stored dataset; the run is recorded in the store")
    source.add_argument("--synthetic", action="store_true", help="generated data with a planted lag-3 dependency")
    add_store_argument(run)
    run.add_argument("--preset", choices=sorted(PRESETS), help="start from a named configuration")
    run.add_argument("--config", type=Path, help="a TOML run configuration")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one configuration key (repeatable), e.g. --set candidate_lengths=[5,10]")
    run.add_argument("--strategy", choices=STRATEGIES,
                     help="how the short-term length is chosen: the differentiable search (AutoMLP) or exhaustive "
                          "retraining of every candidate (AutoMLP-s); the same as --set strategy=...")
    run.add_argument("--seeds", type=int, metavar="N",
                     help="the search once per seed, or every candidate per seed, and a verdict over them "
                          "(seeds SEED..SEED+N-1); the same as --set seeds=N")
    run.add_argument("--json", type=Path, help="write every result (metrics, alpha history, losses) to this file")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    add_nproc_argument(run)
    run.set_defaults(handler=command_run)
    resume = commands.add_parser("resume", help="continue an interrupted, cancelled or failed run from its "
                                                "last checkpoint")
    resume.add_argument("run", type=int, metavar="RUN", help="run id (see `automlp runs`)")
    resume.add_argument("--json", type=Path, help="write every result to this file")
    resume.add_argument("--quiet", action="store_true", help="no progress bars")
    add_nproc_argument(resume)
    add_store_argument(resume)
    resume.set_defaults(handler=command_resume)
    runs = commands.add_parser("runs", help="list the store's runs")
    runs.add_argument("--dataset", metavar="NAME", help="only the runs of this dataset")
    add_store_argument(runs)
    runs.set_defaults(handler=command_runs)
    add_data_commands(commands)  # import, datasets, stats, delete (engine/cli_data.py)
    add_model_commands(commands)  # recommend, export (engine/cli_models.py)
    return parser


def add_nproc_argument(command) -> None:
    command.add_argument("--nproc", type=int, metavar="N",
                         help="train in N data-parallel processes on this machine (starts torchrun; one per GPU "
                              "on CUDA); README, Distributed training")


def load_run_config(args) -> RunConfig:
    if args.config:
        config = RunConfig.load_toml(args.config)
    elif args.preset:
        config = load_preset(args.preset)
    else:
        config = load_preset("quick-demo") if args.synthetic else RunConfig()
    overrides = dict(parse_override(text) for text in args.overrides)
    for key in ("strategy", "seeds"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    return config.replace(**overrides) if overrides else config


def command_run(args) -> int:
    from engine.data.sequences import build_sequences
    from engine.data.synthetic import planted_log
    from engine.experiments.stored_run import run_on_dataset
    from engine.training.distributed import is_main_process, launch, without_nproc
    from engine.training.runner import run_automlp

    if args.nproc:
        return launch(args.nproc, without_nproc(args.argv))
    config = load_run_config(args)
    check_writable(args.json)
    observer = ProgressBarObserver(quiet=args.quiet or not is_main_process(), run_config=config)
    if args.dataset:
        run_id, result = run_on_dataset(open_cli_store(args), args.dataset, config, observer)
        if not is_main_process():  # under torchrun, rank 0 reports
            return 0
        print(f"run {run_id} recorded in the store; its model bundle: automlp export {run_id} --out DIR")
    else:
        log = planted_log(seed=config.seed) if args.synthetic else read_log(args.file)
        result = run_automlp(build_sequences(log, config.min_user_interactions), config, observer)
    return report(result, args.json) if is_main_process() else 0


def command_resume(args) -> int:
    from engine.data.run_records import get_run
    from engine.experiments.stored_run import resume_run
    from engine.training.distributed import is_main_process, launch, without_nproc

    if args.nproc:
        return launch(args.nproc, without_nproc(args.argv))
    check_writable(args.json)
    store = open_cli_store(args)
    with store.session() as session:  # the run's configuration, for the whole run's ETA
        config = RunConfig.from_dict(get_run(session, args.run).config)
    result = resume_run(store, args.run, ProgressBarObserver(quiet=args.quiet or not is_main_process(),
                                                             run_config=config))
    if not is_main_process():  # under torchrun, rank 0 reports
        return 0
    print(f"run {args.run} finished; its model bundle: automlp export {args.run} --out DIR")
    return report(result, args.json)


def command_runs(args) -> int:
    from engine.data.run_records import list_runs
    from engine.data.store import list_datasets
    from engine.experiments.stored_run import can_resume

    store = open_cli_store(args)
    with store.session() as session:
        runs = list_runs(session, args.dataset)
        stored = {dataset.name for dataset in list_datasets(session)}
    if not runs:
        print(f"no runs in {store.url}; start one with `automlp run --dataset NAME`")
        return 0
    # a resume retrains on the run's dataset: one that was deleted leaves nothing to resume
    statuses = [run.status + (" (resumable)" if run.dataset_name in stored and can_resume(store, run.id, run.status)
                              else "") for run in runs]
    width = max(len("status"), *map(len, statuses)) + 2
    print(f"{'run':>5}  {'dataset':<20}{'status':<{width}}{'k':>5}{'NDCG@10 full':>14}  started")
    for run, status in zip(runs, statuses):
        full = ((run.metrics or {}).get("test") or {}).get("full", {}).get("NDCG@10")
        print(f"{run.id:>5}  {printable(run.dataset_name)[:19]:<20}{status:<{width}}{run.chosen_length or '-':>5}"
              f"{'-' if full is None else f'{full:.4f}':>14}  {local_minute(run.started_at)}")
    return 0


def report(result, json_path: Path | None) -> int:
    print(format_result(result.summary()))
    if json_path:
        try:
            json_path.write_text(json.dumps(result.summary(), indent=1))
        except OSError as error:  # checked before the run; the disk filled or the folder went since
            raise OutputError(f"--json {json_path} could not be written: {error.strerror or error}; the "
                              "results are above") from None
        print(f"results written to {json_path}")
    return 0


def format_result(summary: dict) -> str:
    lines = [f"chosen short-term length: k = {summary['chosen_length']}"]
    search = summary.get("search")
    if search:
        weights = ", ".join(f"k={k}: {w:.3f}" for k, w in search["final_weights"].items())
        verdict = search.get("reason") or ("decisive" if search["decisive"] else "not decisive")
        lines.append(f"softmax(alpha): {weights}  (margin {search['margin']:.3f}, noise {search['noise']:.3f}: "
                     f"{verdict})")
    choice = summary.get("length_choice")
    if choice and (choice["strategy"] != "search" or len(choice["seeds"]) > 1 or "confirm" in choice):
        lines.append(format_length_choice(choice))
    lines.append(f"best validation epoch {summary['best_epoch']}: NDCG@10 "
                 f"{summary['valid_metrics'].get('NDCG@10', float('nan')):.4f} [{summary['valid_protocol']}]")
    names = ["HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR@5", "MRR@10", "MRR@20"]
    lines.append("test metrics".ljust(18) + "".join(n.rjust(9) for n in names))
    for label, metrics in summary["test_metrics"].items():
        lines.append(f"  [{label}]".ljust(18) + "".join(f"{metrics[n]:9.4f}" for n in names))
    if summary.get("by_length"):
        from engine.evaluation.by_length import format_by_length
        lines.append(format_by_length(summary["by_length"]))
    seconds = ", ".join(f"{phase} {s:.1f} s" for phase, s in summary["seconds"].items())
    lines.append(f"device {summary['device']}; {seconds}")
    return "\n".join(lines)


def format_length_choice(choice: dict) -> str:
    """The verdict, then its evidence: each seed's choice, each length's validation figure over the seeds,
    the confirm stage's rounds."""
    lines = [("verdict: " if choice["decided"] else "verdict (undecided): ") + choice["verdict"]]
    for search in choice.get("searches", []):
        weights = ", ".join(f"{k}: {w:.3f}" for k, w in search["final_weights"].items())
        lines.append(f"  seed {search['seed']}: k = {search['chosen_length']} (softmax(alpha) {weights}; {search['reason']})")
    scores = choice.get("scores")
    if scores:
        equal = set(choice.get("equal_lengths", []))
        lines.append(f"  validation {choice['metric']} per k over {len(choice['seeds'])} seed(s), mean ± spread "
                     f"(* within the noise band from {choice['band']:.4f}):")
        for k, score in scores.items():
            mark = "*" if int(k) in equal else " "
            values = " ".join(f"{v:.4f}" for v in score["values"])
            lines.append(f"   {mark} k = {k:>4}: {score['mean']:.4f} ± {score['spread']:.4f}   ({values})")
    for stage in choice.get("confirm", []):
        shown = ", ".join(f"k = {k}: {v:.4f}" for k, v in stage["scores"].items())
        lines.append(f"  confirm after {stage['epochs']} epochs: {shown}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns its exit status: 0 done, 2 refused (one line on stderr naming what is
    wrong), 130 cancelled. A file-system error or exhausted memory is one line too, unless AUTOMLP_DEBUG
    is set, which shows its traceback; any other exception is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # what --nproc hands on to torchrun
    from engine.data.sequences import DataError
    from engine.data.store_errors import StoreError
    from engine.serving.bundle import BundleError
    from engine.training.checkpoint import CheckpointError

    try:
        status = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit, where it could not be caught
        return status
    except BrokenPipeError:
        # the reader went away (`automlp stats x | head`): stop quietly; devnull takes stdout's place so
        # that the interpreter's own flush at exit cannot fail again (Python's documented recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ConfigError, DataError, ImportFailed, StoreError, BundleError, CheckpointError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        print("cancelled (a run on a stored dataset keeps its last checkpoint: `automlp resume RUN` continues it)",
              file=sys.stderr)
        return 130
    except (OSError, MemoryError) as exc:
        if os.environ.get("AUTOMLP_DEBUG"):
            raise
        detail = getattr(exc, "strerror", None) or str(exc) or "out of memory"
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: {type(exc).__name__}: {detail}{where} (AUTOMLP_DEBUG=1 shows where)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
