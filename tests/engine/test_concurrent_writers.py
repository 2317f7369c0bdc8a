"""Several processes writing one store at once, on SQLite and on PostgreSQL: every write is kept, or refused
with a clear message; never a traceback, a lost write or a damaged store. The writers are real `automlp`
processes (and, for the GUI, this process making the engine calls the GUI makes)."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest
import sqlalchemy as sa

from engine.core.events import StepFinished
from engine.data.importers import import_file
from engine.data.run_records import RunRecorder, create_run, get_run, list_runs, mark_interrupted_runs, run_series
from engine.data.schema import Dataset
from engine.data.store import dataset_stats, delete_dataset, list_datasets, load_log, open_store
from engine.data.store_errors import StoreBusy
from tests.engine.cli_processes import TINY_RUN, automlp, finish, no_traceback, planted_csv, start, wait_until
from tests.engine.store_snapshot import store_snapshot

RETRAIN_EPOCHS = 8
LONG_RETRAIN_EPOCHS = 150  # a run that outlasts an import process started after its first points (40 did not, on an idle machine)


def run_command(retrain_epochs: int = RETRAIN_EPOCHS) -> tuple[str, ...]:
    return ("run", "--dataset", "planted", *TINY_RUN, "--set", f"retrain_epochs={retrain_epochs}",
            "--set", "patience=999", "--quiet")


RUN = run_command()


@pytest.fixture
def db(store_url, tmp_path) -> str:
    """A store (SQLite, then PostgreSQL) holding the dataset "planted"."""
    imported = automlp(store_url, "import", str(planted_csv(tmp_path / "planted.csv")), "--min-user", "3", "--quiet")
    assert imported.returncode == 0, imported.stderr
    return store_url


def recorded_points(db: str) -> int:
    store = open_store(db)
    with store.session() as session:
        count = session.scalar(sa.text("SELECT count(*) FROM run_series"))
    store.close()
    return count


def finished_with_every_epoch(db: str, run_id: int, retrain_epochs: int = RETRAIN_EPOCHS) -> bool:
    store = open_store(db)
    with store.session() as session:
        run, series = get_run(session, run_id), run_series(session, run_id)
    store.close()
    epochs = series[(series["phase"] == "retrain") & (series["per"] == "epoch") & (series["name"] == "NDCG@10")]
    return run.status == "finished" and epochs["step"].tolist() == list(range(1, retrain_epochs + 1))


def stored_log_equals_file(db: str, name: str, csv) -> bool:
    store = open_store(db)
    with store.session() as session:
        log = load_log(session, name)
    store.close()
    rows = pd.read_csv(csv, dtype=str)  # planted logs are written user by user, oldest first
    return log.users.tolist() == rows["user"].tolist() and log.items.tolist() == rows["item"].tolist()


def test_two_commands_opening_a_new_store_at_once_both_find_it_ready(store_url):
    commands = [start(store_url, "datasets") for _ in range(3)]
    results = [finish(process) for process in commands]
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert all("no datasets" in r.stdout for r in results)


def test_two_imports_at_the_same_moment_keep_every_interaction(db, tmp_path):
    files = [planted_csv(tmp_path / f"log{seed}.csv", n_users=500, seed=seed) for seed in (1, 2)]
    imports = [start(db, "import", str(csv), "--min-user", "3", "--quiet") for csv in files]
    results = [finish(process) for process in imports]
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert all(stored_log_equals_file(db, csv.stem, csv) for csv in files)


def test_two_imports_of_one_name_at_once_keep_one_and_refuse_the_other_clearly(db, tmp_path):
    files = [planted_csv(tmp_path / f"log{seed}.csv", n_users=500, seed=seed) for seed in (1, 2)]
    imports = [start(db, "import", str(csv), "--name", "same", "--min-user", "3", "--quiet") for csv in files]
    results = [finish(process) for process in imports]
    assert sorted(r.returncode for r in results) == [0, 2] and all(map(no_traceback, results))
    refused = next(r for r in results if r.returncode == 2)
    assert "a dataset called 'same' already exists" in refused.stderr
    kept = files[[r.returncode for r in results].index(0)]
    assert stored_log_equals_file(db, "same", kept)


def test_an_import_while_a_run_trains_and_records_keeps_both(db, tmp_path):
    run = start(db, *run_command(LONG_RETRAIN_EPOCHS))
    wait_until(lambda: recorded_points(db) > 0 or run.poll() is not None, what="the run's first points")
    csv = planted_csv(tmp_path / "more.csv", n_users=2000, seed=5)
    imported = automlp(db, "import", str(csv), "--min-user", "3", "--quiet")
    trained = finish(run)
    assert imported.returncode == 0 and trained.returncode == 0, imported.stderr + trained.stderr
    assert stored_log_equals_file(db, "more", csv) and finished_with_every_epoch(db, 1, LONG_RETRAIN_EPOCHS)
    store = open_store(db)
    with store.session() as session:
        run_record = get_run(session, 1)
        imported_at = session.scalar(sa.select(Dataset.created_at).where(Dataset.name == "more"))
    store.close()
    assert run_record.started_at < imported_at < run_record.finished_at  # they did overlap


def test_two_runs_at_once_both_finish_with_their_own_curves(db):
    runs = [start(db, *RUN) for _ in range(2)]
    results = [finish(process) for process in runs]
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert finished_with_every_epoch(db, 1) and finished_with_every_epoch(db, 2)


def test_deleting_a_dataset_while_a_run_on_it_trains_keeps_the_run(db):
    run = start(db, *RUN)
    wait_until(lambda: recorded_points(db) > 0 or run.poll() is not None, what="the run's first points")
    deleted = automlp(db, "delete", "planted", "--yes")
    trained = finish(run)
    assert deleted.returncode == 0 and trained.returncode == 0, deleted.stderr + trained.stderr
    store = open_store(db)
    with store.session() as session:
        assert list_datasets(session) == []
        assert get_run(session, 1).dataset_id is None and get_run(session, 1).dataset_name == "planted"
    store.close()
    assert finished_with_every_epoch(db, 1)


def test_the_gui_engine_calls_and_the_cli_share_one_store(db, tmp_path):
    """While the CLI trains, this process does what the GUI does: list, mark interrupted runs, read stats
    and curves, import a dataset and delete it."""
    run = start(db, *RUN)
    store = open_store(db)
    csv = planted_csv(tmp_path / "gui.csv", n_users=300, seed=7)
    rounds = 0
    while run.poll() is None or rounds < 3:
        with store.session() as session:
            mark_interrupted_runs(session)
            names = [d.name for d in list_datasets(session)]
            assert dataset_stats(session, "planted")["users"] == 60
            for record in list_runs(session):
                run_series(session, record.id)
        if "gui" in names:
            with store.session() as session:
                delete_dataset(session, "gui")
        else:
            import_file(store, csv, name="gui", min_user_interactions=3)
            assert stored_log_equals_file(db, "gui", csv)
        rounds += 1
    trained = finish(run)
    assert trained.returncode == 0, trained.stderr
    assert finished_with_every_epoch(db, 1)
    store.close()


# ---------------------------------------------------------------- SQLite's one writer at a time


@pytest.fixture
def locked_sqlite_store(sqlite_store_url, monkeypatch):
    """A SQLite store whose writers wait 1 s, not a minute, and a second connection that holds its write
    lock (as a long import does) until released: `(store, release)`."""
    monkeypatch.setattr("engine.data.store.BUSY_TIMEOUT_SECONDS", 1)
    store = open_store(sqlite_store_url)
    holder = sqlite3.connect(sa.engine.make_url(sqlite_store_url).database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    yield store, holder.rollback
    holder.close()
    store.close()


def test_a_run_recording_into_a_busy_sqlite_store_keeps_its_points_until_it_can_write(locked_sqlite_store):
    store, release = locked_sqlite_store
    with store.session() as session:
        release()
        run_id = create_run(session, "planted", {}, "cpu")
    holder = sqlite3.connect(sa.engine.make_url(store.url).database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    recorder = RunRecorder(store.session, run_id, batch_size=2)
    recorder.emit(StepFinished("search", 1, 10, {"loss": 1.0}))
    recorder.emit(StepFinished("search", 2, 10, {"loss": 0.5}))  # a flush, which waits 1 s and keeps them
    holder.rollback()
    recorder.close()
    with store.session() as session:
        assert run_series(session, run_id)["value"].tolist() == [1.0, 0.5]
    holder.close()


def test_a_write_to_a_sqlite_store_locked_too_long_is_refused_clearly_and_changes_nothing(locked_sqlite_store,
                                                                                           tmp_path):
    store, release = locked_sqlite_store
    csv = tmp_path / "toy.csv"
    csv.write_text("user,item,timestamp\nu,a,1\nu,b,2\n")
    before = store_snapshot(store)
    with pytest.raises(StoreBusy, match="is busy: another process .* kept it locked longer than a write waits"):
        import_file(store, csv, name="toy", min_user_interactions=0)
    release()
    assert store_snapshot(store) == before
