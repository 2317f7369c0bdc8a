"""Engine work on a background thread: one worker QObject moved to a QThread, talking only by signals.

`EngineJob(task, expected_errors)` runs `task(observer)` (an engine call that reports through an
`Observer`) on its own thread. The observer's `emit()` re-emits the engine's progress events as Qt
signals; its `cancel()` is what a Cancel button calls (the engine notices at its next check). Exactly one
of `succeeded`, `failed` or `cancelled` follows `start()`, in the GUI thread. A task opens its own
Session if it needs one: a Session is never shared across threads.
"""

from __future__ import annotations

import traceback
from typing import Callable

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from engine.core.events import Cancelled, Observer, PhaseStarted, StepFinished


class _SignalObserver(Observer):
    """Turns engine events into the worker's signals (emitted from the worker thread: queued to the GUI)."""

    def __init__(self, worker: "EngineWorker") -> None:
        super().__init__()
        self._worker = worker

    def emit(self, event) -> None:
        if isinstance(event, StepFinished) and event.total_steps:
            self._worker.progressed.emit(int(100 * event.step / event.total_steps))
        elif isinstance(event, PhaseStarted):
            self._worker.described.emit(event.description)


class EngineWorker(QObject):
    progressed = Signal(int)  # percent of the current phase, 0..100
    described = Signal(str)  # what is being done, for a status line
    succeeded = Signal(object)  # the task's result
    failed = Signal(str, str)  # message, traceback ("" for an expected error: its message says it all)
    cancelled = Signal()
    ended = Signal()  # after any of the three above: the thread may stop

    def __init__(self, task: Callable[[Observer], object], expected_errors: tuple[type, ...]) -> None:
        super().__init__()  # no parent: it is moved to the job's thread
        self._task = task
        self._expected_errors = expected_errors
        self.observer = _SignalObserver(self)

    @Slot()
    def run(self) -> None:
        try:
            result = self._task(self.observer)
        except Cancelled:
            self.cancelled.emit()
        except self._expected_errors as error:
            self.failed.emit(str(error), "")
        except Exception as error:  # an engine or database bug: the user gets the message and traceback
            self.failed.emit(f"{type(error).__name__}: {error}", traceback.format_exc())
        else:
            self.succeeded.emit(result)
        self.ended.emit()


class EngineJob(QObject):
    progressed = Signal(int)
    described = Signal(str)
    succeeded = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()

    def __init__(self, task: Callable[[Observer], object], expected_errors: tuple[type, ...] = (),
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._worker = EngineWorker(task, expected_errors)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progressed.connect(self._on_progressed)
        self._worker.described.connect(self._on_described)
        self._worker.succeeded.connect(self._on_succeeded)
        self._worker.failed.connect(self._on_failed)
        self._worker.cancelled.connect(self._on_cancelled)
        # Direct: quit() is thread-safe, and a GUI thread blocked in wait() could not run a queued call.
        self._worker.ended.connect(self._thread.quit, Qt.DirectConnection)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        """Asks the engine to stop; `cancelled` follows within one engine step."""
        self._worker.observer.cancel()

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def wait(self, milliseconds: int = 10_000) -> bool:
        """Blocks until the thread ended: only for closing a window, after `cancel()`."""
        return self._thread.wait(milliseconds)

    @Slot(int)
    def _on_progressed(self, percent: int) -> None:
        self.progressed.emit(percent)

    @Slot(str)
    def _on_described(self, text: str) -> None:
        self.described.emit(text)

    @Slot(object)
    def _on_succeeded(self, result) -> None:
        self.succeeded.emit(result)

    @Slot(str, str)
    def _on_failed(self, message: str, details: str) -> None:
        self.failed.emit(message, details)

    @Slot()
    def _on_cancelled(self) -> None:
        self.cancelled.emit()
