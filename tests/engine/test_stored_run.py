"""Runs on stored datasets are recorded in the store, with their curves and model bundle.

`store` is SQLite, then PostgreSQL; the tests that only vary what the CLI says train on SQLite alone
(`sqlite_store`), to keep the suite short."""

from pathlib import Path

import pytest

from engine.cli.main import main as cli_main
from engine.core.config import RunConfig
from engine.core.events import Cancelled, RecordingObserver, StepFinished
from engine.data.run_records import get_run, latest_artifact, list_runs, run_series
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
