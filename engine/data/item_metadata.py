"""Item metadata files into titles and features: MovieLens `movies.dat` (titles, genres), RecBole `.item`
(title, `token_seq` columns such as `class` as features), `*_item2attributes.json` ({item: [attribute ids]})."""

from __future__ import annotations

import json
from pathlib import Path

from engine.data.delimited import decode_check
from engine.data.formats import (
    ROLE_NAMES,
    UTF8_BOM,
    ImportFailed,
    check_encoding,
    check_regular_file,
    head_lines,
    normal_name,
    split_lines,
)

METADATA_FORMATS = ("movielens-movies", "recbole-item", "item2attributes")


def read_item_metadata(path: str | Path, format: str | None = None,
                       encoding: str | None = None) -> tuple[dict, dict[str, dict]]:
    """(titles {item id: title}, features {feature name: {item id: [values]}}) from a metadata file:
    MovieLens movies.dat, RecBole .item or an item2attributes JSON. Raises ImportFailed."""
    path = Path(path)
    check_regular_file(path, "item metadata ")
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
            data = json.loads(decode_whole(path, encoding or "utf-8"))
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
        text = decode_whole(path, encoding or "latin-1")
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
        text = decode_whole(path, encoding or "utf-8")
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


def decode_whole(path: Path, encoding: str) -> str:
    try:
        data = path.read_bytes().removeprefix(UTF8_BOM)
    except OSError as error:
        raise ImportFailed(f"{path.name}: cannot be read ({error.strerror or error})") from None
    decode_check(path, data, 1, encoding)
    return data.decode(encoding)
