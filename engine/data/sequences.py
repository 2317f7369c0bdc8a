"""Per-user chronological sequences, the leave-one-out split and left-padded batches.

Internal item ids are dense: 1..n_items, with 0 the padding id. Users and items keep their external ids
(strings or numbers as the data gave them) in `user_ids` and `item_ids` for display and export.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


class DataError(ValueError):
    """The interaction data cannot be used as given; the message says what is wrong."""


@dataclass
class InteractionLog:
    """Raw interactions as parallel arrays, in any order: what importers, the store and generators produce.

    `timestamps` may be None: then the given order is the chronological order within each user.
    `item_features` maps a feature name (e.g. "genre") to {external item id: [values]}.
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray | None = None
    item_titles: dict = field(default_factory=dict)
    item_features: dict[str, dict] = field(default_factory=dict)
    name: str = "data"

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users)
        self.items = np.asarray(self.items)
        if self.timestamps is not None:
            self.timestamps = np.asarray(self.timestamps)
        if len(self.users) != len(self.items) or (
                self.timestamps is not None and len(self.timestamps) != len(self.users)):
            raise DataError("users, items and timestamps must have the same length")


@dataclass
class ItemFeatureTable:
    """One categorical (possibly multi-valued) item feature: `values[item]` lists value ids, 0-padded."""

    name: str
    vocabulary: np.ndarray  # value id v (1-based) is vocabulary[v - 1]
    values: np.ndarray  # (n_items + 1, max_values) int64; row 0 is the padding item


@dataclass
class SequenceData:
    """Chronological item sequences of every kept user, in CSR form, with the leave-one-out split.

    For user u, `items[offsets[u]:offsets[u + 1]]` is the whole sequence, oldest first. The last item is
    the test target, the one before it the validation target, and the rest the training sequence.
    """

    user_ids: np.ndarray  # (n_users,) external ids
    item_ids: np.ndarray  # (n_items,) external ids; internal id i is item_ids[i - 1]
    offsets: np.ndarray  # (n_users + 1,) int64
    items: np.ndarray  # (n_interactions,) int64 internal ids in 1..n_items
    item_titles: dict = field(default_factory=dict)  # external id -> title
    features: list[ItemFeatureTable] = field(default_factory=list)
    name: str = "data"

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user]:self.offsets[user + 1]]

    def history(self, user: int, split: str) -> np.ndarray:
        """The input sequence for a split: `train` (all but the last two), `valid` (all but the last
        one, whose last item is the validation target's predecessor), `test` (all but the last)."""
        seq = self.sequence(user)
        cut = {"train": 2, "valid": 2, "test": 1}[split]
        return seq[: len(seq) - cut]

    def target(self, user: int, split: str) -> int:
        seq = self.sequence(user)
        return int(seq[-2] if split == "valid" else seq[-1])

    def targets(self, split: str) -> np.ndarray:
        """(n_users,) validation or test target of every user."""
        last = self.offsets[1:] - 1
        return self.items[last - 1] if split == "valid" else self.items[last]

    def histories(self, split: str, max_length: int, users: np.ndarray | None = None, trim: bool = False) -> np.ndarray:
        """(n, max_length) left-padded inputs of a split for the given users (default: all); with `trim`,
        only as many columns as the longest of them needs (`cut_width`): the model scores both alike."""
        users = np.arange(self.n_users) if users is None else np.asarray(users)
        cut = 2 if split in ("train", "valid") else 1
        starts, ends = self.offsets[users], self.offsets[users + 1] - cut
        width = cut_width(ends - starts, max_length) if trim else max_length
        return window_batch(self.items, starts, ends, width)

    def history_lengths(self, split: str) -> np.ndarray:
        """(n_users,) the number of items in each user's input sequence of a split."""
        return self.lengths - (2 if split in ("train", "valid") else 1)

    def item_popularity(self) -> np.ndarray:
        """(n_items + 1,) interaction count of every internal item id (index 0, padding, is 0)."""
        return np.bincount(self.items, minlength=self.n_items + 1)

    def fingerprint(self) -> str:
        """A sha256 of the ids and sequences: a bundle trained on other data is told apart by it."""
        digest = hashlib.sha256()
        for array in (self.offsets, self.items):
            digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
        digest.update("\x1f".join(map(str, self.item_ids)).encode())
        digest.update("\x1f".join(map(str, self.user_ids)).encode())
        return digest.hexdigest()


# Batches are cut to their longest real window, rounded up to a step of an eighth of its octave (exact
# below 16, then 2, 4, 8, 16 from 16, 32, 64, 128): under 1/8 of a row is padding from the rounding, and
# widths still repeat from batch to batch (about 50 shapes from 1 to 200), so allocator and kernel caches
# reuse them. Rounding to a fixed 8 cost short-history data most: a 3-item window is 62% padding in 8.
def window_widths(real_lengths: np.ndarray, max_length: int) -> np.ndarray:
    """The columns each window alone needs: its length (at most max_length), exact below 16 and rounded
    up by an eighth of its octave above (steps of 2, 4, 8, 16 from 16, 32, 64, 128)."""
    lengths = np.maximum(np.minimum(np.asarray(real_lengths, dtype=np.int64), max_length), 1)
    bits = np.floor(np.log2(lengths)).astype(np.int64) + 1  # int.bit_length
    step = np.left_shift(1, np.maximum(bits - 4, 0))
    return np.minimum(max_length, -(-lengths // step) * step)


def cut_width(real_lengths: np.ndarray, max_length: int) -> int:
    """The columns a batch needs: its longest window (at most max_length), rounded up to its step."""
    longest = int(np.max(real_lengths, initial=1))
    return int(window_widths(np.array([longest]), max_length)[0])


def window_batch(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """(n, length) int64: for each row, items[max(start, end - length):end], left-padded with 0.

    The most recent item of each window sits in the last column.
    """
    n = len(ends)
    out = np.zeros((n, length), dtype=np.int64)
    if n == 0:
        return out
    columns = np.arange(length)
    source = ends[:, None] - length + columns[None, :]  # index into `items` for each cell
    valid = source >= starts[:, None]
    out[valid] = items[source[valid]]
    return out


def build_sequences(log: InteractionLog, min_user_interactions: int = 3) -> SequenceData:
    """Sorts each user's interactions by time (ties keep the given order), drops users with fewer than
    `min_user_interactions`, remaps items to 1..n_items by first appearance, and encodes item features."""
    if len(log.users) == 0:
        raise DataError(f"{log.name}: there are no interactions")
    frame = pd.DataFrame({"user": log.users, "item": log.items})
    frame["order"] = np.arange(len(frame))
    sort_keys = ["user_code", "order"]
    frame["user_code"], user_ids = pd.factorize(frame["user"], sort=False)
    if log.timestamps is not None:
        frame["time"] = log.timestamps
        if frame["time"].isna().any():
            raise DataError(f"{log.name}: some timestamps are missing")
        sort_keys = ["user_code", "time", "order"]
    frame = frame.sort_values(sort_keys, kind="stable")

    counts = frame["user_code"].value_counts(sort=False)
    kept_users = counts.index[counts >= min_user_interactions]
    frame = frame[frame["user_code"].isin(kept_users)]
    if frame.empty:
        raise DataError(f"{log.name}: no user has at least {min_user_interactions} interactions "
                        "(leave-one-out needs a training, a validation and a test item)")

    item_codes, item_ids = pd.factorize(frame["item"], sort=False)
    user_codes, kept_user_ids = pd.factorize(frame["user_code"], sort=False)
    lengths = np.bincount(user_codes)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    item_ids = np.asarray(item_ids)
    titles = {k: v for k, v in log.item_titles.items()} if log.item_titles else {}
    return SequenceData(
        user_ids=np.asarray(user_ids)[np.asarray(kept_user_ids)],
        item_ids=item_ids,
        offsets=offsets,
        items=item_codes.astype(np.int64) + 1,
        item_titles=titles,
        features=[_feature_table(name, mapping, item_ids) for name, mapping in sorted(log.item_features.items())],
        name=log.name,
    )


def _feature_table(name: str, mapping: dict, item_ids: np.ndarray) -> ItemFeatureTable:
    rows = [list(mapping.get(item, mapping.get(str(item), ()))) for item in item_ids]
    vocabulary = sorted({value for row in rows for value in row}, key=str)
    index = {value: i + 1 for i, value in enumerate(vocabulary)}
    width = max(1, max((len(row) for row in rows), default=1))
    values = np.zeros((len(item_ids) + 1, width), dtype=np.int64)
    for i, row in enumerate(rows, start=1):
        values[i, : len(row)] = [index[v] for v in row]
    return ItemFeatureTable(name=name, vocabulary=np.asarray(vocabulary, dtype=object), values=values)
