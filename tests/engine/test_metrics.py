"""Ranking metrics and evaluation protocols."""

import math

import numpy as np
import pytest
import torch

from engine.data.sequences import InteractionLog, build_sequences
from engine.evaluation.metrics import (
    evaluate,
    metrics_from_ranks,
    rank_of_target,
    sample_negatives,
)


def test_metrics_equal_hand_computed_values_for_known_ranks():
    m = metrics_from_ranks(np.array([0, 1, 4, 9, 30]))
    assert m["HR@5"] == pytest.approx(3 / 5)
    assert m["HR@10"] == pytest.approx(4 / 5)
    assert m["HR@20"] == pytest.approx(4 / 5)
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 5)
    assert m["NDCG@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(11)) / 5)
    assert m["MRR@5"] == pytest.approx((1 + 1 / 2 + 1 / 5) / 5)
    assert m["MRR@10"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 10) / 5)


def test_rank_counts_better_items_and_ties_against_the_target():
    scores = torch.tensor([[0.5, 0.9, 0.1, 0.5], [3.0, 1.0, 2.0, 0.0]])
    assert rank_of_target(scores, 0).tolist() == [2, 0]
    assert rank_of_target(scores, torch.tensor([2, 3])).tolist() == [3, 3]


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(30), 8)
    items = np.concatenate([rng.choice(200, size=8, replace=False) for _ in range(30)])
    return build_sequences(InteractionLog(users, items))


@pytest.mark.parametrize("by", ["popularity", "uniform"])
def test_sampled_negatives_never_come_from_the_users_history(data, by):
    negatives = sample_negatives(data, 50, by, seed=1)
    for user in range(data.n_users):
        assert not set(negatives[user]) & set(data.sequence(user).tolist())
        assert len(set(negatives[user])) == 50
    assert negatives.min() >= 1 and negatives.max() <= data.n_items


def test_sampled_negatives_repeat_with_the_seed_and_change_without_it(data):
    assert np.array_equal(sample_negatives(data, 20, "popularity", 7), sample_negatives(data, 20, "popularity", 7))
    assert not np.array_equal(sample_negatives(data, 20, "popularity", 7), sample_negatives(data, 20, "popularity", 8))


@pytest.mark.parametrize("by,share", [("popularity", (0.4, 1.0)), ("uniform", (0.0, 0.1))])
def test_popularity_sampling_draws_popular_items_often_and_uniform_rarely(by, share):
    # users 0..149 all have "pop"; users 150..199 do not and are the ones who can get it as a negative
    users, items = [], []
    for user in range(200):
        own = [f"{user}-{j}" for j in range(3)]
        users += [user] * 4
        items += (["pop"] if user < 150 else [f"{user}-x"]) + own
    data = build_sequences(InteractionLog(np.array(users), np.array(items)))
    pop = data.item_ids.tolist().index("pop") + 1
    negatives = sample_negatives(data, 5, by, seed=0)
    without_pop = [u for u in range(data.n_users) if pop not in data.sequence(u)]
    drawn = np.mean([pop in negatives[u] for u in without_pop])
    assert share[0] <= drawn <= share[1]


class FixedScores(torch.nn.Module):
    """A stand-in model whose scores are a fixed table: evaluation must rank exactly these."""

    def __init__(self, table: torch.Tensor, max_length: int = 5) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table, requires_grad=False)
        self.shape = type("Shape", (), {"max_length": max_length})

    def forward(self, sequences):
        return self.table.expand(len(sequences), -1).clone()


def test_full_ranking_masks_history_but_not_the_target():
    # one user: history 1, 2, 3, valid target 4, test target 5; items 1..6
    data = build_sequences(InteractionLog(np.zeros(5), np.array([1, 2, 3, 4, 5])))
    scores = torch.tensor([[-np.inf, 9.0, 8.0, 7.0, 6.0, 1.0]])  # item ids 1..5 map to 1..5 internally
    test = evaluate(FixedScores(scores), data, "test", "full")
    assert test["HR@5"] == 1.0 and test["MRR@5"] == 1.0  # items 1-4 are history: the target ranks first
    valid = evaluate(FixedScores(scores), data, "valid", "full")
    assert valid["MRR@5"] == 1.0  # items 1-3 masked; 5 (not yet seen) scores below 4
