"""Importers against hostile files: every outcome is a complete import or an ImportFailed with a message.

Random bytes, random CSV shapes, huge fields, NUL bytes, mixed encodings, broken metadata and Parquet files
go through every entry point for user files (detect_format, preview, read_interactions, import_file,
read_item_metadata). A successful import must round-trip through the store; a failed one must leave the
store exactly as it was. A process killed at any moment of an import leaves either nothing or the whole
dataset. `AUTOMLP_FUZZ_EXAMPLES` raises the examples per fuzz test and `AUTOMLP_KILL_ROUNDS` the number of
kills, for a longer campaign (RELIABILITY.md).
"""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from engine.data.importers import (
    FORMATS,
    ImportFailed,
    detect_format,
    import_file,
    preview,
    read_interactions,
    read_item_metadata,
)
from engine.data.store import (
    delete_dataset,
    get_dataset,
    list_datasets,
    load_log,
    open_store,
)
from tests.engine.store_snapshot import store_snapshot

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("AUTOMLP_FUZZ_EXAMPLES", "100"))
KILL_ROUNDS = int(os.environ.get("AUTOMLP_KILL_ROUNDS", "4"))
fuzz = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
heavy_fuzz = settings(fuzz, max_examples=max(EXAMPLES // 4, 5))  # files of a few hundred KiB each

SEPARATORS = [",", ";", "\t", "::", "|"]
SUFFIXES = [".csv", ".tsv", ".txt", ".dat", ".inter", ".parquet"]
BOMS = [b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"]
READ_OPTIONS = ("format", "mapping", "separator", "encoding")

# A complete dataset each test's store holds before any fuzzed import: it must never change.
BEFORE_CSV = "user,item,timestamp,rating\nu,a,1,5\nu,b,2,3\nv,a,3,1\n"

# Valid files of every text format: the seeds that NUL bytes and encoding fragments are mixed into.
VALID = {
    "ratings.dat": "1::10::5::978300760\n1::20::3::978300700\n2::10::4::978300800\n",
    "log.csv": "userId,movieId,rating,timestamp\na,x,4.5,100\na,y,3,50\nb,x,1,70\n",
    "log.tsv": "1\t5\t300\n1\t6\t200\n2\t5\t100\n",
    "toy.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t7\t3\t881250949\n2\t7\t5\t8812\n",
    "pairs.txt": "1 5\n2 6\n1 4\n1 5\n",
    "seq.txt": "1 3 2 1\n2 5\n3 4 4 9 8\n",
    "dates.csv": "user;item;time\nu;a;2020-01-02T00:00:00Z\nu;b;2020-01-01\n",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-store")
    opened = open_store(f"sqlite:///{folder / 'store.sqlite'}")
    (folder / "before.csv").write_text(BEFORE_CSV)
    import_file(opened, folder / "before.csv", name="before", min_user_interactions=0)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-files")


def put(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def refused_with_a_message(error: ImportFailed) -> None:
    assert str(error).strip(), "ImportFailed without a message"


def reads_or_fails_cleanly(path: Path, **options) -> None:
    """detect_format and preview either answer or raise ImportFailed with a message."""
    for read in (detect_format, preview):
        try:
            read(path, **options)
        except ImportFailed as error:
            refused_with_a_message(error)


def imports_or_fails_cleanly(store, path: Path, **options):
    """Imports `path` as dataset "fuzz" and checks the outcome: the whole dataset, as read_interactions reads
    the file, or ImportFailed and an unchanged store. Returns the report, or None after a refusal."""
    reads_or_fails_cleanly(path, **{k: v for k, v in options.items() if k in READ_OPTIONS})
    before = store_snapshot(store)
    try:
        report = import_file(store, path, name="fuzz", min_user_interactions=0, **options)
    except ImportFailed as error:
        refused_with_a_message(error)
        assert store_snapshot(store) == before, "a refused import changed the store"
        event("refused")
        return None
    event("imported")
    try:
        assert_stored_as_read(store, path, report, options)
    finally:
        with store.session() as session:
            delete_dataset(session, "fuzz")
    assert store_snapshot(store) == before
    return report


def assert_stored_as_read(store, path: Path, report, options: dict) -> None:
    """The stored dataset holds what read_interactions reads from the file, less the dropped duplicates."""
    with store.session() as session:
        assert "fuzz" in [d.name for d in list_datasets(session)]
        log = load_log(session, "fuzz")
    frame = read_interactions(path, **{k: v for k, v in options.items() if k in READ_OPTIONS})
    assert len(log.users) == report.interactions == len(frame) - report.duplicates_dropped
    assert set(log.users) == set(frame["user"]) and set(log.items) == set(frame["item"])
    if report.has_timestamps:
        stored = sorted(zip(log.users, log.items, log.timestamps.tolist()))
        read = sorted(zip(frame["user"], frame["item"], frame["timestamp"].tolist()))
        if report.duplicates_dropped == 0:
            assert stored == read
        else:
            assert set(stored) == set(read)
    else:
        # Without timestamps every row is kept, grouped by user in order of first appearance.
        first = {u: i for i, u in enumerate(pd.unique(frame["user"]))}
        expected = frame.assign(first=frame["user"].map(first)).sort_values("first", kind="stable")
        assert log.users.tolist() == expected["user"].tolist()
        assert log.items.tolist() == expected["item"].tolist()


# ---------------------------------------------------------------- strategies

options = st.fixed_dictionaries({}, optional={
    "format": st.sampled_from(FORMATS),
    "separator": st.sampled_from(SEPARATORS + [" "]),
    "encoding": st.sampled_from(["utf-8", "latin-1", "utf-16", "cp1252", "no-such-codec"]),
})

cells = st.one_of(
    st.integers(0, 5).map(str),  # small ids: repeats, so that users and items have several rows
    st.integers(-10 ** 20, 10 ** 20).map(str),
    st.floats().map(repr),  # nan, inf, 1e+300, -0.0
    st.sampled_from(["", " ", '"', '""', '"a,b"', '"x""y"', "'q'", "nan", "NaN", "inf", "-inf", "1e400",
                     "+5", " 5", "5 ", "0x10", "1_000", "1,5", "\u0661\u0662", "2020-01-01", "2020-13-45",
                     "1970-01-01T00:00:00Z", "0001-01-01", "9999-12-31T23:59:59", "yesterday", "u1", "i1",
                     "\\", "#", "a\tb", "a::b", "NULL", "None", "True"]),
    st.text(max_size=8),  # any code point except surrogates: separators, quotes, line ends, NUL
)
header_names = st.one_of(
    st.sampled_from(["user", "item", "timestamp", "rating", "user_id:token", "item_id:token", "timestamp:float",
                     "rating:float", "userId", "movieId", "time", "date", "score", "title", "session_id",
                     "asin", "", " ", '"user"']),
    st.text(max_size=6),
)


column_cells = [
    st.one_of(st.integers(0, 5).map(str), st.sampled_from(["u1", "i1", "é", "a b", "ユ", "x y z", "'q'"])),
    st.one_of(st.integers(-10 ** 12, 10 ** 19).map(str), st.floats(0, 2e9).map(repr), st.integers(1, 5).map(str)),
    st.sampled_from(["2020-01-01", "2021-06-30T12:00:00Z", "1999-12-31 23:59:59", "2020-02-29T00:00:00+02:00"]),
]


@st.composite
def csv_shapes(draw) -> tuple[bytes, str]:
    """Delimited text of random shape: separator, header (the right names, others or none), column count,
    columns of ids, numbers or dates, and in noisy files ragged rows and cells of every kind; line ends,
    encoding."""
    sep = draw(st.sampled_from(SEPARATORS))
    width = draw(st.integers(1, 6))
    noisy = draw(st.booleans())
    kinds = [draw(st.sampled_from(column_cells)) for _ in range(width)]
    lines = []
    if draw(st.booleans()):
        lines.append(draw(st.lists(header_names, min_size=width, max_size=width)))
    for _ in range(draw(st.integers(0, 12))):
        if noisy:
            row_width = draw(st.sampled_from([width] * 6 + [max(width - 1, 0), width + 1]))
            lines.append(draw(st.lists(st.one_of(st.sampled_from(column_cells).flatmap(lambda c: c), cells),
                                       min_size=row_width, max_size=row_width)))
        else:
            lines.append([draw(kind) for kind in kinds])
    end = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    text = end.join(sep.join(line) for line in lines) + draw(st.sampled_from([end, ""]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "latin-1"]))
    suffix = draw(st.sampled_from([".csv", ".csv", ".txt", ".dat", ".inter"]))
    return text.encode(encoding, errors="replace"), suffix


@st.composite
def mixed_encodings(draw) -> bytes:
    """A valid file's lines, each in its own encoding, with byte order marks here and there."""
    text = VALID[draw(st.sampled_from(sorted(VALID)))] + draw(st.sampled_from(["", "1::café::5::9\n",
                                                                             "ü,ß,3\n", "ユーザー 品目\n"]))
    pieces = []
    for line in text.splitlines(keepends=True):
        codec = draw(st.sampled_from(["utf-8", "utf-8", "latin-1", "cp1252", "utf-16", "utf-16-le", "utf-16-be"]))
        pieces.append(line.encode(codec, errors="replace"))
    for _ in range(draw(st.integers(0, 3))):
        pieces.insert(draw(st.integers(0, len(pieces))), draw(st.sampled_from(BOMS)))
    return b"".join(pieces)


# ---------------------------------------------------------------- fuzz tests


@fuzz
@given(data=st.binary(max_size=3000), suffix=st.sampled_from(SUFFIXES), chosen=options)
@example(data=b"\x00", suffix=".csv", chosen={"separator": "::"})  # TypeError from the csv module
@example(data=b"\x00", suffix=".csv", chosen={"format": "movielens", "encoding": "utf-16"})  # UnicodeDecodeError
@example(data=b"1,2\n", suffix=".csv", chosen={"encoding": "no-such-codec"})  # LookupError
def test_random_bytes_import_or_fail_with_a_message(store, folder, data, suffix, chosen):
    imports_or_fails_cleanly(store, put(folder, "random" + suffix, data), **chosen)


@fuzz
@given(shape=csv_shapes(), chosen=options)
def test_random_csv_shapes_import_or_fail_with_a_message(store, folder, shape, chosen):
    data, suffix = shape
    imports_or_fails_cleanly(store, put(folder, "shape" + suffix, data), **chosen)


@fuzz
@given(shape=csv_shapes(), mapping=st.dictionaries(st.sampled_from(["user", "item", "time", "rating", "when"]),
                                                    st.one_of(header_names, st.integers(1, 7).map(str)),
                                                    max_size=4))
def test_random_mappings_import_or_fail_with_a_message(store, folder, shape, mapping):
    data, suffix = shape
    imports_or_fails_cleanly(store, put(folder, "mapped" + suffix, data), mapping=mapping)


@heavy_fuzz
@given(seed=st.sampled_from(sorted(VALID)), line=st.integers(0, 3), size=st.sampled_from([70_000, 140_000, 600_000]),
       fill=st.sampled_from(["a", "7", ",", '"', "\t", ":", " ", "é", "\x00", "\r"]), at_start=st.booleans())
@example(seed="log.csv", line=1, size=70_000, fill="\t", at_start=False)  # IndexError: pandas took "100\t\t..."
@example(seed="log.csv", line=0, size=140_000, fill='"', at_start=False)  # the csv module's field limit
@example(seed="pairs.txt", line=1, size=600_000, fill="7", at_start=True)  # Arrow's 1 MiB parser block
def test_huge_fields_import_or_fail_with_a_message(store, folder, seed, line, size, fill, at_start):
    # Beyond Python csv's field limit (131072) and Arrow's parser block (1 MiB with the line around it).
    lines = VALID[seed].splitlines()
    index = min(line, len(lines) - 1)
    lines[index] = fill * size + lines[index] if at_start else lines[index] + fill * size
    imports_or_fails_cleanly(store, put(folder, seed, ("\n".join(lines) + "\n").encode("utf-8")))


@fuzz
@given(seed=st.sampled_from(sorted(VALID)), positions=st.lists(st.integers(0, 10 ** 6), min_size=1, max_size=4),
       replace=st.booleans())
@example(seed="log.tsv", positions=[0], replace=True)  # a user id "\x00" came back from the store as ""
def test_nul_bytes_import_or_fail_with_a_message(store, folder, seed, positions, replace):
    data = bytearray(VALID[seed].encode())
    for position in positions:
        position %= len(data) + 1
        if replace and position < len(data):
            data[position] = 0
        else:
            data[position:position] = b"\x00"
    report = imports_or_fails_cleanly(store, put(folder, seed, bytes(data)))
    assert report is None, "a file with NUL bytes is not text and must be refused"


@fuzz
@given(data=mixed_encodings(), name=st.sampled_from(sorted(VALID)),
       encoding=st.sampled_from([None, "utf-8", "latin-1"]))
@example(data=b"\xff\xfeuser;item\nu;a\n", name="dates.csv", encoding="utf-8")  # UnicodeDecodeError
def test_mixed_encodings_import_or_fail_with_a_message(store, folder, data, name, encoding):
    chosen = {} if encoding is None else {"encoding": encoding}
    imports_or_fails_cleanly(store, put(folder, name, data), **chosen)


@fuzz
@given(seed=st.sampled_from(sorted(VALID)), end=st.sampled_from(["\n", "\r\n", "\r"]),
       blanks=st.lists(st.integers(0, 10), max_size=4))
def test_line_ends_and_empty_lines_do_not_change_what_is_read(folder, seed, end, blanks):
    original = read_interactions(put(folder, seed, VALID[seed].encode()))
    lines = VALID[seed].splitlines()
    for position in blanks:  # before the header too
        lines.insert(position % (len(lines) + 1), "")
    changed = read_interactions(put(folder, seed, (end.join(lines) + end).encode()))
    pd.testing.assert_frame_equal(changed, original)


def test_empty_lines_before_the_header_are_not_read_as_data(folder):
    frame = read_interactions(put(folder, "log.csv", b"\n\r\n \nuser,item\nu,a\n"))
    assert frame.to_dict("list") == {"user": ["u"], "item": ["a"]}


def test_errors_in_files_with_carriage_return_line_ends_name_the_right_line(folder):
    with pytest.raises(ImportFailed, match=r"log.csv line 3: expected 2 fields separated by ',', found 3"):
        read_interactions(put(folder, "log.csv", b"user,item\ru,a\ru,b,c\r"))


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                                       max_size=4), max_leaves=12)


@st.composite
def metadata_files(draw) -> tuple[bytes, str]:
    """Item metadata of every kind, valid or broken: movies.dat, RecBole .item, item2attributes JSON."""
    kind = draw(st.sampled_from(["bytes", "movies", "item", "json", "deep-json"]))
    if kind == "bytes":
        return draw(st.binary(max_size=2000)), draw(st.sampled_from([".json", ".item", ".dat", ".txt"]))
    if kind == "movies":
        rows = draw(st.lists(st.lists(cells, min_size=1, max_size=4), max_size=6))
        text = "\n".join("::".join(r) for r in rows)
        return text.encode(draw(st.sampled_from(["latin-1", "utf-8"])), errors="replace"), ".dat"
    if kind == "item":
        header = draw(st.lists(st.one_of(st.sampled_from(["item_id:token", "movie_title:token_seq",
                                                          "class:token_seq", "year:token"]), header_names),
                               max_size=4))
        rows = draw(st.lists(st.lists(cells, min_size=0, max_size=5), max_size=6))
        lines = (["\t".join(header)] if header or draw(st.booleans()) else []) + ["\t".join(r) for r in rows]
        return "\n".join(lines).encode("utf-8"), ".item"
    if kind == "json":
        return json.dumps(draw(json_values)).encode(), ".json"
    depth = draw(st.sampled_from([100, 10_000, 200_000]))
    return ("[" * depth + "]" * draw(st.sampled_from([0, depth]))).encode(), ".json"


@fuzz
@given(metadata=metadata_files())
@example(metadata=(b"", ".item"))  # IndexError
@example(metadata=(b"[" * 10_000, ".json"))  # RecursionError
def test_item_metadata_files_import_or_fail_with_a_message(store, folder, metadata):
    data, suffix = metadata
    path = put(folder, "items" + suffix, data)
    try:
        read_item_metadata(path)
    except ImportFailed as error:
        refused_with_a_message(error)
    interactions = put(folder, "log.csv", b"user,item\nu,1\nu,2\nv,3\n")
    imports_or_fails_cleanly(store, interactions, metadata_files=[path])


parquet_columns = st.sampled_from([
    [1, 2, 2], ["a", "b", None], [1.5, float("nan"), 3.0], [True, False, True], [b"\x00\xff", b"a", b"b"],
    pd.to_datetime(["2021-01-02", None, "2021-01-03"], utc=True), [[1], [2, 3], []], [{"k": 1}, {"k": 2}, None],
    ["2021-01-01", "x", "3"], [10 ** 18, -1, 0], pd.array([1, None, 3], dtype="Int64"),
])


@heavy_fuzz
@given(columns=st.fixed_dictionaries({"user": parquet_columns, "item": parquet_columns},
                                     optional={"timestamp": parquet_columns, "rating": parquet_columns}),
       damage=st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), max_size=3),
       cut=st.one_of(st.none(), st.integers(0, 10 ** 6)))
@example(columns={"user": [1, 2, 2], "item": [1, 2, 2]}, damage=[(4, 0)], cut=None)  # OSError (thrift)
@example(columns={"user": ["a", "b", None], "item": [1, 2, 2]}, damage=[], cut=None)  # IndexError
@example(columns={"user": [1, 2, 2], "item": [[1], [2, 3], []]}, damage=[], cut=None)  # ArrowNotImplementedError
def test_parquet_files_of_any_column_type_or_damaged_import_or_fail_with_a_message(store, folder, columns, damage,
                                                                                   cut):
    buffer = io.BytesIO()
    try:
        pd.DataFrame(columns).to_parquet(buffer)
    except Exception:  # pyarrow cannot write this mix; not a file a user could hold
        assume(False)
    data = bytearray(buffer.getvalue())
    for position, value in damage:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    imports_or_fails_cleanly(store, put(folder, "log.parquet", bytes(data)))


# ---------------------------------------------------------------- explicit hostile files

TEN_MILLION = 10_000_000


def test_ten_million_character_line_without_separators_is_refused_naming_its_line(store, folder):
    path = put(folder, "long.csv", b"user,item\nu,a\n" + b"x" * TEN_MILLION + b"\nv,b\n")
    before = store_snapshot(store)
    with pytest.raises(ImportFailed, match=r"long.csv line 3: expected 2 fields separated by ',', found 1"):
        import_file(store, path, name="fuzz", min_user_interactions=0)
    assert store_snapshot(store) == before


def test_a_ten_million_character_item_id_is_read_and_refused_by_its_length_leaving_the_store_as_it_was(
        store, folder):
    path = put(folder, "long.csv", b"user,item,timestamp\nu,a,1\nu," + b"x" * TEN_MILLION + b",2\nv,a,3\n")
    assert len(read_interactions(path)) == 3  # the reader takes the line whole
    before = store_snapshot(store)
    with pytest.raises(ImportFailed, match="10000000 characters long; the store keeps ids of up to 200"):
        import_file(store, path, name="fuzz", min_user_interactions=0)
    assert store_snapshot(store) == before


def test_a_ten_million_character_line_in_a_line_per_user_file_is_read_and_its_long_id_refused(store, folder):
    path = put(folder, "seq.txt", b"1 5 " + b"7" * TEN_MILLION + b" 5\n2 5\n")
    assert len(read_interactions(path)) == 4
    before = store_snapshot(store)
    with pytest.raises(ImportFailed, match="10000000 characters long"):
        import_file(store, path, name="fuzz", min_user_interactions=0)
    assert store_snapshot(store) == before


@pytest.mark.parametrize("name", ["empty.csv", "empty.dat", "empty.inter", "empty.txt", "empty.parquet"])
def test_empty_file_is_refused_by_every_entry_point(store, folder, name):
    path = put(folder, name, b"")
    before = store_snapshot(store)
    for read in (detect_format, preview, read_interactions):
        with pytest.raises(ImportFailed, match=name):
            read(path)
    with pytest.raises(ImportFailed, match=name):
        import_file(store, path, name="fuzz")
    assert store_snapshot(store) == before


@pytest.mark.parametrize("name", ["movies.dat", "empty.item", "empty_item2attributes.json", "empty.txt"])
def test_empty_item_metadata_file_is_refused(folder, name):
    with pytest.raises(ImportFailed, match=name.replace(".", r"\.")):
        read_item_metadata(put(folder, name, b""))


@pytest.mark.parametrize("name, header", [
    ("header.csv", "user,item,timestamp\n"), ("header.inter", "user_id:token\titem_id:token\n"),
    ("header.tsv", "user\titem\trating\n"), ("header.csv", "user;item\r\n\r\n"),
])
def test_file_of_only_a_header_is_refused_by_every_entry_point(store, folder, name, header):
    path = put(folder, name, header.encode())
    before = store_snapshot(store)
    for read in (preview, read_interactions):
        with pytest.raises(ImportFailed, match="header but no data rows"):
            read(path)
    with pytest.raises(ImportFailed, match="header but no data rows"):
        import_file(store, path, name="fuzz")
    assert store_snapshot(store) == before


def test_item_file_of_only_a_header_gives_no_titles(folder):
    assert read_item_metadata(put(folder, "only.item", b"item_id:token\tmovie_title:token_seq\n")) == ({}, {})


# ---------------------------------------------------------------- what the fuzzing taught the readers


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "1e20"])
def test_timestamps_that_are_not_finite_or_beyond_int64_are_refused(folder, value):
    path = put(folder, "log.csv", f"user,item,timestamp\nu,a,1.5\nu,b,{value}\n".encode())
    with pytest.raises(ImportFailed, match=rf"log.csv line 3, column 'timestamp': timestamp '{value}' is not"):
        read_interactions(path)


@pytest.mark.parametrize("value", ["nan", "inf", "1e400"])
def test_ratings_that_are_not_finite_are_refused(folder, value):
    path = put(folder, "log.csv", f"user,item,rating\nu,a,4\nu,b,{value}\n".encode())
    with pytest.raises(ImportFailed, match=rf"line 3, column 'rating': rating '{value}' is not a finite number"):
        read_interactions(path)


def test_spaces_around_timestamps_and_ratings_are_ignored(folder):
    frame = read_interactions(put(folder, "log.csv", b"user,item,timestamp,rating\nu,a, 5 ,4\t\nu,b,6, 3\n"))
    assert frame["timestamp"].tolist() == [5, 6] and frame["rating"].tolist() == [4.0, 3.0]


@pytest.mark.parametrize("encoding, message", [("utf-16", "cannot be read: lines and separators must be ASCII"),
                                               ("no-such-codec", "unknown encoding 'no-such-codec'"),
                                               ("rot13", "unknown encoding 'rot13'")])
def test_encodings_the_readers_cannot_split_into_lines_are_refused(folder, encoding, message):
    path = put(folder, "log.csv", b"user,item\nu,a\n")
    for read in (detect_format, read_interactions):
        with pytest.raises(ImportFailed, match=message):
            read(path, encoding=encoding)
    with pytest.raises(ImportFailed, match=message):
        read_item_metadata(path, encoding=encoding)


@pytest.mark.parametrize("separator", ["", ",,", '"', "\n"])
def test_separators_other_than_one_character_or_double_colon_are_refused(folder, separator):
    with pytest.raises(ImportFailed, match="separator .* cannot be used"):
        read_interactions(put(folder, "log.csv", b"user,item\nu,a\n"), separator=separator)


def test_a_double_colon_separator_reads_a_csv(folder):
    frame = read_interactions(put(folder, "log.csv", b"user::item\nu::a\n"), format="csv", separator="::")
    assert frame.to_dict("list") == {"user": ["u"], "item": ["a"]}


def test_latin1_byte_0x85_inside_a_title_is_not_a_line_end(folder):
    movies = put(folder, "movies.dat", "1::Caf\x85 (1999)::Drama\n2::Heat (1995)::Action\n".encode("latin-1"))
    titles, features = read_item_metadata(movies)
    assert titles == {"1": "Caf\x85 (1999)", "2": "Heat (1995)"} and features["genre"]["1"] == ["Drama"]
    log = put(folder, "log.csv", "user,item\nu,caf\x85\nu,b\n".encode("latin-1"))
    assert read_interactions(log, encoding="latin-1")["item"].tolist() == ["caf\x85", "b"]


def test_null_ids_in_a_parquet_file_are_refused_naming_the_row(folder):
    path = folder / "log.parquet"
    pd.DataFrame({"user": ["a", None], "item": ["x", "y"]}).to_parquet(path)
    with pytest.raises(ImportFailed, match=r"log.parquet line 2, column 'user': the user is missing \(null\)"):
        read_interactions(path)


def test_a_parquet_column_of_lists_is_refused_naming_its_type(folder):
    path = folder / "log.parquet"
    pd.DataFrame({"user": ["a", "b"], "item": [[1], [2]]}).to_parquet(path)
    with pytest.raises(ImportFailed, match=r"column 'item' holds list<.*> values; the item must be text or numbers"):
        read_interactions(path)


def test_a_damaged_parquet_file_is_refused(folder):
    buffer = io.BytesIO()
    pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"]}).to_parquet(buffer)
    data = bytearray(buffer.getvalue())
    data[4] = 0  # the first page header
    with pytest.raises(ImportFailed, match="log.parquet: not a readable Parquet file"):
        read_interactions(put(folder, "log.parquet", bytes(data)))


def test_deeply_nested_item_attributes_json_is_refused(folder):
    with pytest.raises(ImportFailed, match="nested too deeply"):
        read_item_metadata(put(folder, "x_item2attributes.json", b"[" * 100_000))


def test_nul_byte_is_refused_naming_its_line_and_column(folder):
    with pytest.raises(ImportFailed, match=r"log.csv line 2, column 3: NUL byte; a text file holds none"):
        read_interactions(put(folder, "log.csv", b"user,item\nu,\x00a\n"))


# ---------------------------------------------------------------- kill during import

# The child reports every progress step (reading 0-60, inserting 60-100), then 101 once committed; the
# finer blocks and batches give the kill many distinct moments to land on.
KILLED_IMPORT = textwrap.dedent("""
    import sys
    from engine.data import delimited, importers
    from engine.core.events import Observer, StepFinished
    from engine.data.store import open_store

    class PrintSteps(Observer):
        def emit(self, event):
            if isinstance(event, StepFinished):
                print(event.step, flush=True)

    delimited.BLOCK_BYTES = 64 << 10
    importers.INSERT_ROWS = 2_000
    importers.PROGRESS_INTERVAL = 0.0
    store = open_store(sys.argv[1])
    print(-1, flush=True)
    importers.import_file(store, sys.argv[2], name="killed", min_user_interactions=0, observer=PrintSteps())
    print(101, flush=True)
""")
ROWS = 40_000


def write_log(path: Path, rows: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    columns = [rng.integers(1, 2000, rows), rng.integers(1, 3000, rows), rng.integers(1, 6, rows),
               rng.integers(9e8, 1e9, rows)]
    path.write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in zip(*columns)))
    return path


def kill_at_step(url: str, path: Path, target: float, extra_delay: float) -> tuple[int, int]:
    """Runs the import in a child process and SIGKILLs it once it reports `target` or more (then waits
    `extra_delay` s more). Returns (last step reported, exit code: -SIGKILL, or 0 if it finished first)."""
    child = subprocess.Popen([sys.executable, "-c", KILLED_IMPORT, url, str(path)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    last = -2
    try:
        for line in child.stdout:
            last = int(line)
            if last >= target:
                break
        time.sleep(extra_delay)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
    return last, child.returncode


def test_import_killed_at_any_moment_loses_no_data(tmp_path):
    """SIGKILL at moments spread over an import (opening, reading, inserting, committing, done): the store
    opens and passes its integrity check, the earlier dataset is intact, and the new one is absent or
    complete, never partial."""
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    store = open_store(url)
    (tmp_path / "before.csv").write_text(BEFORE_CSV)
    import_file(store, tmp_path / "before.csv", name="before", min_user_interactions=0)
    with store.session() as session:
        before_items = load_log(session, "before").items.tolist()
    existing = store_snapshot(store)
    store.close()
    path = write_log(tmp_path / "big.dat", ROWS, seed=0)
    rng = np.random.default_rng(int(os.environ.get("AUTOMLP_KILL_SEED", "1")))
    # The first rounds cover each phase; later ones (a longer campaign) land anywhere.
    targets = [0, 30, 80, 100] + [float(rng.uniform(-1, 101)) for _ in range(max(KILL_ROUNDS - 4, 0))]
    outcomes = {"absent": 0, "complete": 0}
    phases = Counter()
    for target in targets[:KILL_ROUNDS]:
        last, code = kill_at_step(url, path, target, float(rng.uniform(0, 0.05)))
        phases["opening" if last < 0 else "reading" if last < 60 else "inserting" if last < 100
               else "committing" if last == 100 else "done"] += 1
        assert code in (-signal.SIGKILL, 0), f"the import failed on its own (exit code {code})"
        reopened = open_store(url)
        try:
            with reopened.engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            with reopened.session() as session:
                names = [d.name for d in list_datasets(session)]
                assert load_log(session, "before").items.tolist() == before_items
                if "killed" in names:
                    dataset = get_dataset(session, "killed")
                    assert dataset.import_report["rows_read"] == ROWS  # the whole file, recorded at commit
                    assert len(load_log(session, "killed").users) == dataset.n_interactions == (
                        ROWS - dataset.import_report["duplicates_dropped"])
                    delete_dataset(session, "killed")
                    outcomes["complete"] += 1
                else:
                    assert last < 101, "the import reported its commit, yet the dataset is missing"
                    outcomes["absent"] += 1
            assert store_snapshot(reopened) == existing
        finally:
            reopened.close()
    print(f"kills: {KILL_ROUNDS} (last step reported: {dict(phases)}); new dataset absent: {outcomes['absent']}, "
          f"complete: {outcomes['complete']}, partial: 0; earlier dataset intact every time")
