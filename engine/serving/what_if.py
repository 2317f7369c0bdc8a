"""What a user's top-N would be under each candidate short-term length (issue 14, item 5).

Two sources of per-length models, whichever the run kept:
- the search's supernet (all candidate short-term modules and alpha): the top-N of k is the supernet's
  with alpha one-hot on k, i.e. x_s = x_s(k) exactly (AutoMLP.joint sums softmax(alpha)_j * x_s(j));
- an exhaustive run's models, one per k, each trained with that window alone.
The baseline is the same network without any short-term window (x_s = 0 before the output LayerNorm):
the supernet's, or for exhaustive runs the retrained model's. History items are excluded as `recommend`
excludes them (the held-out target keeps its score).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.data.sequences import SequenceData
from engine.models.automlp import AutoMLP
from engine.serving.recommend import RecommendError, _history_cells, _mask, _plain, find_user


@dataclass
class WhatIfModels:
    """The models a what-if needs: `supernet`, or `per_length` {k: model} with `baseline` (a model whose
    long-term module alone gives the baseline). `weights` {k: softmax(alpha)_k} of the run's search."""

    candidate_lengths: tuple[int, ...]
    weights: dict[int, float]
    chosen_length: int
    supernet: AutoMLP | None = None
    per_length: dict[int, AutoMLP] | None = None
    baseline: AutoMLP | None = None

    @property
    def kind(self) -> str:
        return "supernet" if self.supernet is not None else "exhaustive"


@dataclass(frozen=True)
class WindowTopN:
    length: int | None  # None: the baseline, no short-term window
    weight: float | None  # softmax(alpha) of k in the run's search (None for the baseline)
    items: list  # external ids, best first
    titles: list
    brought_in: list  # external ids in this top-N and not in the baseline's
    pushed_out: list  # external ids in the baseline's top-N and not in this one


@dataclass(frozen=True)
class WhatIf:
    user_id: object
    n: int
    kind: str  # "supernet" or "exhaustive"
    chosen_length: int
    baseline: WindowTopN
    windows: list[WindowTopN]  # one per candidate k, in candidate order


def one_hot_joint(model: AutoMLP, sequences: torch.Tensor, length: int | None) -> torch.Tensor:
    """(B, 2D) LayerNorm([x_s ; x_l]) with x_s the short-term output of the candidate `length` alone
    (weight 1 on it, 0 on the others), or x_s = 0 when `length` is None; the model's alpha is untouched."""
    lengths = list(model.shape.candidate_lengths)
    weights = torch.zeros(len(lengths), device=model.output.weight.device, dtype=model.output.weight.dtype)
    if length is not None:
        if length not in lengths:
            raise RecommendError(f"k = {length} is not a candidate of this model ({', '.join(map(str, lengths))})")
        weights[lengths.index(length)] = 1.0
    return model.joint(sequences, weights=weights)


def one_hot_scores(model: AutoMLP, sequences: torch.Tensor, length: int | None) -> torch.Tensor:
    """(B, N + 1) scores with only the window `length` (None: no short-term window)."""
    return model.score(model.output(one_hot_joint(model, sequences, length)))


@torch.inference_mode()
def what_if(source, data: SequenceData, user_id, n: int = 10) -> WhatIf:
    """The user's top-n under each candidate k and without a short-term window, with what each k brings in
    and pushes out. `source` is a Bundle (its `what_if`) or a WhatIfModels. RecommendError for an unknown
    user, n <= 0, or a bundle that kept no what-if models."""
    models = source if isinstance(source, WhatIfModels) else getattr(source, "what_if", None)
    if models is None:
        raise RecommendError("this bundle has no what-if models: it was saved before they were kept, or its run "
                             "had a single candidate length; retrain and export it again")
    if n <= 0:
        raise RecommendError(f"n must be positive, got {n}")
    user = find_user(data, user_id)
    any_model = models.supernet if models.supernet is not None else models.baseline
    if any_model.shape.n_items != data.n_items:
        raise RecommendError(f"the what-if models score {any_model.shape.n_items} items but {data.name} has "
                             f"{data.n_items}")
    device = next(any_model.parameters()).device
    sequences = torch.from_numpy(data.histories("test", any_model.shape.max_length, np.array([user]),
                                                trim=True)).to(device)
    rows, cols = (torch.from_numpy(a).to(device) for a in _history_cells(data, np.array([user]), 1))
    target = torch.tensor([data.target(user, "test")], device=device)

    def top(model: AutoMLP, length: int | None) -> list[int]:
        model.eval()
        ranked = _mask(one_hot_scores(model, sequences, length), rows, cols, target)[0]
        return torch.topk(ranked, min(n, int(torch.isfinite(ranked).sum()))).indices.tolist()

    def listed(length: int | None, items: list[int], baseline: list[int]) -> WindowTopN:
        ids = [_plain(data.item_ids[i - 1]) for i in items]
        base_ids = [_plain(data.item_ids[i - 1]) for i in baseline]
        return WindowTopN(length, None if length is None else models.weights.get(length), ids,
                          [data.item_titles.get(i) for i in ids],
                          [i for i in ids if i not in set(base_ids)], [i for i in base_ids if i not in set(ids)])

    if models.supernet is not None:
        baseline_items = top(models.supernet, None)
        per_k = {k: top(models.supernet, k) for k in models.candidate_lengths}
    else:
        baseline_items = top(models.baseline, None)
        per_k = {k: top(models.per_length[k], k) for k in models.candidate_lengths}
    return WhatIf(_plain(data.user_ids[user]), n, models.kind, models.chosen_length,
                  listed(None, baseline_items, baseline_items),
                  [listed(k, per_k[k], baseline_items) for k in models.candidate_lengths])


def format_what_if(result: WhatIf) -> str:
    """Plain text for the CLI: per k its softmax(alpha), then its top-n with + (brought in) marks, then
    what it pushed out (-)."""
    lines = [f"what if, user {result.user_id}: top {result.n} under each window ({result.kind}; "
             f"chosen k = {result.chosen_length})",
             "  no short-term window: " + ", ".join(map(str, result.baseline.items))]
    for window in result.windows:
        weight = "n/a" if window.weight is None else f"{window.weight:.3f}"
        chosen = "  <- chosen" if window.length == result.chosen_length else ""
        lines.append(f"  k = {window.length} (softmax(alpha) {weight}){chosen}")
        brought = set(window.brought_in)
        lines.append("    " + ", ".join(f"+{i}" if i in brought else f" {i}" for i in window.items))
        if window.pushed_out:
            lines.append("    pushed out: " + ", ".join(f"-{i}" for i in window.pushed_out))
    return "\n".join(lines)
