"""What every store refuses alike, with a clear message (SQLite and PostgreSQL): names and ids longer than
the store keeps, and writes by a PostgreSQL role that may only read."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from engine.cli.main import main as cli_main
from engine.data.importers import ImportFailed, import_file
from engine.data.run_records import create_run
from engine.data.schema import ID_LENGTH, Run
from engine.data.store import list_datasets, load_log, open_store
from tests.engine.cli_processes import planted_csv
from tests.engine.store_snapshot import store_snapshot


@pytest.fixture
def store(store_url):
    opened = open_store(store_url)
    yield opened
    opened.close()


def test_an_id_longer_than_the_store_keeps_is_refused_alike_on_every_store(store, tmp_path):
    csv = tmp_path / "long.csv"
    csv.write_text("user,item,timestamp\n" + f"u,{'x' * (ID_LENGTH + 1)},1\nu,b,2\n")
    before = store_snapshot(store)
    with pytest.raises(ImportFailed, match=f"long.csv: the item id 'xxx.*' is {ID_LENGTH + 1} characters long; "
                                           f"the store keeps ids of up to {ID_LENGTH}"):
        import_file(store, csv, min_user_interactions=0)
    assert store_snapshot(store) == before


def test_a_dataset_name_longer_than_the_store_keeps_is_refused_alike_on_every_store(store, tmp_path):
    csv = tmp_path / "log.csv"
    csv.write_text("user,item,timestamp\nu,a,1\n")
    with pytest.raises(ImportFailed, match=f"is {ID_LENGTH + 1} characters long; the store keeps names of up to"):
        import_file(store, csv, name="n" * (ID_LENGTH + 1), min_user_interactions=0)


def test_names_and_ids_of_the_longest_length_kept_are_stored_whole(store, tmp_path):
    long_id, long_name = "i" * ID_LENGTH, "n" * ID_LENGTH
    csv = tmp_path / "log.csv"
    csv.write_text(f"user,item,timestamp\n{'u' * ID_LENGTH},{long_id},1\n")
    import_file(store, csv, name=long_name, min_user_interactions=0)
    with store.session() as session:
        assert load_log(session, long_name).items.tolist() == [long_id]


READER = ("automlp_reader", "automlp_reader")  # made by scripts/postgres_test_server.sh


@pytest.fixture
def reader_url(postgres_url, tmp_path):
    """A PostgreSQL store with the dataset "planted" and a run `running` in a process of another machine
    (its pid is none here), opened by a role granted SELECT alone."""
    owner = open_store(postgres_url)
    import_file(owner, planted_csv(tmp_path / "planted.csv"), name="planted", min_user_interactions=3)
    with owner.session() as session:
        run_id = create_run(session, "planted", {}, "cpu")
        session.execute(sa.update(Run).where(Run.id == run_id).values(pid=2 ** 31 - 1))
        session.commit()
    url = sa.engine.make_url(postgres_url)
    schema = url.query["options"].split("=", 1)[1]
    with owner.engine.begin() as connection:
        exists = connection.exec_driver_sql("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER[0],)).scalar()
        if not exists:
            pytest.skip(f"the test server has no role {READER[0]} (scripts/postgres_test_server.sh makes it)")
        connection.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO {READER[0]}')
        connection.exec_driver_sql(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO {READER[0]}')
    owner.close()
    return url.set(username=READER[0], password=READER[1]).render_as_string(hide_password=False)


def test_a_postgresql_role_that_may_only_read_is_told_so_on_import_delete_and_run(reader_url, tmp_path, capsys):
    csv = planted_csv(tmp_path / "more.csv")
    commands = [["import", str(csv), "--quiet"], ["delete", "planted", "--yes"],
                ["run", "--dataset", "planted", "--quiet", "--set", "search_epochs=1", "--set", "retrain_epochs=1"]]
    for command in commands:
        assert cli_main([*command, "--db", reader_url]) == 2, command
        err = capsys.readouterr().err
        assert "can only be read with this database role (permission denied for table" in err, err
        assert "Traceback" not in err
    reader = open_store(reader_url)
    with reader.session() as session:
        assert [d.name for d in list_datasets(session)] == ["planted"]
        assert session.scalar(sa.select(sa.func.count()).select_from(Run)) == 1
    reader.close()


def test_datasets_and_runs_list_for_a_reading_role_while_a_run_of_another_machine_is_running(reader_url, capsys):
    assert cli_main(["datasets", "--db", reader_url]) == 0
    assert "planted" in capsys.readouterr().out
    assert cli_main(["runs", "--db", reader_url]) == 0
    assert "running" in capsys.readouterr().out
