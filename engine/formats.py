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

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

FORMATS = ("movielens", "csv", "recbole", "pairs", "sequences", "parquet")
ROLES = ("user", "item", "time", "rating")
UTF8_BOM = b"\xef\xbb\xbf"  # spreadsheet programs start UTF-8 CSV files with it; it is not data

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
    rows = list(csv.reader(head[:2], delimiter=sep))
    has_header = _looks_like_header(rows)
    columns = rows[0] if has_header else [str(i) for i in range(1, len(rows[0]) + 1)]
    return Detected("csv", sep, has_header, _resolve_mapping(path, columns, mapping, has_header), columns,
                    encoding)


def head_lines(path: Path, encoding: str | None, count: int = 20) -> list[str]:
    """Up to `count` non-blank complete lines from the first 64 KiB (undecodable bytes replaced when
    `encoding` is None): what detection looks at."""
    with open(path, "rb") as handle:
        raw = handle.read(64 << 10)
    text = raw.removeprefix(UTF8_BOM).decode(encoding or "utf-8", errors="replace" if encoding is None else "strict")
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
