"""Format detection of interaction files: which format, separator, header, column mapping, encoding.

Formats (`format=`):
- `movielens`: `user::item::rating::timestamp` (MovieLens `ratings.dat`, Latin-1), no header.
- `csv`: delimited text (`,` `;` `|` tab, detected) with or without a header and a column mapping
  {"user", "item", "time", "rating"} to column names (or 1-based column numbers without a header).
- `recbole`: RecBole atomic `.inter` files (tab-separated, header `name:type`).
- `pairs`: `user item` per line (space or tab), in time order.
- `sequences`: `user i1 i2 ...` per line, items in time order.
- `parquet`: columns mapped as for `csv`.
"""

from __future__ import annotations

import codecs
import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.core.files import FileRefused, regular_file

FORMATS = ("movielens", "csv", "recbole", "pairs", "sequences", "parquet")
ROLES = ("user", "item", "time", "rating")
UTF8_BOM = b"\xef\xbb\xbf"  # spreadsheet programs start UTF-8 CSV files with it; it is not data
HEAD_BYTES = 64 << 10  # what detection reads of a file
# Lines are split on these bytes before decoding, so only encodings that write them as ASCII can be read.
_ASCII_SAMPLE = b"\t\n\r ,;:|\"0123456789azAZ"
_LINE_END = re.compile(r"\r\n|\r|\n")

# Column names recognised without a mapping (lower case, without '_' and ' ').
ROLE_NAMES = {
    "user": ("user", "userid", "uid", "reviewerid", "customerid", "visitorid", "sessionid"),
    "item": ("item", "itemid", "iid", "movieid", "productid", "asin", "businessid", "trackid"),
    "time": ("timestamp", "time", "ts", "date", "datetime", "unixreviewtime", "created", "createdat"),
    "rating": ("rating", "score", "stars", "overall", "value"),
}
_ROLE_ALIASES = {"timestamp": "time", "ts": "time", "user_id": "user", "item_id": "item"}


class ImportFailed(ValueError):
    """An input file cannot be imported; the message names the file, line and column and what was expected."""


@dataclass
class Detected:
    """How a file will be read: format, separator, header, column mapping and encoding."""

    format: str
    separator: str | None = None
    has_header: bool = False
    mapping: dict[str, str] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    encoding: str = "utf-8"


def check_regular_file(path: str | Path, role: str = "") -> None:
    """ImportFailed unless `path` is a regular file (an interaction file, `--times`, `--items`): a
    missing file, a directory, a FIFO (which would block the reader) or a device such as /dev/zero
    (which never ends) is refused by name before anything is opened. `role` prefixes the message."""
    try:
        regular_file(path)
    except FileRefused as error:
        raise ImportFailed(f"{role}{error}") from None


def detect_format(path: str | Path, *, format: str | None = None, separator: str | None = None,
                  mapping: dict | None = None, encoding: str | None = None) -> Detected:
    """Guesses the format, separator, header and column mapping of an interaction file; every argument
    given overrides the guess. Raises ImportFailed for an empty file or an unknown format."""
    path = Path(path)
    if format is not None and format not in FORMATS:
        raise ImportFailed(f"{path.name}: unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    check_regular_file(path)
    check_encoding(path, encoding)
    if separator is not None and not (separator == "::" or (len(separator) == 1 and separator not in '"\r\n')):
        raise ImportFailed(f"{path.name}: separator {separator!r} cannot be used; give one character other "
                           f"than a quote or a line end, or '::'")
    suffix = path.suffix.lower()
    if format == "parquet" or (format is None and suffix in (".parquet", ".pq")):
        columns = [str(c) for c in _parquet_columns(path)]
        return Detected("parquet", None, True, _resolve_mapping(path, columns, mapping, True), columns)
    head = head_lines(path, encoding)
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
    # The csv module splits on one character; "::" (read as MovieLens is) has no quoting.
    rows = [line.split(sep) for line in head[:2]] if len(sep) > 1 else list(csv.reader(head[:2], delimiter=sep))
    has_header = _looks_like_header(rows)
    columns = rows[0] if has_header else [str(i) for i in range(1, len(rows[0]) + 1)]
    return Detected("csv", sep, has_header, _resolve_mapping(path, columns, mapping, has_header), columns,
                    encoding)


def head_lines(path: Path, encoding: str | None, count: int = 20) -> list[str]:
    """Up to `count` non-blank complete lines from the first 64 KiB (undecodable bytes replaced when
    `encoding` is None): what detection looks at. Raises ImportFailed at a byte `encoding` cannot decode."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(HEAD_BYTES)
    except OSError as error:
        raise ImportFailed(f"{path.name}: cannot be read ({error.strerror or error})") from None
    whole = len(raw) < HEAD_BYTES
    raw = raw.removeprefix(UTF8_BOM)
    # Incremental decoding: a character cut at the end of the 64 KiB is left out, not an error.
    decoder = codecs.getincrementaldecoder(encoding or "utf-8")("replace" if encoding is None else "strict")
    try:
        text = decoder.decode(raw, final=whole)
    except UnicodeDecodeError as error:
        raise decode_failure(path, raw, 1, error, encoding) from None
    lines = [line for line in split_lines(text) if line.strip()]
    return lines[: count] if whole else lines[: min(count, max(len(lines) - 1, 1))]


def split_lines(text: str) -> list[str]:
    """Lines as the CSV parser sees them: ends are \\n, \\r\\n or \\r only. (str.splitlines also splits at
    form feeds, U+0085 (Latin-1 byte 0x85, cp1252's ellipsis) and U+2028, which are data in a field.)"""
    return _LINE_END.split(text)


def count_lines(data: bytes) -> int:
    """The number of line ends (\\n, \\r\\n or \\r) in `data`."""
    if b"\r" not in data:  # the usual case: one memchr, then one count
        return data.count(b"\n")
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def line_and_column(data: bytes, offset: int, first_line: int) -> tuple[int, int]:
    """1-based line and column (in bytes) of byte `offset` of `data`, whose first byte is on `first_line`."""
    before = data[:offset]
    return first_line + count_lines(before), offset - max(before.rfind(b"\n"), before.rfind(b"\r"))


def decode_failure(path: Path, block: bytes, first_line: int, error: UnicodeDecodeError,
                   encoding: str) -> ImportFailed:
    """The ImportFailed for a byte of `block` (starting at line `first_line`) that `encoding` cannot decode."""
    line, column = line_and_column(block, error.start, first_line)
    return ImportFailed(
        f"{path.name} line {line}, column {column}: byte 0x{block[error.start]:02x} "
        f"is not valid {encoding}; if the file is Latin-1, import it with encoding latin-1")


def check_encoding(path: Path, encoding: str | None) -> None:
    """Raises ImportFailed for an unknown encoding or one that does not write ASCII as ASCII (UTF-16)."""
    if encoding is None:
        return
    try:
        compatible = _ASCII_SAMPLE.decode(encoding) == _ASCII_SAMPLE.decode("ascii")
    except LookupError:
        raise ImportFailed(f"{path.name}: unknown encoding {encoding!r}; try utf-8 or latin-1") from None
    except UnicodeDecodeError:
        compatible = False
    if not compatible:
        raise ImportFailed(f"{path.name}: encoding {encoding!r} cannot be read: lines and separators must be "
                           f"ASCII bytes (utf-8, latin-1, cp1252 ...); save the file as UTF-8")


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
    names = {n for names in ROLE_NAMES.values() for n in names}
    first = [normal_name(c) for c in rows[0]]
    if any(c in names for c in first):
        return True
    return (len(rows) > 1 and not any(_is_number(c) for c in rows[0])
            and any(_is_number(c) for c in rows[1]))


def normal_name(name: str) -> str:
    """A column name as ROLE_NAMES lists it: without a RecBole `:type`, lower case, no '_' or ' '."""
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
    normal = {normal_name(c): c for c in columns}
    for role in ROLES:
        if role in resolved or (mapping and role in ("time", "rating")):
            continue
        for name in ROLE_NAMES[role]:
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
