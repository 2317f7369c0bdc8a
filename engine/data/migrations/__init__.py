"""Schema migrations of the store (Alembic), run programmatically by `engine.data.store.open_store`.

A new schema version is a new file in `versions/` (write it with `alembic revision` against this folder,
or by hand); `upgrade_to_head` brings any older store up to date on open, and refuses a store whose
schema version this release does not know (written by a newer release).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from engine.data.store_errors import StoreError, store_label

FOLDER = Path(__file__).resolve().parent


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(FOLDER))
    return config


def upgrade_to_head(engine: Engine, read_only: bool = False) -> None:
    """Migrates the database behind `engine` to the newest schema this release knows. A `read_only`
    store cannot be migrated: it must have the newest schema already, else StoreError says so."""
    config = alembic_config()
    script = ScriptDirectory.from_config(config)
    with engine.begin() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        if current != script.get_current_head() and not read_only:
            # Another process may be creating or upgrading this store right now (two commands started
            # at once on a new store): wait for it, then look again.
            _lock_for_migration(connection)
            current = MigrationContext.configure(connection).get_current_revision()
        if current is not None:
            try:
                script.get_revision(current)
            except Exception:
                raise StoreError(
                    f"the store at {store_label(engine.url)} has schema version {current!r}, which this release "
                    f"of AutoMLP Studio does not know: it was written by a newer release; "
                    f"upgrade AutoMLP Studio or choose another store") from None
        head = script.get_current_head()
        if current == head:
            return
        if read_only:
            what = ("holds no AutoMLP store (it is empty, or another program's database)" if current is None
                    else f"has schema version {current!r}, older than this release's {head!r}, and cannot be "
                         "upgraded in place")
            raise StoreError(f"the store at {store_label(engine.url)} is read-only and {what}; make the file and "
                             "its folder writable (or copy it to a writable folder) and open it again")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")



MIGRATION_LOCK = 0x4175746F4D4C51  # PostgreSQL advisory lock key held while a process migrates the store


def _lock_for_migration(connection) -> None:
    """Holds the store for this transaction so that one process at a time migrates it: SQLite's write lock
    (the busy timeout waits for another holder), PostgreSQL's advisory lock."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
