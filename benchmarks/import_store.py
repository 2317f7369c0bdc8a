"""Import speed: a MovieLens-1M-sized ratings.dat into a fresh store vs the sqlite3 CLI `.import` floor.

    python benchmarks/import_store.py [--runs 5] [--data ../shared/data]

The original ML-1M ratings.dat is not in ../shared/data, so this script rebuilds one of the same shape
from `ml-1m/ml-1m_chrono_original_ids.txt`: 1,000,209 lines `user::item::rating::timestamp` in the
users' chronological order, with seeded ratings 1-5 and increasing timestamps (some in the same second).
Everything is written to a temporary folder, never into the repository.

Measured, alternating our import and sqlite3 so that both see the same machine load:
- ours: `import_file` into a new store (parse, filter, sort, users/items/interactions, indexes, commit);
- floor: `sqlite3 x.db -cmd "CREATE TABLE ..." ".mode tabs" ".import ratings.tsv ratings"`, the same rows
  tab-separated (`.import` takes one-character separators) into a bare table without indexes;
- load: `load_log` + `build_sequences` of the imported dataset.
Prints one JSON line and appends it to benchmarks/results/import_store.jsonl.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.data.importers import import_file  # noqa: E402
from engine.data.sequences import build_sequences  # noqa: E402
from engine.data.store import load_log, open_store  # noqa: E402


def write_ratings(sequences: Path, folder: Path) -> tuple[Path, Path, int]:
    """ratings.dat (`::`) and ratings.tsv (tabs) with the same rows; returns both paths and the row count."""
    rng = np.random.default_rng(0)
    users, items = [], []
    for line in sequences.read_text().splitlines():
        fields = line.split()
        users += [fields[0]] * (len(fields) - 1)
        items += fields[1:]
    rows = len(items)
    ratings = rng.integers(1, 6, rows)
    # Per user: a start in 2000-2002, then gaps of 0-600 s (0 gives same-second ties, as in ML-1M).
    gaps = rng.integers(0, 600, rows)
    starts = {u: int(s) for u, s in zip(dict.fromkeys(users), rng.integers(956_703_932, 1_046_454_590, 6040))}
    times, previous = np.empty(rows, dtype=np.int64), None
    for i, user in enumerate(users):
        times[i] = starts[user] if user != previous else times[i - 1] + gaps[i]
        previous = user
    dat, tsv = folder / "ratings.dat", folder / "ratings.tsv"
    dat.write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in zip(users, items, ratings, times)))
    tsv.write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in zip(users, items, ratings, times)))
    return dat, tsv, rows


def time_ours(dat: Path, folder: Path, run: int) -> tuple[float, str]:
    url = f"sqlite:///{folder / f'store{run}.sqlite'}"
    store = open_store(url)
    started = time.perf_counter()
    with store.session() as session:
        import_file(session, dat, name="ml-1m-ratings", min_user_interactions=0)
    seconds = time.perf_counter() - started
    store.close()
    return seconds, url


def time_sqlite_cli(tsv: Path, folder: Path, run: int) -> float:
    database = folder / f"floor{run}.db"
    started = time.perf_counter()
    subprocess.run(["sqlite3", str(database), "-cmd", "CREATE TABLE ratings(user, item, rating, timestamp)",
                    ".mode tabs", f".import {tsv} ratings"], check=True)
    seconds = time.perf_counter() - started
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM ratings").fetchone()[0] > 0
    return seconds


def time_load(url: str) -> tuple[float, float]:
    store = open_store(url)
    with store.session() as session:
        started = time.perf_counter()
        log = load_log(session, "ml-1m-ratings")
        loaded = time.perf_counter()
        build_sequences(log, 3)
        built = time.perf_counter()
    store.close()
    return loaded - started, built - loaded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    sequences = args.data / "ml-1m" / "ml-1m_chrono_original_ids.txt"
    if not sequences.exists():
        print(f"skipped: {sequences} is not present", file=sys.stderr)
        return 0
    if shutil.which("sqlite3") is None:
        print("the sqlite3 command-line shell is needed (apt-get install sqlite3)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        dat, tsv, rows = write_ratings(sequences, folder)
        ours, floor, loads, builds = [], [], [], []
        for run in range(args.runs):
            seconds, url = time_ours(dat, folder, run)
            ours.append(seconds)
            floor.append(time_sqlite_cli(tsv, folder, run))
            load_seconds, build_seconds = time_load(url)
            loads.append(load_seconds)
            builds.append(build_seconds)
    version = subprocess.run(["sqlite3", "--version"], capture_output=True, text=True).stdout.split()[0]
    result = {
        "benchmark": "import_store",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "rows": rows,
        "runs": args.runs,
        "ours_median_s": round(statistics.median(ours), 3),
        "sqlite_cli_median_s": round(statistics.median(floor), 3),
        "ratio": round(statistics.median(ours) / statistics.median(floor), 2),
        "load_log_median_s": round(statistics.median(loads), 3),
        "build_sequences_median_s": round(statistics.median(builds), 3),
        "ours_s": [round(s, 3) for s in ours],
        "sqlite_cli_s": [round(s, 3) for s in floor],
        "sqlite_version": version,
        "python": platform.python_version(),
    }
    line = json.dumps(result)
    print(line)
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    with open(results / "import_store.jsonl", "a") as handle:
        handle.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
