"""A terminal view of engine progress: each phase a tqdm bar on stderr (with the whole run's ETA in its
description when the run's configuration is known), epochs and messages as lines."""

from __future__ import annotations

import sys

from tqdm import tqdm

from engine.core.config import RunConfig
from engine.core.events import (
    ArchitectureWeights,
    CandidateScored,
    EpochFinished,
    Message,
    Observer,
    PhaseFinished,
    PhaseStarted,
    StepFinished,
)
from engine.core.run_eta import RunEta


class ProgressBarObserver(Observer):
    """Shows each phase as a tqdm bar, epochs and messages as lines above it. With `run_config` (a training
    run's), the bar's description also says how long the whole run has left (engine.core.run_eta)."""

    def __init__(self, quiet: bool = False, run_config: RunConfig | None = None) -> None:
        super().__init__()
        self.quiet = quiet
        self.bar: tqdm | None = None
        self.run_eta = RunEta(run_config) if run_config is not None else None

    def emit(self, event) -> None:
        if self.quiet:
            return
        if self.run_eta is not None:
            self.run_eta.observe(event)
        if isinstance(event, PhaseStarted):
            self.bar = tqdm(total=event.total_steps, desc=event.phase, unit="step", dynamic_ncols=True,
                            file=sys.stderr)
            self._describe(event.phase)
            if event.description:
                tqdm.write(f"{event.phase}: {event.description}", file=sys.stderr)
        elif isinstance(event, StepFinished) and self.bar is not None:
            self.bar.update(event.step - self.bar.n)
            self._describe(event.phase)
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in event.losses.items()}, refresh=False)
        elif isinstance(event, ArchitectureWeights) and self.bar is not None:
            self.bar.set_postfix_str(" ".join(f"k{k}={w:.2f}" for k, w in zip(event.candidates, event.weights)))
        elif isinstance(event, EpochFinished):
            shown = ", ".join(f"{k} {v:.4f}" for k, v in event.metrics.items() if k != "epoch")
            tqdm.write(f"{event.phase} epoch {event.epoch}: {shown} [{event.protocol}]", file=sys.stderr)
        elif isinstance(event, CandidateScored):
            shown = ", ".join(f"{k} {v:.4f}" for k, v in event.metrics.items() if k in ("NDCG@10", "HR@10"))
            tqdm.write(f"{event.stage} k = {event.length}, seed {event.seed}: {shown} [{event.protocol}] "
                       f"after {event.epochs} epochs", file=sys.stderr)
        elif isinstance(event, PhaseFinished) and self.bar is not None:
            self.bar.update(self.bar.total - self.bar.n)
            self.bar.close()
            self.bar = None
        elif isinstance(event, Message):
            tqdm.write(("warning: " if event.level == "warning" else "") + event.text, file=sys.stderr)

    def _describe(self, phase: str) -> None:
        remaining = self.run_eta.remaining() if self.run_eta is not None else None
        if remaining is not None:
            self.bar.set_description_str(f"{phase} (run ~{tqdm.format_interval(remaining)} left)", refresh=False)
