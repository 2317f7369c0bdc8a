"""The generated demo dataset offered on an empty store, so that a first launch shows the whole loop."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from engine.data.synthetic import planted_log

DEMO_NAME = "demo (planted lag 3)"


def write_demo_csv(folder: str | Path) -> Path:
    """Writes `engine.data.synthetic.planted_log()` (400 users, 300 items, a planted lag-3 rule) as a CSV
    with a header (user, item, timestamp) in `folder` and returns its path.

    The importer reads files only (there is no engine call that stores an InteractionLog directly), so
    the demo goes through the same path as a user's file."""
    log = planted_log()
    path = Path(folder) / "demo.csv"
    pd.DataFrame({"user": log.users, "item": log.items, "timestamp": log.timestamps}).to_csv(path, index=False)
    return path


def demo_import_options() -> dict:
    """`import_file` options for the demo CSV: the paper's filter (>= 10 interactions) keeps every user."""
    return {"name": DEMO_NAME, "format": "csv", "min_user_interactions": 10}
