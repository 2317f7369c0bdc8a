"""Runs on stored datasets are recorded in the store, with their curves and model bundle.

`store` is SQLite, then PostgreSQL; the tests that only vary what the CLI says train on SQLite alone
(`sqlite_store`), to keep the suite short."""

import shutil
import sqlite3
import time
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
import pytest

from engine.cli.main import main as cli_main
from engine.core.config import RunConfig
from engine.core.events import Cancelled, Observer, RecordingObserver, StepFinished
from engine.data.run_records import get_run, latest_artifact, list_runs, run_series
from engine.data.store import open_store
from engine.data.synthetic import planted_log
from engine.experiments.stored_run import bundle_folder, run_on_dataset
from engine.serving.bundle import load_bundle


def tiny() -> RunConfig:
    return RunConfig(candidate_lengths=[1, 2, 4], max_length=10, embedding_dim=16, sequence_hidden=16,
                     channel_hidden=16, batch_size=32, search_epochs=1, retrain_epochs=2, eval_negatives=20)


def test_a_stored_run_records_its_outcome_curves_and_bundle(store):
    run_id, result = run_on_dataset(store, "planted", tiny())
    with store.session() as session:
        run = get_run(session, run_id)
        assert run.status == "finished" and run.chosen_length == result.chosen_length
        assert run.metrics["test"]["full"]["NDCG@10"] == result.test_metrics["full"]["NDCG@10"]
        series = run_series(session, run_id)
        bundle = latest_artifact(session, run_id, "bundle")
    assert {"weight/k=1", "weight/k=2", "weight/k=4", "train_loss", "NDCG@10"} <= set(series["name"])
    assert Path(bundle.path).parent == bundle_folder(store)
    assert load_bundle(bundle.path).chosen_length == result.chosen_length


def test_a_cancelled_stored_run_is_marked_cancelled_and_leaves_no_bundle(store):
    observer = RecordingObserver(cancel_when=lambda e: isinstance(e, StepFinished))
    with pytest.raises(Cancelled):
        run_on_dataset(store, "planted", tiny(), observer)
    with store.session() as session:
        (run,) = list_runs(session)
        assert run.status == "cancelled" and "Cancelled" in run.error
    assert not bundle_folder(store).exists() or not any(bundle_folder(store).iterdir())


def test_cli_runs_on_a_stored_dataset(sqlite_store, capsys):
    code = cli_main(["run", "--dataset", "planted", "--db", sqlite_store.url, "--quiet", "--preset", "quick-demo",
                     "--set", "search_epochs=1", "--set", "retrain_epochs=1", "--set", "eval_negatives=20"])
    assert code == 0
    assert "recorded in the store" in capsys.readouterr().out


def test_cli_names_an_unknown_dataset(store, capsys):
    assert cli_main(["run", "--dataset", "nope", "--db", store.url, "--quiet"]) == 2
    assert "nope" in capsys.readouterr().err


def test_a_stored_run_records_the_lengths_that_auto_was_fitted_to(sqlite_store):
    observer = RecordingObserver()
    run_id, result = run_on_dataset(sqlite_store, "planted",
                                    tiny().replace(candidate_lengths="auto", max_length="auto"), observer)
    with sqlite_store.session() as session:
        config = get_run(session, run_id).config
    assert isinstance(config["max_length"], int) and isinstance(config["candidate_lengths"], list)
    assert (config["max_length"], config["candidate_lengths"]) == (result.config.max_length,
                                                                   result.config.candidate_lengths)
    assert any(f"T = {config['max_length']}" in getattr(e, "text", "") for e in observer.events)


def test_cli_says_what_auto_lengths_became_before_training(sqlite_store, capsys):
    code = cli_main(["run", "--dataset", "planted", "--db", sqlite_store.url, "--set", "search_epochs=1",
                     "--set", "retrain_epochs=1", "--set", "embedding_dim=8", "--set", "eval_negatives=20"])
    out = capsys.readouterr()
    assert code == 0
    assert "max_length auto -> T = " in out.out + out.err


# ---------------------------------------------------------------- two stores in one folder

TINY_RUN = ["--quiet", "--set", "candidate_lengths=[1, 2]", "--set", "max_length=8", "--set", "embedding_dim=8",
            "--set", "sequence_hidden=8", "--set", "channel_hidden=8", "--set", "search_epochs=1",
            "--set", "retrain_epochs=1", "--set", "eval_negatives=20"]


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory):
    """Stores a.sqlite and b.sqlite in one folder, each with the dataset "planted" and a finished run 1
    (seeds 1 and 2: the two bundles differ), all through the CLI."""
    folder = tmp_path_factory.mktemp("two-stores")
    log = planted_log(n_users=40, n_items=60, min_length=8, max_length=12)
    csv = folder / "planted.csv"
    pd.DataFrame({"user": log.users, "item": log.items, "timestamp": log.timestamps}).to_csv(csv, index=False)
    urls = {}
    for name, seed in (("a", 1), ("b", 2)):
        urls[name] = f"sqlite:///{folder / f'{name}.sqlite'}"
        assert cli_main(["import", str(csv), "--db", urls[name], "--min-user", "3", "--quiet"]) == 0
        assert cli_main(["run", "--dataset", "planted", "--db", urls[name], "--set", f"seed={seed}", *TINY_RUN]) == 0
    return folder, urls


def recorded_bundle(url: str) -> Path:
    store = open_store(url)
    with store.session() as session:
        path = Path(latest_artifact(session, 1, "bundle").path)
    store.close()
    return path


def test_two_stores_in_one_folder_keep_their_runs_bundles_apart(two_stores, tmp_path, capsys):
    _, urls = two_stores
    bundle_a, bundle_b = recorded_bundle(urls["a"]), recorded_bundle(urls["b"])
    assert bundle_a != bundle_b and bundle_a.exists() and bundle_b.exists()
    assert cli_main(["recommend", "--run", "1", "--db", urls["a"], "--user", "u1"]) == 0
    assert cli_main(["export", "1", "--db", urls["a"], "--out", str(tmp_path / "a-bundle"), "--quiet"]) == 0
    assert "tampered" not in capsys.readouterr().err
    assert load_bundle(tmp_path / "a-bundle").config.seed == 1
    assert load_bundle(bundle_b).config.seed == 2


def test_a_bundle_in_the_folder_stores_once_shared_still_opens_and_if_overwritten_is_not_called_tampered(
        two_stores, tmp_path, capsys):
    folder, urls = two_stores
    # a copy of store a whose run 1 saved its bundle where releases before schema 0003 put it, runs/run-1
    with sqlite3.connect(folder / "a.sqlite") as source, sqlite3.connect(tmp_path / "a.sqlite") as copy:
        source.backup(copy)
    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    legacy = tmp_path / "runs" / "run-1"
    shutil.copytree(recorded_bundle(urls["a"]), legacy)
    store = open_store(url)
    with store.session() as session:
        latest_artifact(session, 1, "bundle").path = str(legacy)
        session.commit()
    store.close()
    assert cli_main(["recommend", "--run", "1", "--db", url, "--user", "u1"]) == 0
    capsys.readouterr()

    shutil.rmtree(legacy)
    shutil.copytree(recorded_bundle(urls["b"]), legacy)  # another store's run 1, saved over it
    assert cli_main(["recommend", "--run", "1", "--db", url, "--user", "u1"]) == 2
    error = capsys.readouterr().err
    assert "tampered" not in error
    assert "another store's run 1 may have been saved over it" in error


def test_a_run_whose_curve_points_cannot_be_written_ends_failed_not_running(store, monkeypatch):
    from engine.data import run_records

    def locked(*_args):  # what a store locked by another writer beyond the busy timeout raises
        raise sa.exc.OperationalError("INSERT INTO run_series ...", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(run_records, "append_series", locked)
    with pytest.raises(sa.exc.OperationalError):
        run_on_dataset(store, "planted", tiny())
    with store.session() as session:
        (run,) = list_runs(session)
    assert run.status == "failed" and "database is locked" in run.error


def test_the_recorded_curves_do_not_depend_on_how_fast_the_run_went(store):
    class SlowObserver(Observer):  # as on a slower or busier machine
        def emit(self, event):
            if isinstance(event, StepFinished):
                time.sleep(0.25)

    config = tiny().replace(batch_size=8, retrain_epochs=1)
    fast, _ = run_on_dataset(store, "planted", config)
    slow, _ = run_on_dataset(store, "planted", config, SlowObserver())
    with store.session() as session:
        curves = [run_series(session, run_id) for run_id in (fast, slow)]
    assert (curves[0]["per"] == "step").sum() > 4
    pd.testing.assert_frame_equal(curves[0], curves[1])  # the same points, the same values (same machine)
