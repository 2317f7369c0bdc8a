"""Importers: interaction logs in the common formats into the store, in one transaction.

Formats of interaction files (`format=`):
- `movielens`: `user::item::rating::timestamp` (MovieLens `ratings.dat`, Latin-1), no header.
- `csv`: delimited text (`,` `;` `|` tab, detected) with or without a header and a column mapping
  {"user", "item", "time", "rating"} to column names (or 1-based column numbers without a header).
- `recbole`: RecBole atomic `.inter` files (tab-separated, header `name:type`).
- `pairs`: `user item` per line (space or tab), in time order.
- `sequences`: `user i1 i2 ...` per line, items in time order; `times_file` can give a token-aligned
  `user t1 t2 ...` file of timestamps (Amazon `Beauty_time.txt`).
- `parquet`: columns mapped as for `csv`.
Item metadata files (`metadata_files=`): MovieLens `movies.dat` (titles, genres), RecBole `.item` (title,
`token_seq` columns such as `class` as features), `*_item2attributes.json` ({item: [attribute ids]}).

Timestamps may be integer seconds or milliseconds, decimals, ISO dates, or absent (file order). They are
stored as int64 unix seconds; the order within a user uses the full precision, then the file order.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from engine.events import Cancelled, Observer, PhaseFinished, PhaseStarted, StepFinished, Throttle
from engine.store import Dataset, Interaction, Item, Store, User

FORMATS = ("movielens", "csv", "recbole", "pairs", "sequences", "parquet")
METADATA_FORMATS = ("movielens-movies", "recbole-item", "item2attributes")
ROLES = ("user", "item", "time", "rating")
BLOCK_BYTES = 8 << 20  # parse in blocks of about 8 MiB: progress, cancel, bounded parser memory
INSERT_ROWS = 50_000  # rows between progress events and cancel checks while inserting
ROWS_PER_STATEMENT = 100  # multi-row VALUES: measured 2.5x faster than one row per statement
PROGRESS_INTERVAL = 0.2  # seconds between progress events at most

# Column names recognised without a mapping (lower case, without '_' and ' ').
_ROLE_NAMES = {
    "user": ("user", "userid", "uid", "reviewerid", "customerid", "visitorid", "sessionid"),
    "item": ("item", "itemid", "iid", "movieid", "productid", "asin", "businessid", "trackid"),
    "time": ("timestamp", "time", "ts", "date", "datetime", "unixreviewtime", "created", "createdat"),
    "rating": ("rating", "score", "stars", "overall", "value"),
}
_ROLE_ALIASES = {"timestamp": "time", "ts": "time", "user_id": "user", "item_id": "item"}


class ImportFailed(ValueError):
    """An input file cannot be imported; the message names the file, line and column and what was expected."""


@dataclass
class ImportReport:
    """What an import did. Counts are after filtering; `seconds` is the wall time of the whole import."""

    name: str
    format: str
    interactions: int
    users: int
    items: int
    rows_read: int
    duplicates_dropped: int
    users_filtered: int
    items_filtered: int
    interactions_filtered: int
    has_timestamps: bool
    has_ratings: bool
    titles: int
    features: list[str]
    seconds: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Detected:
    """How a file will be read: format, separator, header, column mapping and encoding."""

    format: str
    separator: str | None = None
    has_header: bool = False
    mapping: dict[str, str] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    encoding: str = "utf-8"


@dataclass
class Preview:
    """The first rows of a file as the importer parses them (columns user, item[, timestamp, rating])
    and how it was detected: what the GUI's import wizard shows."""

    frame: pd.DataFrame
    detected: Detected


@dataclass
class _Parsed:
    """Parsed interactions in file order."""

    user_codes: np.ndarray  # int64 per row; user_names[code] is the external id (codes by first appearance)
    user_names: np.ndarray  # str
    item_codes: np.ndarray  # int64 per row, as for users
    item_names: np.ndarray  # str
    order_time: np.ndarray | None  # int64, full precision (s, ms or ns), for ordering
    seconds: np.ndarray | None  # int64 unix seconds, for the store
    ratings: np.ndarray | None  # float64


# ---------------------------------------------------------------- detection


def detect_format(path: str | Path, *, format: str | None = None, separator: str | None = None,
                  mapping: dict | None = None, encoding: str | None = None) -> Detected:
    """Guesses the format, separator, header and column mapping of an interaction file; every argument
    given overrides the guess. Raises ImportFailed for an empty file or an unknown format."""
    path = Path(path)
    if format is not None and format not in FORMATS:
        raise ImportFailed(f"{path.name}: unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    if not path.exists():
        raise ImportFailed(f"{path}: no such file")
    suffix = path.suffix.lower()
    if format == "parquet" or (format is None and suffix in (".parquet", ".pq")):
        columns = [str(c) for c in _parquet_columns(path)]
        return Detected("parquet", None, True, _resolve_mapping(path, columns, mapping, True), columns)
    head = _head_lines(path, encoding)
    if not head:
        raise ImportFailed(f"{path.name}: the file is empty")
    first = head[0]
    if format is None:
        if suffix == ".inter" or re.search(r":(token|float|token_seq|float_seq)\b", first):
            format = "recbole"
        elif "::" in first:
            format = "movielens"
        else:
            format = _guess_text_format(head, separator)
    encoding = encoding or _encoding_of(path, format)
    if format == "movielens":
        sep = separator or "::"
        n = len(first.split(sep))
        columns = [str(i) for i in range(1, n + 1)]
        default = {"user": "1", "item": "2", "rating": "3", "time": "4"} if n >= 4 else {"user": "1", "item": "2"}
        return Detected("movielens", sep, False, _resolve_mapping(path, columns, mapping or default, False),
                        columns, encoding)
    if format == "recbole":
        sep = separator or "\t"
        columns = [c.split(":")[0] for c in first.split(sep)]
        return Detected("recbole", sep, True, _resolve_mapping(path, columns, mapping, True), columns, encoding)
    if format == "sequences":
        return Detected(format, separator or ("\t" if "\t" in first else " "), False, {}, [], encoding)
    if format == "pairs":
        sep = separator or ("\t" if "\t" in first else " ")
        columns = [str(i) for i in range(1, len(first.split(sep)) + 1)]
        default = {"user": "1", "item": "2", "time": "3"} if len(columns) >= 3 else {"user": "1", "item": "2"}
        return Detected(format, sep, False, _resolve_mapping(path, columns, mapping or default, False),
                        columns, encoding)
    sep = separator or _sniff_separator(head)
    rows = list(csv.reader(head[:2], delimiter=sep))
    has_header = _looks_like_header(rows)
    columns = rows[0] if has_header else [str(i) for i in range(1, len(rows[0]) + 1)]
    return Detected("csv", sep, has_header, _resolve_mapping(path, columns, mapping, has_header), columns,
                    encoding)


def _head_lines(path: Path, encoding: str | None, count: int = 20) -> list[str]:
    with open(path, "rb") as handle:
        raw = handle.read(64 << 10)
    text = raw.decode(encoding or "utf-8", errors="replace" if encoding is None else "strict")
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[: count] if len(raw) < (64 << 10) else lines[: min(count, max(len(lines) - 1, 1))]


def _encoding_of(path: Path, format: str) -> str:
    # MovieLens .dat files are Latin-1 by definition; everything else must say so (encoding="latin-1").
    return "latin-1" if format == "movielens" else "utf-8"


def _guess_text_format(head: list[str], separator: str | None) -> str:
    sep = separator or _sniff_separator(head)
    counts = {len(line.split(sep)) for line in head}
    if sep in (" ", "\t") and not _looks_like_header([line.split(sep) for line in head[:2]]):
        if counts == {2}:
            return "pairs"
        if sep == " " or len(counts) > 1:
            return "sequences"
    return "csv"


def _sniff_separator(head: list[str]) -> str:
    """Tab if every line has one; else a punctuation separator found the same number of times on every
    line; else a space (line-per-user files); else the comma."""
    present = [sep for sep in ("\t", ",", ";", "|", " ") if all(sep in line for line in head)]
    if "\t" in present:
        return "\t"
    for sep in present:
        if sep != " " and len({line.count(sep) for line in head}) == 1:
            return sep
    return " " if " " in present else (present[0] if present else ",")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _looks_like_header(rows: list[list[str]]) -> bool:
    names = {n for names in _ROLE_NAMES.values() for n in names}
    first = [_normal(c) for c in rows[0]]
    if any(c in names for c in first):
        return True
    return (len(rows) > 1 and not any(_is_number(c) for c in rows[0])
            and any(_is_number(c) for c in rows[1]))


def _normal(name: str) -> str:
    return name.split(":")[0].strip().lower().replace("_", "").replace(" ", "")


def _resolve_mapping(path: Path, columns: list[str], mapping: dict | None, has_header: bool) -> dict:
    """{role: column name}; user and item are required. Raises ImportFailed for a missing column."""
    resolved: dict[str, str] = {}
    for role, column in (mapping or {}).items():
        role = _ROLE_ALIASES.get(role, role)
        if role not in ROLES:
            raise ImportFailed(f"{path.name}: unknown mapping key {role!r}; expected {', '.join(ROLES)}")
        if column is None or column == "":
            continue
        column = str(column)
        if column not in columns:
            raise ImportFailed(f"{path.name}: the mapped {role} column {column!r} is not in the file "
                               f"(columns: {', '.join(columns)})")
        resolved[role] = column
    normal = {_normal(c): c for c in columns}
    for role in ROLES:
        if role in resolved or (mapping and role in ("time", "rating")):
            continue
        for name in _ROLE_NAMES[role]:
            if name in normal and normal[name] not in resolved.values():
                resolved[role] = normal[name]
                break
    if not has_header and not mapping:
        # Without names, columns are taken in the usual order: user, item, then time (3 columns) or
        # rating and time (4 columns, as MovieLens).
        order = {2: ("user", "item"), 3: ("user", "item", "time"), 4: ("user", "item", "rating", "time")}
        for role, column in zip(order.get(len(columns), ("user", "item")), columns):
            resolved[role] = column
    for role in ("user", "item"):
        if role not in resolved:
            raise ImportFailed(f"{path.name}: no {role} column found among {', '.join(columns)}; "
                               f"give a mapping such as user=...,item=...")
    return resolved


def _parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path).names
    except Exception as error:
        raise ImportFailed(f"{path.name}: not a readable Parquet file ({error})") from None


# ---------------------------------------------------------------- reading interactions


def preview(path: str | Path, *, format: str | None = None, mapping: dict | None = None,
            separator: str | None = None, encoding: str | None = None, rows: int = 20) -> Preview:
    """The first `rows` interactions of a file as parsed (DataFrame: user, item, and timestamp (unix
    seconds) / rating when mapped) with the detected format and mapping. Raises ImportFailed."""
    detected = detect_format(path, format=format, separator=separator, mapping=mapping, encoding=encoding)
    parsed = _read(Path(path), detected, None, Observer(), limit_rows=rows)
    frame = pd.DataFrame({"user": parsed.user_names[parsed.user_codes],
                          "item": parsed.item_names[parsed.item_codes]})
    if parsed.seconds is not None:
        frame["timestamp"] = parsed.seconds
    if parsed.ratings is not None:
        frame["rating"] = parsed.ratings
    return Preview(frame=frame, detected=detected)


def read_interactions(path: str | Path, *, format: str | None = None, mapping: dict | None = None,
                      separator: str | None = None, encoding: str | None = None,
                      times_file: str | Path | None = None,
                      observer: Observer | None = None) -> pd.DataFrame:
    """All interactions of a file in file order, as a DataFrame (user, item[, timestamp, rating]), without
    filtering: for scripts and tests. Raises ImportFailed."""
    detected = detect_format(path, format=format, separator=separator, mapping=mapping, encoding=encoding)
    parsed = _read(Path(path), detected, Path(times_file) if times_file else None, observer or Observer())
    frame = pd.DataFrame({"user": parsed.user_names[parsed.user_codes],
                          "item": parsed.item_names[parsed.item_codes]})
    if parsed.seconds is not None:
        frame["timestamp"] = parsed.seconds
    if parsed.ratings is not None:
        frame["rating"] = parsed.ratings
    return frame


def _read(path: Path, detected: Detected, times_file: Path | None, observer: Observer,
          progress=None, limit_rows: int | None = None) -> _Parsed:
    if detected.format == "parquet":
        return _read_parquet(path, detected, limit_rows)
    if detected.format == "sequences":
        return _read_sequences(path, detected, times_file, observer, progress, limit_rows)
    if times_file is not None:
        raise ImportFailed(f"{times_file.name}: a timestamp file goes only with a line-per-user "
                           f"sequences file, and {path.name} is read as {detected.format}")
    return _read_delimited(path, detected, observer, progress, limit_rows)


def _blocks(path: Path, limit_rows: int | None):
    """Yields (bytes ending at a line end, number of the block's first line, bytes read so far)."""
    line = 1
    done = 0
    with open(path, "rb") as handle:
        while True:
            block = handle.read(BLOCK_BYTES if limit_rows is None else 64 << 10)
            if not block:
                return
            if not block.endswith(b"\n"):
                block += handle.readline()
            done += len(block)
            yield block, line, done
            line += block.count(b"\n")
            if limit_rows is not None:
                return


def _decode_check(path: Path, block: bytes, first_line: int, encoding: str) -> None:
    """Raises ImportFailed naming the line and column of the first byte that `encoding` cannot decode."""
    if block.isascii():  # every encoding we read is ASCII-compatible; this check is 50x faster
        return
    try:
        block.decode(encoding)
    except UnicodeDecodeError as error:
        start = block.rfind(b"\n", 0, error.start) + 1
        line = first_line + block.count(b"\n", 0, error.start)
        raise ImportFailed(
            f"{path.name} line {line}, column {error.start - start + 1}: byte 0x{block[error.start]:02x} "
            f"is not valid {encoding}; if the file is Latin-1, import it with encoding latin-1") from None


def _read_delimited(path: Path, detected: Detected, observer: Observer, progress,
                    limit_rows: int | None) -> _Parsed:
    sep = detected.separator
    size = max(path.stat().st_size, 1)
    columns = detected.columns
    wanted = {role: columns.index(col) for role, col in detected.mapping.items()}
    pieces: dict[str, list] = {role: [] for role in wanted}
    time_kind = None
    rows = 0
    for block, first_line, done in _blocks(path, limit_rows):
        observer.check()
        _decode_check(path, block, first_line, detected.encoding)
        header_lines = 1 if (detected.has_header and first_line == 1) else 0
        # Arrow splits on one character: "::" becomes the ASCII unit separator, which text never holds.
        data = block.replace(b"::", b"\x1f") if sep == "::" else block
        table = _parse_block(path, data, first_line, header_lines, detected, "\x1f" if sep == "::" else sep)
        if limit_rows is not None:
            table = table.slice(0, limit_rows)
        line_of = _LineFinder(block, first_line, header_lines)
        for role, index in wanted.items():
            column = table.column(index)
            if role in ("user", "item"):
                _check_not_empty(path, column, role, columns[index], line_of)
                pieces[role].append(column)
            elif role == "time":
                values, kind = _parse_times(path, column, columns[index], line_of, time_kind)
                time_kind = kind
                pieces[role].append(values)
            else:
                pieces[role].append(_parse_numbers(path, column, columns[index], line_of, "rating"))
        rows += table.num_rows
        if progress is not None:
            progress(done / size)
    if rows == 0:
        what = "has a header but no data rows" if detected.has_header else "has no data rows"
        raise ImportFailed(f"{path.name}: the file {what}")
    return _assemble(pieces, time_kind)


class _LineFinder:
    """Maps a row of a parsed block to its line number in the file (blank lines are skipped)."""

    def __init__(self, block: bytes, first_line: int, header_lines: int) -> None:
        self.block, self.first_line, self.header_lines = block, first_line, header_lines

    def __call__(self, row: int) -> int:
        seen = -self.header_lines
        for offset, line in enumerate(self.block.split(b"\n")):
            if line.strip():
                if seen == row:
                    return self.first_line + offset
                seen += 1
        return self.first_line + row + self.header_lines


def _parse_block(path: Path, data: bytes, first_line: int, header_lines: int, detected: Detected,
                 sep: str) -> pa.Table:
    names = [f"c{i}" for i in range(len(detected.columns))]
    quoted = detected.format == "csv" and sep != "\t"
    try:
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=header_lines,
                                           encoding=detected.encoding, use_threads=True),
            parse_options=pacsv.ParseOptions(delimiter=sep, quote_char='"' if quoted else False),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False))
    except pa.ArrowInvalid as error:
        raise _field_count_error(path, data, first_line, header_lines, detected, sep, quoted) or ImportFailed(
            f"{path.name} line {first_line}: cannot be read as {detected.format} ({error})") from None


def _field_count_error(path, data, first_line, header_lines, detected, sep, quoted) -> ImportFailed | None:
    expected = len(detected.columns)
    text = data.decode(detected.encoding, errors="replace")
    shown_sep = detected.separator
    for offset, line in enumerate(text.split("\n")):
        if offset < header_lines or not line.strip():
            continue
        fields = next(csv.reader([line], delimiter=sep)) if quoted else line.rstrip("\r").split(sep)
        if len(fields) != expected:
            hint = ""
            if len(fields) == 1:
                other = [s for s in ("\t", ",", ";", "|", "::", " ") if s != shown_sep and s in line]
                if other:
                    hint = f"; the line looks separated by {other[0]!r}, not {shown_sep!r}"
            return ImportFailed(
                f"{path.name} line {first_line + offset}: expected {expected} fields separated by "
                f"{shown_sep!r}, found {len(fields)} ({line[:80]!r}){hint}")
    return None


def _check_not_empty(path: Path, column: pa.ChunkedArray, role: str, name: str, line_of) -> None:
    empty = pc.equal(pc.utf8_length(column), 0)
    if pc.any(empty).as_py():
        row = int(np.flatnonzero(empty.to_numpy(zero_copy_only=False))[0])
        raise ImportFailed(f"{path.name} line {line_of(row)}, column {name!r}: the {role} id is empty")


def _parse_numbers(path: Path, column: pa.ChunkedArray, name: str, line_of, role: str) -> np.ndarray:
    try:
        return pc.cast(column, pa.float64()).to_numpy()
    except pa.ArrowInvalid:
        values = pd.to_numeric(pd.Series(column.to_numpy(zero_copy_only=False)), errors="coerce")
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise ImportFailed(f"{path.name} line {line_of(row)}, column {name!r}: {role} "
                           f"{column[row].as_py()!r} is not a number") from None


def _parse_times(path: Path, column: pa.ChunkedArray, name: str, line_of, kind: str | None):
    """(int64 values, kind) of a block's timestamps; `kind` is the previous block's, None for the first.

    Kinds: "number" (whole numbers: seconds or milliseconds), "decimal" (decimal numbers, kept in
    thousandths so that their order survives), "date" (ISO strings; nanoseconds). Later blocks keep the
    first block's kind and unit. Raises ImportFailed at the first value that is neither number nor date.
    """
    if kind in (None, "number"):
        try:
            return pc.cast(column, pa.int64()).to_numpy(), "number"
        except pa.ArrowInvalid:
            pass
    if kind in (None, "number", "decimal"):
        try:
            values = pc.cast(column, pa.float64()).to_numpy()
            if kind == "number":  # decimals after whole numbers: same unit, fraction dropped
                return np.floor(values).astype(np.int64), "number"
            return np.floor(values * 1000).astype(np.int64), "decimal"
        except pa.ArrowInvalid:
            pass
    strings = pd.Series(column.to_numpy(zero_copy_only=False), dtype=object)
    numbers = pd.to_numeric(strings, errors="coerce")
    if kind in ("number", "decimal") or (kind is None and numbers.notna().any()):
        bad = numbers.isna().to_numpy()  # a column of numbers: the first non-number is the culprit
    else:
        dates = pd.to_datetime(strings, format="ISO8601", utc=True, errors="coerce")
        bad = dates.isna().to_numpy()
        if not bad.any():
            return dates.dt.tz_convert(None).to_numpy().astype("datetime64[ns]").astype(np.int64), "date"
    row = int(np.flatnonzero(bad)[0])
    expected = {None: "a number or a date", "date": "a date, as the rows above"}.get(
        kind, "a number, as the rows above")
    raise ImportFailed(f"{path.name} line {line_of(row)}, column {name!r}: timestamp {strings[row]!r} "
                       f"is not {expected}")


def _assemble(pieces: dict[str, list], time_kind: str | None) -> _Parsed:
    order_time = seconds = None
    if "time" in pieces:
        order_time = np.concatenate(pieces["time"]).astype(np.int64)
        seconds = _to_seconds(order_time, time_kind)
    user_codes, user_names = _encode([c for chunk in pieces["user"] for c in chunk.chunks])
    item_codes, item_names = _encode([c for chunk in pieces["item"] for c in chunk.chunks])
    return _Parsed(
        user_codes=user_codes, user_names=user_names, item_codes=item_codes, item_names=item_names,
        order_time=order_time, seconds=seconds,
        ratings=np.concatenate(pieces["rating"]) if "rating" in pieces else None)


def _encode(chunks) -> tuple[np.ndarray, np.ndarray]:
    """(int64 codes, str names) of string arrays, codes numbered by first appearance (in C++: 1M rows
    take about 0.05 s, 15x faster than factorizing Python strings)."""
    array = pa.chunked_array(chunks, pa.string()).combine_chunks() if chunks else pa.array([], pa.string())
    encoded = pc.dictionary_encode(array)
    return (encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
            np.asarray(encoded.dictionary.to_pylist(), dtype=object))


def _to_seconds(values: np.ndarray, kind: str | None) -> np.ndarray:
    if kind == "date":
        return values // 1_000_000_000
    if kind == "decimal":
        values = values // 1000  # decimals were kept in thousandths
    # Whole numbers beyond 1e11 are not seconds (1e11 s is the year 5138): by their size they are
    # milliseconds, microseconds or nanoseconds since 1970.
    largest = int(np.abs(values).max()) if len(values) else 0
    for limit, divisor in ((10 ** 17, 10 ** 9), (10 ** 14, 10 ** 6), (10 ** 11, 10 ** 3)):
        if largest > limit:
            return values // divisor
    return values


def _read_sequences(path: Path, detected: Detected, times_file: Path | None, observer: Observer,
                    progress, limit_rows: int | None) -> _Parsed:
    users, items, counts = _sequence_tokens(path, detected, observer, progress, limit_rows)
    if not len(items):
        raise ImportFailed(f"{path.name}: the file has no interactions (expected lines 'user item item ...')")
    order_time = seconds = None
    if times_file is not None:
        time_users, times, time_counts = _sequence_tokens(times_file, detected, observer, None, limit_rows)
        for index in np.flatnonzero((time_users[: len(users)] != users[: len(time_users)])
                                    | (time_counts[: len(counts)] != counts[: len(time_counts)]))[:1]:
            raise ImportFailed(f"{times_file.name} line {index + 1}: expected user {users[index]} with "
                               f"{counts[index]} timestamps, found user {time_users[index]} with "
                               f"{time_counts[index]}")
        if len(time_users) != len(users):
            raise ImportFailed(f"{times_file.name}: {len(time_users)} lines, expected {len(users)} as in "
                               f"{path.name}")
        line_starts = np.concatenate([[0], np.cumsum(counts)])
        column = pa.chunked_array([pa.array(times, pa.string())])

        def line_of(row: int) -> int:
            return int(np.searchsorted(line_starts, row, side="right"))

        order_time, kind = _parse_times(times_file, column, "timestamp", line_of, None)
        seconds = _to_seconds(order_time, kind)
    line_user_codes, user_names = pd.factorize(users, sort=False)
    item_codes, item_names = _encode([pa.array(items, pa.string())])
    return _Parsed(user_codes=np.repeat(line_user_codes.astype(np.int64), counts),
                   user_names=np.asarray(user_names, dtype=object), item_codes=item_codes,
                   item_names=item_names, order_time=order_time, seconds=seconds, ratings=None)


def _sequence_tokens(path: Path, detected: Detected, observer: Observer, progress, limit_rows):
    """(line users, all following tokens, tokens per line) of a line-per-user file."""
    users, counts, tokens = [], [], []
    size = max(path.stat().st_size, 1)
    for block, first_line, done in _blocks(path, limit_rows):
        observer.check()
        _decode_check(path, block, first_line, detected.encoding)
        for line in block.decode(detected.encoding).splitlines():
            fields = line.split()
            if not fields:
                continue
            users.append(fields[0])
            counts.append(len(fields) - 1)
            tokens.extend(fields[1:])
        if progress is not None:
            progress(done / size)
    if limit_rows is not None:
        tokens = tokens[:limit_rows]
        keep = np.cumsum(counts) - np.array(counts) < limit_rows
        users = [u for u, k in zip(users, keep) if k]
        counts = [c for c, k in zip(counts, keep) if k]
        counts[-1:] = [len(tokens) - sum(counts[:-1])] if counts else []
    return (np.array(users, dtype=object), np.array(tokens, dtype=object), np.array(counts, dtype=np.int64))


def _read_parquet(path: Path, detected: Detected, limit_rows: int | None) -> _Parsed:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=list(detected.mapping.values()))
    if limit_rows is not None:
        table = table.slice(0, limit_rows)
    if table.num_rows == 0:
        raise ImportFailed(f"{path.name}: the file has no rows")

    def line_of(row: int) -> int:
        return row + 1  # Parquet has rows, not lines: "line" is the 1-based row number

    mapping = detected.mapping
    users = pc.cast(table.column(mapping["user"]), pa.string())
    items = pc.cast(table.column(mapping["item"]), pa.string())
    order_time = seconds = ratings = None
    if "time" in mapping:
        column = table.column(mapping["time"])
        if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
            order_time = pc.cast(pc.cast(column, pa.timestamp("ns", tz="UTC")), pa.int64()).to_numpy()
            seconds = order_time // 1_000_000_000
        else:
            order_time, kind = _parse_times(path, pc.cast(column, pa.string()), mapping["time"], line_of, None)
            seconds = _to_seconds(order_time, kind)
    if "rating" in mapping:
        ratings = _parse_numbers(path, pc.cast(table.column(mapping["rating"]), pa.string()),
                                 mapping["rating"], line_of, "rating")
    user_codes, user_names = _encode(users.chunks)
    item_codes, item_names = _encode(items.chunks)
    return _Parsed(user_codes=user_codes, user_names=user_names, item_codes=item_codes, item_names=item_names,
                   order_time=order_time, seconds=seconds, ratings=ratings)


# ---------------------------------------------------------------- item metadata


def read_item_metadata(path: str | Path, format: str | None = None,
                       encoding: str | None = None) -> tuple[dict, dict[str, dict]]:
    """(titles {item id: title}, features {feature name: {item id: [values]}}) from a metadata file:
    MovieLens movies.dat, RecBole .item or an item2attributes JSON. Raises ImportFailed."""
    path = Path(path)
    if format is None:
        suffix = path.suffix.lower()
        format = {".json": "item2attributes", ".item": "recbole-item"}.get(suffix)
        if format is None:
            head = _head_lines(path, encoding or "latin-1")
            if head and "::" in head[0]:
                format = "movielens-movies"
            elif head and ":token" in head[0]:
                format = "recbole-item"
            else:
                raise ImportFailed(f"{path.name}: not a known item metadata file "
                                   f"(expected one of {', '.join(METADATA_FORMATS)})")
    if format == "item2attributes":
        try:
            data = json.loads(path.read_text(encoding=encoding or "utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ImportFailed(f"{path.name}: not a JSON object of item attributes ({error})") from None
        if not isinstance(data, dict):
            raise ImportFailed(f"{path.name}: expected a JSON object {{item: [attributes]}}")
        return {}, {"attribute": {str(k): [str(v) for v in (vs if isinstance(vs, list) else [vs])]
                                  for k, vs in data.items()}}
    if format == "movielens-movies":
        titles, genres = {}, {}
        text = _decode_whole(path, encoding or "latin-1")
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("::")
            if len(fields) != 3:
                raise ImportFailed(f"{path.name} line {number}: expected 'item::title::genres', "
                                   f"found {len(fields)} fields")
            titles[fields[0]] = fields[1]
            genres[fields[0]] = [g for g in fields[2].split("|") if g]
        return titles, {"genre": genres}
    if format == "recbole-item":
        text = _decode_whole(path, encoding or "utf-8")
        lines = text.splitlines()
        header = [c.split(":") for c in lines[0].split("\t")]
        names = [h[0] for h in header]
        types = [h[1] if len(h) > 1 else "token" for h in header]
        id_column = next((i for i, n in enumerate(names) if _normal(n) in _ROLE_NAMES["item"]), 0)
        title_column = next((i for i, n in enumerate(names) if "title" in n.lower()), None)
        titles, features = {}, {}
        feature_columns = [i for i, t in enumerate(types) if t == "token_seq" and i != title_column]
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != len(names):
                raise ImportFailed(f"{path.name} line {number}: expected {len(names)} tab-separated fields, "
                                   f"found {len(fields)}")
            item = fields[id_column]
            if title_column is not None:
                titles[item] = fields[title_column]
            for i in feature_columns:
                # RecBole's movie genres are called `class`; the engine calls that feature "genre".
                feature = "genre" if names[i] == "class" else names[i]
                features.setdefault(feature, {})[item] = fields[i].split()
        return titles, features
    raise ImportFailed(f"{path.name}: unknown metadata format {format!r}; expected one of "
                       f"{', '.join(METADATA_FORMATS)}")


def _decode_whole(path: Path, encoding: str) -> str:
    data = path.read_bytes()
    _decode_check(path, data, 1, encoding)
    return data.decode(encoding)


# ---------------------------------------------------------------- import into the store


def import_file(session: Session | Store | sessionmaker, path: str | Path, *, name: str | None = None, format: str | None = None,
                mapping: dict | None = None, separator: str | None = None, encoding: str | None = None,
                times_file: str | Path | None = None, metadata_files=(),
                min_user_interactions: int = 10, min_item_interactions: int = 0,
                observer: Observer | None = None) -> ImportReport:
    """Imports an interaction file (and optional item metadata files) as dataset `name` (default: the
    file's stem), in one transaction of `session`, committed at the end. Given a Store or a
    sessionmaker instead of a Session, it opens (and closes) a Session of its own: what a worker
    thread should do.

    Filters: duplicate (user, item, timestamp) rows are dropped (only when there are timestamps: without
    them a repeat is a new interaction); then items with fewer than `min_item_interactions` and users
    with fewer than `min_user_interactions` interactions are removed, repeatedly until both hold.
    Progress goes to `observer` as phase "import" (steps 0..100, percent); a cancel raises Cancelled.
    Any failure or cancel rolls the transaction back, leaving the store as it was.
    Raises ImportFailed (bad input: file, line, column, what was expected) or Cancelled.
    """
    if not isinstance(session, Session):
        factory = session.session if isinstance(session, Store) else session
        with factory() as own_session:
            return import_file(own_session, path, name=name, format=format, mapping=mapping,
                               separator=separator, encoding=encoding, times_file=times_file,
                               metadata_files=metadata_files, min_user_interactions=min_user_interactions,
                               min_item_interactions=min_item_interactions, observer=observer)
    started = time.monotonic()
    path = Path(path)
    name = name or path.stem
    observer = observer or Observer()
    throttle = Throttle(PROGRESS_INTERVAL)
    observer.emit(PhaseStarted("import", 100, f"Importing {path.name} as {name!r}"))

    def progress(fraction: float, start: float = 0.0, span: float = 60.0) -> None:
        step = int(start + span * min(fraction, 1.0))
        if throttle.ready(force=step >= 100):
            observer.emit(StepFinished("import", step, 100))

    try:
        if session.scalar(sa.select(Dataset.id).where(Dataset.name == name)) is not None:
            raise ImportFailed(f"a dataset called {name!r} already exists; choose another name or delete it")
        detected = detect_format(path, format=format, separator=separator, mapping=mapping, encoding=encoding)
        parsed = _read(path, detected, Path(times_file) if times_file else None, observer, progress)
        titles, features = {}, {}
        for metadata in metadata_files:
            more_titles, more_features = read_item_metadata(metadata)
            titles.update(more_titles)
            for feature, values in more_features.items():
                features.setdefault(feature, {}).update(values)
        observer.check()
        rows, counts = _filter(parsed, min_user_interactions, min_item_interactions)
        if len(rows["user"]) == 0:
            raise ImportFailed(f"{path.name}: no interactions left after keeping users with at least "
                               f"{min_user_interactions} and items with at least {min_item_interactions} "
                               f"interactions ({counts['rows_read']} read)")
        report = _write(session, name, path, detected, parsed, rows, titles, features, counts, observer,
                        lambda f: progress(f, 60.0, 40.0))
        report.seconds = time.monotonic() - started
        dataset = session.scalar(sa.select(Dataset).where(Dataset.name == name))
        dataset.import_report = report.to_dict()
        session.commit()
    except BaseException:
        session.rollback()
        raise
    observer.emit(StepFinished("import", 100, 100))
    observer.emit(PhaseFinished("import", report.seconds))
    return report


def _filter(parsed: _Parsed, min_user: int, min_item: int) -> tuple[dict[str, np.ndarray], dict]:
    """Drops duplicates and applies the minimum counts. Returns the kept columns (file order) with
    "order": the kept rows' sequence order (see `_sequence_order`), and the counts for the report."""
    rows = {"user": parsed.user_codes, "item": parsed.item_codes}
    if parsed.order_time is not None:
        rows["order_time"], rows["timestamp"] = parsed.order_time, parsed.seconds
    if parsed.ratings is not None:
        rows["rating"] = parsed.ratings
    rows_read = len(parsed.user_codes)
    order = _sequence_order(rows["user"], rows.get("order_time"))
    keep = np.ones(rows_read, dtype=bool)
    if parsed.order_time is not None:
        keep = ~_duplicated(rows["user"], rows["item"], rows["order_time"], order)
    duplicates = int(rows_read - keep.sum())
    while True:  # k-core: removing users can push items under their minimum, and back
        size = int(keep.sum())
        if min_item > 0:
            item_counts = np.bincount(rows["item"][keep], minlength=len(parsed.item_names))
            keep &= item_counts[rows["item"]] >= min_item
        if min_user > 0:
            user_counts = np.bincount(rows["user"][keep], minlength=len(parsed.user_names))
            keep &= user_counts[rows["user"]] >= min_user
        if int(keep.sum()) == size or min_item <= 0:
            break
    kept = {column: values[keep] for column, values in rows.items()}
    # The sort of all rows, restricted to the kept ones and renumbered to their indices among them.
    kept["order"] = (np.cumsum(keep) - 1)[order[keep[order]]]

    def distinct(codes: np.ndarray, size: int) -> int:
        return int(np.count_nonzero(np.bincount(codes, minlength=size)))

    users, items = len(parsed.user_names), len(parsed.item_names)
    counts = {
        "rows_read": rows_read,
        "duplicates_dropped": duplicates,
        "users_filtered": distinct(rows["user"], users) - distinct(kept["user"], users),
        "items_filtered": distinct(rows["item"], items) - distinct(kept["item"], items),
        "interactions_filtered": rows_read - duplicates - len(kept["user"]),
    }
    return kept, counts


def _sequence_order(users: np.ndarray, times: np.ndarray | None) -> np.ndarray:
    """Row order by user code, then time, ties in file order (a stable sort)."""
    if times is None:
        return np.argsort(users, kind="stable")
    low, span = int(times.min()), int(times.max()) - int(times.min()) + 1
    if span * (int(users.max()) + 1) < 2 ** 62:
        # One int64 key sorts 5x faster than np.lexsort over two keys.
        return np.argsort(users.astype(np.int64) * span + (times - low), kind="stable")
    return np.lexsort((times, users))


def _duplicated(users: np.ndarray, items: np.ndarray, times: np.ndarray, order: np.ndarray) -> np.ndarray:
    """True for each row whose (user, item, time) appeared on an earlier row; `order` sorts the rows by
    (user, time). Only rows that tie on (user, time) with a neighbour can be duplicates, so only those
    go through the (slower) hashing."""
    tie = (users[order][1:] == users[order][:-1]) & (times[order][1:] == times[order][:-1])
    candidates = np.zeros(len(users), dtype=bool)
    candidates[order[1:][tie]] = True
    candidates[order[:-1][tie]] = True
    rows = np.flatnonzero(candidates)  # in file order, so that the first occurrence is kept
    duplicated = np.zeros(len(users), dtype=bool)
    if len(rows):
        keys = pd.DataFrame({"u": users[rows], "i": items[rows], "t": times[rows]})
        duplicated[rows] = keys.duplicated().to_numpy()
    return duplicated


def _dense(codes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept codes in increasing order, codes renumbered 0..k-1 keeping their order): O(n), no sort."""
    present = np.zeros(size, dtype=bool)
    present[codes] = True
    renumber = np.cumsum(present) - 1
    return np.flatnonzero(present), renumber[codes]


def _write(session: Session, name: str, path: Path, detected: Detected, parsed: _Parsed, rows: dict,
           titles: dict, features: dict, counts: dict, observer: Observer, progress) -> ImportReport:
    # Sequence order: users by first appearance, then time (full precision), then file order.
    order = rows["order"]
    # Renumber the kept users and items densely, keeping first-appearance order (codes grew with it).
    kept_users, user_codes = _dense(rows["user"][order], len(parsed.user_names))
    kept_items, item_codes = _dense(rows["item"][order], len(parsed.item_names))
    user_names = [str(u) for u in parsed.user_names[kept_users]]
    item_names = [str(i) for i in parsed.item_names[kept_items]]
    has_times, has_ratings = "timestamp" in rows, "rating" in rows
    total = len(order)
    user_lengths = np.bincount(user_codes, minlength=len(user_names))
    user_firsts = np.concatenate([[0], np.cumsum(user_lengths)[:-1]])
    item_lengths = np.bincount(item_codes, minlength=len(item_names))

    dataset = Dataset(name=name, source=str(path), created_at=time.time(), n_users=len(user_names),
                      n_items=len(item_names), n_interactions=total, has_timestamps=has_times,
                      has_ratings=has_ratings, import_report={}, first_interaction_id=0)
    session.add(dataset)
    session.flush()  # from here the transaction holds SQLite's write lock: no one else takes ids
    connection = session.connection()
    dataset.first_interaction_id = (connection.execute(sa.select(sa.func.max(Interaction.id))).scalar() or 0) + 1
    connection.execute(sa.insert(User), [
        {"dataset_id": dataset.id, "external_id": u, "first_position": f, "n_interactions": n}
        for u, f, n in zip(user_names, user_firsts.tolist(), user_lengths.tolist())])
    connection.execute(sa.insert(Item), [
        {"dataset_id": dataset.id, "external_id": i, "title": titles.get(i), "n_interactions": n,
         "attributes": {f: list(v[i]) for f, v in features.items() if i in v} or None}
        for i, n in zip(item_names, item_lengths.tolist())])
    user_ids = _ids_by_code(connection, User, dataset.id, user_names)
    item_ids = _ids_by_code(connection, Item, dataset.id, item_names)

    columns = {"id": np.arange(total, dtype=np.int64) + dataset.first_interaction_id, "user_id": user_ids[user_codes],
               "item_id": item_ids[item_codes]}
    if has_times:
        columns["timestamp"] = rows["timestamp"][order]
    if has_ratings:
        columns["rating"] = rows["rating"][order]
    _insert_interactions(connection, dataset.id, columns, observer, progress)
    return ImportReport(
        name=name, format=detected.format, interactions=total, users=len(user_names),
        items=len(item_names), has_timestamps=has_times, has_ratings=has_ratings,
        titles=sum(1 for i in item_names if i in titles), features=sorted(features), seconds=0.0, **counts)


def _ids_by_code(connection, model, dataset_id: int, names: list[str]) -> np.ndarray:
    rows = connection.execute(sa.select(model.external_id, model.id).where(model.dataset_id == dataset_id)).all()
    by_name = dict(rows)
    return np.array([by_name[n] for n in names], dtype=np.int64)


def _insert_interactions(connection, dataset_id: int, columns: dict[str, np.ndarray], observer: Observer,
                         progress) -> None:
    """Bulk insert through the DBAPI: multi-row VALUES statements of plain Python numbers."""
    names = list(columns)
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    row_sql = "(" + ", ".join([str(int(dataset_id))] + [marker] * len(names)) + ")"
    prefix = f"INSERT INTO interactions (dataset_id, {', '.join(names)}) VALUES "
    width = len(names)
    total = len(columns["id"])
    if "rating" in columns and np.array_equal(columns["rating"], np.round(columns["rating"])):
        # Whole-number ratings go as integers (the REAL column stores them as 5.0): one int64 matrix
        # converts to Python numbers several times faster than a mixed object table.
        columns = dict(columns, rating=columns["rating"].astype(np.int64))
    if all(values.dtype.kind == "i" for values in columns.values()):
        table = np.column_stack([columns[c] for c in names]).astype(np.int64)
    else:
        table = np.empty((total, width), dtype=object)
        for j, column in enumerate(names):
            table[:, j] = columns[column].tolist()
    full_sql = prefix + ", ".join([row_sql] * ROWS_PER_STATEMENT)
    # The DBAPI cursor of the session's own connection: same transaction, no per-row conversion.
    cursor = connection.connection.cursor()
    try:
        for start in range(0, total, INSERT_ROWS):
            observer.check()
            block = table[start:start + INSERT_ROWS]
            whole = len(block) // ROWS_PER_STATEMENT * ROWS_PER_STATEMENT
            if whole:
                cursor.executemany(full_sql, block[:whole].reshape(-1, ROWS_PER_STATEMENT * width).tolist())
            if whole < len(block):
                rest = block[whole:]
                cursor.execute(prefix + ", ".join([row_sql] * len(rest)), rest.ravel().tolist())
            progress((start + len(block)) / total)
    finally:
        cursor.close()
