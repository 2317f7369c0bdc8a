"""The store: datasets, interactions and run history in one SQLAlchemy database (SQLite by default).

Store functions take a `Session`; the caller owns it (one per user action in a GUI, never shared across
threads). `open_store(url)` creates the engine, runs the schema migrations and returns a `Store`.

Interactions are written in bulk by `engine.importers` in the order of their sequences: a dataset's
interactions have the consecutive ids `first_interaction_id + position`, where `position` is the 0-based
index after sorting by (user, time, file order). So the id order alone gives every user's chronological
sequence with ties broken stably, each user's interactions are one contiguous range
(`User.first_position`, `User.n_interactions`), and reading or deleting a dataset walks the primary key:
no secondary index on this table, which keeps the bulk insert close to SQLite's own `.import` speed.
"""

from __future__ import annotations

import errno
import functools
import itertools
import json
import os
import sqlite3
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import platformdirs
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import engine
from engine.events import (ArchitectureWeights, EpochFinished, Event, Observer, PhaseFinished,
                           StepFinished)
from engine.migrations import upgrade_to_head
from engine.sequences import InteractionLog

RUN_STATUSES = ("running", "finished", "failed", "cancelled", "interrupted")
PHASE_ORDER = ("search", "retrain", "evaluate", "export")


class StoreError(Exception):
    """The store cannot be opened or used as asked; the message says why and what to do."""


class StoreReadOnly(StoreError):
    """A write to a store that can only be read (file or folder write-protected, or opened read-only)."""


class StoreFull(StoreError):
    """A write that found no room: the disk is full, or the store reached its size limit. Nothing of it
    was kept (SQLite rolls the statement or transaction back)."""


class Base(DeclarativeBase):
    pass


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    source: Mapped[str] = mapped_column(sa.Text, default="")  # the imported file(s), for display
    created_at: Mapped[float]  # unix seconds
    n_users: Mapped[int]
    n_items: Mapped[int]
    n_interactions: Mapped[int]
    has_timestamps: Mapped[bool]
    has_ratings: Mapped[bool]
    first_interaction_id: Mapped[int]  # interactions are ids [first, first + n_interactions)
    import_report: Mapped[dict] = mapped_column(sa.JSON, default=dict)  # format, filters, drops


class User(Base):
    __tablename__ = "users"
    __table_args__ = (sa.UniqueConstraint("dataset_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(sa.ForeignKey("datasets.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(sa.String(200))
    first_position: Mapped[int]  # this user's interactions are positions [first, first + n)
    n_interactions: Mapped[int]


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (sa.UniqueConstraint("dataset_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(sa.ForeignKey("datasets.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(sa.String(200))
    title: Mapped[str | None] = mapped_column(sa.Text)
    attributes: Mapped[dict | None] = mapped_column(sa.JSON)  # {feature name: [values]}, e.g. genre
    n_interactions: Mapped[int]


class Interaction(Base):
    """One interaction; `id - Dataset.first_interaction_id` is its position in the dataset's sequences.

    `user_id` and `item_id` carry no foreign-key constraint on purpose: a per-row check doubles the bulk
    insert time, and only the importer writes this table (the ids are its own)."""

    __tablename__ = "interactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(sa.ForeignKey("datasets.id", ondelete="CASCADE"))
    user_id: Mapped[int]
    item_id: Mapped[int]
    timestamp: Mapped[int | None] = mapped_column(sa.BigInteger)  # unix seconds, None: file order
    rating: Mapped[float | None]


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (sa.Index("ix_runs_started_at", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # A run outlives its dataset: the name stays for display, the link is cleared.
    dataset_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("datasets.id", ondelete="SET NULL"), index=True)
    dataset_name: Mapped[str] = mapped_column(sa.String(200))
    config: Mapped[dict] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(20), index=True)
    device: Mapped[str] = mapped_column(sa.String(50))
    chosen_length: Mapped[int | None]
    metrics: Mapped[dict | None] = mapped_column(sa.JSON)
    started_at: Mapped[float]  # unix seconds
    finished_at: Mapped[float | None]
    seconds: Mapped[float | None]
    version: Mapped[str] = mapped_column(sa.String(50))  # engine.__version__ that made the run
    error: Mapped[str | None] = mapped_column(sa.Text)
    pid: Mapped[int | None]


class RunSeries(Base):
    __tablename__ = "run_series"
    __table_args__ = (sa.Index("ix_run_series_run_name_step", "run_id", "name", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"))
    phase: Mapped[str] = mapped_column(sa.String(20))
    step: Mapped[int]
    name: Mapped[str] = mapped_column(sa.String(100))
    value: Mapped[float]
    per: Mapped[str] = mapped_column(sa.String(10), server_default="step")  # "step" or "epoch": what `step` counts


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.String(50))  # e.g. "bundle", "recommendations", "plot"
    sha256: Mapped[str] = mapped_column(sa.String(64))


# ---------------------------------------------------------------- opening


@dataclass
class Store:
    """An open store: the engine and a session factory (`with store.session() as s: ...`).

    `read_only`: the store can be browsed but not changed (a write-protected file or folder, or opened
    with `read_only=True`); every write raises StoreReadOnly."""

    engine: Engine
    session: sessionmaker[Session]
    url: str
    read_only: bool = False

    def close(self) -> None:
        self.engine.dispose()


def default_store_url() -> str:
    """`AUTOMLP_DB` if set, else a SQLite file `store.sqlite` in the user's data directory."""
    if os.environ.get("AUTOMLP_DB"):
        return os.environ["AUTOMLP_DB"]
    folder = Path(platformdirs.user_data_dir("automlp-studio", appauthor=False))
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'store.sqlite'}"


def sqlite_path(url: str | sa.engine.URL) -> Path | None:
    """The file of a SQLite store URL (plain, or a `file:` URI with `uri=true`); None for an in-memory
    database or another backend."""
    sa_url = sa.engine.make_url(url)
    database = sa_url.database
    if sa_url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if sa_url.query.get("uri") in ("true", "1") and database.startswith("file:"):
        if sa_url.query.get("mode") == "memory":
            return None
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(database).path))
    return Path(database)


def _sqlite_pragmas(dbapi_connection, _record, read_only: bool = False) -> None:
    # WAL lets the GUI read while a run or an import writes. NORMAL sync in WAL mode keeps the file
    # consistent through a crash (a power cut may lose the last commits, never corrupt the store).
    # Foreign keys make deletes cascade. A read-only connection keeps the file's journal mode (setting
    # one is a write) and refuses writes itself as well (query_only).
    cursor = dbapi_connection.cursor()
    if read_only:
        cursor.execute("PRAGMA query_only=ON")
    else:
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB: bulk inserts stay in memory
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def open_store(url: str | None = None, read_only: bool = False) -> Store:
    """Opens (creating if needed) the store at a SQLAlchemy `url` (default: `default_store_url()`) and
    migrates its schema to the current version.

    A SQLite file opens read-only (`Store.read_only`, for browsing) when asked (`read_only=True`, or a
    `file:` URL with `mode=ro&uri=true`) or when the file or its folder is write-protected; SQLite's WAL
    mode needs to create `-wal` and `-shm` files beside the store. Raises StoreError for a file that is
    not a database, a store written by a newer release, or a read-only store of an older schema."""
    url = url or default_store_url()
    sa_url = sa.engine.make_url(url)
    is_sqlite = sa_url.get_backend_name() == "sqlite"
    path = sqlite_path(sa_url)
    connect_url: str | sa.engine.URL = url
    if path is not None:
        read_only = read_only or sa_url.query.get("mode") == "ro" or _write_protected(path)
        _check_sqlite_file(path, read_only)
        if read_only:
            connect_url = _read_only_url(path)
    elif read_only:
        raise StoreError(f"{store_label(sa_url)}: only a SQLite file can be opened read-only")
    db = sa.create_engine(connect_url)
    if is_sqlite:
        event.listen(db, "connect", functools.partial(_sqlite_pragmas, read_only=read_only))
    name = store_label(sa_url)
    event.listen(db, "handle_error", lambda context: plain_store_error(context.original_exception, name))
    try:
        upgrade_to_head(db, read_only=read_only)
    except (StoreReadOnly, sa.exc.DatabaseError) as error:
        db.dispose()
        if read_only and path is not None and Path(f"{path}-wal").exists():
            # reading a WAL store needs its -shm file, which SQLite could not create here
            raise StoreError(f"the store {name} is read-only and cannot be read here: SQLite needs to create "
                             f"{path.name}-shm beside it to read the changes its -wal file holds; make its "
                             "folder writable, or copy the store with its -wal file to a writable folder") from error
        if isinstance(error, StoreError):
            raise
        raise StoreError(f"{url} cannot be opened as an AutoMLP store: {error.orig}") from error
    except StoreError:
        db.dispose()
        raise
    return Store(engine=db, session=sessionmaker(db, expire_on_commit=False), url=url, read_only=read_only)


def store_label(url: str | sa.engine.URL) -> str:
    """How messages name a store: its file, or its URL without the password."""
    sa_url = sa.engine.make_url(url)
    path = sqlite_path(sa_url)
    return str(path) if path is not None else sa_url.render_as_string(hide_password=True)


def _write_protected(path: Path) -> bool:
    """Whether this process cannot write the store file, or create the -wal and -shm files beside it.
    (Always False for root, whom permissions do not stop.)"""
    folder = path.parent
    return (path.exists() and not os.access(path, os.W_OK)) or (folder.exists() and not os.access(folder, os.W_OK))


def _read_only_url(path: Path) -> sa.engine.URL:
    query = {"mode": "ro", "uri": "true"}
    # In a folder it cannot write, SQLite cannot create the -shm file a WAL store is read through. With no
    # -wal file left there (the last writer closed cleanly), the file alone is the whole store and may be
    # read as immutable.
    folder = path.parent
    if not os.access(folder, os.W_OK) and not Path(f"{path}-wal").exists():
        query["immutable"] = "1"
    return sa.engine.URL.create("sqlite", database="file:" + urllib.parse.quote(str(path.resolve())),
                                query=query)


def _check_sqlite_file(path: Path, read_only: bool = False) -> None:
    if not path.exists() or path.stat().st_size == 0:
        if read_only:
            raise StoreError(f"{path} is read-only and holds no store yet (it is empty or missing); "
                             "choose an existing store, or a writable file to create one")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create the store {path}: {error.strerror}") from error
        return
    try:
        with open(path, "rb") as handle:
            header = handle.read(16)
    except OSError as error:
        raise StoreError(f"{path} cannot be read: {error.strerror}") from error
    if header != b"SQLite format 3\x00":
        raise StoreError(f"{path} is not an SQLite database (it may be another kind of file); "
                         "choose another store file with --db or AUTOMLP_DB")


# ---------------------------------------------------------------- write failures


_READ_ONLY_TEXTS = ("readonly database", "read-only", "query_only")
_FULL_TEXTS = ("database or disk is full", "no space left on device", "disk quota exceeded")


def plain_store_error(error: BaseException, store: str) -> StoreError | None:
    """The StoreReadOnly or StoreFull, with a plain message naming `store`, that a database error from a
    write stands for; None for any other error. `error` is a DBAPI error (sqlite3.OperationalError) or
    SQLAlchemy's wrapper of one."""
    original = getattr(error, "orig", None) or error
    if isinstance(original, OSError):
        if original.errno not in (errno.ENOSPC, errno.EDQUOT):
            return None
        text = "no space left on device"
    else:
        text = str(original).lower()
    if any(part in text for part in _READ_ONLY_TEXTS):
        return StoreReadOnly(f"the store {store} is read-only (write-protected, or opened read-only): it can be "
                             "browsed, but importing, training and deleting need to write it; make the file and "
                             "its folder writable, or copy the store to a writable folder, and open it again")
    if any(part in text for part in _FULL_TEXTS):
        return StoreFull(f"the store {store} is full: the disk it is on (or the store's size limit) has no room "
                         "left, so nothing of this change was written; free some disk space and try again")
    return None


@contextmanager
def store_errors(store: "Store | Engine | str | sa.engine.URL"):
    """Turns a read-only or full-disk error raised inside into StoreReadOnly or StoreFull naming the store.

    The store's own engine does this for every statement it runs; this is for code that writes through
    the raw DBAPI cursor (the importer's bulk insert), whose errors SQLAlchemy never sees."""
    try:
        yield
    except (sqlite3.Error, sa.exc.DBAPIError, OSError) as error:
        url = store if isinstance(store, (str, sa.engine.URL)) else store.url
        plain = plain_store_error(error, store_label(url))
        if plain is None:
            raise
        raise plain from error


# ---------------------------------------------------------------- datasets


def get_dataset(session: Session, name: str) -> Dataset:
    """The dataset called `name`; StoreError naming the stored datasets if there is none."""
    dataset = session.scalar(sa.select(Dataset).where(Dataset.name == name))
    if dataset is None:
        names = ", ".join(d.name for d in list_datasets(session)) or "none"
        raise StoreError(f"no dataset called {name!r} in the store (stored: {names})")
    return dataset


def list_datasets(session: Session) -> list[Dataset]:
    """All datasets, by name."""
    return list(session.scalars(sa.select(Dataset).order_by(Dataset.name)))


def delete_dataset(session: Session, name: str) -> None:
    """Deletes a dataset with its users, items and interactions, and commits. Runs keep their record."""
    dataset = get_dataset(session, name)
    session.execute(sa.delete(Interaction).where(_interaction_ids(dataset)))
    session.execute(sa.delete(User).where(User.dataset_id == dataset.id))
    session.execute(sa.delete(Item).where(Item.dataset_id == dataset.id))
    session.execute(sa.update(Run).where(Run.dataset_id == dataset.id).values(dataset_id=None))
    session.delete(dataset)
    session.commit()


def load_log(session: Session, name: str) -> InteractionLog:
    """The dataset `name` as an InteractionLog ordered by user, then time, ties in file order.

    users, items: str arrays of external ids; timestamps: int64 unix seconds, or None when the dataset
    had none; item_titles {item id: title}; item_features {feature: {item id: [values]}}.
    """
    dataset = get_dataset(session, name)
    # Users come from their position ranges (contiguous by construction), so only items and times are
    # read per interaction; through the raw sqlite3 cursor when possible, skipping SQLAlchemy rows.
    raw = session.connection().connection.driver_connection
    columns = "item_id, timestamp" if dataset.has_timestamps else "item_id"
    query = f"SELECT {columns} FROM interactions WHERE id >= ? AND id < ? ORDER BY id"
    first, end = dataset.first_interaction_id, dataset.first_interaction_id + dataset.n_interactions
    if isinstance(raw, sqlite3.Connection):
        rows = raw.execute(query, (first, end)).fetchall()
    else:
        rows = session.connection().exec_driver_sql(query.replace("?", "%s"), (first, end)).all()
    width = 2 if dataset.has_timestamps else 1
    flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=len(rows) * width)
    flat = flat.reshape(len(rows), width)
    user_rows = session.execute(sa.select(User.external_id, User.n_interactions).where(
        User.dataset_id == dataset.id).order_by(User.first_position)).all()
    users = np.repeat(np.array([r[0] for r in user_rows], dtype=str),
                      np.array([r[1] for r in user_rows], dtype=np.int64))
    item_rows = session.execute(
        sa.select(Item.id, Item.external_id, Item.title, Item.attributes)
        .where(Item.dataset_id == dataset.id)).all()
    item_ids = np.array([r[0] for r in item_rows], dtype=np.int64)
    item_names = np.array([r[1] for r in item_rows], dtype=object)
    titles = {r[1]: r[2] for r in item_rows if r[2] is not None}
    features: dict[str, dict] = {}
    for _, external, _, attributes in item_rows:
        for feature, values in (attributes or {}).items():
            features.setdefault(feature, {})[external] = list(values)
    items = _lookup(flat[:, 0], item_ids, item_names)
    timestamps = flat[:, 1].copy() if dataset.has_timestamps else None
    return InteractionLog(users=users, items=items, timestamps=timestamps, item_titles=titles,
                          item_features=features, name=name)


def _interaction_ids(dataset: Dataset):
    """WHERE clause selecting a dataset's interactions by their id range (the primary key)."""
    first = dataset.first_interaction_id
    return Interaction.id.between(first, first + dataset.n_interactions - 1)


def _lookup(keys: np.ndarray, ids: np.ndarray, names: np.ndarray) -> np.ndarray:
    order = np.argsort(ids)
    return names[order][np.searchsorted(ids[order], keys)].astype(str)


def dataset_stats(session: Session, name: str, top: int = 10) -> dict:
    """Summary statistics of a dataset, as a plain dict for display and JSON.

    Keys: name, users, items, interactions, density (interactions / (users * items)), sequence_length
    {min, median, mean, max}, time_span {first, last} (unix seconds, None without timestamps),
    popular_items [{item, title, interactions}] (the `top` most interacted).
    """
    dataset = get_dataset(session, name)
    lengths = np.array(session.scalars(
        sa.select(User.n_interactions).where(User.dataset_id == dataset.id)).all(), dtype=np.int64)
    first, last = session.execute(
        sa.select(sa.func.min(Interaction.timestamp), sa.func.max(Interaction.timestamp))
        .where(_interaction_ids(dataset))).one()
    popular = session.execute(
        sa.select(Item.external_id, Item.title, Item.n_interactions).where(Item.dataset_id == dataset.id)
        .order_by(Item.n_interactions.desc(), Item.id).limit(top)).all()
    cells = dataset.n_users * dataset.n_items
    return {
        "name": dataset.name,
        "users": dataset.n_users,
        "items": dataset.n_items,
        "interactions": dataset.n_interactions,
        "density": dataset.n_interactions / cells if cells else 0.0,
        "sequence_length": {
            "min": int(lengths.min()) if len(lengths) else 0,
            "median": float(np.median(lengths)) if len(lengths) else 0.0,
            "mean": float(lengths.mean()) if len(lengths) else 0.0,
            "max": int(lengths.max()) if len(lengths) else 0,
        },
        "time_span": {"first": first, "last": last},
        "popular_items": [{"item": e, "title": t, "interactions": c} for e, t, c in popular],
        "source": dataset.source,
        "import_report": dataset.import_report,
    }


def sequence_lengths(session: Session, name: str) -> np.ndarray:
    """(n_users,) int64 number of interactions of every user: for the length histogram."""
    dataset = get_dataset(session, name)
    return np.array(session.scalars(sa.select(User.n_interactions).where(
        User.dataset_id == dataset.id).order_by(User.first_position)).all(), dtype=np.int64)


def user_history(session: Session, name: str, user: str) -> pd.DataFrame:
    """One user's interactions, oldest first: columns item, title, timestamp, rating."""
    dataset = get_dataset(session, name)
    row = session.execute(sa.select(User.first_position, User.n_interactions).where(
        User.dataset_id == dataset.id, User.external_id == str(user))).first()
    if row is None:
        raise StoreError(f"dataset {name!r} has no user {user!r}")
    first, count = row
    rows = session.execute(
        sa.select(Item.external_id, Item.title, Interaction.timestamp, Interaction.rating)
        .join(Item, Item.id == Interaction.item_id)
        .where(Interaction.id.between(dataset.first_interaction_id + first,
                                      dataset.first_interaction_id + first + count - 1))
        .order_by(Interaction.id)).all()
    return pd.DataFrame(rows, columns=["item", "title", "timestamp", "rating"])


# ---------------------------------------------------------------- run history


def create_run(session: Session, dataset_name: str, config: dict, device: str) -> int:
    """Records a new run in status "running" and commits; returns its id."""
    dataset = session.scalar(sa.select(Dataset).where(Dataset.name == dataset_name))
    run = Run(dataset_id=dataset.id if dataset else None, dataset_name=dataset_name, config=config,
              status="running", device=device, started_at=time.time(), version=engine.__version__,
              pid=os.getpid())
    session.add(run)
    session.commit()
    return run.id


def append_series(session: Session, run_id: int, rows) -> None:
    """Appends series points `(phase, step, name, value, per)` to a run in one executemany, and commits;
    `per` is "step" or "epoch" (then `step` is the epoch number)."""
    values = [{"run_id": run_id, "phase": p, "step": int(s), "name": n, "value": float(v), "per": per}
              for p, s, n, v, per in rows]
    if values:
        session.execute(sa.insert(RunSeries), values)
    session.commit()


def truncate_series(session: Session, run_id: int, phase: str, after_step: int, after_epoch: int) -> None:
    """Deletes what a run recorded after a checkpoint: points of `phase` past its step or epoch, and every
    point of the phases after it; commits. A resumed run records them again."""
    later = PHASE_ORDER[PHASE_ORDER.index(phase) + 1:]
    session.execute(sa.delete(RunSeries).where(RunSeries.run_id == run_id, sa.or_(
        RunSeries.phase.in_(later),
        sa.and_(RunSeries.phase == phase, RunSeries.per == "step", RunSeries.step > after_step),
        sa.and_(RunSeries.phase == phase, RunSeries.per == "epoch", RunSeries.step > after_epoch))))
    session.commit()


def finish_run(session: Session, run_id: int, chosen_length: int | None, metrics: dict,
               seconds: float) -> None:
    """Marks a run finished with its chosen short-term length, final metrics and duration; commits."""
    run = _get_run(session, run_id)
    run.status, run.chosen_length, run.metrics = "finished", chosen_length, metrics
    run.seconds, run.finished_at = seconds, time.time()
    session.commit()


def fail_run(session: Session, run_id: int, status: str = "failed", error: str | None = None) -> None:
    """Ends a run as "failed", "cancelled" or "interrupted", with an error text; commits."""
    if status not in RUN_STATUSES or status in ("running", "finished"):
        raise ValueError(f"fail_run status must be failed, cancelled or interrupted, not {status!r}")
    run = _get_run(session, run_id)
    run.status, run.error, run.finished_at = status, error, time.time()
    run.seconds = run.finished_at - run.started_at
    session.commit()


def reopen_run(session: Session, run_id: int) -> None:
    """Marks an ended, unfinished run "running" again in this process (to resume it); commits.
    StoreError if it finished or is still running."""
    run = _get_run(session, run_id)
    if run.status == "finished":
        raise StoreError(f"run {run_id} has finished; there is nothing to resume")
    if run.status == "running" and run.pid is not None and process_alive(run.pid):
        raise StoreError(f"run {run_id} is still running (process {run.pid})")
    run.status, run.error, run.finished_at, run.seconds, run.pid = "running", None, None, None, os.getpid()
    session.commit()


def add_artifact(session: Session, run_id: int, path: str, kind: str, sha256: str) -> None:
    """Records a file a run produced (bundle, export) with its sha256; commits."""
    session.add(Artifact(run_id=run_id, path=str(path), kind=kind, sha256=sha256))
    session.commit()


def latest_artifact(session: Session, run_id: int, kind: str) -> Artifact | None:
    """The run's most recent artifact of a kind ("bundle", ...), or None."""
    return session.scalars(sa.select(Artifact).where(Artifact.run_id == run_id, Artifact.kind == kind)
                           .order_by(Artifact.id.desc())).first()


def mark_interrupted_runs(session: Session) -> int:
    """Runs still "running" whose process is gone (killed, crashed) become "interrupted"; commits.

    Returns how many. Call at start-up before listing runs."""
    count = 0
    for run in session.scalars(sa.select(Run).where(Run.status == "running")):
        if run.pid is None or not process_alive(run.pid):
            run.status, run.error = "interrupted", "the process ended before the run finished"
            count += 1
    session.commit()
    return count


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_runs(session: Session, dataset_name: str | None = None) -> list[Run]:
    """Runs, newest first, optionally only those of one dataset."""
    query = sa.select(Run).order_by(Run.started_at.desc(), Run.id.desc())
    if dataset_name is not None:
        query = query.where(Run.dataset_name == dataset_name)
    return list(session.scalars(query))


def get_run(session: Session, run_id: int) -> Run:
    """The run with this id; StoreError if there is none."""
    return _get_run(session, run_id)


def _get_run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise StoreError(f"no run with id {run_id}")
    return run


def run_series(session: Session, run_id: int) -> pd.DataFrame:
    """All series points of a run: columns phase, step, name, value, per ("step" or "epoch"), in
    insertion order."""
    rows = session.execute(
        sa.select(RunSeries.phase, RunSeries.step, RunSeries.name, RunSeries.value, RunSeries.per)
        .where(RunSeries.run_id == run_id).order_by(RunSeries.id)).all()
    return pd.DataFrame(rows, columns=["phase", "step", "name", "value", "per"])


class RunRecorder(Observer):
    """Forwards every event to an inner observer and records the run's curves into run_series.

    Recorded: StepFinished losses (name = loss name, per step), EpochFinished metrics and mean losses
    (step = epoch number, per epoch), ArchitectureWeights (name `weight/k=<length>` and `alpha/k=<length>`). Points are written
    in batches through its own Session (every `batch_size` points or `interval` seconds, and on
    PhaseFinished and `close()`), so that recording never slows the training loop down.
    """

    def __init__(self, sessions: sessionmaker[Session], run_id: int, inner: Observer | None = None,
                 batch_size: int = 200, interval: float = 1.0) -> None:
        super().__init__()
        self.inner = inner or Observer()
        self.run_id = run_id
        self._sessions = sessions
        self._pending: list[tuple[str, int, str, float, str]] = []
        self._batch_size = batch_size
        self._interval = interval
        self._last_flush = time.monotonic()

    def emit(self, event: Event) -> None:
        self.inner.emit(event)
        if isinstance(event, StepFinished):
            self._pending += [(event.phase, event.step, k, v, "step") for k, v in event.losses.items()]
        elif isinstance(event, EpochFinished):
            self._pending += [(event.phase, event.epoch, k, v, "epoch") for k, v in event.metrics.items()
                              if k != "epoch" and isinstance(v, (int, float))]
        elif isinstance(event, ArchitectureWeights):
            for length, alpha, weight in zip(event.candidates, event.alpha, event.weights):
                self._pending.append(("search", event.step, f"weight/k={length}", weight, "step"))
                self._pending.append(("search", event.step, f"alpha/k={length}", alpha, "step"))
        if isinstance(event, PhaseFinished) or len(self._pending) >= self._batch_size or (
                self._pending and time.monotonic() - self._last_flush >= self._interval):
            self.flush()

    def flush(self) -> None:
        """Writes the pending points now."""
        if self._pending:
            with self._sessions() as session:
                append_series(session, self.run_id, self._pending)
            self._pending = []
        self._last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()

    def cancel(self) -> None:
        self.inner.cancel()

    @property
    def cancel_requested(self) -> bool:
        return self.inner.cancel_requested

    def check(self) -> None:
        self.inner.check()


def to_json(value) -> str:
    """JSON text of a stats or run dict (numpy scalars included), for the CLI."""
    return json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v))
