"""Readers: interaction files into integer-coded arrays, and item metadata files into titles and features.

Text is read in blocks of about 8 MiB (progress, cancel, bounded parser memory) and parsed by Arrow's
CSV reader; ids become integer codes in Arrow (`dictionary_encode`), never Python strings per row.
Timestamps may be integer seconds, milliseconds, micro- or nanoseconds, decimals, ISO dates, or absent
(file order). Every error names the file, the line and the column, and says what was expected.

Item metadata files: MovieLens `movies.dat` (titles, genres), RecBole `.item` (title, `token_seq` columns
such as `class` as features), `*_item2attributes.json` ({item: [attribute ids]}).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from engine.core.events import Observer
from engine.data.formats import (
    ROLE_NAMES,
    UTF8_BOM,
    Detected,
    ImportFailed,
    check_encoding,
    count_lines,
    decode_failure,
    detect_format,
    head_lines,
    line_and_column,
    normal_name,
    split_lines,
)

METADATA_FORMATS = ("movielens-movies", "recbole-item", "item2attributes")
BLOCK_BYTES = 8 << 20  # parse in blocks of about 8 MiB: progress, cancel, bounded parser memory
_LINE_END = re.compile(rb"\r\n|\r|\n")  # the CSV parser's line ends
_LEADING_BLANK_LINES = re.compile(rb"(?:[ \t\f\v]*(?:\r\n|\r|\n))*")
LARGEST_TIME = 2 ** 63 // 1000  # timestamps are kept as int64, decimals in thousandths


@dataclass
class Preview:
    """The first rows of a file as the importer parses them (columns user, item[, timestamp, rating])
    and how it was detected: what the GUI's import wizard shows."""

    frame: pd.DataFrame
    detected: Detected


@dataclass
class Parsed:
    """Parsed interactions in file order."""

    user_codes: np.ndarray  # int64 per row; user_names[code] is the external id (codes by first appearance)
    user_names: np.ndarray  # str
    item_codes: np.ndarray  # int64 per row, as for users
    item_names: np.ndarray  # str
    order_time: np.ndarray | None  # int64, full precision (s, ms or ns), for ordering
    seconds: np.ndarray | None  # int64 unix seconds, for the store
    ratings: np.ndarray | None  # float64


def preview(path: str | Path, *, format: str | None = None, mapping: dict | None = None,
            separator: str | None = None, encoding: str | None = None, rows: int = 20) -> Preview:
    """The first `rows` interactions of a file as parsed (DataFrame: user, item, and timestamp (unix
    seconds) / rating when mapped) with the detected format and mapping. Raises ImportFailed."""
    detected = detect_format(path, format=format, separator=separator, mapping=mapping, encoding=encoding)
    parsed = read_parsed(Path(path), detected, None, Observer(), limit_rows=rows)
    return Preview(frame=_frame(parsed), detected=detected)


def read_interactions(path: str | Path, *, format: str | None = None, mapping: dict | None = None,
                      separator: str | None = None, encoding: str | None = None,
                      times_file: str | Path | None = None,
                      observer: Observer | None = None) -> pd.DataFrame:
    """All interactions of a file in file order, as a DataFrame (user, item[, timestamp, rating]), without
    filtering: for scripts and tests. Raises ImportFailed."""
    detected = detect_format(path, format=format, separator=separator, mapping=mapping, encoding=encoding)
    parsed = read_parsed(Path(path), detected, Path(times_file) if times_file else None, observer or Observer())
    return _frame(parsed)


def _frame(parsed: Parsed) -> pd.DataFrame:
    """Parsed columns as a table: user, item (external ids), and timestamp / rating when present."""
    frame = pd.DataFrame({"user": parsed.user_names[parsed.user_codes],
                          "item": parsed.item_names[parsed.item_codes]})
    if parsed.seconds is not None:
        frame["timestamp"] = parsed.seconds
    if parsed.ratings is not None:
        frame["rating"] = parsed.ratings
    return frame


def read_parsed(path: Path, detected: Detected, times_file: Path | None, observer: Observer,
          progress=None, limit_rows: int | None = None) -> Parsed:
    if detected.format == "parquet":
        return _read_parquet(path, detected, limit_rows)
    if detected.format == "sequences":
        return _read_sequences(path, detected, times_file, observer, progress, limit_rows)
    if times_file is not None:
        raise ImportFailed(f"{times_file.name}: a timestamp file goes only with a line-per-user "
                           f"sequences file, and {path.name} is read as {detected.format}")
    return _read_delimited(path, detected, observer, progress, limit_rows)


def _blocks(path: Path, limit_rows: int | None):
    """Yields (bytes ending at a line end, number of the block's first line, bytes read so far). Blank
    lines before the first line of text are left out, as detection leaves them out (the header follows)."""
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
            if done == len(block):  # the first block
                block = block.removeprefix(UTF8_BOM)
                blank = _LEADING_BLANK_LINES.match(block).end()
                line += count_lines(block[:blank])
                block = block[blank:]
            yield block, line, done
            line += count_lines(block)
            if limit_rows is not None:
                return


def _decode_check(path: Path, block: bytes, first_line: int, encoding: str) -> None:
    """Raises ImportFailed naming the line and column of the first NUL byte, or of the first byte that
    `encoding` cannot decode."""
    nul = block.find(b"\x00")
    if nul >= 0:
        # Text holds no NUL: this is a binary file, or UTF-16 (every other byte of ASCII text is 0).
        line, column = line_and_column(block, nul, first_line)
        raise ImportFailed(f"{path.name} line {line}, column {column}: NUL byte; a text file holds none "
                           f"(binary, or UTF-16? save it as UTF-8)")
    if block.isascii():  # every encoding we read is ASCII-compatible; this check is 50x faster
        return
    try:
        block.decode(encoding)
    except UnicodeDecodeError as error:
        raise decode_failure(path, block, first_line, error, encoding) from None


def _read_delimited(path: Path, detected: Detected, observer: Observer, progress,
                    limit_rows: int | None) -> Parsed:
    size = max(path.stat().st_size, 1)
    columns = detected.columns
    wanted = {role: columns.index(col) for role, col in detected.mapping.items()}
    pieces: dict[str, list] = {role: [] for role in wanted}
    time_kind = None
    rows = 0
    first_block = True
    for block, first_line, done in _blocks(path, limit_rows):
        observer.check()
        _decode_check(path, block, first_line, detected.encoding)
        header_lines = 1 if (detected.has_header and first_block) else 0
        first_block = False
        table = _parse_block(path, block, first_line, header_lines, detected)
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
        for offset, line in enumerate(_LINE_END.split(self.block)):
            if line.strip():
                if seen == row:
                    return self.first_line + offset
                seen += 1
        return self.first_line + row + self.header_lines


def _parse_block(path: Path, block: bytes, first_line: int, header_lines: int, detected: Detected) -> pa.Table:
    names = [f"c{i}" for i in range(len(detected.columns))]
    sep = detected.separator
    quoted = detected.format == "csv" and sep not in ("\t", "::")
    # Arrow splits on one character: "::" becomes the ASCII unit separator, which text never holds.
    data, sep = (block.replace(b"::", b"\x1f"), "\x1f") if sep == "::" else (block, sep)

    def read(block_size: int) -> pa.Table:
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=header_lines, block_size=block_size,
                                           encoding=detected.encoding, use_threads=True),
            parse_options=pacsv.ParseOptions(delimiter=sep, quote_char='"' if quoted else False),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False))

    try:
        try:
            return read(1 << 20)
        except pa.ArrowInvalid as error:
            if "straddl" not in str(error):
                raise
            # A line longer than Arrow's 1 MiB parser block: parse the whole block as one (no threads).
            return read(min(len(data) + 1, 2 ** 31 - 1))
    except pa.ArrowInvalid as error:
        raise _field_count_error(path, block, first_line, header_lines, detected, quoted) or ImportFailed(
            f"{path.name} line {first_line}: cannot be read as {detected.format} ({error})") from None


def _field_count_error(path, block, first_line, header_lines, detected, quoted) -> ImportFailed | None:
    """The ImportFailed naming the first line of `block` with a wrong number of fields, if there is one."""
    expected = len(detected.columns)
    text = block.decode(detected.encoding, errors="replace")
    shown_sep = sep = detected.separator
    for offset, line in enumerate(split_lines(text)):
        if offset < header_lines or not line:  # the parser skips empty lines, not those of spaces
            continue
        try:
            fields = next(csv.reader([line], delimiter=sep)) if quoted else line.split(sep)
        except csv.Error:  # a field beyond the csv module's limit (128 Ki characters): count unquoted
            fields = line.split(sep)
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


def _first_failing(column: pa.ChunkedArray, type_: pa.DataType) -> int:
    """Row of the first value that Arrow cannot cast to `type_`, when the cast of the whole column failed:
    a bisection over prefixes, O(n log n), only on the way to an error message."""
    good, bad = 0, len(column)  # the first `good` rows cast, the first `bad` rows do not
    while bad - good > 1:
        middle = (good + bad) // 2
        try:
            pc.cast(column.slice(0, middle), type_)
            good = middle
        except pa.ArrowInvalid:
            bad = middle
    return bad - 1


def _parse_numbers(path: Path, column: pa.ChunkedArray, name: str, line_of, role: str) -> np.ndarray:
    """float64 values of a column of decimal numbers (spaces around them allowed); ImportFailed at the first
    value that is not a finite number."""
    try:
        values = pc.cast(column, pa.float64()).to_numpy()
    except pa.ArrowInvalid:
        column = pc.utf8_trim_whitespace(column)  # only now: trimming costs a copy of the column
        try:
            values = pc.cast(column, pa.float64()).to_numpy()
        except pa.ArrowInvalid:
            row = _first_failing(column, pa.float64())
            raise ImportFailed(f"{path.name} line {line_of(row)}, column {name!r}: {role} "
                               f"{column[row].as_py()!r} is not a number") from None
    _check_range(path, values, np.inf, column, name, line_of, role)
    return values


def _check_range(path: Path, values: np.ndarray, limit: float, column, name: str, line_of, role: str) -> None:
    """ImportFailed at the first value that is not finite or not below `limit` in magnitude."""
    bad = ~(np.abs(values) < limit)  # NaN compares False
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = f"between -{limit:.3g} and {limit:.3g}" if np.isfinite(values[row]) else "a finite number"
        raise ImportFailed(f"{path.name} line {line_of(row)}, column {name!r}: {role} "
                           f"{column[row].as_py()!r} is not {what}")


def _parse_times(path: Path, column: pa.ChunkedArray, name: str, line_of, kind: str | None):
    """(int64 values, kind) of a block's timestamps; `kind` is the previous block's, None for the first.

    Kinds: "number" (whole numbers: seconds or milliseconds), "decimal" (decimal numbers, kept in
    thousandths so that their order survives), "date" (ISO strings; nanoseconds). Later blocks keep the
    first block's kind and unit. Spaces around a value are ignored. Raises ImportFailed at the first value
    that is neither number nor date, or a number that int64 cannot hold.
    """
    if kind in (None, "number"):
        try:
            return pc.cast(column, pa.int64()).to_numpy(), "number"  # the usual case, before any copy
        except pa.ArrowInvalid:
            pass
    column = pc.utf8_trim_whitespace(column)
    if kind in (None, "number"):
        try:
            return pc.cast(column, pa.int64()).to_numpy(), "number"
        except pa.ArrowInvalid:
            pass
    if kind in (None, "number", "decimal"):
        try:
            values = pc.cast(column, pa.float64()).to_numpy()
        except pa.ArrowInvalid:
            pass
        else:
            if kind == "number":  # decimals after whole numbers: same unit, fraction dropped
                _check_range(path, values, 2.0 ** 63, column, name, line_of, "timestamp")
                return np.floor(values).astype(np.int64), "number"
            _check_range(path, values, LARGEST_TIME, column, name, line_of, "timestamp")
            return np.floor(values * 1000).astype(np.int64), "decimal"
    strings = pd.Series(column.to_numpy(zero_copy_only=False), dtype=object)
    numbers = pd.to_numeric(strings, errors="coerce")
    if kind in ("number", "decimal") or (kind is None and numbers.notna().any()):
        row = _first_failing(column, pa.float64())  # a column of numbers: the first non-number is the culprit
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


def _assemble(pieces: dict[str, list], time_kind: str | None) -> Parsed:
    order_time = seconds = None
    if "time" in pieces:
        order_time = np.concatenate(pieces["time"]).astype(np.int64)
        seconds = _to_seconds(order_time, time_kind)
    user_codes, user_names = _encode([c for chunk in pieces["user"] for c in chunk.chunks])
    item_codes, item_names = _encode([c for chunk in pieces["item"] for c in chunk.chunks])
    return Parsed(
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
                    progress, limit_rows: int | None) -> Parsed:
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
    return Parsed(user_codes=np.repeat(line_user_codes.astype(np.int64), counts),
                   user_names=np.asarray(user_names, dtype=object), item_codes=item_codes,
                   item_names=item_names, order_time=order_time, seconds=seconds, ratings=None)


def _sequence_tokens(path: Path, detected: Detected, observer: Observer, progress, limit_rows):
    """(line users, all following tokens, tokens per line) of a line-per-user file."""
    users, counts, tokens = [], [], []
    size = max(path.stat().st_size, 1)
    for block, first_line, done in _blocks(path, limit_rows):
        observer.check()
        _decode_check(path, block, first_line, detected.encoding)
        for line in split_lines(block.decode(detected.encoding)):
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


def _read_parquet(path: Path, detected: Detected, limit_rows: int | None) -> Parsed:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=list(dict.fromkeys(detected.mapping.values())))
    except (OSError, pa.ArrowException) as error:  # a damaged file fails anywhere in its pages
        raise ImportFailed(f"{path.name}: not a readable Parquet file ({error})") from None
    if limit_rows is not None:
        table = table.slice(0, limit_rows)
    if table.num_rows == 0:
        raise ImportFailed(f"{path.name}: the file has no rows")

    def line_of(row: int) -> int:
        return row + 1  # Parquet has rows, not lines: "line" is the 1-based row number

    def column(role: str) -> pa.ChunkedArray:
        values = table.column(detected.mapping[role])
        missing = pc.is_null(values)
        if pc.any(missing).as_py():
            row = int(np.flatnonzero(missing.to_numpy(zero_copy_only=False))[0])
            raise ImportFailed(f"{path.name} line {line_of(row)}, column {detected.mapping[role]!r}: "
                               f"the {role} is missing (null)")
        return values

    def strings(role: str) -> pa.ChunkedArray:
        values = column(role)
        try:
            return pc.cast(values, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise ImportFailed(f"{path.name}: column {detected.mapping[role]!r} holds {values.type} values; "
                               f"the {role} must be text or numbers") from None

    mapping = detected.mapping
    users, items = strings("user"), strings("item")
    for role, values in (("user", users), ("item", items)):
        _check_not_empty(path, values, role, mapping[role], line_of)
    order_time = seconds = ratings = None
    if "time" in mapping:
        times = column("time")
        if pa.types.is_timestamp(times.type) or pa.types.is_date(times.type):
            try:
                order_time = pc.cast(pc.cast(times, pa.timestamp("ns", tz="UTC")), pa.int64()).to_numpy()
            except pa.ArrowInvalid as error:  # dates beyond the years 1677-2262 that nanoseconds hold
                raise ImportFailed(f"{path.name}: column {mapping['time']!r}: {error}") from None
            seconds = order_time // 1_000_000_000
        else:
            order_time, kind = _parse_times(path, strings("time"), mapping["time"], line_of, None)
            seconds = _to_seconds(order_time, kind)
    if "rating" in mapping:
        ratings = _parse_numbers(path, strings("rating"), mapping["rating"], line_of, "rating")
    user_codes, user_names = _encode(users.chunks)
    item_codes, item_names = _encode(items.chunks)
    return Parsed(user_codes=user_codes, user_names=user_names, item_codes=item_codes, item_names=item_names,
                   order_time=order_time, seconds=seconds, ratings=ratings)


# ---------------------------------------------------------------- item metadata


def read_item_metadata(path: str | Path, format: str | None = None,
                       encoding: str | None = None) -> tuple[dict, dict[str, dict]]:
    """(titles {item id: title}, features {feature name: {item id: [values]}}) from a metadata file:
    MovieLens movies.dat, RecBole .item or an item2attributes JSON. Raises ImportFailed."""
    path = Path(path)
    if not path.is_file():
        raise ImportFailed(f"{path}: no such file")
    check_encoding(path, encoding)
    if format is None:
        suffix = path.suffix.lower()
        format = {".json": "item2attributes", ".item": "recbole-item"}.get(suffix)
        if format is None:
            head = head_lines(path, encoding or "latin-1")
            if head and "::" in head[0]:
                format = "movielens-movies"
            elif head and ":token" in head[0]:
                format = "recbole-item"
            else:
                raise ImportFailed(f"{path.name}: not a known item metadata file "
                                   f"(expected one of {', '.join(METADATA_FORMATS)})")
    if format == "item2attributes":
        try:
            data = json.loads(_decode_whole(path, encoding or "utf-8"))
        except json.JSONDecodeError as error:
            raise ImportFailed(f"{path.name}: not a JSON object of item attributes ({error})") from None
        except RecursionError:
            raise ImportFailed(f"{path.name}: not a JSON object of item attributes (nested too deeply)") from None
        if not isinstance(data, dict):
            raise ImportFailed(f"{path.name}: expected a JSON object {{item: [attributes]}}")
        return {}, {"attribute": {str(k): [str(v) for v in (vs if isinstance(vs, list) else [vs])]
                                  for k, vs in data.items()}}
    if format == "movielens-movies":
        titles, genres = {}, {}
        text = _decode_whole(path, encoding or "latin-1")
        for number, line in enumerate(split_lines(text), start=1):
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
        lines = split_lines(text)
        if not text.strip():
            raise ImportFailed(f"{path.name}: the file is empty; expected a header such as "
                               f"'item_id:token<TAB>movie_title:token_seq'")
        header = [c.split(":") for c in lines[0].split("\t")]
        names = [h[0] for h in header]
        types = [h[1] if len(h) > 1 else "token" for h in header]
        id_column = next((i for i, n in enumerate(names) if normal_name(n) in ROLE_NAMES["item"]), 0)
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
    try:
        data = path.read_bytes().removeprefix(UTF8_BOM)
    except OSError as error:
        raise ImportFailed(f"{path.name}: cannot be read ({error.strerror or error})") from None
    _decode_check(path, data, 1, encoding)
    return data.decode(encoding)
