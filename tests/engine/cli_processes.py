"""`automlp` commands as real processes of this checkout's code, for the tests of several processes on one
store (tests/engine/test_store_backends.py, test_concurrent_writers.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from engine.data.synthetic import planted_log

ROOT = Path(__file__).resolve().parents[2]

# A run of a few seconds with a checkpoint after every epoch: a resume or a concurrent writer has
# something to wait for, and it ends well within a test's time.
TINY_RUN = ("--set", "candidate_lengths=[1,2,4]", "--set", "max_length=10", "--set", "embedding_dim=8",
            "--set", "sequence_hidden=8", "--set", "channel_hidden=8", "--set", "batch_size=32",
            "--set", "search_epochs=2", "--set", "eval_negatives=20", "--set", "device=\"cpu\"")


def environment() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")


def start(db: str, *argv: str) -> subprocess.Popen:
    """`automlp ARGV --db DB` started, its output captured as text."""
    return subprocess.Popen([sys.executable, "-m", "engine.cli", *argv, "--db", db], cwd=ROOT,
                            env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def automlp(db: str, *argv: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """`automlp ARGV --db DB` run to its end."""
    return subprocess.run([sys.executable, "-m", "engine.cli", *argv, "--db", db], cwd=ROOT, env=environment(),
                          capture_output=True, text=True, timeout=timeout)


def finish(process: subprocess.Popen, timeout: float = 240) -> subprocess.CompletedProcess:
    out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def planted_csv(path: Path, n_users: int = 60, seed: int = 0) -> Path:
    """A planted-lag log as a CSV file (user, item, timestamp)."""
    log = planted_log(n_users=n_users, n_items=150, min_length=8, max_length=14, seed=seed)
    pd.DataFrame({"user": log.users, "item": log.items, "timestamp": log.timestamps}).to_csv(path, index=False)
    return path


def wait_until(condition, timeout: float = 120, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


def no_traceback(result: subprocess.CompletedProcess) -> bool:
    return "Traceback" not in result.stderr and "Traceback" not in result.stdout
