"""A run on a stored dataset, recorded in the store: what the GUI's Start button and `automlp run
--dataset NAME` do.

create the run record -> record its curves while it trains -> save the model bundle next to the store
-> finish the record. A failure or a cancel marks the record `failed` or `cancelled` and leaves no bundle.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import platformdirs
import sqlalchemy as sa

from engine.bundle import bundle_digest, save_bundle
from engine.config import RunConfig
from engine.events import Cancelled, Observer
from engine.runner import RunResult, run_automlp
from engine.sequences import build_sequences
from engine.store import RunRecorder, Store, add_artifact, create_run, fail_run, finish_run, load_log
from engine.training import resolve_device


def bundle_folder(store: Store) -> Path:
    """Where a store keeps its runs' model bundles: beside a SQLite file, else in the user data folder."""
    url = sa.engine.make_url(store.url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).resolve().parent / "runs"
    return Path(platformdirs.user_data_dir("automlp-studio", appauthor=False)) / "runs"


def run_on_dataset(store: Store, dataset_name: str, config: RunConfig,
                   observer: Observer | None = None) -> tuple[int, RunResult]:
    """Runs AutoMLP on a stored dataset and records everything; returns (run id, result).

    Raises what the run raises (ConfigError, DataError, Cancelled, ...) after recording the outcome.
    """
    observer = observer or Observer()
    config.validate()
    device = resolve_device(config.device)
    with store.session() as session:
        log = load_log(session, dataset_name)
    data = build_sequences(log, config.min_user_interactions)
    with store.session() as session:
        run_id = create_run(session, dataset_name, config.to_dict(), str(device))
    recorder = RunRecorder(store.session, run_id, observer)
    try:
        result = run_automlp(data, config, recorder)
        recorder.close()
        path = save_bundle(result, data, bundle_folder(store) / f"run-{run_id}", overwrite=True, observer=observer)
    except BaseException as error:
        recorder.close()
        status = "cancelled" if isinstance(error, (Cancelled, KeyboardInterrupt)) else "failed"
        with store.session() as session:
            fail_run(session, run_id, status, "".join(traceback.format_exception(error)).strip())
        raise
    summary = result.summary()
    metrics = {"test": summary["test_metrics"], "valid": summary["valid_metrics"],
               "valid_protocol": summary["valid_protocol"], "best_epoch": summary["best_epoch"],
               "seconds": summary["seconds"]}
    if "search" in summary:
        metrics["search"] = {key: summary["search"][key]
                             for key in ("candidates", "final_weights", "margin", "noise", "decisive", "steps")}
    with store.session() as session:
        add_artifact(session, run_id, str(path), "bundle", bundle_digest(path))
        finish_run(session, run_id, result.chosen_length, metrics, sum(result.seconds.values()))
    return run_id, result
