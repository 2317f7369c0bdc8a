"""Sequences: chronological per user, dense vocabulary, leave-one-out, left padding."""

import numpy as np
import pytest

from engine.data.sequences import (
    DataError,
    InteractionLog,
    build_sequences,
    window_batch,
)


def test_sequences_are_chronological_with_ties_in_file_order():
    log = InteractionLog(users=["a", "a", "a", "a"], items=["x", "y", "z", "w"], timestamps=[5, 1, 5, 0])
    data = build_sequences(log)
    assert [data.item_ids[i - 1] for i in data.sequence(0)] == ["w", "y", "x", "z"]


def test_without_timestamps_the_file_order_is_the_time_order():
    data = build_sequences(InteractionLog(users=[1, 2, 1, 1, 2, 2], items=[10, 20, 11, 12, 21, 22]))
    assert [data.item_ids[i - 1] for i in data.sequence(0)] == [10, 11, 12]
    assert list(data.user_ids) == [1, 2]


def test_items_get_a_dense_vocabulary_with_zero_for_padding():
    data = build_sequences(InteractionLog(users=[1, 1, 1, 2, 2, 2], items=[900, 7, 900, 42, 7, 5]))
    assert data.n_items == 4
    assert sorted(set(data.items.tolist())) == [1, 2, 3, 4]


def test_leave_one_out_last_is_test_second_to_last_is_validation():
    data = build_sequences(InteractionLog(users=[1] * 5, items=[1, 2, 3, 4, 5]))
    external = lambda ids: [int(data.item_ids[i - 1]) for i in np.atleast_1d(ids)]
    assert external(data.targets("test")) == [5]
    assert external(data.targets("valid")) == [4]
    assert external(data.history(0, "train")) == [1, 2, 3]
    assert external(data.history(0, "test")) == [1, 2, 3, 4]


def test_histories_are_left_padded_with_the_latest_item_last():
    data = build_sequences(InteractionLog(users=[1] * 5 + [2] * 8, items=list(range(5)) + list(range(10, 18))))
    test = data.histories("test", 6)
    assert test[0].tolist()[:2] == [0, 0] and test[0, -1] == data.sequence(0)[-2]
    assert test[1].tolist() == data.sequence(1)[1:7].tolist()  # cropped to the latest 6


def test_window_batch_crops_and_pads():
    items = np.arange(1, 11)
    out = window_batch(items, np.array([0, 5]), np.array([3, 10]), 4)
    assert out.tolist() == [[0, 1, 2, 3], [7, 8, 9, 10]]


def test_users_below_the_minimum_are_dropped():
    data = build_sequences(InteractionLog(users=[1, 1, 2, 2, 2], items=[1, 2, 3, 4, 5]), min_user_interactions=3)
    assert list(data.user_ids) == [2]


def test_empty_data_and_all_users_too_short_are_refused_with_a_message():
    with pytest.raises(DataError, match="there are no interactions"):
        build_sequences(InteractionLog(users=[], items=[]))
    with pytest.raises(DataError, match="no user has at least 3 interactions"):
        build_sequences(InteractionLog(users=[1, 2], items=[1, 2]))


def test_item_features_are_encoded_per_item():
    log = InteractionLog(users=[1, 1, 1], items=["m1", "m2", "m3"],
                         item_features={"genre": {"m1": ["Drama"], "m2": ["Comedy", "Drama"]}})
    feature = build_sequences(log).features[0]
    assert feature.name == "genre" and list(feature.vocabulary) == ["Comedy", "Drama"]
    assert feature.values.tolist() == [[0, 0], [2, 0], [1, 2], [0, 0]]


def test_fingerprint_changes_with_the_data():
    a = build_sequences(InteractionLog(users=[1, 1, 1], items=[1, 2, 3]))
    b = build_sequences(InteractionLog(users=[1, 1, 1], items=[1, 3, 2]))
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == build_sequences(InteractionLog(users=[1, 1, 1], items=[1, 2, 3])).fingerprint()


def test_a_batch_is_cut_to_its_longest_window_exactly_below_sixteen():
    from engine.data.sequences import cut_width
    assert cut_width(np.array([1, 3, 5]), 200) == 5
    assert cut_width(np.array([15, 2]), 200) == 15
    assert cut_width(np.array([3]), 2) == 2


def test_longer_windows_round_up_by_an_eighth_of_their_octave_and_never_past_max_length():
    from engine.data.sequences import cut_width
    assert cut_width(np.array([17]), 200) == 18
    assert cut_width(np.array([33]), 200) == 36
    assert cut_width(np.array([65]), 200) == 72
    assert cut_width(np.array([129]), 200) == 144
    assert cut_width(np.array([199]), 200) == 200
    assert cut_width(np.array([300]), 200) == 200
    for longest in range(1, 201):
        width = cut_width(np.array([longest]), 200)
        assert longest <= width and (width - longest) < max(1, width / 8)


def test_trimmed_histories_keep_every_item_of_the_padded_ones():
    log = InteractionLog(users=np.array([1, 1, 1, 1, 2, 2, 2]), items=np.array([5, 6, 7, 8, 5, 6, 7]),
                         timestamps=np.arange(7))
    data = build_sequences(log)
    padded, trimmed = data.histories("test", 50), data.histories("test", 50, trim=True)
    assert trimmed.shape == (2, 3)
    assert (padded[:, -3:] == trimmed).all() and (padded[:, :-3] == 0).all()


def test_last_training_windows_train_every_users_most_recent_items_every_epoch():
    import torch

    from engine.core.config import ConfigError, RunConfig
    from engine.data.synthetic import planted_log
    from engine.training.batches import training_batches

    data = build_sequences(planted_log(n_users=40, n_items=30, min_length=6, max_length=30, seed=1))
    config = RunConfig(candidate_lengths=[2], max_length=8, batch_size=16, training_windows="last", loss="ce")
    rng = np.random.default_rng(0)
    epochs = [training_batches(data, config, rng, torch.device("cpu")) for _ in range(2)]
    last_targets = data.items[data.offsets[1:] - 3]  # each user's last training item
    for batches in epochs:
        finals = sorted(int(t) for batch in batches for t in batch.targets[:, -1])
        assert finals == sorted(last_targets.tolist())
        assert all(batch.inputs.shape[1] <= 8 for batch in batches)
    windows = [sorted(map(tuple, torch.cat([b.inputs[:, -8:] for b in batches]).tolist())) for batches in epochs]
    assert windows[0] == windows[1]  # the same windows, in another order
    with pytest.raises(ConfigError, match="training_windows: 'last'"):
        RunConfig(mode="sampled", training_windows="last")
