"""`automlp import | datasets | stats | delete` through the argparse commands of engine/cli_data.py."""

import argparse
import json

import pytest

from engine.cli.data_commands import add_data_commands, parse_mapping, resolve_store_url
from engine.data.importers import ImportFailed


def automlp(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="automlp")
    add_data_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


@pytest.fixture
def db(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    monkeypatch.setenv("AUTOMLP_DB", url)
    return url


@pytest.fixture
def log_csv(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("customer,sku,when\na,x,1\na,y,2\nb,x,3\n")
    return path


def test_db_option_wins_over_the_environment(db):
    assert resolve_store_url(argparse.Namespace(db="sqlite:///other.sqlite")) == "sqlite:///other.sqlite"
    assert resolve_store_url(argparse.Namespace(db=None)) == db


def test_parse_mapping_reads_role_column_pairs():
    assert parse_mapping("user=customer, item=sku,time=when") == {"user": "customer", "item": "sku", "time": "when"}
    with pytest.raises(ImportFailed, match="'user' is not ROLE=COLUMN"):
        parse_mapping("user")


def test_import_then_datasets_then_stats_then_delete(db, log_csv, capsys):
    assert automlp("import", str(log_csv), "--map", "user=customer,item=sku,time=when", "--min-user", "0",
                   "--quiet") == 0
    assert "imported 'log' (csv): 3 interactions, 2 users, 2 items" in capsys.readouterr().out
    assert automlp("datasets") == 0
    assert "log" in capsys.readouterr().out
    assert automlp("stats", "log", "--json") == 0
    assert json.loads(capsys.readouterr().out)["interactions"] == 3
    assert automlp("delete", "log", "--yes") == 0
    assert automlp("datasets") == 0
    assert "no datasets" in capsys.readouterr().out


def test_import_error_is_one_line_and_exit_status_2(db, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,timestamp\nu,a,soon\n")
    assert automlp("import", str(bad), "--min-user", "0", "--quiet") == 2
    assert capsys.readouterr().err.strip() == (
        "error: bad.csv line 2, column 'timestamp': timestamp 'soon' is not a number or a date")


def test_default_minimum_of_ten_interactions_per_user_applies(db, log_csv, capsys):
    assert automlp("import", str(log_csv), "--map", "user=customer,item=sku", "--quiet") == 2
    assert "no interactions left after keeping users with at least 10" in capsys.readouterr().err


def test_stats_of_an_unknown_dataset_fails_clearly(db, capsys):
    assert automlp("stats", "nope") == 2
    assert "no dataset called 'nope'" in capsys.readouterr().err


def test_automlp_help_loads_neither_torch_nor_the_store_libraries():
    import subprocess
    import sys
    code = ("import sys\nfrom engine.cli.main import build_parser\ntry:\n    build_parser().parse_args(['--help'])\n"
            "except SystemExit:\n    pass\nprint(sorted(m for m in ('torch', 'sqlalchemy', 'pandas', 'pyarrow') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
