"""The CLI's progress bar: each phase's bar carries the whole run's ETA when it knows the run's configuration."""

from __future__ import annotations

import re

from engine.cli.progress_bar import ProgressBarObserver
from engine.core.config import RunConfig
from engine.core.events import PhaseStarted, StepFinished

CONFIG = RunConfig(search_epochs=2, retrain_epochs=3)


def run_seconds_left(description: str) -> int:
    minutes, seconds = re.search(r"run ~(\d+):(\d+) left", description).groups()
    return int(minutes) * 60 + int(seconds)


def test_the_phase_bar_shows_the_whole_runs_eta_and_it_decreases(capsys):
    observer = ProgressBarObserver(run_config=CONFIG)
    observer.emit(PhaseStarted("search", 200))
    assert observer.bar.desc == "search"  # nothing timed yet: no guess
    observer.emit(StepFinished("search", 50, 200, eta_seconds=150.0))
    first = run_seconds_left(observer.bar.desc)
    observer.emit(StepFinished("search", 100, 200, eta_seconds=100.0))
    second = run_seconds_left(observer.bar.desc)
    assert observer.bar.desc.startswith("search (run ~")
    assert first > second > 100  # beyond the search's own 100 s: the retraining and evaluation to come
    observer.bar.close()


def test_without_a_run_configuration_the_bar_shows_only_its_phase(capsys):
    observer = ProgressBarObserver()
    observer.emit(PhaseStarted("export", 3))
    observer.emit(StepFinished("export", 1, 3, eta_seconds=2.0))
    assert observer.bar.desc == "export"
    observer.bar.close()
