"""A terminal view of engine progress: each phase a tqdm bar on stderr, epochs and messages as lines."""

from __future__ import annotations

import sys

from tqdm import tqdm

from engine.core.events import (
    ArchitectureWeights,
    EpochFinished,
    Message,
    Observer,
    PhaseFinished,
    PhaseStarted,
    StepFinished,
)


class ProgressBarObserver(Observer):
    """Shows each phase as a tqdm bar, epochs and messages as lines above it."""

    def __init__(self, quiet: bool = False) -> None:
        super().__init__()
        self.quiet = quiet
        self.bar: tqdm | None = None

    def emit(self, event) -> None:
        if self.quiet:
            return
        if isinstance(event, PhaseStarted):
            self.bar = tqdm(total=event.total_steps, desc=event.phase, unit="step", dynamic_ncols=True,
                            file=sys.stderr)
            if event.description:
                tqdm.write(f"{event.phase}: {event.description}", file=sys.stderr)
        elif isinstance(event, StepFinished) and self.bar is not None:
            self.bar.update(event.step - self.bar.n)
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in event.losses.items()}, refresh=False)
        elif isinstance(event, ArchitectureWeights) and self.bar is not None:
            self.bar.set_postfix_str(" ".join(f"k{k}={w:.2f}" for k, w in zip(event.candidates, event.weights)))
        elif isinstance(event, EpochFinished):
            shown = ", ".join(f"{k} {v:.4f}" for k, v in event.metrics.items() if k != "epoch")
            tqdm.write(f"{event.phase} epoch {event.epoch}: {shown} [{event.protocol}]", file=sys.stderr)
        elif isinstance(event, PhaseFinished) and self.bar is not None:
            self.bar.update(self.bar.total - self.bar.n)
            self.bar.close()
            self.bar = None
        elif isinstance(event, Message):
            tqdm.write(("warning: " if event.level == "warning" else "") + event.text, file=sys.stderr)
