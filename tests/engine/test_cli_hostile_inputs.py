"""Hostile paths and arguments given to the `automlp` command line (issue 17): each is refused at once with
one line naming what is wrong, exit status 2, and never a traceback, a block or unbounded memory.

Paths that could block or never end (a FIFO, /dev/zero) run the CLI as a subprocess with a timeout, so
that a regression fails the test instead of hanging the suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def cli(*argv: str, db: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`automlp ARGV` in a fresh process on this checkout's code."""
    return subprocess.run([sys.executable, "-m", "engine.cli", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "AUTOMLP_DB": db, "PYTHONPATH": str(ROOT)})


def refused(result: subprocess.CompletedProcess, message: str) -> bool:
    return (result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
            and len(result.stderr.strip().splitlines()) == 1)


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


@pytest.fixture
def sequences(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_text("u1 a b c d\nu2 b c d e\n")
    return path


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_run_configuration_that_is_a_device_or_a_fifo_is_refused_at_once(special, fifo, db):
    path = fifo if special == "fifo" else special
    result = cli("run", "--synthetic", "--config", str(path), "--quiet", db=db)
    assert refused(result, f"{path}: not a regular file")


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_bundle_that_is_a_device_or_a_fifo_is_refused_at_once(special, fifo, db):
    path = fifo if special == "fifo" else special
    result = cli("recommend", "--bundle", str(path), "--user", "u1", db=db)
    assert refused(result, f"{path}: not a regular file")


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_timestamp_file_that_is_a_device_or_a_fifo_is_refused_at_once(special, fifo, sequences, db):
    path = fifo if special == "fifo" else special
    result = cli("import", str(sequences), "--format", "sequences", "--times", str(path), "--min-user", "0",
                 "--quiet", db=db)
    assert refused(result, f"timestamps {path}: not a regular file")


@pytest.mark.parametrize("special, kind", [("/dev/zero", "a character device"), ("fifo", "a FIFO"),
                                           ("folder", "a directory")])
def test_item_metadata_that_is_not_a_regular_file_says_what_it_is(special, kind, fifo, sequences, tmp_path, db):
    path = {"fifo": fifo, "folder": tmp_path}.get(special, special)
    result = cli("import", str(sequences), "--format", "sequences", "--items", str(path), "--min-user", "0",
                 "--quiet", db=db)
    assert refused(result, f"item metadata {path}: not a regular file ({kind})")


def test_a_run_configuration_over_the_size_limit_is_refused_before_it_is_read(tmp_path, capsys):
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 200_000)  # 2 MB of comments
    assert main(["run", "--synthetic", "--config", str(big), "--quiet"]) == 2
    assert "more than the 1,048,576 allowed" in capsys.readouterr().err


def test_a_deeply_nested_run_configuration_is_refused_with_a_message(tmp_path, capsys):
    deep = tmp_path / "deep.toml"
    deep.write_text("candidate_lengths = " + "[" * 200_000)
    assert main(["run", "--synthetic", "--config", str(deep), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == "error: deep.toml: not a run configuration (nested too deeply)"
