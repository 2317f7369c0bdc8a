"""The hit-rate benchmark: a seed's search choice hits when its length's exhaustive mean lies in the noise
band; search and exhaustive lines join by dataset and the overrides that reach both parts."""

from __future__ import annotations

from benchmarks.search_hit_rate import combine, hits, table


def search_line(choices: list[int], overrides: dict | None = None, seconds: float = 50.0) -> dict:
    return {"dataset": "ml-100k", "part": "search", "overrides": overrides or {}, "seeds": len(choices),
            "choices": [{"seed": i, "chosen_length": k} for i, k in enumerate(choices)], "seconds": seconds,
            "machine": "test", "date": "2026-12-04"}


def exhaustive_line(scores: dict[str, list[float]], overrides: dict | None = None, seconds: float = 300.0) -> dict:
    return {"dataset": "ml-100k", "part": "exhaustive", "overrides": overrides or {}, "seeds": 3,
            "scores": scores, "seconds": seconds, "machine": "test", "date": "2026-12-04"}


SEPARATED = {"5": [0.09, 0.10, 0.11], "20": [0.12, 0.13, 0.14]}  # band 0.13 - 0.01 (pooled) = 0.12: only 20
OVERLAPPING = {"5": [0.125, 0.125, 0.125], "20": [0.12, 0.13, 0.14]}  # 5's mean 0.125 is in the band


def test_a_choice_hits_only_when_its_mean_is_in_the_band():
    hit, does_not_matter, band = hits([20, 5, 20], SEPARATED)
    assert hit == [True, False, True] and not does_not_matter and abs(band - 0.12) < 1e-12


def test_every_choice_hits_when_every_length_is_in_the_band():
    hit, does_not_matter, _ = hits([5, 20], OVERLAPPING)
    assert hit == [True, True] and does_not_matter


def test_a_search_line_joins_the_exhaustive_line_despite_search_only_and_retrain_only_keys():
    (row,) = combine([exhaustive_line(SEPARATED, {"retrain_epochs": 15}),
                      search_line([20, 5], {"search_warmup_epochs": 2})])
    assert row["hit_count"] == 1 and row["choices"] == [20, 5]


def test_a_search_line_with_a_different_shared_key_is_not_joined():
    assert combine([exhaustive_line(SEPARATED), search_line([20], {"lr": 0.01})]) == []


def test_the_time_ratio_is_search_seconds_per_seed_over_exhaustive_seconds_per_seed():
    (row,) = combine([exhaustive_line(SEPARATED, seconds=300.0), search_line([20, 20], seconds=50.0)])
    assert row["time_ratio"] == (50.0 / 2) / (300.0 / 3)


def test_the_table_has_one_row_per_search_variant_and_says_when_length_does_not_matter():
    rows = combine([exhaustive_line(OVERLAPPING), search_line([5, 20]), search_line([20], {"arch_lr": 0.01})])
    lines = table(rows).splitlines()
    assert len(lines) == 4
    assert "| defaults |" in lines[2] and "2 of 2" in lines[2] and "length does not matter" in lines[2]
    assert "| arch_lr=0.01 |" in lines[3]


def test_exhaustive_lines_run_for_different_first_seeds_are_merged_into_one_band():
    seed_0 = {**exhaustive_line({"5": [0.09], "20": [0.12]}, seconds=100.0), "seeds": 1}
    seeds_1_2 = {**exhaustive_line({"5": [0.10, 0.11], "20": [0.13, 0.14]}, {"seed": 1}, seconds=200.0), "seeds": 2}
    (row,) = combine([seed_0, seeds_1_2, search_line([20, 5])])
    assert row["exhaustive_seeds"] == 3 and row["hits"] == [True, False]
    assert abs(row["band"] - 0.12) < 1e-12 and row["exhaustive_seconds_per_seed"] == 100.0


def test_a_later_line_for_the_same_seed_replaces_the_earlier_scores():
    first = {**exhaustive_line({"5": [0.20], "20": [0.10]}), "seeds": 1}
    rerun = {**exhaustive_line({"5": [0.05], "20": [0.10]}), "seeds": 1}
    (row,) = combine([first, rerun, search_line([5])])
    assert row["per_k"]["5"][0] == 0.05 and row["exhaustive_seeds"] == 1


def confirm_line(choices: list[int], confirmed: int, seconds: float) -> dict:
    return {**search_line(choices, {"confirm_epochs": 2}, seconds), "part": "confirm", "confirmed_length": confirmed,
            "confirm_rounds": [], "confirm_seconds": seconds / 2}


def test_a_confirm_job_hits_by_its_confirmed_length_and_is_timed_against_the_whole_exhaustive_part():
    (row,) = combine([exhaustive_line(SEPARATED, seconds=300.0), confirm_line([5, 20, 5], confirmed=20, seconds=60.0)])
    assert row["hits"] == [False, True, False]
    assert row["confirmed"] == 20 and row["confirmed_hit"] and row["job_ratio"] == 60.0 / 300.0


def test_the_table_lists_confirm_jobs_below_the_search_rows():
    rows = combine([exhaustive_line(SEPARATED), search_line([5]), confirm_line([5, 20], confirmed=5, seconds=90.0)])
    lines = table(rows).splitlines()
    assert "| ml-100k | confirm_epochs=2 | 5, 20 | 5 | miss | 90 | 300 (3 seeds) | 0.30 |" in lines


def test_exhaustive_lines_with_other_settings_are_not_merged():
    short = exhaustive_line(SEPARATED, {"retrain_epochs": 15})
    converged = exhaustive_line(OVERLAPPING)
    (row,) = combine([short, converged, search_line([5])])
    assert row["exhaustive_seeds"] == 3 and row["hits"] == [True]
