"""Run history in the store: records of runs, their curves (run series) and artifacts, the
`RunRecorder` observer that writes a training run's curves as it goes, and who holds a running run (its
process and host identity, and the `Heartbeat` it renews, by which other hosts judge it alive)."""
from __future__ import annotations

import functools
import json
import os
import socket
import threading
import time
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from engine.core.events import (
    ArchitectureWeights,
    EpochFinished,
    Event,
    ForwardingObserver,
    Observer,
    PhaseFinished,
    StepFinished,
)
from engine.core.version import __version__
from engine.data.schema import (
    PHASE_ORDER,
    RUN_STATUSES,
    Artifact,
    Dataset,
    Run,
    RunSeries,
)
from engine.data.store_errors import StoreBusy, StoreError, StoreReadOnly

# ---------------------------------------------------------------- run history

# A running run renews its heartbeat this often (seconds). A run held on another host, or in another pid
# namespace, whose heartbeat is older than the lease is taken for dead: the lease allows for a few missed
# beats (a store busy for a while) and for clocks of the hosts that differ by up to a few seconds.
HEARTBEAT_SECONDS = 10.0
LEASE_SECONDS = 60.0


def create_run(session: Session, dataset_name: str, config: dict, device: str) -> int:
    """Records a new run in status "running" and commits; returns its id."""
    dataset = session.scalar(sa.select(Dataset).where(Dataset.name == dataset_name))
    now = time.time()
    run = Run(dataset_id=dataset.id if dataset else None, dataset_name=dataset_name, config=config,
              status="running", device=device, started_at=now, version=__version__,
              pid=os.getpid(), host=host_identity(), heartbeat_at=now)
    session.add(run)
    session.commit()
    return run.id


def append_series(session: Session, run_id: int, rows) -> None:
    """Appends series points `(phase, step, name, value, per)` to a run in one executemany, and commits;
    `per` is "step" or "epoch" (then `step` is the epoch number)."""
    values = [{"run_id": run_id, "phase": p, "step": int(s), "name": n, "value": float(v), "per": per}
              for p, s, n, v, per in rows]
    if values:
        session.execute(sa.insert(RunSeries), values)
    session.commit()


def truncate_series(session: Session, run_id: int, phase: str, after_step: int, after_epoch: int) -> None:
    """Deletes what a run recorded after a checkpoint: points of `phase` past its step or epoch, and every
    point of the phases after it; commits. A resumed run records them again."""
    later = PHASE_ORDER[PHASE_ORDER.index(phase) + 1:]
    session.execute(sa.delete(RunSeries).where(RunSeries.run_id == run_id, sa.or_(
        RunSeries.phase.in_(later),
        sa.and_(RunSeries.phase == phase, RunSeries.per == "step", RunSeries.step > after_step),
        sa.and_(RunSeries.phase == phase, RunSeries.per == "epoch", RunSeries.step > after_epoch))))
    session.commit()


def finish_run(session: Session, run_id: int, chosen_length: int | None, metrics: dict,
               seconds: float) -> None:
    """Marks a run finished with its chosen short-term length, final metrics and duration; commits."""
    run = _get_run(session, run_id)
    run.status, run.chosen_length, run.metrics = "finished", chosen_length, metrics
    run.seconds, run.finished_at = seconds, time.time()
    session.commit()


def fail_run(session: Session, run_id: int, status: str = "failed", error: str | None = None) -> None:
    """Ends a run as "failed", "cancelled" or "interrupted", with an error text; commits."""
    if status not in RUN_STATUSES or status in ("running", "finished"):
        raise ValueError(f"fail_run status must be failed, cancelled or interrupted, not {status!r}")
    run = _get_run(session, run_id)
    run.status, run.error, run.finished_at = status, error, time.time()
    run.seconds = run.finished_at - run.started_at
    session.commit()


def reopen_run(session: Session, run_id: int) -> None:
    """Marks an ended, unfinished run "running" again in this process (to resume it); commits.
    StoreError if it finished, if it is still running (its process alive here, or its lease unexpired on
    another host), or if another process reopened it first."""
    run = _get_run(session, run_id)
    if run.status == "finished":
        raise StoreError(f"run {run_id} has finished; there is nothing to resume")
    if run.status == "running" and holder_alive(run):
        raise StoreError(f"run {run_id} is still running ({holder(run)})")
    # Only if the record is still as read: of two processes resuming the run at once, one wins.
    reopened = session.execute(
        sa.update(Run).where(Run.id == run_id, Run.status == run.status, Run.pid.is_not_distinct_from(run.pid),
                             Run.host.is_not_distinct_from(run.host))
        .values(status="running", error=None, finished_at=None, seconds=None, pid=os.getpid(), host=host_identity(),
                heartbeat_at=time.time())
        .execution_options(synchronize_session=False))
    if reopened.rowcount != 1:
        session.rollback()
        raise StoreError(f"run {run_id} was resumed by another process just now")
    session.commit()


def add_artifact(session: Session, run_id: int, path: str, kind: str, sha256: str) -> None:
    """Records a file a run produced (bundle, export) with its sha256; commits."""
    session.add(Artifact(run_id=run_id, path=str(path), kind=kind, sha256=sha256))
    session.commit()


def latest_artifact(session: Session, run_id: int, kind: str) -> Artifact | None:
    """The run's most recent artifact of a kind ("bundle", ...), or None."""
    return session.scalars(sa.select(Artifact).where(Artifact.run_id == run_id, Artifact.kind == kind)
                           .order_by(Artifact.id.desc())).first()


def mark_interrupted_runs(session: Session) -> int:
    """Runs still "running" whose process is gone (killed, crashed) become "interrupted"; commits.

    A run of this host and pid namespace is gone when its process is; a run of another (another machine on
    a shared store, a container) when its heartbeat is older than LEASE_SECONDS. Returns how many (0 when
    the store cannot be written now: the runs are then listed as recorded). Call at start-up before
    listing runs."""
    count = 0
    try:
        for run in session.scalars(sa.select(Run).where(Run.status == "running")).all():
            if holder_alive(run):
                continue
            # unless its heartbeat was renewed since it was read
            marked = session.execute(
                sa.update(Run).where(Run.id == run.id, Run.status == "running",
                                     Run.heartbeat_at.is_not_distinct_from(run.heartbeat_at))
                .values(status="interrupted", error="the process ended before the run finished")
                .execution_options(synchronize_session=False))
            count += marked.rowcount
        session.commit()
    except (StoreReadOnly, StoreBusy):  # a role that may only read, or a store busy writing: list as they are
        session.rollback()
        return 0
    session.expire_all()
    return count


def holder_alive(run: Run, now: float | None = None) -> bool:
    """Whether the process that holds a running run is alive: asked of the process itself when it runs on
    this host in this pid namespace (or the record is older than host identities), else judged by the
    run's heartbeat lease."""
    if run.host is None or run.host == host_identity():
        return run.pid is not None and process_alive(run.pid)
    now = time.time() if now is None else now
    return run.heartbeat_at is not None and now - run.heartbeat_at < LEASE_SECONDS


def holder(run: Run) -> str:
    """Who holds a run, for messages: "process 123", or "process 123 on HOST, last heartbeat 4 s ago"."""
    if run.host is None or run.host == host_identity():
        return f"process {run.pid}"
    since = f"{time.time() - run.heartbeat_at:.0f} s ago" if run.heartbeat_at is not None else "never"
    return f"process {run.pid} on {run.host.split(' ', 1)[0]}, last heartbeat {since}"


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine, in this pid namespace (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@functools.cache
def host_identity() -> str:
    """This host and pid namespace, as runs record who holds them: host name, boot id and pid namespace
    (the last two where Linux tells them). A pid names a process only among processes of one identity."""
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    except OSError:
        pass
    try:
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        pass
    return " ".join(parts)[:300]


def renew_heartbeat(session: Session, run_id: int) -> bool:
    """Renews the heartbeat of a run this process holds (running, or marked interrupted while its process
    was paused beyond the lease: running again); commits. False if another process holds it now."""
    renewed = session.execute(
        sa.update(Run).where(Run.id == run_id, Run.pid == os.getpid(), Run.host == host_identity(),
                             Run.status.in_(("running", "interrupted")))
        .values(status="running", error=None, heartbeat_at=time.time())
        .execution_options(synchronize_session=False))
    session.commit()
    return renewed.rowcount == 1


class Heartbeat:
    """Renews a run's heartbeat every `seconds` (default HEARTBEAT_SECONDS) on a daemon thread, through
    its own Sessions, while the run trains, evaluates or saves: `with Heartbeat(store.session, run_id): ...`.
    A beat the store cannot take (busy, full) is skipped; the lease allows for it."""

    def __init__(self, sessions: sessionmaker[Session], run_id: int, seconds: float | None = None) -> None:
        self._sessions, self.run_id = sessions, run_id
        self.seconds = HEARTBEAT_SECONDS if seconds is None else seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"run-{run_id}-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stopped.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stopped.wait(self.seconds):
            try:
                with self._sessions() as session:
                    renew_heartbeat(session, self.run_id)
            except (StoreError, sa.exc.SQLAlchemyError):
                pass


def list_runs(session: Session, dataset_name: str | None = None) -> list[Run]:
    """Runs, newest first, optionally only those of one dataset."""
    query = sa.select(Run).order_by(Run.started_at.desc(), Run.id.desc())
    if dataset_name is not None:
        query = query.where(Run.dataset_name == dataset_name)
    return list(session.scalars(query))


def get_run(session: Session, run_id: int) -> Run:
    """The run with this id; StoreError if there is none."""
    return _get_run(session, run_id)


def _get_run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise StoreError(f"no run with id {run_id}")
    return run


def run_series(session: Session, run_id: int) -> pd.DataFrame:
    """All series points of a run: columns phase, step, name, value, per ("step" or "epoch"), in
    insertion order."""
    rows = session.execute(
        sa.select(RunSeries.phase, RunSeries.step, RunSeries.name, RunSeries.value, RunSeries.per)
        .where(RunSeries.run_id == run_id).order_by(RunSeries.id)).all()
    return pd.DataFrame(rows, columns=["phase", "step", "name", "value", "per"])


class RunRecorder(ForwardingObserver):
    """Forwards every event to an inner observer and records the run's curves into run_series.

    Recorded: StepFinished losses (name = loss name, per step), EpochFinished metrics and mean losses
    (step = epoch number, per epoch), ArchitectureWeights of the run's own seed (name `weight/k=<length>` and
    `alpha/k=<length>`). Points are written
    in batches through its own Session (every `batch_size` points or `interval` seconds, and on
    EpochFinished, PhaseFinished and `close()`), so that recording never slows the training loop down.
    """

    def __init__(self, sessions: sessionmaker[Session], run_id: int, inner: Observer | None = None,
                 batch_size: int = 200, interval: float = 1.0) -> None:
        super().__init__(inner or Observer())
        self.run_id = run_id
        self._sessions = sessions
        self._pending: list[tuple[str, int, str, float, str]] = []
        self._batch_size = batch_size
        self._interval = interval
        self._last_flush = time.monotonic()

    def emit(self, event: Event) -> None:
        self.inner.emit(event)
        if isinstance(event, StepFinished):
            self._pending += [(event.phase, event.step, k, v, "step") for k, v in event.losses.items()]
        elif isinstance(event, EpochFinished):
            self._pending += [(event.phase, event.epoch, k, v, "epoch") for k, v in event.metrics.items()
                              if k != "epoch" and isinstance(v, (int, float))]
        elif isinstance(event, ArchitectureWeights) and event.trial == 0:
            # a multi-seed search records its first seed's curves; every seed's are in the run's length_choice
            for length, alpha, weight in zip(event.candidates, event.alpha, event.weights):
                self._pending.append(("search", event.step, f"weight/k={length}", weight, "step"))
                self._pending.append(("search", event.step, f"alpha/k={length}", alpha, "step"))
        # At an epoch's end the checkpoint follows: its points must be stored first, or a kill between the
        # two loses them for good (the resumed run starts after that epoch).
        if isinstance(event, (PhaseFinished, EpochFinished)) or len(self._pending) >= self._batch_size or (
                self._pending and time.monotonic() - self._last_flush >= self._interval):
            self.flush()

    def flush(self) -> None:
        """Writes the pending points now. A store busy with another process's long write (an import on
        SQLite) keeps them pending for the next flush: training goes on, and no point is lost."""
        if self._pending:
            try:
                with self._sessions() as session:
                    append_series(session, self.run_id, self._pending)
            except StoreBusy:
                self._last_flush = time.monotonic()
                return
            self._pending = []
        self._last_flush = time.monotonic()

    def close(self, attempts: int = 3) -> None:
        """Writes what is pending, waiting for a busy store up to `attempts` times its busy timeout;
        StoreBusy after that."""
        for _ in range(attempts - 1):
            self.flush()
            if not self._pending:
                return
        if self._pending:
            with self._sessions() as session:
                append_series(session, self.run_id, self._pending)
            self._pending = []



def to_json(value) -> str:
    """JSON text of a stats or run dict (numpy scalars included), for the CLI."""
    return json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v))
