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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from engine.events import Observer
from engine.formats import ROLE_NAMES, UTF8_BOM, Detected, ImportFailed, detect_format, head_lines, normal_name

METADATA_FORMATS = ("movielens-movies", "recbole-item", "item2attributes")
BLOCK_BYTES = 8 << 20  # parse in blocks of about 8 MiB: progress, cancel, bounded parser memory


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
            if line == 1:
                block = block.removeprefix(UTF8_BOM)
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
                    limit_rows: int | None) -> Parsed:
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


def _read_parquet(path: Path, detected: Detected, limit_rows: int | None) -> Parsed:
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
    return Parsed(user_codes=user_codes, user_names=user_names, item_codes=item_codes, item_names=item_names,
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
    data = path.read_bytes().removeprefix(UTF8_BOM)
    _decode_check(path, data, 1, encoding)
    return data.decode(encoding)
