"""Run history in the store: records of runs, their curves (run series) and artifacts, and the
`RunRecorder` observer that writes a training run's curves as it goes."""
from __future__ import annotations

import json
import os
import time

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from engine.core.events import (
    ArchitectureWeights,
    EpochFinished,
    Event,
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


def create_run(session: Session, dataset_name: str, config: dict, device: str) -> int:
    """Records a new run in status "running" and commits; returns its id."""
    dataset = session.scalar(sa.select(Dataset).where(Dataset.name == dataset_name))
    run = Run(dataset_id=dataset.id if dataset else None, dataset_name=dataset_name, config=config,
              status="running", device=device, started_at=time.time(), version=__version__,
              pid=os.getpid())
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
    StoreError if it finished or is still running."""
    run = _get_run(session, run_id)
    if run.status == "finished":
        raise StoreError(f"run {run_id} has finished; there is nothing to resume")
    if run.status == "running" and run.pid is not None and process_alive(run.pid):
        raise StoreError(f"run {run_id} is still running (process {run.pid})")
    run.status, run.error, run.finished_at, run.seconds, run.pid = "running", None, None, None, os.getpid()
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

    Returns how many (0 when the store cannot be written now: the runs are then listed as recorded).
    Call at start-up before listing runs."""
    count = 0
    for run in session.scalars(sa.select(Run).where(Run.status == "running")):
        if run.pid is None or not process_alive(run.pid):
            run.status, run.error = "interrupted", "the process ended before the run finished"
            count += 1
    try:
        session.commit()
    except (StoreReadOnly, StoreBusy):  # a role that may only read, or a store busy writing: list as they are
        session.rollback()
        return 0
    return count


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


class RunRecorder(Observer):
    """Forwards every event to an inner observer and records the run's curves into run_series.

    Recorded: StepFinished losses (name = loss name, per step), EpochFinished metrics and mean losses
    (step = epoch number, per epoch), ArchitectureWeights (name `weight/k=<length>` and `alpha/k=<length>`). Points are written
    in batches through its own Session (every `batch_size` points or `interval` seconds, and on
    PhaseFinished and `close()`), so that recording never slows the training loop down.
    """

    def __init__(self, sessions: sessionmaker[Session], run_id: int, inner: Observer | None = None,
                 batch_size: int = 200, interval: float = 1.0) -> None:
        super().__init__()
        self.inner = inner or Observer()
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
        elif isinstance(event, ArchitectureWeights):
            for length, alpha, weight in zip(event.candidates, event.alpha, event.weights):
                self._pending.append(("search", event.step, f"weight/k={length}", weight, "step"))
                self._pending.append(("search", event.step, f"alpha/k={length}", alpha, "step"))
        if isinstance(event, PhaseFinished) or len(self._pending) >= self._batch_size or (
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

    def cancel(self) -> None:
        self.inner.cancel()

    @property
    def cancel_requested(self) -> bool:
        return self.inner.cancel_requested

    def check(self) -> None:
        self.inner.check()


def to_json(value) -> str:
    """JSON text of a stats or run dict (numpy scalars included), for the CLI."""
    return json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v))
