"""Where short-term interest helps: test metrics per history-length bucket, for the model and for its
long-term module alone (the same model with the short-term part of every score left out)."""

from __future__ import annotations

import numpy as np

from engine.data.sequences import SequenceData
from engine.evaluation.metrics import metrics_from_ranks, target_ranks

# Upper ends (inclusive) of the buckets of history length, the items a user had before the target;
# a last bucket takes everything longer.
BUCKET_ENDS = (5, 10, 20, 50, 100, 200)
REPORTED = ("HR@10", "NDCG@10")


def bucket_labels(ends=BUCKET_ENDS) -> list[str]:
    starts = (1,) + tuple(end + 1 for end in ends)
    return [f"{s}-{e}" for s, e in zip(starts, ends)] + [f"{starts[-1]}+"]


def ranks_with_long_term(model, data: SequenceData, split: str = "test", protocol: str = "full",
                         negatives: int = 100, seed: int = 0, observer=None) -> np.ndarray:
    """The target ranks of the model, and for AutoMLP of its long-term module alone: (1 or 2, n_users),
    from one pass of the model over every user (the model's own scores exactly as `model(inputs)`)."""
    if not hasattr(model, "contributions"):
        return np.atleast_2d(target_ranks(model, data, split, protocol, negatives, seed, observer=observer))
    scores = _ModelAndLongTerm(model)
    return target_ranks(model, data, split, protocol, negatives, seed, observer=observer,
                        scorers=[scores.model, scores.long_term])


def metrics_by_length(model, data: SequenceData, split: str = "test", protocol: str = "full",
                      negatives: int = 100, seed: int = 0, observer=None, ranks: np.ndarray | None = None) -> list[dict]:
    """One row per non-empty bucket of history length: `bucket`, `users`, and `model` (HR@10, NDCG@10);
    for a model with long- and short-term parts (AutoMLP) also `long_term_only` and `short_term_gain`
    (the model's NDCG@10 minus the long-term module's). `ranks`: `ranks_with_long_term`'s, when at hand."""
    if ranks is None:
        ranks = ranks_with_long_term(model, data, split, protocol, negatives, seed, observer)
    split_parts = len(ranks) == 2
    bucket = np.searchsorted(np.asarray(BUCKET_ENDS), data.history_lengths(split), side="left")
    rows = []
    for index, label in enumerate(bucket_labels()):
        users = bucket == index
        if not users.any():
            continue
        row = {"bucket": label, "users": int(users.sum()), "model": _reported(ranks[0, users])}
        if split_parts:
            row["long_term_only"] = _reported(ranks[1, users])
            row["short_term_gain"] = row["model"]["NDCG@10"] - row["long_term_only"]["NDCG@10"]
        rows.append(row)
    return rows


def add_candidates_by_length(rows: list[dict], models: dict, data: SequenceData, split: str = "test") -> None:
    """Adds to each bucket row `per_candidate` {str(k): NDCG@10} of the models trained alone with each
    candidate length (an exhaustive run's), ranked in one pass over the users."""
    lengths = list(models)
    for model in models.values():
        model.eval()
    ranks = np.atleast_2d(target_ranks(models[lengths[0]], data, split, scorers=list(models.values())))
    bucket = np.searchsorted(np.asarray(BUCKET_ENDS), data.history_lengths(split), side="left")
    labels = bucket_labels()
    for row in rows:
        users = bucket == labels.index(row["bucket"])
        row["per_candidate"] = {str(k): _reported(ranks[i, users])["NDCG@10"] for i, k in enumerate(lengths)}


def format_by_length(rows: list[dict]) -> str:
    """The rows as a text table (the CLI's, after a run)."""
    split_parts = bool(rows) and "long_term_only" in rows[0]
    header = f"{'history':>9}{'users':>8}{'NDCG@10':>9}{'HR@10':>8}"
    if split_parts:
        header += f"{'long-term only NDCG@10':>24}{'gain':>9}"
    candidates = list(rows[0].get("per_candidate", {})) if rows else []
    header += "".join(f"{'k=' + k:>9}" for k in candidates)
    lines = ["test NDCG@10 by history length [full ranking]"
             + ("; k=...: each candidate length trained alone" if candidates else ""), header]
    for row in rows:
        line = f"{row['bucket']:>9}{row['users']:>8}{row['model']['NDCG@10']:9.4f}{row['model']['HR@10']:8.4f}"
        if split_parts:
            line += f"{row['long_term_only']['NDCG@10']:24.4f}{row['short_term_gain']:+9.4f}"
        line += "".join(f"{row['per_candidate'][k]:9.4f}" for k in candidates)
        lines.append(line)
    return "\n".join(lines)


class _ModelAndLongTerm:
    """Two scorers of one batch that share the model's pass over it: the model's scores (as its forward
    computes them) and the long-term module's part plus the bias (AutoMLP.contributions without the
    short-term part)."""

    def __init__(self, model) -> None:
        self._model = model
        self._inputs = None
        self._joint = None

    def _joint_of(self, inputs):
        if inputs is not self._inputs:
            self._inputs, self._joint = inputs, self._model.joint(inputs)
        return self._joint

    def model(self, inputs):
        return self._model.score(self._model.output(self._joint_of(inputs)))

    def long_term(self, inputs):
        D = self._model.shape.embedding_dim
        z = self._joint_of(inputs)
        weight = self._model.output.weight  # (D, 2D): [W_s | W_l]
        scores = self._model.items.scores(z[:, D:] @ weight[:, D:].T + self._model.output.bias)
        return scores  # column 0 (padding) is -inf, as in the model's own scores


def _reported(ranks: np.ndarray) -> dict[str, float]:
    metrics = metrics_from_ranks(ranks, cutoffs=(10,))
    return {name: metrics[name] for name in REPORTED}
