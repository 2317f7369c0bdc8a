"""Delimited text (CSV, TSV, MovieLens `::`): read in blocks of about 8 MiB (progress, cancel, bounded
parser memory), checked for encoding, and parsed by Arrow's CSV reader into columns."""

from __future__ import annotations

import bisect

import csv
import io
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from engine.core.events import Observer
from engine.data.formats import (
    UTF8_BOM,
    Detected,
    ImportFailed,
    count_lines,
    decode_failure,
    line_and_column,
    split_lines,
)
from engine.data.parsed_columns import (
    Parsed,
    assemble,
    check_not_empty,
    parse_numbers,
    parse_times,
)

BLOCK_BYTES = 8 << 20  # parse in blocks of about 8 MiB: progress, cancel, bounded parser memory
_LINE_END = re.compile(rb"\r\n|\r|\n")  # the CSV parser's line ends
_LEADING_BLANK_LINES = re.compile(rb"(?:[ \t\f\v]*(?:\r\n|\r|\n))*")


def blocks(path: Path, limit_rows: int | None):
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


def decode_check(path: Path, block: bytes, first_line: int, encoding: str) -> None:
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


def read_delimited(path: Path, detected: Detected, observer: Observer, progress,
                    limit_rows: int | None) -> Parsed:
    size = max(path.stat().st_size, 1)
    columns = detected.columns
    wanted = {role: columns.index(col) for role, col in detected.mapping.items()}
    pieces: dict[str, list] = {role: [] for role in wanted}
    time_kind = None
    rows = 0
    finders: list[tuple[int, LineFinder]] = []  # (rows before the block, its line finder)
    first_block = True
    for block, first_line, done in blocks(path, limit_rows):
        observer.check()
        decode_check(path, block, first_line, detected.encoding)
        header_lines = 1 if (detected.has_header and first_block) else 0
        first_block = False
        table = parse_block(path, block, first_line, header_lines, detected)
        if limit_rows is not None:
            table = table.slice(0, limit_rows)
        line_of = LineFinder(block, first_line, header_lines)
        finders.append((rows, line_of))
        for role, index in wanted.items():
            column = table.column(index)
            if role in ("user", "item"):
                check_not_empty(path, column, role, columns[index], line_of)
                pieces[role].append(column)
            elif role == "time":
                values, kind = parse_times(path, column, columns[index], line_of, time_kind)
                time_kind = kind
                pieces[role].append(values)
            else:
                pieces[role].append(parse_numbers(path, column, columns[index], line_of, "rating"))
        rows += table.num_rows
        if progress is not None:
            progress(done / size)
    if rows == 0:
        what = "has a header but no data rows" if detected.has_header else "has no data rows"
        raise ImportFailed(f"{path.name}: the file {what}")

    def file_line_of(row: int) -> int:  # a row of the whole file
        before, finder = finders[bisect.bisect_right([start for start, _ in finders], row) - 1]
        return finder(row - before)

    return assemble(pieces, time_kind, path, columns[wanted["time"]] if "time" in wanted else None, file_line_of)


class LineFinder:
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


def parse_block(path: Path, block: bytes, first_line: int, header_lines: int, detected: Detected) -> pa.Table:
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
        raise field_count_error(path, block, first_line, header_lines, detected, quoted) or ImportFailed(
            f"{path.name} line {first_line}: cannot be read as {detected.format} ({error})") from None


def field_count_error(path, block, first_line, header_lines, detected, quoted) -> ImportFailed | None:
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
