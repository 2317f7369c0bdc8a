"""Per-user recommendations, each score split into its long-term, short-term and bias parts.

The ranking is the one the metrics use (engine/metrics.py, full protocol): the items of the user's input
history are masked when `exclude_history` is set, except the held-out target, whose score is kept, and
ties count against the target. So `target_rank` here equals the rank that HR/NDCG@K are computed from.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from engine.core.events import (
    Observer,
    PhaseFinished,
    PhaseStarted,
    StepClock,
    StepFinished,
    Throttle,
)
from engine.core.files import kind_of
from engine.data.sequences import SequenceData
from engine.evaluation.metrics import rank_of_target
from engine.models.automlp import AutoMLP

SPLITS = ("valid", "test")
CSV_COLUMNS = ("user", "rank", "item", "score", "long", "short", "bias")


class RecommendError(ValueError):
    """A recommendation cannot be made as asked: unknown user or item, bad split or n."""


@dataclass(frozen=True)
class RecommendedItem:
    """One ranked item. score = long + short + bias (to float32 precision)."""

    rank: int  # 0-based, in the ranking this item was listed in
    item: int  # internal id, 1..n_items
    item_id: object  # external id
    title: str | None
    score: float
    long: float
    short: float
    bias: float
    long_rank: int  # 0-based rank of the item when ranked by the long-term part alone


@dataclass(frozen=True)
class Recommendations:
    """What the model recommends to one user, and why.

    `items` is the top-n by score; `long_term_items` the top-n by the long-term part alone (same
    exclusion), so that a view can show how much the short-term module moved the ranking.
    """

    user_id: object  # external id
    user: int  # row in SequenceData
    split: str  # "test": history = all but the last item; "valid": all but the last two
    n: int
    exclude_history: bool
    window: int  # k, the short-term module's look-back: the last k items of the history
    history: np.ndarray  # (h,) internal ids, oldest first: the split's input sequence
    history_ids: list  # external ids of `history`
    history_titles: list  # title or None per history item
    items: list[RecommendedItem]
    long_term_items: list[RecommendedItem]
    target: RecommendedItem  # the held-out item, with its rank in the combined ranking
    candidates: int  # how many items were ranked (all items minus the excluded ones)

    @property
    def target_rank(self) -> int:
        return self.target.rank

    @property
    def hit(self) -> bool:
        """Whether the held-out item is in the top n."""
        return self.target.rank < self.n

    @property
    def overlap(self) -> int:
        """How many of the top-n items are also in the long-term-only top-n."""
        return len({r.item for r in self.items} & {r.item for r in self.long_term_items})

    def to_frame(self) -> pd.DataFrame:
        """The top-n as a table (for a CSV of what a view shows): user, rank (1 = first), item, title,
        score, long, short, bias, long_rank (1 = first by the long part alone)."""
        return pd.DataFrame({
            "user": [self.user_id] * len(self.items), "rank": [r.rank + 1 for r in self.items],
            "item": [r.item_id for r in self.items], "title": [r.title for r in self.items],
            "score": [r.score for r in self.items], "long": [r.long for r in self.items],
            "short": [r.short for r in self.items], "bias": [r.bias for r in self.items],
            "long_rank": [r.long_rank + 1 for r in self.items]})

    def rank_changes(self) -> list[tuple[RecommendedItem, int]]:
        """(item, places moved up by the short-term part) for each top-n item: long_rank - rank."""
        return [(r, r.long_rank - r.rank) for r in self.items]


def find_user(data: SequenceData, user_id) -> int:
    """Row of the user with this external id (matched as given, or by its text); RecommendError if none."""
    rows = np.flatnonzero(data.user_ids == user_id)
    if len(rows) == 0:  # the CLI and GUI pass text; ids may be numbers
        rows = np.flatnonzero(data.user_ids.astype(str) == str(user_id))
    if len(rows) == 0:
        raise RecommendError(f"unknown user {user_id!r}: not among the {data.n_users} users of {data.name}")
    return int(rows[0])


def find_item(data: SequenceData, item_id) -> int:
    """Internal id (1..n_items) of the item with this external id; RecommendError if none."""
    rows = np.flatnonzero(data.item_ids == item_id)
    if len(rows) == 0:
        rows = np.flatnonzero(data.item_ids.astype(str) == str(item_id))
    if len(rows) == 0:
        raise RecommendError(f"unknown item {item_id!r}: not among the {data.n_items} items of {data.name}")
    return int(rows[0]) + 1


def short_term_window(model: AutoMLP) -> int:
    """k of the model's short-term module (the most weighted candidate if the model still has several)."""
    lengths = model.shape.candidate_lengths
    return int(lengths[int(torch.argmax(model.candidate_weights()))]) if len(lengths) > 1 else int(lengths[0])


def score_parts(model: AutoMLP, sequences: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(scores, long, short, bias), each (B, N + 1), from one pass over (B, T) left-padded sequences.

    The scores are the model's forward scores (column 0 = -inf) and the parts AutoMLP.contributions
    (column 0 = 0), both from one joint vector computed at the last position only (AutoMLP.joint prunes the causal form to the last position),
    so they equal the forward pass up to float rounding (1e-5) at a fraction of its cost.
    """
    z = model.joint(sequences)  # (B, 2D)
    scores = model.score(model.output(z))
    items = model.items.all_items()  # (N + 1, D)
    vectors = part_vectors(model, z)  # (B, 3, D)
    D = vectors.shape[-1]
    parts = (vectors.reshape(-1, D) @ items.T).reshape(len(z), 3, -1)  # one GEMM for the three parts
    long, short, bias = parts.unbind(dim=1)
    return scores, long, short, bias


def part_vectors(model: AutoMLP, z: torch.Tensor) -> torch.Tensor:
    """(B, 2D) joint vectors -> (B, 3, D): W_l z_l, W_s z_s and b_o, whose dot products with an item's
    vector are its long-term, short-term and bias parts (W_o = [W_s | W_l], z = [z_s ; z_l])."""
    D = model.shape.embedding_dim
    weight = model.output.weight  # (D, 2D)
    return torch.stack([z[:, D:] @ weight[:, D:].T, z[:, :D] @ weight[:, :D].T,
                        model.output.bias.expand(len(z), D)], dim=1)


def _device(model: AutoMLP) -> torch.device:
    return next(model.parameters()).device


def _check(data: SequenceData, model: AutoMLP, n: int, split: str) -> None:
    if split not in SPLITS:
        raise RecommendError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if n <= 0:
        raise RecommendError(f"n must be positive, got {n}")
    if model.shape.n_items != data.n_items:
        raise RecommendError(f"the model scores {model.shape.n_items} items but {data.name} has {data.n_items}")


def _history_cells(data: SequenceData, users: np.ndarray, cut: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch row and internal item id of every history item of `users` (the split's input sequences)."""
    starts = data.offsets[users]
    lengths = data.offsets[users + 1] - cut - starts
    rows = np.repeat(np.arange(len(users)), lengths)
    # index of each cell into data.items: its user's start plus its position within the history
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, data.items[np.repeat(starts, lengths) + within]


def _mask(ranking: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """A copy of (B, N + 1) `ranking` with the history cells at -inf except each row's `keep` column,
    and column 0 (padding) at -inf."""
    out = ranking.clone()
    kept = out.gather(1, keep[:, None])
    out[rows, cols] = float("-inf")
    out.scatter_(1, keep[:, None], kept)
    out[:, 0] = float("-inf")
    return out


@torch.inference_mode()
def recommend(model: AutoMLP, data: SequenceData, user_external_id, n: int = 10, exclude_history: bool = True,
              split: str = "test") -> Recommendations:
    """The top-n items for one user (external id), each with its long/short/bias parts and its rank by
    the long part alone; the held-out item of `split` with its rank; the history and window k.

    Raises RecommendError for an unknown user, n <= 0, an unknown split, or a model of other data.
    """
    _check(data, model, n, split)
    if model.training:  # eval() walks every submodule: too slow to repeat per call
        model.eval()
    user = find_user(data, user_external_id)
    cut = 2 if split == "valid" else 1
    device = _device(model)
    T = model.shape.max_length
    sequences = torch.from_numpy(data.histories(split, T, np.array([user]), trim=True)).to(device)
    scores, long, short, bias = score_parts(model, sequences)
    target = torch.tensor([data.target(user, split)], device=device)
    if exclude_history:
        rows, cols = (torch.from_numpy(a).to(device) for a in _history_cells(data, np.array([user]), cut))
    else:
        rows = cols = torch.zeros(0, dtype=torch.long, device=device)
    ranked = _mask(scores, rows, cols, target)  # (1, N + 1)
    ranked_long = _mask(long, rows, cols, target)
    n = min(n, int(torch.isfinite(ranked[0]).sum()))  # never list excluded items
    top = torch.topk(ranked[0], n).indices  # (n,)
    top_long = torch.topk(ranked_long[0], n).indices
    shown = torch.cat([top, top_long, target])
    # each shown item's rank by the long part alone; ties count against the item, as in the metrics
    long_rank = ((ranked_long[0][None, :] >= ranked_long[0][shown][:, None]).sum(1) - 1).tolist()
    values = torch.stack([scores[0, shown], long[0, shown], short[0, shown], bias[0, shown]], 1).tolist()
    shown = shown.tolist()

    def entry(i: int, rank: int) -> RecommendedItem:
        item = shown[i]
        external = data.item_ids[item - 1]
        return RecommendedItem(rank, item, _plain(external), data.item_titles.get(external), *values[i],
                               long_rank=long_rank[i])

    history = data.history(user, split)
    history_ids = data.item_ids[history - 1].tolist()  # Python values, like _plain
    titles = data.item_titles
    return Recommendations(
        user_id=_plain(data.user_ids[user]), user=user, split=split, n=n, exclude_history=exclude_history,
        window=short_term_window(model), history=history.copy(),
        history_ids=history_ids,
        history_titles=[titles.get(i) for i in history_ids] if titles else [None] * len(history_ids),
        items=[entry(i, i) for i in range(n)],
        long_term_items=[entry(n + i, i) for i in range(n)],
        target=entry(2 * n, int(rank_of_target(ranked, target)[0])),
        candidates=int(torch.isfinite(ranked[0]).sum()),
    )


def _plain(value):
    """numpy scalars as Python values, for display and JSON."""
    return value.item() if isinstance(value, np.generic) else value


@torch.inference_mode()
def recommend_all_to_csv(model: AutoMLP, data: SequenceData, path: str | Path, n: int = 10,
                         exclude_history: bool = True, observer: Observer | None = None, batch_size: int = 512,
                         split: str = "test") -> int:
    """Writes the top-n of every user to a CSV with columns user, rank (1 = first), item, score, long,
    short, bias (external ids), ranked as `recommend` ranks. Returns the number of rows written.

    Users are scored `batch_size` at a time on the model's device and streamed to a temporary file beside
    `path`, renamed into place only at the end: a cancel (`Cancelled` from the observer) or an error
    leaves no file behind. Progress: PhaseStarted/StepFinished/PhaseFinished of phase "recommend".
    A path that cannot be written (a folder, a device, a missing or read-only folder, a full disk) raises
    RecommendError naming it and the cause; the file gets the permissions the umask gives any new file.
    """
    _check(data, model, n, split)
    observer = observer or Observer()
    model.eval()
    path = Path(path)
    device = _device(model)
    T, cut = model.shape.max_length, (2 if split == "valid" else 1)
    targets = data.targets(split)
    n = min(n, data.n_items)
    total = (data.n_users + batch_size - 1) // batch_size
    observer.emit(PhaseStarted("recommend", total, f"top {n} for {data.n_users} users"))
    clock, throttle = StepClock(total), Throttle()
    handle, temporary = _open_part(path)
    written = 0
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as out:
            out.write(",".join(CSV_COLUMNS) + "\n")
            for step, start in enumerate(range(0, data.n_users, batch_size), start=1):
                observer.check()
                users = np.arange(start, min(start + batch_size, data.n_users))
                sequences = torch.from_numpy(data.histories(split, T, users, trim=True)).to(device)
                z = model.joint(sequences)  # (B, 2D)
                scores = model.score(model.output(z))  # (B, N + 1)
                target = torch.from_numpy(targets[users]).to(device)
                if exclude_history:
                    rows, cols = (torch.from_numpy(a).to(device) for a in _history_cells(data, users, cut))
                else:
                    rows = cols = torch.zeros(0, dtype=torch.long, device=device)
                top = torch.topk(_mask(scores, rows, cols, target), n, dim=1)  # (B, n)
                finite = torch.isfinite(top.values).reshape(-1).cpu().numpy()  # fewer candidates than n
                index = top.indices
                # the parts of the listed items only: (B, 3, D) x (B, n, D) -> (B, 3, n)
                parts = part_vectors(model, z) @ model.items.all_items()[index].transpose(1, 2)
                columns = [part.reshape(-1).cpu().numpy() for part in parts.unbind(dim=1)]
                frame = pd.DataFrame({
                    "user": np.repeat(data.user_ids[users], n),
                    "rank": np.tile(np.arange(1, n + 1), len(users)),
                    "item": data.item_ids[index.reshape(-1).cpu().numpy() - 1],
                    "score": top.values.reshape(-1).cpu().numpy(),
                    "long": columns[0], "short": columns[1], "bias": columns[2],
                })[finite]
                frame.to_csv(out, header=False, index=False, float_format="%.6g")
                written += len(frame)
                if throttle.ready(force=step == total):
                    observer.emit(StepFinished("recommend", step, total, eta_seconds=clock.eta(step)))
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _csv_error(path, error) from None
        raise
    observer.emit(PhaseFinished("recommend", clock.elapsed))
    return written


def _open_part(path: Path) -> tuple[int, Path]:
    """A new temporary file beside `path` (descriptor, path), created as `open` creates files, so that the
    umask sets its permissions; RecommendError if `path` cannot be a CSV file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise _csv_error(path, error) from None
    if mode is not None and stat.S_ISDIR(mode):
        raise RecommendError(f"{path} is a directory; give the CSV a file name, such as {path / 'recommendations.csv'}")
    if mode is not None and not stat.S_ISREG(mode):
        raise RecommendError(f"{path} is not a regular file ({kind_of(mode)}); give the CSV a file name")
    temporary = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part"
    try:
        return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
    except OSError as error:
        raise _csv_error(path, error) from None


def _csv_error(path: Path, error: OSError) -> RecommendError:
    if error.errno == errno.ENOENT:
        return RecommendError(f"the recommendations cannot be written to {path}: the folder {path.parent} does "
                              "not exist")
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return RecommendError(f"the disk is full: the recommendations could not be written to {path}; nothing "
                              "was changed there; free some space and try again")
    return RecommendError(f"the recommendations could not be written to {path}: {error.strerror or error}; "
                          "nothing was changed there")


@torch.inference_mode()
def user_table(model: AutoMLP, data: SequenceData, n: int = 10, exclude_history: bool = True, split: str = "test",
               batch_size: int = 512, observer: Observer | None = None) -> pd.DataFrame:
    """One row per user, for finding and sorting users: columns user (external id), history (length of
    the split's input sequence), target (external id of the held-out item), target_rank (0-based, the
    ranking of `recommend`) and hit (target_rank < n). Checks the observer's cancel flag per batch."""
    _check(data, model, n, split)
    observer = observer or Observer()
    if model.training:
        model.eval()
    device = _device(model)
    T, cut = model.shape.max_length, (2 if split == "valid" else 1)
    targets = data.targets(split)
    ranks = []
    for start in range(0, data.n_users, batch_size):
        observer.check()
        users = np.arange(start, min(start + batch_size, data.n_users))
        sequences = torch.from_numpy(data.histories(split, T, users, trim=True)).to(device)
        scores = model.score(model.output(model.joint(sequences)))
        target = torch.from_numpy(targets[users]).to(device)
        if exclude_history:
            rows, cols = (torch.from_numpy(a).to(device) for a in _history_cells(data, users, cut))
        else:
            rows = cols = torch.zeros(0, dtype=torch.long, device=device)
        ranks.append(rank_of_target(_mask(scores, rows, cols, target), target).cpu().numpy())
    rank = np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)
    return pd.DataFrame({"user": data.user_ids, "history": data.lengths - cut, "target": data.item_ids[targets - 1],
                         "target_rank": rank, "hit": rank < n})
