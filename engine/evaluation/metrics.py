"""Ranking metrics (HR, NDCG, MRR at 5/10/20), sampled negatives and the evaluation of a model.

Protocols: `full` ranks the target against every item the user has not interacted with; `popularity`
(the paper's Table 2) and `uniform` rank it against `eval_negatives` sampled items that are not in the
user's sequence, drawn once from a seed so that runs compare.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.core.events import Observer
from engine.data.sequences import DataError, SequenceData

CUTOFFS = (5, 10, 20)


def protocol_label(protocol: str, negatives: int = 100) -> str:
    """How a metric was measured, for every place that shows one: `full` or e.g. `popularity-100`."""
    return "full" if protocol == "full" else f"{protocol}-{negatives}"


def metrics_from_ranks(ranks: np.ndarray, cutoffs=CUTOFFS) -> dict[str, float]:
    """Mean HR@K, NDCG@K and MRR@K over targets with 0-based `ranks` (0 = ranked first)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    result = {}
    for k in cutoffs:
        hit = ranks < k
        result[f"HR@{k}"] = float(hit.mean())
        result[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
        result[f"MRR@{k}"] = float(np.where(hit, 1.0 / (ranks + 1.0), 0.0).mean())
    return result


def rank_of_target(scores: torch.Tensor, target_column: int | torch.Tensor = 0) -> torch.Tensor:
    """0-based rank of the target in each row; ties count against the target (no optimistic ties).

    scores: (B, C). target_column: the column of each row's target (an int or a (B,) tensor).
    """
    rows = torch.arange(scores.shape[0], device=scores.device)
    column = torch.as_tensor(target_column, device=scores.device).expand(scores.shape[0])
    target = scores[rows, column][:, None]
    not_target = torch.ones_like(scores, dtype=torch.bool)
    not_target[rows, column] = False
    return ((scores >= target) & not_target).sum(dim=1)


def sample_negatives(data: SequenceData, count: int, by: str, seed: int) -> np.ndarray:
    """(n_users, count) internal item ids, never from the user's own sequence, without repeats.

    `by` is "popularity" (probability proportional to interaction count, as the paper and BERT4Rec)
    or "uniform". The same seed gives the same items.
    """
    rng = np.random.default_rng(seed)
    n = data.n_items
    if by == "popularity":
        weights = data.item_popularity()[1:].astype(np.float64)
    elif by == "uniform":
        weights = np.ones(n)
    else:
        raise ValueError(f"unknown negative sampling {by!r}")
    cumulative = np.cumsum(weights / weights.sum())
    out = np.zeros((data.n_users, count), dtype=np.int64)
    for user in range(data.n_users):
        seen = np.unique(data.sequence(user))
        available = n - len(seen)
        if available < count:
            raise DataError(f"user {data.user_ids[user]} has interacted with all but {available} items: "
                            f"cannot sample {count} negatives; lower eval_negatives")
        chosen: list[int] = []
        taken = set(seen.tolist())
        while len(chosen) < count:
            draws = np.searchsorted(cumulative, rng.random(2 * count), side="right") + 1
            for item in np.minimum(draws, n).tolist():
                if item not in taken:
                    taken.add(item)
                    chosen.append(item)
                    if len(chosen) == count:
                        break
        out[user] = chosen
    return out


def evaluate(model, data: SequenceData, split: str, protocol: str = "full", negatives: int = 100,
             seed: int = 0, batch_size: int = 256, observer: Observer | None = None) -> dict[str, float]:
    """HR/NDCG/MRR@5/10/20 of `model` on the `valid` or `test` targets of every user.

    Full ranking masks the user's other history items. Sampled protocols draw their negatives from
    `seed` (the same for every model, so that runs compare).
    """
    return metrics_from_ranks(target_ranks(model, data, split, protocol, negatives, seed, batch_size, observer))


@torch.no_grad()
def target_ranks(model, data: SequenceData, split: str, protocol: str = "full", negatives: int = 100,
                 seed: int = 0, batch_size: int = 256, observer: Observer | None = None,
                 scorers=None) -> np.ndarray:
    """The 0-based rank of every user's `split` target, in user order: (n_users,), or (len(scorers),
    n_users) when `scorers` gives several ways to score a batch from the model's input (each
    `inputs -> (B, N + 1)` scores; all from one pass over the users). Ranking as in `evaluate`."""
    observer = observer or Observer()
    model.eval()
    device = next(model.parameters()).device
    T = model.shape.max_length
    targets = data.targets(split)
    sampled = None if protocol == "full" else sample_negatives(data, negatives, protocol, seed)
    cut = 2 if split == "valid" else 1
    scorers = [model] if scorers is None else scorers
    ranks = np.zeros((len(scorers), data.n_users), dtype=np.int64)
    # Users in order of history length, each batch cut to its longest history: the same scores as
    # batches padded to T (the models ignore padding), computing almost only real positions.
    by_length = np.argsort(data.history_lengths(split), kind="stable")
    for start in range(0, data.n_users, batch_size):
        observer.check()
        users = by_length[start:start + batch_size]
        inputs = torch.from_numpy(data.histories(split, T, users, trim=True)).to(device)
        target = torch.from_numpy(targets[users]).to(device)
        history = None
        if sampled is None:
            rows, items = _history_cells(data, users, cut)
            history = torch.from_numpy(rows).to(device), torch.from_numpy(items).to(device)
        for row, scorer in enumerate(scorers):
            scores = scorer(inputs)  # (B, N + 1)
            if sampled is None:
                target_scores = scores.gather(1, target[:, None])
                scores[history] = float("-inf")
                scores.scatter_(1, target[:, None], target_scores)
                ranks[row, users] = rank_of_target(scores, target).cpu().numpy()
            else:
                candidates = torch.cat([target[:, None], torch.from_numpy(sampled[users]).to(device)], dim=1)
                ranks[row, users] = rank_of_target(scores.gather(1, candidates), 0).cpu().numpy()
    return ranks[0] if len(scorers) == 1 else ranks


def _history_cells(data: SequenceData, users: np.ndarray, cut: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and item of every history item of the batch's users (the split's input sequence)."""
    starts = data.offsets[users]
    ends = data.offsets[users + 1] - cut
    lengths = ends - starts
    rows = np.repeat(np.arange(len(users)), lengths)
    index = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if len(users) else np.zeros(0, int)
    return rows, data.items[index]
