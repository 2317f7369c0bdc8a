"""Fixtures shared by the engine tests (a test module may define its own `store` instead)."""

from __future__ import annotations

import pandas as pd
import pytest

from engine.data.importers import import_file
from engine.data.store import open_store
from engine.data.synthetic import planted_log


@pytest.fixture
def store(tmp_path):
    """A fresh SQLite store holding the dataset "planted" (60 planted-lag users, 150 items), imported as
    the Data page would."""
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    log = planted_log(n_users=60, n_items=150, min_length=8, max_length=14)
    csv = tmp_path / "planted.csv"
    pd.DataFrame({"user": log.users, "item": log.items, "timestamp": log.timestamps}).to_csv(csv, index=False)
    with store.session() as session:
        import_file(session, csv, name="planted", min_user_interactions=3)
    yield store
    store.close()
