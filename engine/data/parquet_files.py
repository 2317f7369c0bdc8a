"""Parquet interaction files: the mapped columns, typed timestamps or parsed ones, nulls refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.data.formats import Detected, ImportFailed
from engine.data.parsed_columns import (
    Parsed,
    check_not_empty,
    encode,
    parse_numbers,
    parse_times,
    checked_seconds,
)


def read_parquet(path: Path, detected: Detected, limit_rows: int | None) -> Parsed:
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
        check_not_empty(path, values, role, mapping[role], line_of)
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
            order_time, kind = parse_times(path, strings("time"), mapping["time"], line_of, None)
            seconds = checked_seconds(path, order_time, kind, mapping["time"], line_of)
    if "rating" in mapping:
        ratings = parse_numbers(path, strings("rating"), mapping["rating"], line_of, "rating")
    user_codes, user_names = encode(users.chunks)
    item_codes, item_names = encode(items.chunks)
    return Parsed(user_codes=user_codes, user_names=user_names, item_codes=item_codes, item_names=item_names,
                   order_time=order_time, seconds=seconds, ratings=ratings)
