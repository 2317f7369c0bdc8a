"""Importers: every format imports with the right counts; bad input leaves the store as it was."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.events import (
    Cancelled,
    PhaseFinished,
    PhaseStarted,
    RecordingObserver,
    StepFinished,
)
from engine.data import delimited, importers
from engine.data.importers import ImportFailed, import_file, preview
from engine.data.sequences import build_sequences
from engine.data.store import dataset_stats, list_datasets, load_log, open_store
from tests.engine.store_snapshot import store_snapshot

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(store_url):
    opened = open_store(store_url)
    yield opened
    opened.close()


@pytest.fixture
def sqlite_store(sqlite_store_url):
    """SQLite only: the real datasets take long to import, and the PostgreSQL import is the same code."""
    opened = open_store(sqlite_store_url)
    yield opened
    opened.close()


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def import_(store, path, **options):
    options.setdefault("min_user_interactions", 0)
    with store.session() as session:
        return import_file(session, path, **options)


@pytest.fixture
def ratings_dat(tmp_path) -> Path:
    # 3 users; user 2 rated at the same second twice (ties keep file order); latin-1 is valid here.
    return write(tmp_path / "ratings.dat", "\n".join([
        "1::10::5::978300760", "1::20::3::978300700", "2::10::4::978300800", "2::30::2::978300800",
        "2::20::1::978300900", "3::30::5::978301000"]) + "\n")


@pytest.fixture
def existing(store, tmp_path, ratings_dat):
    """A store that already holds one complete dataset, "before"."""
    import_(store, ratings_dat, name="before")
    return store_snapshot(store)


# ---------------------------------------------------------------- formats


def test_movielens_ratings_dat_imports_ratings_and_timestamps(store, ratings_dat):
    report = import_(store, ratings_dat, name="ml")
    assert (report.format, report.interactions, report.users, report.items) == ("movielens", 6, 3, 3)
    assert report.has_timestamps and report.has_ratings


def test_load_log_orders_by_user_then_time_with_ties_in_file_order(store, ratings_dat):
    import_(store, ratings_dat, name="ml")
    with store.session() as session:
        log = load_log(session, "ml")
    assert log.users.tolist() == ["1", "1", "2", "2", "2", "3"]
    assert log.items.tolist() == ["20", "10", "10", "30", "20", "30"]
    assert log.timestamps.dtype == np.int64
    assert log.timestamps.tolist() == [978300700, 978300760, 978300800, 978300800, 978300900, 978301000]


def test_movies_dat_gives_titles_and_genres(store, tmp_path, ratings_dat):
    movies = write(tmp_path / "movies.dat", "10::Amélie (2001)::Comedy|Romance\n20::Heat (1995)::Action\n"
                   "30::Alien (1979)::Horror|Sci-Fi\n99::Unused (1990)::Drama\n", encoding="latin-1")
    report = import_(store, ratings_dat, name="ml", metadata_files=[movies])
    assert report.titles == 3
    with store.session() as session:
        log = load_log(session, "ml")
    assert log.item_titles["10"] == "Amélie (2001)"
    assert log.item_features["genre"]["30"] == ["Horror", "Sci-Fi"]
    assert "99" not in log.item_titles  # only items that occur are stored


def test_csv_with_header_maps_columns_by_their_names(store, tmp_path):
    path = write(tmp_path / "log.csv", "userId,movieId,rating,timestamp\na,x,4.5,100\na,y,3,50\nb,x,1,70\n")
    report = import_(store, path)
    assert (report.format, report.interactions, report.users, report.items) == ("csv", 3, 2, 2)
    with store.session() as session:
        log = load_log(session, "log")
    assert log.items.tolist() == ["y", "x", "x"]


def test_csv_with_an_explicit_mapping_uses_those_columns(store, tmp_path):
    path = write(tmp_path / "log.csv", "who;what;when;extra\nu1;i1;2;z\nu1;i2;1;z\n")
    report = import_(store, path, mapping={"user": "who", "item": "what", "time": "when"})
    assert report.has_timestamps and not report.has_ratings
    with store.session() as session:
        assert load_log(session, "log").items.tolist() == ["i2", "i1"]


def test_spreadsheet_csv_with_byte_order_mark_and_crlf_lines(store, tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfuser,item,timestamp\r\nu,a,3\r\nu,b,1\r\n")
    report = import_(store, path)
    assert (report.users, report.items, report.has_timestamps) == (1, 2, True)
    with store.session() as session:
        assert load_log(session, "excel").items.tolist() == ["b", "a"]


def test_tsv_without_header_is_detected(store, tmp_path):
    path = write(tmp_path / "log.tsv", "1\t5\t300\n1\t6\t200\n2\t5\t100\n")
    report = import_(store, path)
    assert (report.format, report.interactions, report.has_timestamps) == ("csv", 3, True)


def test_iso_date_timestamps_are_stored_as_unix_seconds(store, tmp_path):
    path = write(tmp_path / "log.csv", "user,item,time\nu,a,2020-01-02T00:00:00Z\nu,b,2020-01-01\n")
    import_(store, path)
    with store.session() as session:
        log = load_log(session, "log")
    assert log.timestamps.tolist() == [1577836800, 1577923200]
    assert log.items.tolist() == ["b", "a"]


def test_millisecond_timestamps_become_seconds_and_keep_their_order(store, tmp_path):
    path = write(tmp_path / "log.csv", "user,item,timestamp\nu,a,1600000000900\nu,b,1600000000100\n")
    import_(store, path)
    with store.session() as session:
        log = load_log(session, "log")
    assert log.items.tolist() == ["b", "a"]  # 100 ms before 900 ms of the same second
    assert log.timestamps.tolist() == [1600000000, 1600000000]


def test_decimal_timestamps_keep_their_order_within_a_second(store, tmp_path):
    path = write(tmp_path / "log.csv", "user,item,timestamp\nu,a,100.7\nu,b,100.2\nu,c,99\n")
    import_(store, path)
    with store.session() as session:
        log = load_log(session, "log")
    assert log.items.tolist() == ["c", "b", "a"]
    assert log.timestamps.tolist() == [99, 100, 100]


def test_nanosecond_timestamps_become_seconds(store, tmp_path):
    path = write(tmp_path / "log.csv", "user,item,timestamp\nu,a,1600000000123456789\n")
    import_(store, path)
    with store.session() as session:
        assert load_log(session, "log").timestamps.tolist() == [1600000000]


def test_recbole_inter_and_item_files(store, tmp_path):
    inter = write(tmp_path / "toy.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                  "1\t7\t3\t881250949\n1\t8\t4\t881250900\n2\t7\t5\t881250000\n")
    item = write(tmp_path / "toy.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\t"
                 "class:token_seq\n7\tToy Story\t1995\tAnimation Comedy\n8\tHeat\t1995\tAction\n")
    report = import_(store, inter, metadata_files=[item])
    assert (report.format, report.interactions, report.users, report.items) == ("recbole", 3, 2, 2)
    with store.session() as session:
        log = load_log(session, "toy")
    assert log.item_titles == {"7": "Toy Story", "8": "Heat"}
    assert log.item_features["genre"]["7"] == ["Animation", "Comedy"]


def test_pairs_file_keeps_file_order(store, tmp_path):
    path = write(tmp_path / "pairs.txt", "1 5\n2 6\n1 4\n1 5\n")
    report = import_(store, path)
    assert (report.format, report.interactions, report.users, report.has_timestamps) == ("pairs", 4, 2, False)
    with store.session() as session:
        log = load_log(session, "pairs")
    assert log.timestamps is None
    assert log.items.tolist() == ["5", "4", "5", "6"]  # repeats are kept without timestamps


def test_sequences_file_gives_one_sequence_per_line(store, tmp_path):
    path = write(tmp_path / "seq.txt", "1 3 2 1\n2 5\n3 4 4 9 8\n")
    report = import_(store, path)
    assert (report.format, report.interactions, report.users, report.items) == ("sequences", 8, 3, 7)
    with store.session() as session:
        log = load_log(session, "seq")
    assert log.items.tolist() == ["3", "2", "1", "5", "4", "4", "9", "8"]


def test_sequences_with_an_aligned_times_file(store, tmp_path):
    items = write(tmp_path / "seq.txt", "1 3 2 1\n2 5\n")
    times = write(tmp_path / "seq_time.txt", "1 10 30 20\n2 5\n")
    import_(store, items, times_file=times)
    with store.session() as session:
        log = load_log(session, "seq")
    assert log.items.tolist() == ["3", "1", "2", "5"]
    assert log.timestamps.tolist() == [10, 20, 30, 5]


def test_times_file_with_a_different_length_names_the_line(store, tmp_path):
    items = write(tmp_path / "seq.txt", "1 3 2 1\n2 5\n")
    times = write(tmp_path / "seq_time.txt", "1 10 30 20\n2 5 6\n")
    with pytest.raises(ImportFailed, match=r"seq_time.txt line 2: expected user 2 with 1 timestamps"):
        import_(store, items, times_file=times)


def test_item2attributes_json_gives_item_features(store, tmp_path):
    items = write(tmp_path / "seq.txt", "1 3 2\n")
    attributes = write(tmp_path / "x_item2attributes.json", '{"3": [1, 5], "2": [5]}')
    report = import_(store, items, metadata_files=[attributes])
    assert report.features == ["attribute"]
    with store.session() as session:
        log = load_log(session, "seq")
    assert log.item_features["attribute"] == {"3": ["1", "5"], "2": ["5"]}


def test_parquet_with_datetime_column(store, tmp_path):
    frame = pd.DataFrame({"user": [1, 1, 2], "item": ["a", "b", "a"],
                          "when": pd.to_datetime(["2021-01-02", "2021-01-01", "2021-01-03"], utc=True)})
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    report = import_(store, path, mapping={"user": "user", "item": "item", "time": "when"})
    assert (report.format, report.interactions, report.users) == ("parquet", 3, 2)
    with store.session() as session:
        log = load_log(session, "log")
    assert log.items.tolist() == ["b", "a", "a"]
    assert log.timestamps[0] == 1609459200


def test_preview_returns_parsed_first_rows_and_the_detected_format(ratings_dat):
    shown = preview(ratings_dat, rows=3)
    assert shown.detected.format == "movielens"
    assert shown.detected.separator == "::"
    assert list(shown.frame.columns) == ["user", "item", "timestamp", "rating"]
    assert shown.frame["item"].tolist() == ["10", "20", "10"]
    assert shown.frame["timestamp"].tolist() == [978300760, 978300700, 978300800]


def test_preview_honours_an_overridden_separator_and_mapping(tmp_path):
    path = write(tmp_path / "log.txt", "a|b|c\n1|2|3\n4|5|6\n")
    shown = preview(path, format="csv", separator="|", mapping={"user": "c", "item": "a"})
    assert shown.frame["user"].tolist() == ["3", "6"]
    assert shown.detected.has_header


def test_preview_of_a_line_per_user_file_lists_its_first_interactions(tmp_path):
    path = write(tmp_path / "seq.txt", "1 3 2 1\n2 5\n")
    shown = preview(path, rows=2)
    assert shown.detected.format == "sequences"
    assert shown.frame.to_dict("list") == {"user": ["1", "1"], "item": ["3", "2"]}


def test_import_file_given_a_store_uses_a_session_of_its_own(store, ratings_dat):
    report = import_file(store, ratings_dat, min_user_interactions=0)
    with store.session() as session:
        assert [d.name for d in list_datasets(session)] == [report.name]


def test_min_user_interactions_drops_short_users_and_counts_them(store, ratings_dat):
    report = import_(store, ratings_dat, min_user_interactions=2)
    assert (report.users, report.interactions, report.users_filtered, report.interactions_filtered) == (2, 5, 1, 1)


def test_min_item_interactions_repeats_until_both_minimums_hold(store, tmp_path):
    # z occurs once; without it c keeps one interaction and goes, then y (a, c) has one and goes,
    # then a (x, y) has one and goes: b and d with x and w remain.
    path = write(tmp_path / "pairs.txt", "a x\na y\nb x\nb w\nc y\nc z\nd w\nd x\n")
    report = import_(store, path, min_user_interactions=2, min_item_interactions=2)
    assert (report.users, report.items, report.interactions) == (2, 2, 4)


def test_duplicate_user_item_time_rows_are_dropped_and_counted(store, tmp_path):
    path = write(tmp_path / "log.csv", "user,item,timestamp\nu,a,1\nu,a,1\nu,a,2\nv,b,1\nv,b,1\n")
    report = import_(store, path)
    assert (report.duplicates_dropped, report.interactions) == (2, 3)


def test_import_reports_progress_as_the_import_phase(store, ratings_dat):
    observer = RecordingObserver()
    import_(store, ratings_dat, observer=observer)
    assert observer.of_type(PhaseStarted)[0].phase == "import"
    assert observer.of_type(StepFinished)[-1].step == 100
    assert observer.of_type(PhaseFinished)[0].phase == "import"


def test_dataset_stats_describe_the_imported_data(store, ratings_dat):
    import_(store, ratings_dat, name="ml")
    with store.session() as session:
        stats = dataset_stats(session, "ml")
    assert (stats["users"], stats["items"], stats["interactions"]) == (3, 3, 6)
    assert stats["density"] == pytest.approx(6 / 9)
    assert stats["sequence_length"] == {"min": 1, "median": 2.0, "mean": 2.0, "max": 3}
    assert stats["time_span"] == {"first": 978300700, "last": 978301000}
    assert stats["popular_items"][0]["interactions"] == 2


# ---------------------------------------------------------------- bad input leaves the store unchanged


def test_empty_file_is_refused(store, existing, tmp_path):
    with pytest.raises(ImportFailed, match="empty.csv: the file is empty"):
        import_(store, write(tmp_path / "empty.csv", ""))
    assert store_snapshot(store) == existing


def test_header_only_is_refused(store, existing, tmp_path):
    with pytest.raises(ImportFailed, match="header.csv: the file has a header but no data rows"):
        import_(store, write(tmp_path / "header.csv", "user,item,timestamp\n"))
    assert store_snapshot(store) == existing


def test_missing_mapped_column_is_named(store, existing, tmp_path):
    path = write(tmp_path / "log.csv", "user,item,timestamp\nu,a,1\n")
    with pytest.raises(ImportFailed, match=r"mapped time column 'when' is not in the file \(columns: user, item"):
        import_(store, path, mapping={"user": "user", "item": "item", "time": "when"})
    assert store_snapshot(store) == existing


def test_unparsable_timestamp_names_file_line_column_and_value(store, existing, tmp_path):
    path = write(tmp_path / "ratings.dat", "1::10::5::978300760\n1::20::3::abc\n")
    with pytest.raises(ImportFailed, match=r"ratings.dat line 2, column '4': timestamp 'abc' is not a number"):
        import_(store, path)
    assert store_snapshot(store) == existing


def test_timestamp_that_is_neither_number_nor_date_in_a_csv(store, existing, tmp_path):
    path = write(tmp_path / "log.csv", "user,item,time\nu,a,2020-01-01\nu,b,yesterday\n")
    with pytest.raises(ImportFailed, match=r"log.csv line 3, column 'time': timestamp 'yesterday' is not"):
        import_(store, path)
    assert store_snapshot(store) == existing


def test_wrong_separator_says_what_the_line_looks_like(store, existing, tmp_path):
    path = write(tmp_path / "ratings.dat", "1::10::5::978300760\n1\t20\t3\t978300761\n")
    with pytest.raises(ImportFailed, match=r"ratings.dat line 2: expected 4 fields separated by '::', found 1.*"
                                           r"looks separated by '\\t'"):
        import_(store, path)
    assert store_snapshot(store) == existing


def test_truncated_last_line_names_the_line(store, existing, tmp_path):
    path = write(tmp_path / "ratings.dat", "1::10::5::978300760\n1::20::3::978300761\n2::3")
    with pytest.raises(ImportFailed, match=r"ratings.dat line 3: expected 4 fields separated by '::', found 2"):
        import_(store, path)
    assert store_snapshot(store) == existing


def test_undecodable_bytes_name_line_and_column(store, existing, tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(b"user,item\nu,a\nu,caf\xe9\n")
    with pytest.raises(ImportFailed, match=r"log.csv line 3, column 6: byte 0xe9 is not valid utf-8"):
        import_(store, path)
    assert store_snapshot(store) == existing


def test_latin1_file_imports_when_told_its_encoding(store, tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(b"user,item\nu,a\nu,caf\xe9\n")
    import_(store, path, encoding="latin-1")
    with store.session() as session:
        assert load_log(session, "log").items.tolist() == ["a", "café"]


def test_existing_dataset_name_is_refused(store, existing, ratings_dat):
    with pytest.raises(ImportFailed, match="a dataset called 'before' already exists"):
        import_(store, ratings_dat, name="before")
    assert store_snapshot(store) == existing


def test_no_user_left_after_filtering_is_refused(store, existing, ratings_dat):
    with pytest.raises(ImportFailed, match="no interactions left after keeping users with at least 10"):
        import_(store, ratings_dat, name="tiny", min_user_interactions=10)
    assert store_snapshot(store) == existing


def big_ratings(path: Path, rows: int) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"u": rng.integers(1, 500, rows), "i": rng.integers(1, 900, rows),
                          "r": rng.integers(1, 6, rows), "t": rng.integers(9e8, 1e9, rows)})
    path.write_text("\n".join(f"{u}::{i}::{r}::{t}" for u, i, r, t in frame.itertuples(index=False)) + "\n")
    return path


def test_cancel_while_reading_leaves_the_store_unchanged(store, existing, tmp_path, monkeypatch):
    monkeypatch.setattr(delimited, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(importers, "PROGRESS_INTERVAL", 0.0)
    observer = RecordingObserver(cancel_when=lambda e: isinstance(e, StepFinished))
    with pytest.raises(Cancelled):
        import_(store, big_ratings(tmp_path / "big.dat", 5000), observer=observer)
    assert store_snapshot(store) == existing


def test_cancel_while_inserting_leaves_the_store_unchanged(store, existing, tmp_path, monkeypatch):
    monkeypatch.setattr(importers, "INSERT_ROWS", 500)
    monkeypatch.setattr(importers, "PROGRESS_INTERVAL", 0.0)
    observer = RecordingObserver(cancel_when=lambda e: isinstance(e, StepFinished) and 60 < e.step < 100)
    with pytest.raises(Cancelled):
        import_(store, big_ratings(tmp_path / "big.dat", 5000), observer=observer)
    assert store_snapshot(store) == existing


KILLED_IMPORT = textwrap.dedent("""
    import sys, time
    from engine.data import importers
    from engine.core.events import Observer, StepFinished
    from engine.data.store import open_store

    class StallMidInsert(Observer):
        def emit(self, event):
            if isinstance(event, StepFinished) and 60 < event.step < 100:
                print("inserting", flush=True)
                time.sleep(60)

    importers.INSERT_ROWS = 1000
    importers.PROGRESS_INTERVAL = 0.0
    store = open_store(sys.argv[1])
    with store.session() as session:
        importers.import_file(session, sys.argv[2], name="killed", min_user_interactions=0,
                              observer=StallMidInsert())
""")


def test_process_killed_mid_import_leaves_only_complete_datasets(store, existing, tmp_path):
    path = big_ratings(tmp_path / "big.dat", 20000)
    child = subprocess.Popen([sys.executable, "-c", KILLED_IMPORT, store.url, str(path)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "inserting"
        with store.engine.connect() as connection:  # rows of the open transaction are not visible yet
            assert connection.exec_driver_sql("SELECT count(*) FROM interactions").scalar() == 6
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    store.close()
    reopened = open_store(store.url)
    with reopened.session() as session:
        assert [d.name for d in list_datasets(session)] == ["before"]
    assert store_snapshot(reopened) == existing
    reopened.close()


# ---------------------------------------------------------------- property


ids = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(ids, ids, st.integers(0, 2_000_000_000)), min_size=1, max_size=30))
def test_any_table_written_as_csv_imports_back_equal(tmp_path_factory, rows):
    folder = tmp_path_factory.mktemp("prop")
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    frame.to_csv(folder / "table.csv", index=False)
    store = open_store(f"sqlite:///{folder / 'store.sqlite'}")
    try:
        import_(store, folder / "table.csv", name="t")
        with store.session() as session:
            log = load_log(session, "t")
    finally:
        store.close()
    expected = frame.drop_duplicates(["user", "item", "timestamp"]).copy()
    expected["first"] = expected["user"].map({u: i for i, u in enumerate(pd.unique(expected["user"]))})
    expected = expected.sort_values(["first", "timestamp"], kind="stable")
    assert log.users.tolist() == expected["user"].tolist()
    assert log.items.tolist() == expected["item"].tolist()
    assert log.timestamps.tolist() == expected["timestamp"].tolist()


# ---------------------------------------------------------------- real data (../shared/data)


@pytest.mark.shared_data
def test_movielens_100k_recbole_files(sqlite_store, shared_data):
    folder = shared_data / "ml-100k"
    report = import_(sqlite_store, folder / "ml-100k.inter", metadata_files=[folder / "ml-100k.item"])
    assert (report.interactions, report.users, report.items, report.titles) == (100_000, 943, 1_682, 1_682)


@pytest.mark.shared_data
def test_movielens_1m_sequences_with_movies_dat_titles(sqlite_store, shared_data):
    folder = shared_data / "ml-1m"
    report = import_(sqlite_store, folder / "ml-1m_chrono_original_ids.txt", name="ml-1m",
                     metadata_files=[folder / "movies.dat"])
    assert (report.interactions, report.users, report.items, report.titles) == (1_000_209, 6_040, 3_706, 3_706)
    with sqlite_store.session() as session:
        log = load_log(session, "ml-1m")
    assert log.items[:4].tolist() == ["3186", "1721", "1022", "1270"]  # user 1, oldest first
    assert log.item_titles["3186"] == "Girl, Interrupted (1999)"
    assert build_sequences(log, 3).n_interactions == 1_000_209


@pytest.mark.shared_data
def test_amazon_beauty_with_its_timestamps(sqlite_store, shared_data):
    folder = shared_data / "amazon-beauty"
    report = import_(sqlite_store, folder / "Beauty.txt", times_file=folder / "Beauty_time.txt",
                     metadata_files=[folder / "Beauty_item2attributes.json"])
    assert (report.interactions, report.users, report.items) == (198_502, 22_363, 12_101)
    assert report.has_timestamps and report.features == ["attribute"]


def test_a_given_source_is_recorded_instead_of_the_files_path(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,item,timestamp\n" + "".join(f"u1,i{i},{i}\n" for i in range(12)))
    store = open_store(f"sqlite:///{tmp_path}/s.sqlite")
    try:
        import_file(store, path, name="given", source="generated for a test")
        import_file(store, path, name="default")
        with store.session() as session:
            sources = {d.name: d.source for d in list_datasets(session)}
    finally:
        store.close()
    assert sources == {"given": "generated for a test", "default": str(path)}
