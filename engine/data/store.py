"""The store: datasets, interactions and run history in one SQLAlchemy database (SQLite by default).

Store functions take a `Session`; the caller owns it (one per user action in a GUI, never shared across
threads). `open_store(url)` creates the engine, runs the schema migrations and returns a `Store`. The
tables are in `schema.py`, the run history in `run_records.py`, the errors in `store_errors.py`.
"""
from __future__ import annotations

import functools
import itertools
import os
import sqlite3
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import platformdirs
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from engine.core.config import RunConfig
from engine.data.migrations import upgrade_to_head
from engine.data.schema import Dataset, Interaction, Item, Run, StoreIdentity, User
from engine.data.sequences import InteractionLog
from engine.data.store_errors import (
    BUSY_TIMEOUT_SECONDS,
    StoreError,
    StoreReadOnly,
    plain_store_error,
    sqlite_path,
    store_label,
)

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

    @functools.cached_property
    def identity(self) -> StoreIdentity:
        """The store's own identity (`.id`, a uuid recorded in the store): names the folder of its runs' files."""
        with self.session() as session:
            return store_identity(session)


def store_identity(session: Session) -> StoreIdentity:
    """The identity row of the store `session` is on (every store migrated to schema 0003 has one)."""
    return session.scalars(sa.select(StoreIdentity)).one()


def default_store_url() -> str:
    """`AUTOMLP_DB` if set, else a SQLite file `store.sqlite` in the user's data directory."""
    if os.environ.get("AUTOMLP_DB"):
        return os.environ["AUTOMLP_DB"]
    folder = Path(platformdirs.user_data_dir("automlp-studio", appauthor=False))
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'store.sqlite'}"


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
    # A write waits for another process's (SQLite has one writer at a time) up to BUSY_TIMEOUT_SECONDS.
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
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
    if sa_url.drivername == "postgresql":  # the postgres extra installs psycopg 3, not SQLAlchemy's default
        connect_url = sa_url.set(drivername="postgresql+psycopg")
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
    if not os.access(path, os.R_OK):
        raise StoreError(f"{path} cannot be read: permission denied")
    # Asked through SQLite, not by reading the file's header: closing a file descriptor of the database
    # drops every lock this process holds on it (POSIX), so that another process, closing its last
    # connection, deletes the -wal and -shm files under this process's open connections ("disk I/O
    # error" next, and a store at risk). SQLite's own connections share one descriptor per file.
    probe = sqlite3.connect(f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro", uri=True)
    try:
        probe.execute("PRAGMA schema_version")
    except sqlite3.DatabaseError as error:
        if "not a database" in str(error):
            raise StoreError(f"{path} is not an SQLite database (it may be another kind of file); "
                             "choose another store file with --db or AUTOMLP_DB") from error
        # anything else (a -shm file that cannot be made here, ...) is for opening the store to say
    finally:
        probe.close()


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


def fitted_config(session: Session, name: str, config: RunConfig) -> RunConfig:
    """`config` with "auto" K, T and loss fitted to dataset `name`, as a run on it fits them
    (RunConfig.fitted_to), read from the user and dataset tables alone: for showing them before a run
    starts. (The item count is the dataset's: a run that drops short users may keep a few fewer.)"""
    lengths = sequence_lengths(session, name)
    n_items = get_dataset(session, name).n_items
    return config.fitted_to(lengths[lengths >= config.min_user_interactions] - 2, n_items)


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


