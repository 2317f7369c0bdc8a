"""The store: opening and versioning, dataset queries and deletion, run history and RunRecorder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import engine
from engine.core.events import (
    ArchitectureWeights,
    Cancelled,
    EpochFinished,
    Message,
    Observer,
    PhaseFinished,
    RecordingObserver,
    StepFinished,
)
from engine.data.importers import import_file
from engine.data.run_records import (
    RunRecorder,
    add_artifact,
    append_series,
    create_run,
    fail_run,
    finish_run,
    get_run,
    list_runs,
    mark_interrupted_runs,
    reopen_run,
    run_series,
)
from engine.data.store import (
    default_store_url,
    delete_dataset,
    list_datasets,
    load_log,
    open_store,
    sequence_lengths,
    user_history,
)
from engine.data.store_errors import StoreError

ENGINE_DIR = Path(engine.__file__).resolve().parent


@pytest.fixture
def store(store_url):
    opened = open_store(store_url)
    yield opened
    opened.close()


@pytest.fixture
def with_dataset(store, tmp_path):
    path = tmp_path / "toy.csv"
    path.write_text("user,item,timestamp\nu,a,3\nu,b,1\nv,a,2\nu,c,2\n")
    with store.session() as session:
        import_file(session, path, name="toy", min_user_interactions=0)
    return store


def test_default_url_is_a_sqlite_file_in_the_user_data_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("AUTOMLP_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_store_url() == f"sqlite:///{tmp_path / 'automlp-studio' / 'store.sqlite'}"


def test_automlp_db_environment_variable_overrides_the_default(monkeypatch):
    monkeypatch.setenv("AUTOMLP_DB", "sqlite:////somewhere/else.sqlite")
    assert default_store_url() == "sqlite:////somewhere/else.sqlite"


def test_new_store_has_the_current_schema_version(store):
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0003"


def sqlite_store_at_revision(url: str, revision: str, *statements: str) -> None:
    """A SQLite store migrated only up to `revision`, holding what `statements` insert: a store an older
    release left."""
    import sqlalchemy as sa
    from alembic import command

    from engine.data.migrations import alembic_config

    old = sa.create_engine(url)
    with old.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        for statement in statements:
            connection.exec_driver_sql(statement)
    old.dispose()


def test_a_store_of_the_first_schema_is_upgraded_on_open_with_its_series_kept(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    sqlite_store_at_revision(
        url, "0001",
        "INSERT INTO runs (id, dataset_name, config, status, device, started_at, version) "
        "VALUES (1, 'toy', '{}', 'finished', 'cpu', 0, '0')",
        "INSERT INTO run_series (run_id, phase, step, name, value) VALUES "
        "(1, 'retrain', 1, 'NDCG@10', 0.5), (1, 'retrain', 7, 'train_loss', 2.0)")
    store = open_store(url)
    with store.session() as session:
        frame = run_series(session, 1)
    store.close()
    assert frame[["name", "per"]].values.tolist() == [["NDCG@10", "epoch"], ["train_loss", "step"]]


def test_a_store_upgraded_to_schema_0003_gets_its_own_identity_and_counts_its_earlier_runs_as_legacy(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    sqlite_store_at_revision(
        url, "0002",
        "INSERT INTO runs (id, dataset_name, config, status, device, started_at, version) "
        "VALUES (7, 'toy', '{}', 'cancelled', 'cpu', 0, '0')")
    upgraded, fresh = open_store(url), open_store(f"sqlite:///{tmp_path / 'new.sqlite'}")
    assert upgraded.identity.legacy_runs_upto == 7 and fresh.identity.legacy_runs_upto == 0
    assert upgraded.identity.id != fresh.identity.id
    upgraded.close()
    fresh.close()


def test_sqlite_store_uses_wal_and_foreign_keys(sqlite_store_url):
    store = open_store(sqlite_store_url)
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    store.close()


def test_reopening_a_store_keeps_its_data(with_dataset):
    with_dataset.close()
    reopened = open_store(with_dataset.url)
    with reopened.session() as session:
        assert [d.name for d in list_datasets(session)] == ["toy"]
    reopened.close()


def test_a_file_that_is_not_sqlite_is_refused_clearly(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n")
    with pytest.raises(StoreError, match="notes.txt is not an SQLite database"):
        open_store(f"sqlite:///{path}")


def test_a_store_from_a_newer_release_is_refused(store):
    with store.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    store.close()
    with pytest.raises(StoreError, match="schema version '9999'.*written by a newer release"):
        open_store(store.url)


def test_migrations_match_the_models(store):
    # A model change without a migration would make a new store differ from the models.
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from engine.data.schema import Base

    with store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_sequence_lengths_and_user_history(with_dataset):
    with with_dataset.session() as session:
        assert sequence_lengths(session, "toy").tolist() == [3, 1]
        history = user_history(session, "toy", "u")
    assert history["item"].tolist() == ["b", "c", "a"]
    assert history["timestamp"].tolist() == [1, 2, 3]


def test_load_log_of_a_missing_dataset_names_the_stored_ones(with_dataset):
    with with_dataset.session() as session, pytest.raises(StoreError, match=r"no dataset called 'x'.*toy"):
        load_log(session, "x")


def test_delete_dataset_removes_its_rows_and_keeps_its_runs(with_dataset):
    with with_dataset.session() as session:
        run_id = create_run(session, "toy", {"seed": 0}, "cpu")
        delete_dataset(session, "toy")
        assert list_datasets(session) == []
        assert get_run(session, run_id).dataset_id is None
        assert get_run(session, run_id).dataset_name == "toy"
    with with_dataset.engine.connect() as connection:
        for table in ("users", "items", "interactions"):
            assert connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() == 0


# ---------------------------------------------------------------- run history


def test_a_run_is_created_running_and_finished_with_its_results(with_dataset):
    with with_dataset.session() as session:
        run_id = create_run(session, "toy", {"candidate_lengths": [5, 10]}, "cpu")
        running = get_run(session, run_id)
        assert (running.status, running.version, running.pid) == ("running", engine.__version__, os.getpid())
        finish_run(session, run_id, chosen_length=10, metrics={"NDCG@10": 0.25}, seconds=12.5)
        run = get_run(session, run_id)
    assert (run.status, run.chosen_length, run.metrics, run.seconds) == ("finished", 10, {"NDCG@10": 0.25}, 12.5)
    assert run.config == {"candidate_lengths": [5, 10]}
    assert run.finished_at >= run.started_at


def test_a_failed_run_keeps_its_status_and_error(store):
    with store.session() as session:
        run_id = create_run(session, "toy", {}, "cuda")
        fail_run(session, run_id, "cancelled", "cancelled by the user")
        run = get_run(session, run_id)
    assert (run.status, run.error) == ("cancelled", "cancelled by the user")


def test_fail_run_refuses_a_status_that_is_not_a_failure(store):
    with store.session() as session:
        run_id = create_run(session, "toy", {}, "cpu")
        with pytest.raises(ValueError, match="failed, cancelled or interrupted"):
            fail_run(session, run_id, "finished")


def test_series_points_come_back_in_order(store):
    with store.session() as session:
        run_id = create_run(session, "toy", {}, "cpu")
        append_series(session, run_id, [("search", 1, "train_loss", 2.0, "step"), ("search", 2, "train_loss", 1.5, "step")])
        frame = run_series(session, run_id)
    assert frame.to_dict("records") == [
        {"phase": "search", "step": 1, "name": "train_loss", "value": 2.0, "per": "step"},
        {"phase": "search", "step": 2, "name": "train_loss", "value": 1.5, "per": "step"}]


def test_list_runs_is_newest_first_and_filters_by_dataset(store):
    with store.session() as session:
        first = create_run(session, "a", {}, "cpu")
        second = create_run(session, "b", {}, "cpu")
        third = create_run(session, "a", {}, "cpu")
        assert [r.id for r in list_runs(session)] == [third, second, first]
        assert [r.id for r in list_runs(session, "a")] == [third, first]


def test_deleting_a_run_deletes_its_series_and_artifacts(store):
    with store.session() as session:
        run_id = create_run(session, "toy", {}, "cpu")
        append_series(session, run_id, [("retrain", 1, "loss", 1.0, "step")])
        add_artifact(session, run_id, "/tmp/bundle", "bundle", "0" * 64)
        session.delete(get_run(session, run_id))
        session.commit()
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM run_series").scalar() == 0
        assert connection.exec_driver_sql("SELECT count(*) FROM artifacts").scalar() == 0


def test_runs_of_a_vanished_process_are_marked_interrupted(store):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    with store.session() as session:
        orphan = create_run(session, "toy", {}, "cpu")
        alive = create_run(session, "toy", {}, "cpu")
        get_run(session, orphan).pid = int(gone)
        session.commit()
        assert mark_interrupted_runs(session) == 1
        assert get_run(session, orphan).status == "interrupted"
        assert get_run(session, alive).status == "running"


def test_of_two_processes_resuming_one_run_at_once_the_second_is_refused(store):
    with store.session() as session:
        run_id = create_run(session, "toy", {}, "cpu")
        fail_run(session, run_id, "interrupted")
    with store.session() as first, store.session() as second:
        read_before = get_run(second, run_id)  # kept: the second read it before the first reopened it
        second.commit()
        reopen_run(first, run_id)
        with pytest.raises(StoreError, match=f"run {run_id} was resumed by another process just now"):
            reopen_run(second, run_id)


# ---------------------------------------------------------------- RunRecorder


def test_recorder_forwards_every_event_to_the_inner_observer(store):
    inner = RecordingObserver()
    with store.session() as session:
        run_id = create_run(session, "toy", {}, "cpu")
    recorder = RunRecorder(store.session, run_id, inner)
    events = [Message("hello"), StepFinished("search", 1, 10, {"loss": 1.0}), PhaseFinished("search", 1.0)]
    for event in events:
        recorder.emit(event)
    assert inner.events == events


def test_recorder_passes_cancel_and_check_through(store):
    inner = Observer()
    recorder = RunRecorder(store.session, 1, inner)
    recorder.cancel()
    assert inner.cancel_requested
    with pytest.raises(Cancelled):
        recorder.check()


def test_recorder_stores_losses_metrics_and_architecture_weights(store):
    with store.session() as session:
        run_id = create_run(session, "toy", {}, "cpu")
    recorder = RunRecorder(store.session, run_id)
    recorder.emit(StepFinished("search", 1, 10, {"train_loss": 2.5}))
    recorder.emit(ArchitectureWeights(1, (5, 10), (0.1, -0.1), (0.55, 0.45)))
    recorder.emit(EpochFinished("retrain", 1, {"NDCG@10": 0.3}, "full"))
    recorder.close()
    with store.session() as session:
        frame = run_series(session, run_id)
    rows = {(r.phase, r.step, r.name): r.value for r in frame.itertuples()}
    assert rows == {("search", 1, "train_loss"): 2.5, ("search", 1, "weight/k=5"): 0.55,
                    ("search", 1, "weight/k=10"): 0.45, ("search", 1, "alpha/k=5"): 0.1,
                    ("search", 1, "alpha/k=10"): -0.1, ("retrain", 1, "NDCG@10"): 0.3}


def test_recorder_writes_in_batches_not_per_event(store):
    with store.session() as session:
        run_id = create_run(session, "toy", {}, "cpu")
    recorder = RunRecorder(store.session, run_id, batch_size=3, interval=3600)

    def stored() -> int:
        with store.session() as session:
            return len(run_series(session, run_id))

    recorder.emit(StepFinished("search", 1, 10, {"loss": 1.0}))
    recorder.emit(StepFinished("search", 2, 10, {"loss": 1.0}))
    assert stored() == 0
    recorder.emit(StepFinished("search", 3, 10, {"loss": 1.0}))
    assert stored() == 3
    recorder.emit(StepFinished("search", 4, 10, {"loss": 1.0}))
    recorder.emit(PhaseFinished("search", 1.0))
    assert stored() == 4


def test_recorder_stores_an_epochs_points_at_once_before_its_checkpoint_is_written(store):
    with store.session() as session:
        run_id = create_run(session, "toy", {}, "cpu")
    recorder = RunRecorder(store.session, run_id, batch_size=1000, interval=3600)
    recorder.emit(StepFinished("retrain", 1, 10, {"loss": 1.0}))
    recorder.emit(EpochFinished("retrain", 1, {"NDCG@10": 0.3}, "full"))  # a kill may follow the checkpoint
    with store.session() as session:
        assert len(run_series(session, run_id)) == 2
