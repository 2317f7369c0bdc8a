"""Test metrics per history-length bucket: the model against its long-term module alone."""

import numpy as np
import pytest
import torch

from engine.core.config import RunConfig
from engine.data.sequences import build_sequences
from engine.data.synthetic import planted_log
from engine.evaluation.by_length import bucket_labels, format_by_length, metrics_by_length
from engine.evaluation.metrics import evaluate, target_ranks
from engine.models.automlp import ModelShape, build_model


@pytest.fixture(scope="module")
def data():
    # histories from 3 to 60 items, so that several buckets are filled
    return build_sequences(planted_log(n_users=120, n_items=80, min_length=5, max_length=62))


def small_model(data, seed=0):
    torch.manual_seed(seed)
    config = RunConfig(max_length=64, candidate_lengths=(2, 8), embedding_dim=16, dropout=0.0)
    return build_model(ModelShape.from_config(config, n_items=data.n_items)).eval()


def test_bucket_labels_cover_every_length_once():
    assert bucket_labels((5, 10)) == ["1-5", "6-10", "11+"]


def test_buckets_hold_every_user_once_and_their_metrics_average_to_the_whole(data):
    model = small_model(data)
    rows = metrics_by_length(model, data, "test")
    assert sum(row["users"] for row in rows) == data.n_users
    assert len(rows) >= 3
    whole = evaluate(model, data, "test", "full")
    weighted = sum(row["users"] * row["model"]["NDCG@10"] for row in rows) / data.n_users
    assert weighted == pytest.approx(whole["NDCG@10"], abs=1e-9)


def test_each_user_lands_in_the_bucket_of_its_history_length(data):
    model = small_model(data)
    lengths = data.history_lengths("test")
    rows = {row["bucket"]: row["users"] for row in metrics_by_length(model, data, "test")}
    assert rows["1-5"] == int((lengths <= 5).sum())
    assert rows["21-50"] == int(((lengths > 20) & (lengths <= 50)).sum())


def test_long_term_only_is_the_model_with_its_short_term_part_left_out(data):
    model = small_model(data)
    rows = metrics_by_length(model, data, "test")
    D = model.shape.embedding_dim
    without_short = small_model(data)
    without_short.load_state_dict(model.state_dict())
    with torch.no_grad():
        without_short.output.weight[:, :D] = 0  # W_s: the short-term half of the output layer
    expected = metrics_by_length(without_short, data, "test")
    for row, reference in zip(rows, expected):
        assert row["long_term_only"] == pytest.approx(reference["model"])
        assert row["short_term_gain"] == pytest.approx(row["model"]["NDCG@10"] - row["long_term_only"]["NDCG@10"])
    assert any(row["model"] != row["long_term_only"] for row in rows)


def test_several_scorers_rank_as_separate_evaluations(data):
    model, other = small_model(data, seed=0), small_model(data, seed=1)
    both = target_ranks(model, data, "valid", "popularity", negatives=20, scorers=[model, other])
    assert np.array_equal(both[0], target_ranks(model, data, "valid", "popularity", negatives=20))
    assert np.array_equal(both[1], target_ranks(other, data, "valid", "popularity", negatives=20))


def test_the_table_names_each_bucket_and_the_gain(data):
    text = format_by_length(metrics_by_length(small_model(data), data, "test"))
    assert "1-5" in text and "long-term only" in text and "gain" in text


def test_one_pass_gives_the_models_own_ranks_exactly_and_the_long_term_modules(data):
    from engine.evaluation.by_length import ranks_with_long_term

    model = small_model(data, seed=2)
    ranks = ranks_with_long_term(model, data, "test")
    assert np.array_equal(ranks[0], target_ranks(model, data, "test"))

    def long_term(inputs):
        long, _short, bias = model.contributions(inputs)
        scores = long + bias
        scores[:, 0] = float("-inf")
        return scores
    # the same sum in another order: a near tie may fall the other way, nothing more
    reference = target_ranks(model, data, "test", scorers=[model, long_term])[1]
    assert np.mean(ranks[1] != reference) < 0.01
