"""The sampled softmax: which items a batch scores, their logQ correction, and its agreement with full CE."""

import numpy as np
import pytest
import torch

from engine.core.config import RunConfig
from engine.data.sequences import InteractionLog, build_sequences
from engine.data.synthetic import planted_log
from engine.models.automlp import AutoMLP, ModelShape
from engine.training.batches import (
    batch_loss,
    sample_items,
    target_frequency,
    training_batches,
    validation_batches,
)


@pytest.fixture(scope="module")
def data():
    return build_sequences(planted_log(n_users=60, n_items=30, min_length=6, max_length=12, seed=1))


def config(**changes) -> RunConfig:
    base = dict(candidate_lengths=[1, 2], max_length=8, embedding_dim=8, sequence_hidden=8, channel_hidden=8,
                batch_size=16, loss="sampled_softmax", sampled_negatives=5)
    return RunConfig(**{**base, **changes})


def test_the_sampled_items_hold_every_target_once_and_each_target_points_at_its_own_column():
    frequency = np.full(101, 0.01)
    frequency[0] = 0
    targets = np.array([[0, 7, 9], [7, 3, 0]])
    items, log_inclusion, columns = sample_items(targets, frequency, 50, np.random.default_rng(0))
    assert len(np.unique(items)) == len(items) and 0 not in items
    assert {3, 7, 9} <= set(items.tolist())
    present = targets > 0
    assert (items[columns[present]] == targets[present]).all()
    assert (log_inclusion <= 0).all() and len(log_inclusion) == len(items)


def test_a_frequent_target_is_corrected_more_than_a_rare_one():
    frequency = np.zeros(101)
    frequency[1], frequency[2:] = 0.5, 0.5 / 99
    items, log_inclusion, _ = sample_items(np.array([1, 2]), frequency, 10, np.random.default_rng(0))
    assert log_inclusion[items == 1][0] > log_inclusion[items == 2][0]


def test_target_frequency_counts_training_targets_only():
    # training sequence 1, 2, 3 (4 is validation, 5 test): items 2 and 3 are its targets
    data = build_sequences(InteractionLog(users=np.zeros(5), items=np.array([1, 2, 3, 4, 5])))
    frequency = target_frequency(data)
    internal = {int(external): i + 1 for i, external in enumerate(data.item_ids)}
    assert frequency[internal[2]] == frequency[internal[3]] == 0.5
    assert frequency.sum() == 1.0


@pytest.mark.parametrize("mode", ["causal", "sampled"])
def test_with_every_item_drawn_the_sampled_loss_is_the_full_softmax_loss(data, mode):
    torch.manual_seed(0)
    sampled = config(mode=mode, sampled_negatives=20_000)  # 30 items: all are drawn, P(in the set) ~ 1
    model = AutoMLP(ModelShape.from_config(sampled, n_items=data.n_items)).eval()
    batch = training_batches(data, sampled, np.random.default_rng(0), torch.device("cpu"))[0]
    assert len(batch.sample.items) == data.n_items
    with torch.no_grad():
        full = batch_loss(model, batch, sampled.replace(loss="ce"))
        assert float(batch_loss(model, batch, sampled)) == pytest.approx(float(full), rel=1e-5)


def test_validation_batches_carry_sampled_items_for_the_search(data):
    batch = next(validation_batches(data, config(), np.random.default_rng(0), torch.device("cpu")))
    assert batch.sample is not None
    assert (batch.sample.items[batch.sample.target_columns] == batch.targets).all()


def test_full_softmax_batches_carry_no_sample(data):
    batch = training_batches(data, config(loss="ce"), np.random.default_rng(0), torch.device("cpu"))[0]
    assert batch.sample is None
