"""The one bridge between the engine and Qt: a worker QObject on a QThread that runs AutoMLP on a stored
dataset (engine.experiments.stored_run.run_on_dataset: run record, curves, model bundle) and turns the engine's
observer events into Qt signals.

The worker has no parent and is moved to its own QThread; it talks to the GUI only through signals
(queued across threads). Cancelling sets the observer's thread-safe flag; the engine stops at its next
`check()`, within one training step.
"""

from __future__ import annotations

import traceback

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from engine.core.config import ConfigError, RunConfig
from engine.core.events import (
    ArchitectureWeights,
    CandidateScored,
    Cancelled,
    EpochFinished,
    LengthChosen,
    Message,
    Observer,
    PhaseFinished,
    PhaseStarted,
    SearchDecided,
    StepFinished,
)
from engine.data.sequences import DataError
from engine.data.store_errors import StoreError
from engine.experiments.stored_run import resume_run, run_on_dataset
from engine.serving.bundle import BundleError
from engine.training.checkpoint import CheckpointError

# The engine's refusals, whose messages name the problem (file, key, what to do): shown without a type name.
ENGINE_REFUSALS = (StoreError, CheckpointError, ConfigError, DataError, BundleError)


class SignalObserver(Observer):
    """An engine observer whose emit() re-emits each event as a signal of `worker` (on the worker thread;
    Qt queues it to the GUI thread). Events are already rate-limited at the source (~5/s)."""

    def __init__(self, worker: "RunWorker") -> None:
        super().__init__()
        self._worker = worker

    def emit(self, event) -> None:
        worker = self._worker
        if isinstance(event, PhaseStarted):
            worker.phase_started.emit(event.phase, event.total_steps, event.description, event.epochs)
        elif isinstance(event, StepFinished):
            worker.step_finished.emit(event)
        elif isinstance(event, ArchitectureWeights):
            worker.weights_updated.emit(event)
        elif isinstance(event, EpochFinished):
            worker.epoch_finished.emit(event)
        elif isinstance(event, PhaseFinished):
            worker.phase_finished.emit(event.phase, event.seconds)
        elif isinstance(event, SearchDecided):
            worker.search_decided.emit(event)
        elif isinstance(event, CandidateScored):
            worker.candidate_scored.emit(event)
        elif isinstance(event, LengthChosen):
            worker.length_chosen.emit(event)
        elif isinstance(event, Message):
            worker.message_logged.emit(event.text, event.level)


class RunWorker(QObject):
    """Runs one stored run when `run()` is invoked (connect it to its QThread's `started`), or resumes
    the interrupted run `resume_run_id` from its checkpoint."""

    phase_started = Signal(str, int, str, int)  # phase, total steps, description, epochs
    step_finished = Signal(object)  # engine.core.events.StepFinished
    weights_updated = Signal(object)  # engine.core.events.ArchitectureWeights
    epoch_finished = Signal(object)  # engine.core.events.EpochFinished
    phase_finished = Signal(str, float)  # phase, seconds
    search_decided = Signal(object)  # engine.core.events.SearchDecided
    candidate_scored = Signal(object)  # engine.core.events.CandidateScored (exhaustive and confirm stages)
    length_chosen = Signal(object)  # engine.core.events.LengthChosen: the run's length and its verdict
    message_logged = Signal(str, str)  # text, level
    run_finished = Signal(object)  # RunResult.summary() plus "run_id"
    run_failed = Signal(str, str)  # message, full traceback
    run_cancelled = Signal()
    done = Signal()  # after any of the three endings: the thread may quit

    def __init__(self, store, dataset_name: str, config: RunConfig, resume_run_id: int | None = None) -> None:
        super().__init__()  # no parent: it is moved to its own thread
        self._store = store
        self._resume_run_id = resume_run_id
        self._dataset_name = dataset_name
        self._config = config
        self.observer = SignalObserver(self)

    def cancel(self) -> None:
        """Safe from any thread: the engine raises Cancelled at its next check."""
        self.observer.cancel()

    @Slot()
    def run(self) -> None:
        try:
            # The engine opens its own Sessions on this thread; the GUI's are never shared.
            if self._resume_run_id is not None:
                run_id, result = self._resume_run_id, resume_run(self._store, self._resume_run_id, self.observer)
            else:
                run_id, result = run_on_dataset(self._store, self._dataset_name, self._config, self.observer)
            summary = result.summary()
            summary["run_id"] = run_id
            self.run_finished.emit(summary)
        except Cancelled:
            self.run_cancelled.emit()
        except ENGINE_REFUSALS as error:
            self.run_failed.emit(str(error), traceback.format_exc())
        except Exception as error:  # any other engine error reaches the user, with its traceback
            self.run_failed.emit(f"{type(error).__name__}: {error}", traceback.format_exc())
        finally:
            self.done.emit()


class RunThread(QObject):
    """Owns one RunWorker and its QThread for the length of a run; `running` says whether one is alive.

    `running_changed(False)` comes only once the thread has ended and been cleaned up, so that a new run
    can start right then."""

    running_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker: RunWorker | None = None
        self.thread: QThread | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None

    def start(self, store, dataset_name: str, config: RunConfig, connect,
              resume_run_id: int | None = None) -> RunWorker:
        """Creates the worker and its thread, calls `connect(worker)` so that the caller's slots are
        connected before the first event can be emitted, and starts the thread (a new run, or the
        resumption of `resume_run_id`)."""
        if self.running:
            raise RuntimeError("a run is already in progress")
        thread = QThread()
        worker = RunWorker(store, dataset_name, config, resume_run_id)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        # quit() is thread-safe; a direct call lets the thread end even while the GUI thread waits on it
        worker.done.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        thread.finished.connect(self._on_thread_finished)  # queued to this object's (GUI) thread
        connect(worker)
        self.worker, self.thread = worker, thread
        thread.start()
        self.running_changed.emit(True)
        return worker

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Cancels a running run and waits for its thread to end; does nothing when idle."""
        if self.thread is None:
            return
        self.worker.cancel()
        self.thread.quit()  # takes effect once run() returns
        self.thread.wait(timeout_ms)
        self._on_thread_finished()

    @Slot()
    def _on_thread_finished(self) -> None:
        # A late notice from a thread that shutdown() already cleaned up finds none or a live one.
        if self.thread is None or not self.thread.isFinished():
            return
        self.thread.deleteLater()
        self.worker.deleteLater()
        self.thread, self.worker = None, None
        self.running_changed.emit(False)
