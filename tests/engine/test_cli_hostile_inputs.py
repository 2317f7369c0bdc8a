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


# ---------------------------------------------------------------- --json checked before the run


@pytest.mark.parametrize("place", ["folder", "missing/results.json", "plain.txt/results.json"])
def test_run_json_to_a_place_that_cannot_be_written_is_refused_before_training(place, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    (tmp_path / "plain.txt").write_text("a file, not a folder")
    assert main(["run", "--synthetic", "--quiet", "--json", str(tmp_path / place)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"error: --json {tmp_path / place} cannot be written")
    assert "chosen short-term length" not in out  # no training happened


def test_the_json_check_leaves_no_file_behind_and_an_existing_one_untouched(tmp_path, capsys):
    old = tmp_path / "old.json"
    old.write_text('{"kept": true}')
    missing = str(tmp_path / "missing.csv")  # refused after the --json check, before any training
    assert main(["run", missing, "--quiet", "--json", str(old)]) == 2
    assert main(["run", missing, "--quiet", "--json", str(tmp_path / "new.json")]) == 2
    assert "missing.csv: no such file" in capsys.readouterr().err
    assert old.read_text() == '{"kept": true}' and not (tmp_path / "new.json").exists()


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize("argv, message", [
    (["recommend", "--bundle", ".", "--user", "u", "--device", "banana"], "device: 'banana' is not one of"),
    (["run", "--synthetic", "--set", "candidate_lengths=5"], "candidate_lengths: expected list of int"),
    (["run", "--synthetic", "--set", "seed=99999999999999999999"], "seed: must be in 0..9223372036854775807"),
    (["run", "--synthetic", "--set", "seed=-1"], "seed: must be in 0.."),
    (["datasets", "--db", "foo://bar"], "'foo' is not a database SQLAlchemy knows"),
    (["datasets", "--db", "postgresql://user@host:port/db"], "is not a store URL"),
])
def test_a_wrong_argument_is_one_error_line_with_exit_status_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this build has a GPU")
def test_recommend_on_cuda_without_a_gpu_is_one_error_line(capsys):
    assert main(["recommend", "--bundle", ".", "--user", "u", "--device", "cuda"]) == 2
    assert "device: cuda was asked for, but torch" in capsys.readouterr().err


@pytest.mark.skipif(__import__("importlib").util.find_spec("MySQLdb") is not None, reason="the MySQL driver is here")
def test_a_mysql_url_without_its_driver_says_so_without_the_password(capsys):
    assert main(["datasets", "--db", "mysql://me:secret@localhost/store"]) == 2
    err = capsys.readouterr().err
    assert "the Python driver for mysql is not installed (MySQLdb)" in err and "secret" not in err


def test_a_plain_path_given_as_db_is_a_sqlite_store(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["datasets", "--db", "stores/../plain.sqlite"]) == 0
    assert f"sqlite:///{tmp_path}/stores/../plain.sqlite" in capsys.readouterr().out
    assert (tmp_path / "plain.sqlite").is_file()


# ---------------------------------------------------------------- a closed pipe


def test_stats_into_a_pipe_closed_by_its_reader_ends_without_a_traceback(tmp_path, db):
    log = tmp_path / "log.csv"
    log.write_text("user,item,timestamp\n" + "".join(f"u{i % 7},i{i % 13},{i}\n" for i in range(200)))
    assert main(["import", str(log), "--min-user", "0", "--quiet", "--db", db]) == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head -c 10` does once it has its bytes: every write now fails with EPIPE
    try:
        result = subprocess.run([sys.executable, "-m", "engine.cli", "stats", "log", "--db", db], cwd=ROOT,
                                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.close(write_end)
    assert result.returncode == 1 and result.stderr == ""


# ---------------------------------------------------------------- displays


def _run_left_interrupted(db: str, dataset: str) -> int:
    """A run of `dataset` marked interrupted, with a checkpoint file: what `automlp runs` calls resumable."""
    from engine.data.run_records import create_run
    from engine.data.schema import Run
    from engine.data.store import open_store
    from engine.experiments.stored_run import checkpoint_file

    store = open_store(db)
    with store.session() as session:
        run_id = create_run(session, dataset, {}, "cpu")
        session.get(Run, run_id).status = "interrupted"
        session.commit()
    checkpoint = checkpoint_file(store, run_id)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(b"a checkpoint")
    store.close()
    return run_id


@pytest.fixture
def imported(tmp_path, db):
    log = tmp_path / "log.csv"
    log.write_text("user,item,timestamp\nu,a,1\nu,b,2\nu,c,3\n")
    assert main(["import", str(log), "--min-user", "0", "--quiet", "--db", db]) == 0
    return "log"


def test_runs_shows_resumable_only_while_the_runs_dataset_exists(imported, db, capsys):
    run_id = _run_left_interrupted(db, imported)
    capsys.readouterr()
    assert main(["runs", "--db", db]) == 0
    assert "interrupted (resumable)" in capsys.readouterr().out
    assert main(["delete", imported, "--yes", "--db", db]) == 0
    capsys.readouterr()
    assert main(["runs", "--db", db]) == 0
    out = capsys.readouterr().out
    assert f"{run_id:>5}  log" in out and "interrupted" in out and "resumable" not in out


def test_runs_status_column_holds_interrupted_resumable(imported, db, capsys):
    _run_left_interrupted(db, imported)
    capsys.readouterr()
    assert main(["runs", "--db", db]) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    k_column = header.index(" k ") + 1
    assert row[k_column] == "-"  # the run's k (none yet) sits under the header's k
    assert "interrupted (resumable)  " in row


def test_stats_escapes_newlines_and_bidi_marks_in_names_and_ids(tmp_path, db, capsys):
    log = tmp_path / "log.csv"
    log.write_text("user,item\nu,\u202eevil\nu,b\nu,c\n", encoding="utf-8")
    assert main(["import", str(log), "--name", "two\nlines", "--min-user", "0", "--quiet", "--db", db]) == 0
    capsys.readouterr()
    assert main(["stats", "two\nlines", "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.startswith("two\\nlines: 1 users")
    assert "\\u202eevil" in out and "\u202e" not in out
    assert len(out.splitlines()) == 7  # summary, lengths, span, header, three items


def test_stats_shows_a_time_no_calendar_holds_as_seconds(imported, db, capsys):
    import sqlite3

    # a store an older release filled: its check let through whole numbers up to int64
    with sqlite3.connect(db.removeprefix("sqlite:///")) as connection:
        connection.execute("UPDATE interactions SET timestamp = 400000000000 * timestamp")
    capsys.readouterr()
    assert main(["stats", imported, "--db", db]) == 0
    assert "time span: unix time 400,000,000,000 s to unix time 1,200,000,000,000 s" in capsys.readouterr().out


@pytest.mark.parametrize("value, accepted", [("9223372036854775807", True), ("-9223372036854775807", True),
                                             ("1700000000", True), ("99999999999", False),
                                             ("50000000000.5", False), ("1e30", False)])
def test_one_timestamp_range_for_the_check_and_its_message(value, accepted, tmp_path, db, capsys):
    log = tmp_path / "log.csv"
    log.write_text(f"user,item,timestamp\nu,a,1\nu,b,{value}\nu,c,3\n")
    status = main(["import", str(log), "--min-user", "0", "--quiet", "--db", db])
    err = capsys.readouterr().err
    assert status == (0 if accepted else 2)
    if not accepted:
        assert "line 3, column 'timestamp': timestamp" in err
        assert "is not a time between 1677-09-21 and 2262-04-11" in err


# ---------------------------------------------------------------- the last line of defence


@pytest.mark.parametrize("debug", [False, True])
def test_output_to_a_full_disk_is_one_line_unless_automlp_debug_asks_for_the_traceback(debug, imported, db):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **({"AUTOMLP_DEBUG": "1"} if debug else {})}
    with open("/dev/full", "w") as full:  # every write to it fails with ENOSPC
        result = subprocess.run([sys.executable, "-m", "engine.cli", "datasets", "--db", db], cwd=ROOT,
                                stdout=full, stderr=subprocess.PIPE, text=True, timeout=60, env=env)
    if debug:
        assert result.returncode == 1 and "Traceback" in result.stderr and "No space left on device" in result.stderr
    else:
        assert result.returncode == 2
        assert result.stderr == "error: OSError: No space left on device (AUTOMLP_DEBUG=1 shows where)\n"
