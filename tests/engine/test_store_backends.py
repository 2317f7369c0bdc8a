"""The CLI's whole loop on a PostgreSQL store, each command a real process: import, stats, run (killed
mid-training), runs, resume, recommend, export, delete. (The same commands on SQLite: test_store_cli.py,
test_resume.py, test_stored_run.py.)"""

from __future__ import annotations

import json
import signal

import sqlalchemy as sa

from engine.data.run_records import get_run, run_series
from engine.data.store import open_store
from tests.engine.cli_processes import TINY_RUN, automlp, finish, no_traceback, planted_csv, start, wait_until


RETRAIN_EPOCHS = 30


def retrain_epochs_recorded(store, run_id: int) -> int:
    with store.session() as session:
        if session.scalar(sa.text("SELECT count(*) FROM runs")) == 0:
            return 0
        series = run_series(session, run_id)
    return int(((series["phase"] == "retrain") & (series["per"] == "epoch") & (series["name"] == "NDCG@10")).sum())


def test_the_cli_loop_runs_on_postgresql(postgres_url, tmp_path):
    db = postgres_url
    imported = automlp(db, "import", str(planted_csv(tmp_path / "planted.csv")), "--min-user", "3", "--quiet")
    assert imported.returncode == 0, imported.stderr
    stats = automlp(db, "stats", "planted", "--json")
    assert json.loads(stats.stdout)["users"] == 60

    # long enough that the kill after epoch 2 lands mid-training on a fast, idle machine too
    run = start(db, "run", "--dataset", "planted", *TINY_RUN, "--set", f"retrain_epochs={RETRAIN_EPOCHS}",
                "--set", f"patience={RETRAIN_EPOCHS}", "--quiet")
    store = open_store(db)
    wait_until(lambda: retrain_epochs_recorded(store, 1) >= 2 or run.poll() is not None, what="retrain epoch 2")
    run.send_signal(signal.SIGKILL)
    assert finish(run).returncode == -signal.SIGKILL, "the run ended before it could be killed"

    runs = automlp(db, "runs")
    assert runs.returncode == 0 and "interrupted (resumable)" in runs.stdout, runs.stdout + runs.stderr
    resumed = automlp(db, "resume", "1", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    with store.session() as session:
        assert get_run(session, 1).status == "finished"
    assert retrain_epochs_recorded(store, 1) == RETRAIN_EPOCHS  # each epoch once, the ones before the kill included

    recommended = automlp(db, "recommend", "--run", "1", "--user", "u1", "-n", "5")
    assert recommended.returncode == 0 and len(recommended.stdout.strip().splitlines()) >= 5, recommended.stderr
    exported = automlp(db, "export", "1", "--out", str(tmp_path / "bundle"), "--quiet")
    assert exported.returncode == 0 and (tmp_path / "bundle" / "config.json").is_file(), exported.stderr
    deleted = automlp(db, "delete", "planted", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    listed = automlp(db, "datasets")
    assert "no datasets" in listed.stdout and all(map(no_traceback, (imported, runs, resumed, exported, deleted)))
    store.close()


def test_a_plain_postgresql_url_opens_with_the_driver_of_the_postgres_extra(postgres_url):
    store = open_store(postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    assert store.engine.dialect.driver == "psycopg"
    store.close()
