"""The benchmark report: recorded parts are joined into comparisons and tables, never invented."""

from __future__ import annotations

from benchmarks.report import search_table
from benchmarks.search_vs_exhaustive import combine


def part(name: str, seed: int = 0, **fields) -> dict:
    return {"benchmark": "search_vs_exhaustive_part", "dataset": "ml-1m", "seed": seed, "overrides": {},
            "part": name, "candidates": [5, 10], "machine": "test", "date": "2026-11-27", **fields}


def search_part(choice: int, seconds: float, seed: int = 0) -> dict:
    return part("search", seed, search_choice=choice, search_weights={"5": 0.9, "10": 0.1},
                search_decisive=True, seconds=seconds)


def length_part(length: int, valid: float, seconds: float, seed: int = 0) -> dict:
    return part(str(length), seed, valid_ndcg10=valid, test_ndcg10_full=valid, test_hr10_full=0.3,
                best_epoch=3, seconds=seconds)


def test_a_seed_with_every_part_gives_both_choices_the_gap_and_the_time_ratio():
    (comparison,) = combine([search_part(5, 10.0), length_part(5, 0.17, 40.0), length_part(10, 0.18, 50.0)])
    assert comparison["search_choice"] == 5 and comparison["exhaustive_choice"] == 10
    assert abs(comparison["search_choice_gap_ndcg10"] - 0.01) < 1e-12
    assert comparison["time_ratio"] == (10.0 + 40.0) / (40.0 + 50.0)


def test_a_seed_with_a_missing_candidate_is_left_out():
    assert combine([search_part(5, 10.0), length_part(5, 0.17, 40.0)]) == []


def test_a_later_line_for_the_same_part_replaces_the_earlier_one():
    (comparison,) = combine([search_part(5, 10.0), length_part(5, 0.17, 40.0), length_part(10, 0.18, 50.0),
                             length_part(10, 0.10, 50.0)])
    assert comparison["exhaustive_choice"] == 5


def test_the_search_table_has_one_row_per_complete_seed():
    records = [search_part(5, 10.0), length_part(5, 0.17, 40.0), length_part(10, 0.18, 50.0),
               search_part(10, 10.0, seed=1)]
    table = search_table(records).splitlines()
    assert len(table) == 3 and "| ml-1m | 0 | test | 5 (0.900) | 10 |" in table[2]
