"""The retraining's learning-rate schedule: a linear warm-up, then the rate held or a cosine decay to zero;
applied at every step of `fit`, and continued exactly by a resumed run."""

from __future__ import annotations

import pytest

from engine.core.config import ConfigError, RunConfig
from engine.data.sequences import build_sequences
from engine.data.synthetic import planted_log
from engine.training.fit import scheduled_lr
from engine.training.runner import run_automlp
from tests.engine.test_checkpoint import assert_same_run, cancelled_after

CONFIG = RunConfig(candidate_lengths=[2], max_length=10, embedding_dim=16, sequence_hidden=16, channel_hidden=32,
                   batch_size=32, retrain_epochs=4, patience=10, eval_negatives=20, device="cpu", seed=5,
                   lr=0.01, lr_warmup_epochs=1, lr_decay="cosine")


def test_the_warm_up_rises_linearly_to_the_learning_rate():
    config = RunConfig(lr=0.01, lr_warmup_epochs=2, retrain_epochs=10)
    rates = [scheduled_lr(config, step, steps_per_epoch=5) for step in range(10)]
    assert rates == pytest.approx([0.001 * (step + 1) for step in range(10)])
    assert scheduled_lr(config, 10, steps_per_epoch=5) == pytest.approx(0.01)


def test_without_a_decay_the_rate_is_held_after_the_warm_up():
    config = RunConfig(lr=0.01, lr_warmup_epochs=1, retrain_epochs=10)
    assert {scheduled_lr(config, step, 5) for step in range(5, 50)} == {0.01}
    assert {scheduled_lr(RunConfig(lr=0.01), step, 5) for step in range(150)} == {0.01}


def test_the_cosine_decay_halves_the_rate_midway_and_ends_near_zero():
    config = RunConfig(lr=0.01, lr_decay="cosine", retrain_epochs=10)
    assert scheduled_lr(config, 0, 10) == pytest.approx(0.01)
    assert scheduled_lr(config, 50, 10) == pytest.approx(0.005)
    assert scheduled_lr(config, 99, 10) < 0.01 * 1e-3
    rates = [scheduled_lr(config, step, 10) for step in range(100)]
    assert rates == sorted(rates, reverse=True)


def test_fit_trains_each_step_at_the_scheduled_rate(tmp_path):
    data = build_sequences(planted_log(n_users=100, n_items=60, min_length=8, max_length=14, seed=2))
    checkpoint = cancelled_after("retrain", 2, data, tmp_path / "run.safetensors", CONFIG)
    steps_per_epoch = checkpoint.step // 2
    last_rate = checkpoint.state["optimizer"]["param_groups"][0]["lr"]
    assert last_rate == pytest.approx(scheduled_lr(CONFIG, checkpoint.step - 1, steps_per_epoch))
    assert last_rate < CONFIG.lr  # past the warm-up, into the decay


def test_a_run_resumed_mid_schedule_ends_as_the_uninterrupted_run(tmp_path):
    data = build_sequences(planted_log(n_users=100, n_items=60, min_length=8, max_length=14, seed=2))
    checkpoint = cancelled_after("retrain", 1, data, tmp_path / "run.safetensors", CONFIG)
    assert_same_run(run_automlp(data, CONFIG, resume=checkpoint), run_automlp(data, CONFIG))


def test_a_warm_up_as_long_as_the_retraining_is_refused():
    with pytest.raises(ConfigError, match="lr_warmup_epochs: 30 leaves no epoch"):
        RunConfig(lr_warmup_epochs=30, retrain_epochs=30)
    with pytest.raises(ConfigError, match="lr_decay: 'linear' is not one of none, cosine"):
        RunConfig(lr_decay="linear")


def test_a_warm_up_longer_than_the_confirm_stages_first_round_is_refused():
    with pytest.raises(ConfigError, match="lr_warmup_epochs: 3 outlasts the confirm stage's first round of 2"):
        RunConfig(lr_warmup_epochs=3, confirm_epochs=2)
