"""A run on a stored dataset, recorded in the store: what the GUI's Start button and `automlp run
--dataset NAME` do.

create the run record -> record its curves while it trains, with a checkpoint after every epoch -> save
the model bundle next to the store -> finish the record. A failure or a cancel marks the record `failed`
or `cancelled` and leaves no bundle but the last checkpoint, from which `resume_run` continues the run;
so does a run whose process was killed once the store marks it `interrupted`.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import platformdirs
import sqlalchemy as sa

from engine.core.config import RunConfig
from engine.core.events import Cancelled, Message, Observer
from engine.data.run_records import (
    Heartbeat,
    RunRecorder,
    add_artifact,
    create_run,
    fail_run,
    finish_run,
    get_run,
    holder,
    mark_interrupted_runs,
    reopen_run,
    truncate_series,
)
from engine.data.sequences import build_sequences
from engine.data.store import Store, load_log
from engine.data.store_errors import StoreError, sqlite_path
from engine.serving.bundle import bundle_digest, save_bundle
from engine.training.checkpoint import Checkpoint, load_checkpoint
from engine.training.device import resolve_device
from engine.training.distributed import is_main_process
from engine.training.runner import RunResult, check_resumable, fit_to_data, run_automlp


def bundle_folder(store: Store) -> Path:
    """Where a store keeps its runs' model bundles and checkpoints: a folder named by the store's identity,
    in `runs/` beside a SQLite file, else in the user data folder. No other store writes there (two stores
    in one folder, or several PostgreSQL databases, each have their own)."""
    return _shared_runs_folder(store) / store.identity.id


def _shared_runs_folder(store: Store) -> Path:
    """The `runs/` folder that every store of its place shared before stores had an identity (schema 0003)."""
    path = sqlite_path(store.url)
    if path is not None:
        return path.resolve().parent / "runs"
    return Path(platformdirs.user_data_dir("automlp-studio", appauthor=False)) / "runs"


def checkpoint_file(store: Store, run_id: int) -> Path:
    """Where a run of this store keeps its latest checkpoint (beside the bundles)."""
    return bundle_folder(store) / f"run-{run_id}.checkpoint.safetensors"


def existing_checkpoint(store: Store, run_id: int) -> Path:
    """The run's checkpoint to resume from: its own, or for a run made before the store had an identity,
    the one it left in the shared folder (a checkpoint of another store's run of that id is refused on
    loading: its data fingerprint differs). `checkpoint_file` when there is neither."""
    own = checkpoint_file(store, run_id)
    if not own.exists() and run_id <= store.identity.legacy_runs_upto:
        legacy = _shared_runs_folder(store) / own.name
        if legacy.exists():
            return legacy
    return own


RESUMABLE_STATUSES = ("interrupted", "cancelled", "failed")


def can_resume(store: Store, run_id: int, status: str | None = None) -> bool:
    """Whether the run ended unfinished (interrupted, cancelled, failed) and left a checkpoint. Pass the
    run's `status` when it is at hand, to spare a query."""
    if status is None:
        with store.session() as session:
            status = get_run(session, run_id).status
    return status in RESUMABLE_STATUSES and existing_checkpoint(store, run_id).exists()


def run_on_dataset(store: Store, dataset_name: str, config: RunConfig,
                   observer: Observer | None = None) -> tuple[int, RunResult]:
    """Runs AutoMLP on a stored dataset and records everything; returns (run id, result).

    A checkpoint is kept after every epoch until the run finishes, so that `resume_run` can continue it.
    Raises what the run raises (ConfigError, DataError, Cancelled, ...) after recording the outcome.
    """
    observer = observer or Observer()
    config.validate()
    device = resolve_device(config.device)
    with store.session() as session:
        log = load_log(session, dataset_name)
    data = build_sequences(log, config.min_user_interactions)
    config = fit_to_data(config, data, observer, device)  # the record keeps the fitted values: a rerun repeats them
    if not is_main_process():  # under torchrun, rank 0 alone records the run
        return None, run_automlp(data, config, observer)
    with store.session() as session:
        run_id = create_run(session, dataset_name, config.to_dict(), str(device))
    return run_id, _record(store, run_id, data, config, observer, resume=None)


def resume_run(store: Store, run_id: int, observer: Observer | None = None) -> RunResult:
    """Continues an interrupted, cancelled or failed run from its last checkpoint, in the same record.

    StoreError if the run finished or is running; CheckpointError if it left no usable checkpoint or its
    dataset changed since. The result equals what the uninterrupted run would have given (same device)."""
    observer = observer or Observer()
    if not is_main_process():  # under torchrun, rank 0 alone checks and reopens the record
        return _resume_unrecorded(store, run_id, observer)
    with store.session() as session:
        mark_interrupted_runs(session)
        run = get_run(session, run_id)
        if run.status == "finished":
            raise StoreError(f"run {run_id} has finished; there is nothing to resume")
        if run.status == "running":
            raise StoreError(f"run {run_id} is still running ({holder(run)})")
        dataset_name = run.dataset_name
    resumed_from = existing_checkpoint(store, run_id)
    checkpoint = load_checkpoint(resumed_from)
    config = RunConfig.from_dict(checkpoint.config)
    with store.session() as session:
        log = load_log(session, dataset_name)
    data = build_sequences(log, config.min_user_interactions)
    check_resumable(checkpoint, config, data.fingerprint())  # before the record changes
    with store.session() as session:
        reopen_run(session, run_id)
        truncate_series(session, run_id, checkpoint.phase, checkpoint.step, checkpoint.epoch)
    observer.emit(Message(f"resuming run {run_id} after {checkpoint.phase} epoch {checkpoint.epoch}"))
    result = _record(store, run_id, data, config, observer, resume=checkpoint)
    resumed_from.unlink(missing_ok=True)  # a checkpoint left in the shared folder; the run's own one is gone already
    return result


def _resume_unrecorded(store: Store, run_id: int, observer: Observer) -> RunResult:
    """What a rank other than 0 does in `resume_run`: the same run from the same checkpoint, unrecorded."""
    checkpoint = load_checkpoint(existing_checkpoint(store, run_id))
    config = RunConfig.from_dict(checkpoint.config)
    with store.session() as session:
        log = load_log(session, get_run(session, run_id).dataset_name)
    return run_automlp(build_sequences(log, config.min_user_interactions), config, observer, resume=checkpoint)


def _record(store: Store, run_id: int, data, config: RunConfig, observer: Observer,
            resume: Checkpoint | None) -> RunResult:
    """Runs (or resumes) a recorded run: curves into the store, checkpoints beside it, the bundle at the end."""
    recorder = RunRecorder(store.session, run_id, observer)
    checkpoint = checkpoint_file(store, run_id)
    with Heartbeat(store.session, run_id):  # so that other hosts on the store see it running
        try:
            result = run_automlp(data, config, recorder, checkpoint_path=checkpoint, resume=resume)
            recorder.close()
            path = save_bundle(result, data, bundle_folder(store) / f"run-{run_id}", overwrite=True, observer=observer)
            with store.session() as session:
                add_artifact(session, run_id, str(path), "bundle", bundle_digest(path))
                finish_run(session, run_id, result.chosen_length, _final_metrics(result),
                           sum(result.seconds.values()))
        except BaseException as error:
            _record_failure(store, run_id, recorder, error)
            raise
    checkpoint.unlink(missing_ok=True)  # the bundle now holds what matters
    return result


def _final_metrics(result: RunResult) -> dict:
    summary = result.summary()
    metrics = {"test": summary["test_metrics"], "valid": summary["valid_metrics"],
               "valid_protocol": summary["valid_protocol"], "best_epoch": summary["best_epoch"],
               "seconds": summary["seconds"], "by_length": summary["by_length"]}
    if "search" in summary:
        metrics["search"] = {key: summary["search"][key]
                             for key in ("candidates", "final_weights", "margin", "noise", "decisive", "reason",
                                         "steps")}
    if "length_choice" in summary:
        metrics["length_choice"] = summary["length_choice"]
    return metrics


def _record_failure(store: Store, run_id: int, recorder: RunRecorder, error: BaseException) -> None:
    """Ends the run's record as cancelled or failed, with the error. The store may be what failed (full,
    read-only, locked, any database error): the last curve points are then dropped, and a store that cannot
    take the whole traceback gets the one-line message, each try in a fresh session. If even that cannot be
    written, the record stays `running` until its process is gone and the next start marks it `interrupted`."""
    try:
        recorder.close()
    except (StoreError, sa.exc.SQLAlchemyError):
        pass  # the status matters more than the last few points
    status = "cancelled" if isinstance(error, (Cancelled, KeyboardInterrupt)) else "failed"
    texts = ("".join(traceback.format_exception(error)).strip(), f"{type(error).__name__}: {error}"[:1000])
    for text in texts:
        try:
            with store.session() as session:
                fail_run(session, run_id, status, text)
            return
        except (StoreError, sa.exc.SQLAlchemyError):
            continue
