"""The whole run's ETA (engine.core.run_eta.RunEta) from progress events, on a clock the tests move."""

from __future__ import annotations

import pytest

from engine.core.config import RunConfig
from engine.core.events import PhaseFinished, PhaseStarted, StepFinished
from engine.core.run_eta import EVALUATION_EPOCHS, RETRAIN_STEP_SHARE, RunEta

CONFIG = RunConfig(search_epochs=2, retrain_epochs=3)
SPE = 10  # steps per epoch: the search has 20 steps, the retraining 30


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def test_nothing_is_estimated_before_a_step_is_timed(clock):
    eta = RunEta(CONFIG, clock)
    assert eta.remaining() is None
    eta.observe(PhaseStarted("search", 2 * SPE))
    assert eta.remaining() is None


def test_during_the_search_the_retraining_and_evaluation_are_estimated_from_the_search_step(clock):
    eta = RunEta(CONFIG, clock)
    eta.observe(PhaseStarted("search", 2 * SPE))
    eta.observe(StepFinished("search", 5, 2 * SPE, eta_seconds=15.0))  # 1 s per search step
    retrain_step = RETRAIN_STEP_SHARE["first"]
    retrain = 3 * SPE * retrain_step
    evaluation = EVALUATION_EPOCHS * SPE * retrain_step
    assert eta.remaining() == pytest.approx(15.0 + retrain + evaluation)


def test_a_second_order_search_takes_its_own_share(clock):
    eta = RunEta(CONFIG.replace(search_order="second"), clock)
    eta.observe(PhaseStarted("search", 2 * SPE))
    eta.observe(StepFinished("search", 10, 2 * SPE, eta_seconds=10.0))
    step = RETRAIN_STEP_SHARE["second"]
    assert eta.remaining() == pytest.approx(10.0 + 3 * SPE * step + EVALUATION_EPOCHS * SPE * step)


def test_the_estimate_counts_down_between_events_and_never_below_the_later_phases(clock):
    eta = RunEta(CONFIG, clock)
    eta.observe(PhaseStarted("search", 2 * SPE))
    eta.observe(StepFinished("search", 10, 2 * SPE, eta_seconds=10.0))
    first = eta.remaining()
    clock.now += 4
    assert eta.remaining() == pytest.approx(first - 4)
    clock.now += 60  # the search overran its ETA: only the later phases are left to count
    assert eta.remaining() == pytest.approx(first - 10)


def test_the_retrainings_own_timed_steps_replace_the_estimate(clock):
    eta = RunEta(CONFIG, clock)
    eta.observe(PhaseStarted("search", 2 * SPE))
    eta.observe(StepFinished("search", 10, 2 * SPE, eta_seconds=10.0))
    eta.observe(PhaseFinished("search", 20.0))
    eta.observe(PhaseStarted("retrain", 3 * SPE))
    before = eta.remaining()
    assert before == pytest.approx((3 + EVALUATION_EPOCHS) * SPE * RETRAIN_STEP_SHARE["first"])
    eta.observe(StepFinished("retrain", 6, 3 * SPE, eta_seconds=48.0))  # 2 s per step, not 0.5
    assert eta.remaining() == pytest.approx(48.0 + EVALUATION_EPOCHS * SPE * 2.0)


def test_the_evaluation_counts_down_and_a_finished_run_has_nothing_left(clock):
    eta = RunEta(CONFIG, clock)
    eta.observe(PhaseStarted("retrain", 3 * SPE))
    eta.observe(StepFinished("retrain", 29, 3 * SPE, eta_seconds=1.0))  # 1 s per step
    eta.observe(PhaseFinished("retrain", 30.0))
    eta.observe(PhaseStarted("evaluate", 2))
    evaluation = EVALUATION_EPOCHS * SPE * 1.0
    assert eta.remaining() == pytest.approx(evaluation)
    clock.now += 2
    assert eta.remaining() == pytest.approx(evaluation - 2)
    eta.observe(PhaseFinished("evaluate", 3.0))
    assert eta.remaining() == 0.0


def test_a_run_resumed_in_its_retraining_has_no_search_left(clock):
    eta = RunEta(CONFIG, clock)
    eta.observe(PhaseStarted("retrain", 3 * SPE, "resumed after epoch 1"))
    eta.observe(StepFinished("retrain", 15, 3 * SPE, eta_seconds=15.0))  # 1 s per step
    assert eta.left == ("evaluate",)
    assert eta.remaining() == pytest.approx(15.0 + EVALUATION_EPOCHS * SPE)


def test_a_real_runs_events_give_an_estimate_that_reaches_zero():
    from engine.core.events import RecordingObserver
    from engine.core.presets import quick_demo
    from engine.data.sequences import build_sequences
    from engine.data.synthetic import planted_log
    from engine.training.runner import run_automlp

    config = quick_demo().replace(candidate_lengths=[1, 2], max_length=8, embedding_dim=8, sequence_hidden=8,
                                  channel_hidden=16, batch_size=8, search_epochs=1, retrain_epochs=1,
                                  device="cpu")
    observer = RecordingObserver()
    run_automlp(build_sequences(planted_log(n_users=40, n_items=200)), config, observer)
    eta = RunEta(config)
    estimates = []
    for event in observer.events:
        eta.observe(event)
        estimates.append(eta.remaining())
    assert any(value is not None and value > 0 for value in estimates)
    assert estimates[-1] == 0.0
