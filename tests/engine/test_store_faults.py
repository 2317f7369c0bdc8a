"""Hostile conditions for the store, a recorded run and a bundle save: a read-only store, a full disk, a
process killed while it exports. Each gives a plain message naming the store (or bundle) and what is
wrong, and leaves the store as it was.

A full store is simulated with SQLite's `max_page_count` (the database cannot grow past it: the same
SQLITE_FULL a full disk gives); a full disk under a bundle by a write that raises ENOSPC. Read-only:
`open_store(read_only=True)` works for every user; the permission cases need a user whom chmod stops
(not root), and also run with `os.access` answering "not writable", so that root runs them too.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy import event

import engine.data.store as store_module
import engine.experiments.stored_run as stored_run_module
from engine.core.config import RunConfig
from engine.core.events import StepFinished
from engine.data import run_records, schema
from engine.data.importers import import_file
from engine.data.run_records import (
    RunRecorder,
    append_series,
    create_run,
    get_run,
    list_runs,
)
from engine.data.store import delete_dataset, list_datasets, load_log, open_store
from engine.data.store_errors import StoreError, StoreFull, StoreReadOnly, store_errors
from engine.data.synthetic import planted_log
from engine.experiments.stored_run import bundle_folder, can_resume, run_on_dataset
from engine.serving.bundle import BundleError, load_bundle, save_bundle
from tests.engine.store_snapshot import store_snapshot

REPOSITORY = Path(__file__).resolve().parents[2]


def _permissions_bind() -> bool:
    """Whether chmod stops this process from writing (not for root with its usual capabilities)."""
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe"
        probe.write_text("")
        probe.chmod(0o444)
        try:
            probe.open("a").close()
        except PermissionError:
            return True
        return False


PERMISSIONS_BIND = _permissions_bind()
PERMISSIONS_REASON = ("file permissions do not stop this process (root): the os.access variant covers the same "
                      "path; `setpriv --bounding-set -dac_override,-dac_read_search --inh-caps "
                      "-dac_override,-dac_read_search` runs these as root")


@pytest.fixture
def store(tmp_path):
    """A store with the dataset "toy" (4 interactions)."""
    opened = open_store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    toy = tmp_path / "toy.csv"
    toy.write_text("user,item,timestamp\nu,a,3\nu,b,1\nv,a,2\nu,c,2\n")
    with opened.session() as session:
        import_file(session, toy, name="toy", min_user_interactions=0)
    yield opened
    opened.close()


@pytest.fixture
def planted_csv(tmp_path) -> Path:
    log = planted_log(n_users=60, n_items=150, min_length=8, max_length=14)
    path = tmp_path / "planted.csv"
    pd.DataFrame({"user": log.users, "item": log.items, "timestamp": log.timestamps}).to_csv(path, index=False)
    return path


def tiny() -> RunConfig:
    return RunConfig(candidate_lengths=[1, 2, 4], max_length=10, embedding_dim=16, sequence_hidden=16,
                     channel_hidden=16, batch_size=32, search_epochs=1, retrain_epochs=1, eval_negatives=20,
                     device="cpu")


def fill_up(store, spare_pages: int = 0):
    """From now on the store cannot grow by more than `spare_pages` pages: SQLITE_FULL, as on a full disk.
    Returns a function that frees the space again."""
    with store.engine.connect() as connection:
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar()

    def limit(connection, _record):
        connection.execute(f"PRAGMA max_page_count={pages + spare_pages}")

    def free() -> None:
        event.remove(store.engine, "connect", limit)
        store.engine.dispose()

    store.engine.dispose()  # new connections get the limit (it is per connection)
    event.listen(store.engine, "connect", limit)
    return free


def fill_to_the_brim(store) -> None:
    """Fills the store's run series to the last byte: the next point needs a page it cannot have."""
    with store.session() as session:
        filler = create_run(session, "filler", {}, "cpu")
    fill_up(store)
    for batch in (100, 10, 1):
        while True:
            try:
                with store.session() as session:
                    append_series(session, filler, [("search", 0, "filler", 0.0, "step")] * batch)
            except StoreFull:
                break


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- read-only


def assert_browses_but_refuses_writes(store, path: Path, csv: Path) -> None:
    assert store.read_only
    with store.session() as session:
        assert [d.name for d in list_datasets(session)] == ["toy"]
        assert len(load_log(session, "toy").items) == 4
    attempts = {
        "create a run": lambda s: create_run(s, "toy", {}, "cpu"),
        "delete a dataset": lambda s: delete_dataset(s, "toy"),
        "import": lambda s: import_file(s, csv, name="more", min_user_interactions=0),
    }
    for what, attempt in attempts.items():
        with pytest.raises(StoreReadOnly) as refused, store.session() as session, store_errors(store):
            attempt(session)
        message = str(refused.value)
        assert str(path) in message and "read-only" in message, what


def test_a_store_opened_read_only_can_be_browsed_and_refuses_every_write_unchanged(store, tmp_path):
    path = tmp_path / "store.sqlite"
    store.close()
    before = digest(path)
    reopened = open_store(store.url, read_only=True)
    assert_browses_but_refuses_writes(reopened, path, tmp_path / "toy.csv")
    reopened.close()
    assert digest(path) == before


def test_a_mode_ro_url_opens_the_store_read_only_with_its_bundles_beside_it(store, tmp_path):
    store.close()
    reopened = open_store(f"sqlite:///file:{tmp_path / 'store.sqlite'}?mode=ro&uri=true")
    assert reopened.read_only and bundle_folder(reopened) == tmp_path.resolve() / "runs" / reopened.identity.id
    reopened.close()


@pytest.mark.parametrize("protect", ["file", "folder"])
def test_a_write_protected_store_opens_read_only_as_root_too(store, tmp_path, monkeypatch, protect):
    # os.access answers for the file or folder as it would for a user whom chmod stops
    path = tmp_path / "store.sqlite"
    store.close()
    before = digest(path)
    protected = path if protect == "file" else tmp_path
    real_access = os.access
    monkeypatch.setattr(store_module.os, "access",
                        lambda p, mode, **k: False if Path(p) == protected and mode == os.W_OK
                        else real_access(p, mode, **k))
    reopened = open_store(store.url)
    assert_browses_but_refuses_writes(reopened, path, tmp_path / "toy.csv")
    reopened.close()
    assert digest(path) == before


@pytest.mark.skipif(not PERMISSIONS_BIND, reason=PERMISSIONS_REASON)
@pytest.mark.parametrize("protect", ["file", "folder"])
def test_a_chmod_protected_store_opens_read_only(store, tmp_path, protect):
    path = tmp_path / "store.sqlite"
    store.close()
    folder = tmp_path / "protected"
    folder.mkdir()
    moved = folder / "store.sqlite"
    path.rename(moved)
    (tmp_path / "toy.csv").rename(folder / "toy.csv")
    before = digest(moved)
    os.chmod(moved if protect == "file" else folder, 0o444 if protect == "file" else 0o555)
    try:
        reopened = open_store(f"sqlite:///{moved}")
        assert_browses_but_refuses_writes(reopened, moved, folder / "toy.csv")
        reopened.close()
    finally:
        os.chmod(moved if protect == "file" else folder, 0o644 if protect == "file" else 0o755)
    assert digest(moved) == before


@pytest.mark.skipif(not PERMISSIONS_BIND, reason=PERMISSIONS_REASON)
def test_a_store_left_with_a_wal_file_in_a_protected_folder_is_refused_plainly(store, tmp_path):
    with store.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE datasets SET source = 'changed'")
    # the store still open: the change is in the -wal file, as a writer that crashed leaves it
    folder = tmp_path / "protected"
    folder.mkdir()
    for name in ("store.sqlite", "store.sqlite-wal"):  # no -shm: it is rebuilt from the -wal
        (folder / name).write_bytes((tmp_path / name).read_bytes())
    os.chmod(folder, 0o555)
    try:
        with pytest.raises(StoreError, match=r"protected/store.sqlite is read-only and cannot be read here: "
                                             r"SQLite needs to create store.sqlite-shm"):
            open_store(f"sqlite:///{folder / 'store.sqlite'}")
    finally:
        os.chmod(folder, 0o755)


def test_a_read_only_store_of_an_older_schema_is_refused_plainly(tmp_path):
    from alembic import command

    from engine.data.migrations import alembic_config

    path = tmp_path / "old.sqlite"
    old = sa.create_engine(f"sqlite:///{path}")
    with old.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    old.dispose()
    with pytest.raises(StoreError, match=r"old.sqlite is read-only and has schema version '0001'.*writable"):
        open_store(f"sqlite:///{path}", read_only=True)


# ---------------------------------------------------------------- full


def test_an_import_into_a_full_store_says_so_and_leaves_the_store_as_it_was(store, tmp_path, planted_csv):
    before = store_snapshot(store)
    fill_up(store, spare_pages=2)
    with pytest.raises(StoreFull) as full, store.session() as session:  # import_file says it itself
        import_file(session, planted_csv, name="planted", min_user_interactions=3)
    assert str(tmp_path / "store.sqlite") in str(full.value) and "is full" in str(full.value)
    assert store_snapshot(store) == before  # no half dataset: every table as it was


def test_a_run_cannot_be_created_in_a_full_store(store, tmp_path):
    before = store_snapshot(store)
    fill_up(store)
    with pytest.raises(StoreFull, match="store.sqlite is full"), store.session() as session:
        create_run(session, "toy", {"notes": "x" * 20_000}, "cpu")  # a record bigger than any free space
    assert store_snapshot(store) == before


def test_the_recorder_says_the_store_is_full_when_its_points_do_not_fit(store):
    with store.session() as session:
        run_id = create_run(session, "toy", {}, "cpu")
    fill_up(store)
    recorder = RunRecorder(store.session, run_id, batch_size=10**9)
    for step in range(5000):
        recorder.emit(StepFinished("search", step, 5000, {"train_loss": 1.0}))
    with pytest.raises(StoreFull, match="is full"):
        recorder.close()
    with store.session() as session:
        assert len(session.scalars(sa.select(schema.RunSeries)).all()) == 0


@pytest.fixture
def planted_store(store, planted_csv):
    with store.session() as session:
        import_file(session, planted_csv, name="planted", min_user_interactions=3)
    return store


def test_a_run_that_fills_the_store_ends_failed_with_the_message(planted_store, monkeypatch):
    def create_then_fill(session, *args, **kwargs):
        run_id = run_records.create_run(session, *args, **kwargs)
        fill_to_the_brim(planted_store)  # the run's record exists; its curves find no room
        return run_id

    monkeypatch.setattr(stored_run_module, "create_run", create_then_fill)
    with pytest.raises(StoreFull, match="store.sqlite is full"):
        run_on_dataset(planted_store, "planted", tiny())
    with planted_store.session() as session:
        run = get_run(session, 1)
        assert run.status == "failed" and "is full" in run.error
        assert run_records.run_series(session, 1).empty


def test_a_run_that_cannot_record_its_end_ends_failed_with_the_message(planted_store, monkeypatch):
    def full(*args, **kwargs):  # the last write of a run, on a store that filled up while it trained
        raise StoreFull("the store store.sqlite is full: the disk it is on has no room left")

    monkeypatch.setattr(stored_run_module, "finish_run", full)
    with pytest.raises(StoreFull):
        run_on_dataset(planted_store, "planted", tiny())
    with planted_store.session() as session:
        (run,) = list_runs(session)
        assert run.status == "failed" and "is full" in run.error
    assert can_resume(planted_store, run.id)  # its last checkpoint stays: resume finishes it


def refuse_writes_under(monkeypatch, folder: Path) -> None:
    """Every Path.write_bytes/write_text below `folder` fails as on a full disk."""
    for name in ("write_bytes", "write_text"):
        real = getattr(pathlib.Path, name)

        def failing(self, *args, _real=real, **kwargs):
            if Path(folder) in self.parents:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, name, failing)


def test_a_bundle_save_on_a_full_disk_says_so_and_keeps_the_bundle_that_was_there(tmp_path, monkeypatch):
    from tests.engine.tiny_run import tiny_run

    result, data = tiny_run()
    target = tmp_path / "exports" / "bundle"
    save_bundle(result, data, target)
    before = {p.name: digest(p) for p in target.iterdir()}
    refuse_writes_under(monkeypatch, tmp_path / "exports")
    for destination, overwrite in ((target, True), (tmp_path / "exports" / "new", False)):
        with pytest.raises(BundleError, match=r"the disk is full: the bundle .*exports/(bundle|new) could not"):
            save_bundle(result, data, destination, overwrite=overwrite)
    monkeypatch.undo()
    assert {p.name: digest(p) for p in target.iterdir()} == before and load_bundle(target)
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["bundle"]  # no parts left


def test_a_run_whose_bundle_finds_the_disk_full_ends_failed_and_resumable(planted_store, monkeypatch):
    before = store_snapshot(planted_store)
    real_mkdtemp = tempfile.mkdtemp

    def full_parts(*args, dir=None, **kwargs):  # the bundle's temporary folder is on a full disk
        made = real_mkdtemp(*args, dir=dir, **kwargs)
        if dir is not None and Path(dir) == bundle_folder(planted_store):
            refuse_writes_under(monkeypatch, Path(made))
        return made

    monkeypatch.setattr("engine.serving.bundle.tempfile.mkdtemp", full_parts)
    with pytest.raises(BundleError, match="the disk is full"):
        run_on_dataset(planted_store, "planted", tiny())
    after = store_snapshot(planted_store)
    assert after["statuses"] == ["failed"] and after["names"] == before["names"]
    assert after["interactions"] == before["interactions"] and after["artifacts"] == 0
    with planted_store.session() as session:
        assert "the disk is full" in get_run(session, 1).error
    assert not (bundle_folder(planted_store) / "run-1").exists() and can_resume(planted_store, 1)


# ---------------------------------------------------------------- killed while exporting


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks its savers (POSIX)")
def test_a_process_killed_during_a_bundle_export_leaves_no_partial_bundle_and_an_intact_store(tmp_path):
    # A child process forks savers that export a bundle again and again (folder and .zip, overwriting,
    # recording each in the store) and SIGKILLs each at a random moment; after each kill it checks the
    # target and the store. See tests/engine/kill_export.py; RELIABILITY.md has the counts of a long run.
    completed = subprocess.run([sys.executable, "-m", "tests.engine.kill_export", str(tmp_path), "24"],
                               cwd=REPOSITORY, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stderr[-3000:]
    counts = json.loads(completed.stdout.strip().splitlines()[-1])
    assert counts["kills"] == 24 and counts["partial"] == 0 and counts["store_damaged"] == 0
    assert counts["complete"] + counts["absent"] == 24 and counts["complete"] > 0
    assert counts["parts_left_after_next_save"] == 0
