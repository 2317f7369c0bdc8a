"""The generated demo dataset offered on an empty store, so that a first launch shows the whole loop."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from engine.data.synthetic import planted_log

DEMO_NAME = "demo (planted lag 3)"
DEMO_SOURCE = "generated demo: 400 users, 300 items, next item planted 3 steps back (engine.data.synthetic)"
DEMO_START = datetime(2024, 1, 1, tzinfo=timezone.utc)
DEMO_STEP = 6 * 3600  # seconds between one user's interactions, on average: 400 users span about four months
# item titles are two words from these lists (20 x 15 = 300 distinct titles, one per demo item)
ADJECTIVES = ("Amber", "Blue", "Brisk", "Copper", "Crimson", "Distant", "Golden", "Hidden", "Iron", "Lucky",
              "Midnight", "Northern", "Quiet", "Rapid", "Silver", "Silent", "Stone", "Summer", "Wild", "Winter")
NOUNS = ("Harbor", "Lantern", "Garden", "River", "Orchard", "Compass", "Meadow", "Falcon", "Bridge", "Canyon",
         "Island", "Signal", "Voyage", "Forest", "Engine")


def demo_timestamps(times: np.ndarray, seed: int = 0) -> np.ndarray:
    """planted_log's integer steps as Unix seconds from DEMO_START, about DEMO_STEP apart; the jitter is
    less than one step, so that each user's order is kept."""
    steps = times - times.min()
    jitter = np.random.default_rng(seed).integers(0, DEMO_STEP, size=len(times))
    return int(DEMO_START.timestamp()) + steps * DEMO_STEP + jitter


def demo_title(index: int) -> str:
    """The title of demo item i<index + 1>: two words, numbered once the pairs run out."""
    title = f"{ADJECTIVES[index % len(ADJECTIVES)]} {NOUNS[(index // len(ADJECTIVES)) % len(NOUNS)]}"
    rounds = index // (len(ADJECTIVES) * len(NOUNS))
    return f"{title} {rounds + 1}" if rounds else title


def write_demo_csv(folder: str | Path) -> Path:
    """Writes `engine.data.synthetic.planted_log()` (400 users, 300 items, a planted lag-3 rule) as a CSV
    with a header (user, item, timestamp) in `folder`, with item titles in `demo.item` beside it, and
    returns the CSV's path.

    The importer reads files only (there is no engine call that stores an InteractionLog directly), so
    the demo goes through the same path as a user's file."""
    log = planted_log()
    path = Path(folder) / "demo.csv"
    pd.DataFrame({"user": log.users, "item": log.items, "timestamp": demo_timestamps(log.timestamps)}).to_csv(
        path, index=False)
    items = sorted(set(log.items), key=lambda item: int(item[1:]))  # planted_log's ids: i1, i2, ...
    lines = ["item_id:token\ttitle:token_seq"] + [f"{item}\t{demo_title(int(item[1:]) - 1)}" for item in items]
    path.with_suffix(".item").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def demo_import_options(path: str | Path | None = None) -> dict:
    """`import_file` options for the demo CSV at `path`: its titles file, a source that says what it is (the
    CSV is a temporary file), and the paper's filter (>= 10 interactions), which keeps every user."""
    options = {"name": DEMO_NAME, "format": "csv", "min_user_interactions": 10, "source": DEMO_SOURCE}
    if path is not None and Path(path).with_suffix(".item").is_file():
        options["metadata_files"] = [str(Path(path).with_suffix(".item"))]
    return options
