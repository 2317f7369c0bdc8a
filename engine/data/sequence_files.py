"""Line-per-user sequence files (`user item item ...`, as SASRec and S3Rec ship them), with an optional
timestamp file of the same shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from engine.core.events import Observer
from engine.data.delimited import blocks, decode_check
from engine.data.formats import Detected, ImportFailed, split_lines
from engine.data.parsed_columns import Parsed, checked_seconds, encode, parse_times


def read_sequences(path: Path, detected: Detected, times_file: Path | None, observer: Observer,
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

        order_time, kind = parse_times(times_file, column, "timestamp", line_of, None)
        seconds = checked_seconds(times_file, order_time, kind, "timestamp", line_of)
    line_user_codes, user_names = pd.factorize(users, sort=False)
    item_codes, item_names = encode([pa.array(items, pa.string())])
    return Parsed(user_codes=np.repeat(line_user_codes.astype(np.int64), counts),
                   user_names=np.asarray(user_names, dtype=object), item_codes=item_codes,
                   item_names=item_names, order_time=order_time, seconds=seconds, ratings=None)


def _sequence_tokens(path: Path, detected: Detected, observer: Observer, progress, limit_rows):
    """(line users, all following tokens, tokens per line) of a line-per-user file."""
    users, counts, tokens = [], [], []
    size = max(path.stat().st_size, 1)
    for block, first_line, done in blocks(path, limit_rows):
        observer.check()
        decode_check(path, block, first_line, detected.encoding)
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
