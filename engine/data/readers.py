"""Readers: interaction files into integer-coded arrays, whatever their format.

Text is read in blocks (`delimited`) and parsed by Arrow's CSV reader; ids become integer codes in Arrow
(`dictionary_encode`), never Python strings per row (`parsed_columns`). Timestamps may be integer seconds,
milliseconds, micro- or nanoseconds, decimals, ISO dates, or absent (file order). Line-per-user files are
in `sequence_files`, Parquet in `parquet_files`, item metadata in `item_metadata`. Every error names the
file, the line and the column, and says what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from engine.core.events import Observer
from engine.data.delimited import read_delimited
from engine.data.formats import Detected, ImportFailed, check_regular_file, detect_format
from engine.data.item_metadata import METADATA_FORMATS, read_item_metadata
from engine.data.parquet_files import read_parquet
from engine.data.parsed_columns import Parsed
from engine.data.sequence_files import read_sequences

__all__ = ["METADATA_FORMATS", "Parsed", "Preview", "preview", "read_interactions", "read_item_metadata",
           "read_parsed"]


@dataclass
class Preview:
    """The first rows of a file as the importer parses them (columns user, item[, timestamp, rating])
    and how it was detected: what the GUI's import wizard shows."""

    frame: pd.DataFrame
    detected: Detected


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
        return read_parquet(path, detected, limit_rows)
    if detected.format == "sequences":
        if times_file is not None:
            check_regular_file(times_file, "timestamps ")
        return read_sequences(path, detected, times_file, observer, progress, limit_rows)
    if times_file is not None:
        raise ImportFailed(f"{times_file.name}: a timestamp file goes only with a line-per-user "
                           f"sequences file, and {path.name} is read as {detected.format}")
    return read_delimited(path, detected, observer, progress, limit_rows)
