"""An import on a background thread: one worker QObject moved to a QThread, talking only by signals.

`ImportJob` owns the thread and the worker; the worker calls `engine.importers.import_file` with an
observer whose `emit()` re-emits the engine's progress events as Qt signals and whose `cancel()` the
GUI calls from its Cancel button (the engine notices at its next check and rolls the import back).
The worker opens its own Session: a Session is never shared across threads.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from engine.events import Cancelled, Observer, PhaseStarted, StepFinished
from engine.importers import ImportFailed, ImportReport, import_file


class _SignalObserver(Observer):
    """Turns engine events into the worker's signals (emitted from the worker thread: queued to the GUI)."""

    def __init__(self, worker: "ImportWorker") -> None:
        super().__init__()
        self._worker = worker

    def emit(self, event) -> None:
        if isinstance(event, StepFinished):
            self._worker.progressed.emit(int(event.step))
        elif isinstance(event, PhaseStarted):
            self._worker.described.emit(event.description)


class ImportWorker(QObject):
    progressed = Signal(int)  # percent, 0..100
    described = Signal(str)  # what is being imported, for the status line
    succeeded = Signal(object)  # ImportReport
    failed = Signal(str, str)  # message, traceback ("" for an input error: the message says it all)
    cancelled = Signal()
    ended = Signal()  # after any of the three above: the thread may stop

    def __init__(self, sessions, path: str | Path, options: dict) -> None:
        super().__init__()  # no parent: it is moved to the job's thread
        self._sessions = sessions
        self._path = Path(path)
        self._options = options
        self.observer = _SignalObserver(self)

    @Slot()
    def run(self) -> None:
        try:
            with self._sessions() as session:
                report = import_file(session, self._path, observer=self.observer, **self._options)
        except Cancelled:
            self.cancelled.emit()
        except ImportFailed as error:
            self.failed.emit(str(error), "")
        except Exception as error:  # an engine or database bug: the user gets the message and traceback
            self.failed.emit(f"{type(error).__name__}: {error}", traceback.format_exc())
        else:
            self.succeeded.emit(report)
        self.ended.emit()


class ImportJob(QObject):
    """One import: `start()`, then exactly one of `succeeded`, `failed` or `cancelled`, in the GUI thread.

    `options` are `import_file`'s keyword arguments (name, format, mapping, separator, metadata_files,
    times_file, min_user_interactions, min_item_interactions)."""

    progressed = Signal(int)
    described = Signal(str)
    succeeded = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()

    def __init__(self, sessions, path: str | Path, options: dict, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._worker = ImportWorker(sessions, path, options)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progressed.connect(self._on_progressed)
        self._worker.described.connect(self.described)
        self._worker.succeeded.connect(self._on_succeeded)
        self._worker.failed.connect(self._on_failed)
        self._worker.cancelled.connect(self._on_cancelled)
        # Direct: quit() is thread-safe, and a GUI thread blocked in wait() could not run a queued call.
        self._worker.ended.connect(self._thread.quit, Qt.DirectConnection)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        """Asks the engine to stop; it rolls back and `cancelled` follows (within one engine step)."""
        self._worker.observer.cancel()

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def wait(self, milliseconds: int = 10_000) -> bool:
        """Blocks until the thread ended: only for closing a window, after `cancel()`."""
        return self._thread.wait(milliseconds)

    @Slot(int)
    def _on_progressed(self, percent: int) -> None:
        self.progressed.emit(percent)

    @Slot(object)
    def _on_succeeded(self, report: ImportReport) -> None:
        self.succeeded.emit(report)

    @Slot(str, str)
    def _on_failed(self, message: str, details: str) -> None:
        self.failed.emit(message, details)

    @Slot()
    def _on_cancelled(self) -> None:
        self.cancelled.emit()
