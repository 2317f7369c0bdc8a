"""A batch's rows computed in groups of similar length (engine.training.batches.row_groups): fewer
positions, the same loss and gradients as one pass over the whole batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.core.config import RunConfig
from engine.data.sequences import build_sequences, cut_width
from engine.data.synthetic import planted_log
from engine.models.automlp import ModelShape, build_model
from engine.training import batches as batches_module
from engine.training.batches import batch_loss, row_groups, training_batches


@pytest.fixture(scope="module")
def data():
    # histories of 4 to 60 items: a shuffled batch mixes short and long windows
    return build_sequences(planted_log(n_users=150, n_items=70, min_length=4, max_length=60, seed=5))


def test_groups_split_the_rows_each_cut_to_its_longest_and_compute_fewer_positions():
    lengths = np.random.default_rng(0).integers(1, 200, 128)
    groups = row_groups(lengths, 200)
    assert 1 < len(groups) <= batches_module.MAX_ROW_GROUPS
    assert sorted(np.concatenate([rows for rows, _ in groups]).tolist()) == list(range(128))
    for rows, width in groups:
        assert width == cut_width(lengths[rows], 200)
    assert sum(len(rows) * width for rows, width in groups) < 128 * cut_width(lengths, 200) * 0.8


def test_rows_of_one_length_stay_one_group():
    assert [(len(rows), width) for rows, width in row_groups(np.full(64, 9), 16)] == [(64, 9)]


def test_a_group_is_split_off_only_when_it_saves_more_than_its_own_cost():
    lengths = np.array([2] * 3 + [16] * 100)  # three short rows save 3 x 14 positions, less than a pass
    assert len(row_groups(lengths, 16, group_positions=512)) == 1
    assert len(row_groups(lengths, 16, group_positions=0)) == 2


@pytest.mark.parametrize("mode, loss", [("causal", "ce"), ("causal", "sampled_softmax"), ("sampled", "ce"),
                                        ("causal", "bce")])
def test_grouped_rows_give_the_loss_and_gradients_of_one_pass(data, mode, loss, monkeypatch):
    # float32 loss scores: the equality is of the arithmetic, which bfloat16 rounds per group (test_precision.py)
    config = RunConfig(candidate_lengths=[2, 8], max_length=64, embedding_dim=16, channel_hidden=16,
                       sequence_hidden=16, dropout=0.0, batch_size=64, mode=mode, loss=loss, sampled_negatives=20,
                       precision="fp32")
    torch.manual_seed(0)
    model = build_model(ModelShape.from_config(config, data.n_items), device="cpu")
    batch = training_batches(data, config, np.random.default_rng(1), torch.device("cpu"))[0]
    lengths = (batch.inputs > 0).sum(1).numpy()
    assert len(row_groups(lengths, batch.inputs.shape[1])) > 1  # the case under test

    def loss_and_gradients(groups: int):
        monkeypatch.setattr(batches_module, "MAX_ROW_GROUPS", groups)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)  # bce draws its negatives
        value = batch_loss(model, batch, config)
        value.backward()
        return float(value.detach()), [p.grad.clone() for p in model.network_parameters() if p.grad is not None]

    one_pass, grouped = loss_and_gradients(1), loss_and_gradients(4)
    if loss == "bce":  # its negatives are drawn per pass: the same distribution, other draws
        assert grouped[0] == pytest.approx(one_pass[0], rel=0.2)
        return
    assert grouped[0] == pytest.approx(one_pass[0], rel=1e-5)
    for a, b in zip(one_pass[1], grouped[1]):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
