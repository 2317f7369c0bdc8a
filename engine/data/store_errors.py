"""How the store names itself in messages, and the plain errors it raises (read-only, full, unusable)."""

from __future__ import annotations

import errno
import sqlite3
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine


class StoreError(Exception):
    """The store cannot be opened or used as asked; the message says why and what to do."""


class StoreReadOnly(StoreError):
    """A write to a store that can only be read (file or folder write-protected, or opened read-only)."""


class StoreBusy(StoreError):
    """A write that waited longer than the store allows for another process's write (SQLite has one
    writer at a time; an import holds the store for its whole insert), or a PostgreSQL deadlock or lock
    timeout. Nothing of it was kept; trying again later succeeds."""


class StoreFull(StoreError):
    """A write that found no room: the disk is full, or the store reached its size limit. Nothing of it
    was kept (SQLite rolls the statement or transaction back)."""



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


def store_label(url: str | sa.engine.URL) -> str:
    """How messages name a store: its file, or its URL without the password."""
    sa_url = sa.engine.make_url(url)
    path = sqlite_path(sa_url)
    return str(path) if path is not None else sa_url.render_as_string(hide_password=True)



_READ_ONLY_TEXTS = ("readonly database", "read-only", "query_only")
_FULL_TEXTS = ("database or disk is full", "no space left on device", "disk quota exceeded")
_BUSY_TEXTS = ("database is locked", "database table is locked", "deadlock detected", "lock timeout")
_NOT_PERMITTED_TEXTS = ("permission denied for",)  # PostgreSQL: the role may read, not write
BUSY_TIMEOUT_SECONDS = 60  # how long a SQLite write waits for another process's: an import's whole insert


def plain_store_error(error: BaseException, store: str) -> StoreError | None:
    """The StoreReadOnly, StoreFull or StoreBusy, with a plain message naming `store`, that a database
    error from a write stands for; None for any other error. `error` is a DBAPI error
    (sqlite3.OperationalError, psycopg.Error) or SQLAlchemy's wrapper of one."""
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
    if any(part in text for part in _NOT_PERMITTED_TEXTS):
        return StoreReadOnly(f"the store {store} can only be read with this database role ({text.splitlines()[0]}): "
                             "it can be browsed, but importing, training and deleting need a role that may "
                             "insert, update and delete in its tables; ask the database's administrator")
    if any(part in text for part in _BUSY_TEXTS):
        return StoreBusy(f"the store {store} is busy: another process (an import, a run or a delete) kept it "
                         "locked longer than a write waits, so nothing of this change was written; "
                         "try again when that process has finished")
    if any(part in text for part in _FULL_TEXTS):
        return StoreFull(f"the store {store} is full: the disk it is on (or the store's size limit) has no room "
                         "left, so nothing of this change was written; free some disk space and try again")
    return None


@contextmanager
def store_errors(store: "Engine | str | sa.engine.URL"):
    # also takes a Store (anything with a `url`)
    """Turns a read-only or full-disk error raised inside into StoreReadOnly or StoreFull naming the store.

    The store's own engine does this for every statement it runs; this is for code that writes through
    the raw DBAPI cursor (the importer's bulk insert), whose errors SQLAlchemy never sees."""
    driver_errors = (store.dialect.loaded_dbapi.Error,) if isinstance(store, Engine) else ()
    try:
        yield
    except (sqlite3.Error, sa.exc.DBAPIError, OSError, *driver_errors) as error:
        url = store if isinstance(store, (str, sa.engine.URL)) else store.url
        plain = plain_store_error(error, store_label(url))
        if plain is None:
            raise
        raise plain from error


