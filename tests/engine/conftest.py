"""Fixtures shared by the engine tests (a test module may define its own `store` instead)."""

from __future__ import annotations

import pandas as pd
import pytest

from engine.data.importers import import_file
from engine.data.store import open_store
from engine.data.synthetic import planted_log
from tests.engine.tiny_run import tiny_run


@pytest.fixture(scope="session")
def trained():
    """(RunResult, SequenceData) of one tiny search-and-retrain run (`tiny_run`), trained once."""
    return tiny_run()


@pytest.fixture
def store(store_url, tmp_path):
    """A fresh store (SQLite, then PostgreSQL: `store_url`) holding the dataset "planted" (60 planted-lag
    users, 150 items), imported as the Data page would."""
    yield from planted_store(store_url, tmp_path)


@pytest.fixture
def sqlite_store(sqlite_store_url, tmp_path):
    """The `store` on SQLite only: for tests too slow to repeat on PostgreSQL."""
    yield from planted_store(sqlite_store_url, tmp_path)


def planted_store(url: str, tmp_path):
    store = open_store(url)
    log = planted_log(n_users=60, n_items=150, min_length=8, max_length=14)
    csv = tmp_path / "planted.csv"
    pd.DataFrame({"user": log.users, "item": log.items, "timestamp": log.timestamps}).to_csv(csv, index=False)
    with store.session() as session:
        import_file(session, csv, name="planted", min_user_interactions=3)
    yield store
    store.close()
