"""The seconds left in a whole run (search, retraining, test evaluation), estimated from its progress events,
for the overall ETA that the Training page and the CLI show beside each phase's own."""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.core.config import RunConfig
from engine.core.events import PhaseFinished, PhaseStarted, StepFinished

# A retraining step's cost as a share of a search step's, used until the retraining's own steps are timed.
# A first-order search step is an α step and a weight step, both through all K short-term modules; a
# retraining step is one weight step through one, plus its share of the validation after every epoch.
# Measured on the quick demo (K = 4, 7 steps per epoch, a loaded 2-core machine): 8.6 s per search step,
# 4.6 s per retraining step, so 0.5. A second-order step costs 2.5x a first-order one (BENCHMARKS.md): 0.2.
RETRAIN_STEP_SHARE = {"first": 0.5, "second": 0.2}
# The test evaluation (two protocols over every user) in retraining epochs: 0.2 to 0.55 on the quick demo.
EVALUATION_EPOCHS = 0.5
# The phases of a run, by its length-choice strategy. The confirm stage runs only when the search is
# undecided: it is counted once it starts.
PLANS = {"search": ("search", "confirm", "retrain", "evaluate"), "exhaustive": ("exhaustive", "evaluate")}
UNFORESEEN = ("confirm",)
# Phases whose steps are retraining steps (one weight step through one short-term module)
RETRAINING_PHASES = ("retrain", "exhaustive", "confirm")


class RunEta:
    """Seconds left in a run, from the events it emits (feed every event to `observe`; read `remaining()`).

    The rule:
    - the phase in progress: its own ETA (`StepFinished.eta_seconds`: the mean time per step so far times
      the steps left), counted down by the clock between events;
    - the retraining, before its first steps are timed: `retrain_epochs` epochs of the search's steps per
      epoch (both phases walk the same training batches), each costing RETRAIN_STEP_SHARE of the search's
      measured time per step; from its first timed step on, its own ETA. Early stopping can end it sooner,
      so the overall ETA is an upper estimate while the retraining may still stop early;
    - the test evaluation: EVALUATION_EPOCHS retraining epochs, counted down by the clock while it runs;
    - an exhaustive search and a confirm stage (engine.training.length_choice): their own ETA while they
      run (their steps are retraining steps, which then time the rest); the confirm stage, run only when the
      search is undecided, is not counted before it starts. A phase's epochs (`PhaseStarted.epochs`, all
      seeds and candidates) give the steps per epoch.

    `remaining()` is None until a time per step has been measured. A resumed run starts with the phase it
    resumes (a run resumed in its retraining has no search left)."""

    def __init__(self, config: RunConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.phase: str | None = None
        self.left: tuple[str, ...] = ()  # the phases after the current one
        self.steps_per_epoch: int | None = None
        self.seconds_per_step: dict[str, float] = {}  # measured, per phase
        self._phase_seconds: float | None = None  # the current phase's remaining seconds at `_at`
        self._at = 0.0
        self.finished = False

    def observe(self, event) -> None:
        plan = PLANS.get(self.config.strategy, PLANS["search"])
        if isinstance(event, PhaseStarted) and event.phase in plan:
            self.phase = event.phase
            self.left = tuple(phase for phase in plan[plan.index(event.phase) + 1:] if phase not in UNFORESEEN)
            epochs = event.epochs or {"search": self.config.search_epochs,
                                      "retrain": self.config.retrain_epochs}.get(event.phase)
            if epochs and self.steps_per_epoch is None:
                self.steps_per_epoch = max(event.total_steps // epochs, 1)
            self._phase_seconds = self._estimate("evaluate") if event.phase == "evaluate" else None
            self._at = self.clock()
        elif isinstance(event, StepFinished) and event.phase == self.phase and event.eta_seconds is not None:
            steps_left = event.total_steps - event.step
            if steps_left > 0:
                self.seconds_per_step[event.phase] = event.eta_seconds / steps_left
            self._phase_seconds, self._at = event.eta_seconds, self.clock()
        elif isinstance(event, PhaseFinished) and event.phase == self.phase:
            self._phase_seconds, self._at = 0.0, self.clock()
            self.finished = event.phase == "evaluate"

    def remaining(self) -> float | None:
        """Seconds left in the whole run, or None while nothing has been timed yet."""
        if self.finished:
            return 0.0
        if self._phase_seconds is None:
            current = self._estimate(self.phase) if self.phase is not None else None
        else:
            current = max(self._phase_seconds - (self.clock() - self._at), 0.0)
        later = [self._estimate(phase) for phase in self.left]
        if current is None or None in later:
            return None
        return current + sum(later)

    def _estimate(self, phase: str) -> float | None:
        """A whole phase's seconds, from what has been timed so far (None: nothing to go on)."""
        retrain_step = next((self.seconds_per_step[phase] for phase in RETRAINING_PHASES
                             if phase in self.seconds_per_step), None)
        if retrain_step is None and "search" in self.seconds_per_step:
            retrain_step = self.seconds_per_step["search"] * RETRAIN_STEP_SHARE.get(self.config.search_order, 0.5)
        if retrain_step is None or self.steps_per_epoch is None:
            return None
        retrain_epoch = retrain_step * self.steps_per_epoch
        if phase == "retrain":
            return retrain_epoch * self.config.retrain_epochs
        if phase == "evaluate":
            return retrain_epoch * EVALUATION_EPOCHS
        return None  # the search and the others are only ever the current phase, timed by their own steps
