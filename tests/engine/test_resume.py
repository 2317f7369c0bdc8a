"""Resuming stored runs: a run killed or cancelled between epochs is marked interrupted (or cancelled),
`automlp resume RUN` continues it in the same record, and it ends as the uninterrupted run does."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from engine.cli.main import main as cli_main
from engine.core.config import RunConfig
from engine.core.events import Cancelled, EpochFinished, RecordingObserver
from engine.data.run_records import (
    LEASE_SECONDS,
    create_run,
    get_run,
    list_runs,
    mark_interrupted_runs,
    run_series,
)
from engine.data.store import open_store, store_identity
from engine.data.store_errors import StoreError
from engine.experiments.stored_run import (
    can_resume,
    checkpoint_file,
    resume_run,
    run_on_dataset,
)
from engine.training.checkpoint import CheckpointError

CONFIG = RunConfig(candidate_lengths=[1, 2, 4], max_length=10, embedding_dim=16, sequence_hidden=16,
                   channel_hidden=16, batch_size=32, search_epochs=2, retrain_epochs=3, eval_negatives=20,
                   device="cpu", seed=4)


@pytest.fixture
def store(sqlite_store):
    """SQLite only: each resume trains twice or more; the CLI loop of tests/engine/test_store_backends.py
    resumes on PostgreSQL."""
    return sqlite_store


def cancel_after(phase: str, epoch: int) -> RecordingObserver:
    return RecordingObserver(cancel_when=lambda e: isinstance(e, EpochFinished) and (e.phase, e.epoch) == (phase, epoch))


def recorded(store, run_id: int):
    with store.session() as session:
        run = get_run(session, run_id)
        return run.status, run.chosen_length, run.metrics, run_series(session, run_id)


def test_a_cancelled_stored_run_resumes_in_its_record_to_the_uninterrupted_result(store):
    _, uninterrupted = run_on_dataset(store, "planted", CONFIG)
    with pytest.raises(Cancelled):
        run_on_dataset(store, "planted", CONFIG, cancel_after("search", 1))
    assert can_resume(store, 2)
    resumed = resume_run(store, 2)
    assert resumed.test_metrics == uninterrupted.test_metrics
    status, chosen, metrics, series = recorded(store, 2)
    assert status == "finished" and chosen == uninterrupted.chosen_length
    assert not checkpoint_file(store, 2).exists()  # the bundle replaces it
    *_, uninterrupted_series = recorded(store, 1)
    steps = [(s[s["per"] == "step"][["phase", "name", "step"]].sort_values(["phase", "name", "step"])
              .to_numpy().tolist()) for s in (series, uninterrupted_series)]
    assert steps[0] == steps[1]  # the resumed run reports its steps where the uninterrupted run did


def test_a_resumed_run_records_each_curve_point_once(store):
    with pytest.raises(Cancelled):
        run_on_dataset(store, "planted", CONFIG, cancel_after("retrain", 2))
    resume_run(store, 1)
    *_, series = recorded(store, 1)
    keys = series[["phase", "name", "per", "step"]]
    assert not keys.duplicated().any()
    epochs = series[(series["phase"] == "retrain") & (series["name"] == "NDCG@10")]["step"].tolist()
    assert epochs == [1, 2, 3]


def test_a_finished_run_cannot_be_resumed(store):
    run_id, _ = run_on_dataset(store, "planted", CONFIG)
    assert not can_resume(store, run_id)
    with pytest.raises(StoreError, match="finished"):
        resume_run(store, run_id)


def test_a_run_cancelled_before_its_first_epoch_ended_has_no_checkpoint_to_resume(store):
    with pytest.raises(Cancelled):
        run_on_dataset(store, "planted", CONFIG, RecordingObserver(cancel_when=lambda e: True))
    assert not can_resume(store, 1)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        resume_run(store, 1)


def test_resume_of_a_run_whose_checkpoint_was_damaged_is_refused_and_the_record_kept(store):
    with pytest.raises(Cancelled):
        run_on_dataset(store, "planted", CONFIG, cancel_after("search", 1))
    checkpoint_file(store, 1).write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError):
        resume_run(store, 1)
    assert recorded(store, 1)[0] == "cancelled"


def test_a_run_that_left_its_checkpoint_where_stores_once_shared_them_still_resumes(store):
    with pytest.raises(Cancelled):
        run_on_dataset(store, "planted", CONFIG.replace(retrain_epochs=1), cancel_after("search", 1))
    # where a release before schema 0003 kept it, and what the migration to 0003 records
    shared = checkpoint_file(store, 1).parent.parent / checkpoint_file(store, 1).name
    checkpoint_file(store, 1).rename(shared)
    with store.session() as session:
        store_identity(session).legacy_runs_upto = 1
        session.commit()
    reopened = open_store(store.url)
    assert can_resume(reopened, 1)
    resume_run(reopened, 1)
    reopened.close()
    assert recorded(store, 1)[0] == "finished" and not shared.exists()


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    from engine.core.config import RunConfig
    from engine.core.events import EpochFinished, Observer
    from engine.data.store import open_store
    from engine.experiments.stored_run import run_on_dataset

    class KillAfterRetrainEpoch2(Observer):
        def emit(self, event):  # killed after epoch 2's metrics, before its checkpoint is written
            if isinstance(event, EpochFinished) and (event.phase, event.epoch) == ("retrain", 2):
                os.kill(os.getpid(), signal.SIGKILL)

    run_on_dataset(open_store(sys.argv[1]), "planted", RunConfig.from_dict(eval(sys.argv[2])),
                   KillAfterRetrainEpoch2())
""")


def test_a_killed_run_is_marked_interrupted_by_the_cli_and_resumes_to_the_uninterrupted_result(store, capsys):
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, store.url, repr(CONFIG.to_dict())],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert recorded(store, 1)[0] == "running"  # what the dead process left

    assert cli_main(["runs", "--db", store.url]) == 0
    listing = capsys.readouterr()
    assert "interrupted (resumable)" in listing.out and "marked interrupted" in listing.err

    assert cli_main(["resume", "1", "--db", store.url, "--quiet"]) == 0
    _, uninterrupted = run_on_dataset(store, "planted", CONFIG)
    status, chosen, metrics, _ = recorded(store, 1)
    assert status == "finished" and chosen == uninterrupted.chosen_length
    assert metrics["test"] == uninterrupted.test_metrics


def test_a_run_whose_dataset_changed_is_refused_and_its_record_kept(store, tmp_path):
    from engine.data.importers import import_file
    from engine.data.store import delete_dataset

    with pytest.raises(Cancelled):
        run_on_dataset(store, "planted", CONFIG, cancel_after("search", 1))
    csv = tmp_path / "other.csv"
    csv.write_text("user,item,timestamp\n" + "".join(f"u{u},i{(u * 7 + t) % 50},{t}\n"
                                                    for u in range(40) for t in range(12)))
    with store.session() as session:
        delete_dataset(session, "planted")
        import_file(session, csv, name="planted", min_user_interactions=3)
    with pytest.raises(CheckpointError, match="other data"):
        resume_run(store, 1)
    status, *_, series = recorded(store, 1)
    assert status == "cancelled" and len(series) > 0


# ---------------------------------------------------------------- who holds a running run

def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def held_elsewhere(store, run_id: int, heartbeat_at: float) -> None:
    """Rewrites a run's record as a process of another host (or pid namespace) running it would leave it."""
    with store.session() as session:
        run = get_run(session, run_id)
        run.status, run.pid, run.host, run.heartbeat_at = "running", dead_pid(), "elsewhere 0-0 pid:[1]", heartbeat_at
        session.commit()


def test_a_run_held_on_another_host_with_a_fresh_heartbeat_stays_running_and_is_not_resumed(store, capsys):
    with store.session() as session:
        run_id = create_run(session, "planted", CONFIG.to_dict(), "cpu")
    held_elsewhere(store, run_id, heartbeat_at=time.time())  # its pid means nothing here

    assert cli_main(["runs", "--db", store.url]) == 0
    assert "interrupted" not in capsys.readouterr().out and recorded(store, run_id)[0] == "running"
    assert cli_main(["resume", str(run_id), "--db", store.url, "--quiet"]) == 2
    assert f"run {run_id} is still running (process" in capsys.readouterr().err
    assert recorded(store, run_id)[0] == "running"


def test_a_run_held_on_another_host_whose_lease_expired_is_interrupted_and_resumes(store, capsys):
    with pytest.raises(Cancelled):
        run_on_dataset(store, "planted", CONFIG.replace(retrain_epochs=1), cancel_after("search", 1))
    held_elsewhere(store, 1, heartbeat_at=time.time() - LEASE_SECONDS - 1)

    assert cli_main(["runs", "--db", store.url]) == 0
    assert "interrupted (resumable)" in capsys.readouterr().out
    assert cli_main(["resume", "1", "--db", store.url, "--quiet"]) == 0
    assert recorded(store, 1)[0] == "finished"


LIVE_RUN = textwrap.dedent("""
    import sys, time
    from engine.core.config import RunConfig
    from engine.core.events import Observer, StepFinished
    from engine.data import run_records
    from engine.data.store import open_store
    from engine.experiments.stored_run import run_on_dataset

    run_records.HEARTBEAT_SECONDS = 0.1

    class StopAtFirstStep(Observer):
        def emit(self, event):  # stays in the run, alive, until the test kills it
            if isinstance(event, StepFinished):
                time.sleep(600)

    run_on_dataset(open_store(sys.argv[1]), "planted", RunConfig.from_dict(eval(sys.argv[2])), StopAtFirstStep())
""")


def test_a_live_run_renews_its_heartbeat_refuses_a_resume_and_is_interrupted_as_soon_as_its_process_dies(store):
    child = subprocess.Popen([sys.executable, "-c", LIVE_RUN, store.url, repr(CONFIG.to_dict())])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with store.session() as session:
                runs = list_runs(session)
            if runs and runs[0].heartbeat_at > runs[0].started_at + 0.5:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the running child never renewed its heartbeat")
        with store.session() as session:
            assert mark_interrupted_runs(session) == 0
        with pytest.raises(StoreError, match=f"run 1 is still running \\(process {child.pid}\\)"):
            resume_run(store, 1)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with store.session() as session:  # at once: its heartbeat is fresh, but its process is gone
        assert mark_interrupted_runs(session) == 1
