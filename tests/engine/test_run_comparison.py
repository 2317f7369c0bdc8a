"""What the Runs page compares of several runs, without Qt."""

from __future__ import annotations

import pandas as pd

from engine.experiments.run_comparison import (
    colour_slots,
    differing_keys,
    merge_panels,
    metric_columns,
    panel_points,
    run_label,
    series_panels,
    setting_keys,
    setting_text,
)


def frame(*rows) -> pd.DataFrame:
    """A run_series frame from (phase, step, name, value, per) rows."""
    return pd.DataFrame(rows, columns=["phase", "step", "name", "value", "per"])


SERIES = frame(("retrain", 1, "NDCG@20", 0.2, "epoch"), ("retrain", 1, "NDCG@10", 0.1, "epoch"),
               ("retrain", 2, "NDCG@10", 0.3, "epoch"), ("search", 1, "weight/k=12", 0.5, "step"),
               ("search", 1, "weight/k=2", 0.5, "step"), ("search", 1, "train_loss", 5.0, "step"),
               ("search", 1, "train_loss", 5.0, "epoch"), ("retrain", 1, "train_loss", 4.0, "step"))


def test_panels_come_in_the_order_a_reader_watches_search_loss_weights_retrain_loss_metrics_then_the_rest():
    assert list(series_panels(SERIES, {"protocol": "full"})) == [
        "search · train_loss", "search · weight/k=2", "search · weight/k=12", "retrain · train_loss",
        "retrain · NDCG@10 [full]", "search · train_loss (epoch mean)", "retrain · NDCG@20 [full]"]


def test_axes_name_the_metric_with_its_protocol_and_the_phase_step_or_epoch():
    sampled = series_panels(SERIES, {"protocol": "popularity", "eval_negatives": 100})
    metric = sampled["retrain · NDCG@10 [popularity-100]"]
    assert (metric.y_label, metric.x_label) == ("validation NDCG@10 (100 popularity negatives)", "retrain epoch")
    full = series_panels(SERIES, {"protocol": "full"})
    assert full["retrain · NDCG@10 [full]"].y_label == "validation NDCG@10 (full ranking)"
    assert full["search · train_loss"].y_label == "training loss"
    assert full["search · train_loss (epoch mean)"].y_label == "training loss (epoch mean)"
    assert full["search · weight/k=2"].y_label == "softmax(α) of k=2"
    assert full["search · weight/k=2"].x_label == "search step"


def test_a_panels_points_are_its_series_in_recording_order():
    panel = series_panels(SERIES, {})["retrain · NDCG@10 [full]"]
    x, y = panel_points(SERIES, panel)
    assert list(x) == [1, 2] and list(y) == [0.1, 0.3]


def test_merged_panels_are_the_union_of_the_runs_in_the_same_order():
    first = series_panels(frame(("retrain", 1, "NDCG@10", 0.1, "epoch")), {})
    second = series_panels(frame(("search", 1, "train_loss", 5.0, "step")), {})
    assert list(merge_panels([first, second])) == ["search · train_loss", "retrain · NDCG@10 [full]"]


def test_differing_keys_are_those_whose_values_differ_with_keys_only_some_runs_have_last():
    configs = [{"seed": 0, "lr": 0.01, "candidate_lengths": [1, 2]},
               {"seed": 1, "lr": 0.01, "candidate_lengths": [1, 4], "patience": 3}]
    assert differing_keys(configs) == ["seed", "candidate_lengths", "patience"]
    assert differing_keys(configs[:1]) == []


def test_the_setting_columns_put_the_differing_keys_before_the_headline_ones():
    keys = setting_keys([{"seed": 0, "xi": 0.1}, {"seed": 0, "xi": 0.2}])
    assert keys[0] == "xi" and "seed" in keys and keys.count("seed") == 1


def test_a_run_label_names_its_differing_values_or_the_fallback():
    config = {"seed": 1, "lr": 0.01, "candidate_lengths": [1, 2, 4]}
    assert run_label(config, ["seed"], "ml-100k") == "seed=1"
    assert run_label(config, ["candidate_lengths", "lr", "seed"], "ml-100k") == "candidate_lengths=1,2,4 lr=0.01 …"
    assert run_label(config, [], "ml-100k") == "ml-100k"
    assert setting_text(None) == ""


def test_metric_columns_list_full_ranking_first_and_skip_unfinished_runs():
    records = [None, {"test": {"popularity-100": {"NDCG@10": 0.3}, "full": {"NDCG@10": 0.1}}}]
    assert metric_columns(records)[0] == ("full", "NDCG@10")
    assert metric_columns(records)[3] == ("popularity-100", "NDCG@10")


def test_a_run_keeps_its_colour_while_selected_and_a_new_one_takes_the_lowest_free():
    assert colour_slots({}, [3, 5]) == {3: 0, 5: 1}
    assert colour_slots({3: 0, 5: 1}, [5, 8]) == {5: 1, 8: 0}
    assert colour_slots({5: 1, 8: 0}, [5, 8, 9]) == {5: 1, 8: 0, 9: 2}
