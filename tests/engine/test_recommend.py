"""Per-user recommendations: exact score parts, the ranking the metrics use, and the CSV of all users."""

import numpy as np
import pandas as pd
import pytest
import torch

from engine.core.events import Cancelled, PhaseFinished, RecordingObserver, StepFinished
from engine.evaluation.metrics import evaluate
from engine.serving.recommend import (
    RecommendError,
    find_item,
    recommend,
    recommend_all_to_csv,
    score_parts,
    user_table,
)
from tests.engine.tiny_run import tiny_run


@pytest.fixture(scope="module")
def trained():
    result, data = tiny_run()
    return result.model, data


def test_parts_sum_to_the_scores_for_random_users(trained):
    model, data = trained
    users = np.random.default_rng(0).choice(data.n_users, 20, replace=False)
    sequences = torch.from_numpy(data.histories("test", model.shape.max_length, users))
    with torch.no_grad():
        forward = model(sequences)
        scores, long, short, bias = score_parts(model, sequences)
    torch.testing.assert_close(scores[:, 1:], forward[:, 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close((long + short + bias)[:, 1:], forward[:, 1:], atol=1e-5, rtol=0)


def test_listed_parts_sum_to_the_listed_score(trained):
    model, data = trained
    for item in recommend(model, data, data.user_ids[7], n=10).items:
        assert item.long + item.short + item.bias == pytest.approx(item.score, abs=1e-5)


def test_top_n_is_all_scores_sorted_with_history_excluded(trained):
    model, data = trained
    user = 11
    recs = recommend(model, data, data.user_ids[user], n=10)
    with torch.no_grad():
        scores = model(torch.from_numpy(data.histories("test", model.shape.max_length, np.array([user]))))[0]
    target = data.target(user, "test")
    excluded = set(data.history(user, "test").tolist()) - {target}
    allowed = [i for i in range(1, data.n_items + 1) if i not in excluded]
    expected = sorted(allowed, key=lambda i: -scores[i].item())[:10]
    assert [r.item for r in recs.items] == expected
    assert not excluded & {r.item for r in recs.items}


def test_history_items_can_be_included(trained):
    model, data = trained
    user = 11
    recs = recommend(model, data, data.user_ids[user], n=data.n_items, exclude_history=False)
    assert set(data.history(user, "test").tolist()) <= {r.item for r in recs.items}


def test_long_term_top_n_ranks_by_the_long_part_alone(trained):
    model, data = trained
    recs = recommend(model, data, data.user_ids[3], n=10)
    longs = [r.long for r in recs.long_term_items]
    assert longs == sorted(longs, reverse=True)
    assert [r.long_rank for r in recs.long_term_items] == list(range(10))
    assert 0 <= recs.overlap <= 10
    assert [moved for _, moved in recs.rank_changes()] == [r.long_rank - r.rank for r in recs.items]


def test_hit_means_the_held_out_item_is_listed(trained):
    model, data = trained
    for user in data.user_ids[:30]:
        recs = recommend(model, data, user, n=10)
        assert recs.hit == (recs.target.item in {r.item for r in recs.items})


def test_history_and_window_are_reported_for_display(trained):
    model, data = trained
    recs = recommend(model, data, "u5", n=5)
    assert list(recs.history) == list(data.history(recs.user, "test"))
    assert recs.history_ids == [data.item_ids[i - 1] for i in recs.history]
    assert recs.window in model.shape.candidate_lengths
    assert recs.history_titles[recs.history_ids.index("i1")] == "Title 1" if "i1" in recs.history_ids else True


def test_titles_are_given_where_known(trained):
    model, data = trained
    items = recommend(model, data, "u5", n=data.n_items).items
    assert {r.title for r in items if r.item_id == "i7"} == {"Title 7"}
    assert {r.title for r in items if r.item_id == "i77"} == {None}


def test_unknown_user_is_refused_by_name(trained):
    model, data = trained
    with pytest.raises(RecommendError, match="unknown user 'nobody'"):
        recommend(model, data, "nobody")


def test_unknown_item_is_refused_by_name(trained):
    _, data = trained
    assert find_item(data, "i1") >= 1
    with pytest.raises(RecommendError, match="unknown item 'i999'"):
        find_item(data, "i999")


def test_all_users_csv_matches_single_user_recommendations(trained, tmp_path):
    model, data = trained
    path = tmp_path / "recs.csv"
    rows = recommend_all_to_csv(model, data, path, n=5, batch_size=32)
    frame = pd.read_csv(path, dtype={"user": str, "item": str})
    assert list(frame.columns) == ["user", "rank", "item", "score", "long", "short", "bias"]
    assert rows == len(frame) == 5 * data.n_users
    one = frame[frame.user == "u9"]
    recs = recommend(model, data, "u9", n=5)
    assert list(one["item"]) == [r.item_id for r in recs.items]
    assert list(one["rank"]) == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(one["score"], [r.score for r in recs.items], rtol=1e-5, atol=1e-6)


def test_all_users_csv_reports_progress(trained, tmp_path):
    model, data = trained
    observer = RecordingObserver()
    recommend_all_to_csv(model, data, tmp_path / "recs.csv", n=3, batch_size=16, observer=observer)
    assert observer.of_type(StepFinished)[-1].step == -(-data.n_users // 16)
    assert len(observer.of_type(PhaseFinished)) == 1


def test_cancelled_csv_leaves_no_file(trained, tmp_path):
    model, data = trained
    observer = RecordingObserver(cancel_when=lambda e: isinstance(e, StepFinished))
    with pytest.raises(Cancelled):
        recommend_all_to_csv(model, data, tmp_path / "recs.csv", n=3, batch_size=16, observer=observer)
    assert list(tmp_path.iterdir()) == []


def test_user_table_gives_every_users_rank_as_recommend_does(trained):
    model, data = trained
    table = user_table(model, data, n=10, batch_size=32)
    assert len(table) == data.n_users
    for row in table.sample(15, random_state=0).itertuples():
        recs = recommend(model, data, row.user, n=10)
        assert (row.target_rank, row.hit, row.history) == (recs.target_rank, recs.hit, len(recs.history))
        assert row.target == recs.target.item_id
    assert table["hit"].mean() == pytest.approx(evaluate(model, data, "test", "full")["HR@10"])


def test_shown_recommendations_become_a_table(trained):
    model, data = trained
    recs = recommend(model, data, "u9", n=4)
    frame = recs.to_frame()
    assert list(frame["rank"]) == [1, 2, 3, 4]
    assert list(frame["item"]) == [r.item_id for r in recs.items]
    np.testing.assert_allclose(frame["long"] + frame["short"] + frame["bias"], frame["score"], atol=1e-5)
