"""Typed progress events and the observer that long engine functions report through.

Every long function (import, search, retrain, evaluate, batch recommend, export) takes an optional
`Observer`. It sends small frozen dataclasses out through `observer.emit(event)` and asks
`observer.check()` between steps, which raises `Cancelled` once a cancel was requested. The Qt worker
subclasses `Observer` and turns events into signals; the CLI turns them into a progress bar.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


class Cancelled(Exception):
    """Raised inside an engine function when its observer asked it to stop."""


@dataclass(frozen=True)
class PhaseStarted:
    phase: str  # "import", "search", "exhaustive", "confirm", "retrain", "evaluate", "recommend", "export"
    total_steps: int
    description: str = ""
    epochs: int = 0  # the training epochs its steps span (all seeds and candidates); 0: not a training phase


@dataclass(frozen=True)
class StepFinished:
    phase: str
    step: int  # 1-based, within the phase
    total_steps: int
    losses: dict[str, float] = field(default_factory=dict)
    eta_seconds: float | None = None


@dataclass(frozen=True)
class ArchitectureWeights:
    step: int  # search step (1-based)
    candidates: tuple[int, ...]
    alpha: tuple[float, ...]
    weights: tuple[float, ...]  # softmax(alpha)
    trial: int = 0  # which of a multi-seed job's searches (0: the run's own seed)
    seed: int = 0


@dataclass(frozen=True)
class EpochFinished:
    phase: str
    epoch: int  # 1-based
    metrics: dict[str, float]  # e.g. {"train_loss": .., "valid_loss": .., "NDCG@10": ..}
    protocol: str  # evaluation protocol of the ranking metrics, e.g. "full" or "popularity-100"


@dataclass(frozen=True)
class PhaseFinished:
    phase: str
    seconds: float


@dataclass(frozen=True)
class SearchDecided:
    """The search's choice, once known (at the end of the search, or on resuming after it): a GUI shows it
    without waiting for the whole run."""
    chosen_length: int
    final_weights: dict[int, float]  # softmax(alpha) per candidate length
    margin: float
    noise: float
    decisive: bool
    reason: str  # engine.training.search: DECISIVE, WITHIN_NOISE and/or WINNER_CHANGED


@dataclass(frozen=True)
class CandidateScored:
    """A candidate length trained alone and scored on validation: one (length, seed) of an exhaustive
    search, or one candidate in a round of the confirm stage."""
    stage: str  # "exhaustive" | "confirm"
    length: int
    seed: int
    epochs: int  # epochs it trained
    metrics: dict[str, float]  # its best epoch's validation metrics
    protocol: str


@dataclass(frozen=True)
class LengthChosen:
    """The run's short-term length and the evidence for it (engine.training.length_choice), once known."""
    chosen_length: int
    decided: bool  # False: the evidence does not single one length out (the verdict says why)
    verdict: str  # e.g. "k = 20 (4 of 5 seeds)" or "k = 5 and k = 20 are equal within noise on this data"
    strategy: str  # "search" | "exhaustive"


@dataclass(frozen=True)
class Message:
    text: str
    level: str = "info"  # "info" | "warning"


Event = (PhaseStarted | StepFinished | ArchitectureWeights | EpochFinished | PhaseFinished | SearchDecided
         | CandidateScored | LengthChosen | Message)


class Observer:
    """Receives events and answers whether to stop. The base class ignores events and never stops.

    `cancel()` may be called from any thread; the engine notices it at its next `check()`.
    """

    def __init__(self) -> None:
        self._cancel_requested = threading.Event()

    def emit(self, event: Event) -> None:
        pass

    def cancel(self) -> None:
        self._cancel_requested.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested.is_set()

    def check(self) -> None:
        if self._cancel_requested.is_set():
            raise Cancelled("cancelled by the user")


class ForwardingObserver(Observer):
    """An observer in front of another (`inner`): a cancel request and the cancel check are the inner one's,
    so that whoever holds the inner observer can still stop the run."""

    def __init__(self, inner: Observer) -> None:
        super().__init__()
        self.inner = inner

    def cancel(self) -> None:
        self.inner.cancel()

    @property
    def cancel_requested(self) -> bool:
        return self.inner.cancel_requested

    def check(self) -> None:
        self.inner.check()


class RecordingObserver(Observer):
    """Keeps every event in a list: for tests, scripts and notebooks."""

    def __init__(self, cancel_when=None) -> None:
        """`cancel_when(event) -> bool` requests a cancel right after the event that satisfies it."""
        super().__init__()
        self.events: list[Event] = []
        self._cancel_when = cancel_when

    def emit(self, event: Event) -> None:
        self.events.append(event)
        if self._cancel_when is not None and self._cancel_when(event):
            self.cancel()

    def of_type(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


STEP_EVERY = 10  # a training loop reports every 10th step (each step takes milliseconds or more)


class Throttle:
    """Rate-limits a loop's events at the source, so that a GUI is never flooded.

    By step count (the default): `ready()`, called once per step, is True at steps 1, 1 + every,
    1 + 2 every, ..., so a training loop reports, and a stored run records, the same steps on every run of
    one configuration (`done_steps`: the steps a resumed phase had done before its first call).
    With `interval` (seconds) instead: True at most once per interval, for progress whose steps are not
    comparable (an import's blocks). Forced calls are always True.
    """

    def __init__(self, interval: float | None = None, every: int = STEP_EVERY, done_steps: int = 0) -> None:
        self.interval = interval
        self.every = every
        self._step = done_steps
        self._last = -float("inf")

    def ready(self, force: bool = False) -> bool:
        self._step += 1
        if self.interval is None:
            return force or (self._step - 1) % self.every == 0
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            return True
        return False


class StepClock:
    """Estimates the remaining seconds of a phase from the mean time per step so far. A resumed phase
    starts the clock at the steps and seconds its checkpoint had already done."""

    def __init__(self, total_steps: int, done_steps: int = 0, done_seconds: float = 0.0) -> None:
        self.total_steps = total_steps
        self.done_steps = done_steps
        self.done_seconds = done_seconds
        self.start = time.monotonic()

    def eta(self, step: int) -> float | None:
        if step <= self.done_steps:
            return None
        per_step = (time.monotonic() - self.start) / (step - self.done_steps)
        return per_step * max(self.total_steps - step, 0)

    @property
    def elapsed(self) -> float:
        return self.done_seconds + time.monotonic() - self.start
