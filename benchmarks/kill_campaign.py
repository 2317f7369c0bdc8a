"""Fault injection for training: kill a stored run at random moments with SIGKILL, resume it, and check
that it ends exactly as the uninterrupted run and that the store loses nothing.

    python benchmarks/kill_campaign.py --rounds 30

Each round starts a small run (planted data, search then retraining) in a child process and kills it at a
random moment: after a random number of finished epochs (the child prints one line per epoch), a random
fraction of an epoch later (mid-step, mid-epoch, while a checkpoint is written, while the bundle is saved),
then opens the store as the CLI does (runs of dead processes become `interrupted`) and resumes the run as
many times as it takes, killing the resumed process too in a share of the rounds. Counted: kills, resumes,
runs whose final test metrics differ from the uninterrupted run's ("mismatch"), and data lost (a store that
fails its integrity check, a dataset whose interactions changed, a run left `running`, a finished run
without its bundle). Prints one JSON line and appends it to benchmarks/results/kill_campaign.jsonl.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import append_result  # noqa: E402
from engine.core.config import RunConfig  # noqa: E402
from engine.data.importers import import_file  # noqa: E402
from engine.data.run_records import (
    get_run,
    latest_artifact,
    list_runs,
    mark_interrupted_runs,
)
from engine.data.store import load_log, open_store  # noqa: E402
from engine.data.synthetic import planted_log  # noqa: E402
from engine.experiments.stored_run import can_resume, run_on_dataset  # noqa: E402

CONFIG = RunConfig(candidate_lengths=[1, 2, 4], max_length=12, embedding_dim=16, sequence_hidden=16,
                   channel_hidden=32, batch_size=32, search_epochs=3, retrain_epochs=4, eval_negatives=20,
                   device="cpu", seed=11)

CHILD = """
import sys
import torch
torch.set_num_threads(1)
from engine.core.config import RunConfig
from engine.core.events import EpochFinished, Observer
from engine.data.store import open_store
from engine.experiments.stored_run import resume_run, run_on_dataset

class Progress(Observer):  # one line per finished epoch, so that the parent can aim its kill
    def emit(self, event):
        if isinstance(event, EpochFinished):
            print(event.phase, event.epoch, flush=True)

store = open_store(sys.argv[1])
print("started", flush=True)
if sys.argv[2] == "start":
    run_on_dataset(store, "planted", RunConfig.from_dict(eval(sys.argv[3])), Progress())
else:
    resume_run(store, int(sys.argv[2]), Progress())
"""


def make_store(folder: Path) -> str:
    url = f"sqlite:///{folder / 'store.sqlite'}"
    store = open_store(url)
    log = planted_log(n_users=150, n_items=80, min_length=8, max_length=16, seed=5)
    csv = folder / "planted.csv"
    csv.write_text("user,item,timestamp\n" + "".join(
        f"{u},{i},{t}\n" for u, i, t in zip(log.users, log.items, log.timestamps)))
    with store.session() as session:
        import_file(session, csv, name="planted", min_user_interactions=3)
    store.close()
    return url


def child(url: str, what: str, kill_after_lines: int | None, then_seconds: float = 0.0) -> bool:
    """Runs the child; with `kill_after_lines`, SIGKILLs it `then_seconds` after it has printed that many
    progress lines ("started", then one per finished epoch), if it is still going. True if killed."""
    process = subprocess.Popen([sys.executable, "-c", CHILD, url, what, repr(CONFIG.to_dict())],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if kill_after_lines is not None:
        for _ in range(kill_after_lines):
            if not process.stdout.readline():
                break
        try:
            process.wait(timeout=then_seconds)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
    _, errors = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the child failed: {errors[-2000:]}")
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the parent and its child alternate; neither should crowd the other out
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="kill-campaign-"))
    url = make_store(folder)
    store = open_store(url)
    with store.session() as session:
        reference_log = load_log(session, "planted")
    started = time.monotonic()
    _, reference = run_on_dataset(store, "planted", CONFIG)
    run_seconds = time.monotonic() - started
    expected = json.loads(json.dumps(reference.test_metrics))
    epochs = CONFIG.search_epochs + CONFIG.retrain_epochs
    epoch_seconds = run_seconds / epochs

    def kill_at() -> tuple[int, float]:
        """After a random number of progress lines, a random moment within the next epoch (or, after the
        last epoch, within the test evaluation and the bundle save)."""
        return rng.randint(1, epochs + 1), rng.uniform(0.0, epoch_seconds)

    kills = resumes = mismatches = lost = fresh_starts = before_record = 0
    for round_number in range(args.rounds):
        with store.session() as session:
            before = {run.id for run in list_runs(session)}
        killed = child(url, "start", *kill_at())
        kills += killed
        with store.session() as session:
            mark_interrupted_runs(session)
            created = {run.id for run in list_runs(session)} - before
        if not created:  # killed while starting up, before the run was recorded
            before_record += 1
            continue
        (run_id,) = created
        while True:
            with store.session() as session:
                status = get_run(session, run_id).status
            if status == "finished":
                break
            if not can_resume(store, run_id):  # killed before its first checkpoint: nothing to resume
                fresh_starts += 1
                break
            resumes += 1
            again = child(url, str(run_id), *(kill_at() if rng.random() < 0.3 else (None,)))
            kills += again
            with store.session() as session:
                mark_interrupted_runs(session)
        with store.session() as session:
            run = get_run(session, run_id)
            if run.status == "finished" and run.metrics["test"] != expected:
                mismatches += 1
            bundle = latest_artifact(session, run_id, "bundle")
            if run.status == "running" or (run.status == "finished" and (bundle is None or not Path(bundle.path).exists())):
                lost += 1
        print(f"round {round_number + 1}: run {run_id} {run.status}", file=sys.stderr)
    with store.engine.connect() as connection:
        integrity = connection.exec_driver_sql("PRAGMA integrity_check").scalar()
    with store.session() as session:
        log = load_log(session, "planted")
    unchanged = (log.users == reference_log.users).all() and (log.items == reference_log.items).all()
    lost += (integrity != "ok") + (not unchanged)
    append_result("kill_campaign.jsonl", {
        "benchmark": "kill_campaign", "rounds": args.rounds, "seed": args.seed, "kills": kills,
        "resumes": resumes, "killed_before_the_run_was_recorded": before_record,
        "killed_before_first_checkpoint": fresh_starts, "mismatches": mismatches,
        "data_lost": lost, "integrity_check": integrity, "run_seconds": round(run_seconds, 1),
        "seconds": round(time.monotonic() - started, 1)})


if __name__ == "__main__":
    main()
