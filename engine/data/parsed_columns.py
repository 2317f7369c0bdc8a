"""Parsed interaction columns: ids checked and integer-coded in Arrow, ratings and timestamps parsed,
with errors that name the file, line and column; `Parsed` holds the result in file order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from engine.data.formats import ImportFailed

LARGEST_TIME = 2 ** 63 // 1000  # timestamps are kept as int64, decimals in thousandths
# The one range of a timestamp, whatever its unit: the times pandas' datetime64[ns] holds, so that every
# stored time can be shown and computed with as a date. Checked once the unit is known (`checked_seconds`);
# a value int64 cannot even hold gets the same message.
LARGEST_SECONDS = 2 ** 63 // 10 ** 9  # 9,223,372,036 s: 2262-04-11, and -1 x that: 1677-09-21
TIME_RANGE = ("a time between 1677-09-21 and 2262-04-11 (in seconds, milliseconds, microseconds or "
              "nanoseconds since 1970)")


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


def check_not_empty(path: Path, column: pa.ChunkedArray, role: str, name: str, line_of) -> None:
    empty = pc.equal(pc.utf8_length(column), 0)
    if pc.any(empty).as_py():
        row = int(np.flatnonzero(empty.to_numpy(zero_copy_only=False))[0])
        raise ImportFailed(f"{path.name} line {line_of(row)}, column {name!r}: the {role} id is empty")


def first_failing(column: pa.ChunkedArray, type_: pa.DataType) -> int:
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


def parse_numbers(path: Path, column: pa.ChunkedArray, name: str, line_of, role: str) -> np.ndarray:
    """float64 values of a column of decimal numbers (spaces around them allowed); ImportFailed at the first
    value that is not a finite number."""
    try:
        values = pc.cast(column, pa.float64()).to_numpy()
    except pa.ArrowInvalid:
        column = pc.utf8_trim_whitespace(column)  # only now: trimming costs a copy of the column
        try:
            values = pc.cast(column, pa.float64()).to_numpy()
        except pa.ArrowInvalid:
            row = first_failing(column, pa.float64())
            raise ImportFailed(f"{path.name} line {line_of(row)}, column {name!r}: {role} "
                               f"{column[row].as_py()!r} is not a number") from None
    check_range(path, values, np.inf, column, name, line_of, role)
    return values


def check_range(path: Path, values: np.ndarray, limit: float, column, name: str, line_of, role: str) -> None:
    """ImportFailed at the first value that is not finite or not below `limit` in magnitude."""
    bad = ~(np.abs(values) < limit)  # NaN compares False
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = ("a finite number" if not np.isfinite(values[row])
                else TIME_RANGE if role == "timestamp" else f"between -{limit:.3g} and {limit:.3g}")
        raise ImportFailed(f"{path.name} line {line_of(row)}, column {name!r}: {role} "
                           f"{column[row].as_py()!r} is not {what}")


def parse_times(path: Path, column: pa.ChunkedArray, name: str, line_of, kind: str | None):
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
                check_range(path, values, 2.0 ** 63, column, name, line_of, "timestamp")
                return np.floor(values).astype(np.int64), "number"
            check_range(path, values, LARGEST_TIME, column, name, line_of, "timestamp")
            return np.floor(values * 1000).astype(np.int64), "decimal"
    strings = pd.Series(column.to_numpy(zero_copy_only=False), dtype=object)
    numbers = pd.to_numeric(strings, errors="coerce")
    if kind in ("number", "decimal") or (kind is None and numbers.notna().any()):
        row = first_failing(column, pa.float64())  # a column of numbers: the first non-number is the culprit
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


def assemble(pieces: dict[str, list], time_kind: str | None, path: Path, time_column: str | None,
             line_of) -> Parsed:
    order_time = seconds = None
    if "time" in pieces:
        order_time = np.concatenate(pieces["time"]).astype(np.int64)
        seconds = checked_seconds(path, order_time, time_kind, time_column, line_of)
    user_codes, user_names = encode([c for chunk in pieces["user"] for c in chunk.chunks])
    item_codes, item_names = encode([c for chunk in pieces["item"] for c in chunk.chunks])
    return Parsed(
        user_codes=user_codes, user_names=user_names, item_codes=item_codes, item_names=item_names,
        order_time=order_time, seconds=seconds,
        ratings=np.concatenate(pieces["rating"]) if "rating" in pieces else None)


def encode(chunks) -> tuple[np.ndarray, np.ndarray]:
    """(int64 codes, str names) of string arrays, codes numbered by first appearance (in C++: 1M rows
    take about 0.05 s, 15x faster than factorizing Python strings)."""
    array = pa.chunked_array(chunks, pa.string()).combine_chunks() if chunks else pa.array([], pa.string())
    encoded = pc.dictionary_encode(array)
    return (encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
            np.asarray(encoded.dictionary.to_pylist(), dtype=object))


def checked_seconds(path: Path, order_time: np.ndarray, kind: str | None, name: str, line_of) -> np.ndarray:
    """Unix seconds of parsed timestamps (`to_seconds`); ImportFailed at the first that lies outside
    1677-09-21..2262-04-11 once its unit is known (TIME_RANGE)."""
    seconds = to_seconds(order_time, kind)
    # floor division puts the earliest nanosecond time, -9,223,372,036.85 s, at -LARGEST_SECONDS - 1
    bad = (seconds < -LARGEST_SECONDS - 1) | (seconds > LARGEST_SECONDS)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        shown = str(order_time[row] / 1000) if kind == "decimal" else str(order_time[row])
        raise ImportFailed(f"{path.name} line {line_of(row)}, column {name!r}: timestamp {shown} is not "
                           f"{TIME_RANGE}")
    return seconds


def to_seconds(values: np.ndarray, kind: str | None) -> np.ndarray:
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
