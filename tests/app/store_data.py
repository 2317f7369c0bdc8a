"""A small generated dataset in a real store, imported through the engine's importer (as the Data page
would), for the app tests, the GUI latency benchmark and the pages' quick looks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from engine.data.importers import import_file
from engine.data.synthetic import planted_log


def store_planted_dataset(sessions, folder: str | Path, name: str = "planted", n_users: int = 60,
                          **log_options) -> str:
    """Writes `planted_log(n_users, ...)` as a CSV in `folder`, imports it as dataset `name`; returns
    the name."""
    log = planted_log(n_users=n_users, **log_options)
    path = Path(folder) / f"{name}.csv"
    pd.DataFrame({"user": log.users, "item": log.items, "timestamp": log.timestamps}).to_csv(path, index=False)
    with sessions() as session:
        import_file(session, path, name=name, format="csv", min_user_interactions=3)
    return name
