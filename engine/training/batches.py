"""Training batches for each mode, validation batches for the search, and the loss of a batch.

Training modes (DESIGN.md, Training modes):
- `causal`: each epoch, one window per user ending at a random point of its training sequence (or, with
  `training_windows = "last"`, its last T items); the causal model predicts the next item at every position
  of the window in one pass.
- `sampled`: each epoch, one random prefix per user, predicted at its last position (the paper's model).
- `faithful`: every prefix of every training sequence is a sample, as the paper and RecBole train.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from engine.core.config import RunConfig
from engine.data.sequences import (
    DataError,
    SequenceData,
    cut_width,
    window_batch,
    window_widths,
)
from engine.models.automlp import AutoMLP
from engine.training.device import loss_dtype


@dataclass
class Batch:
    inputs: torch.Tensor  # (B, T) left-padded item ids
    targets: torch.Tensor  # (B,) next item after the last position, or (B, T) at every position (0 = none)
    sample: "SampledItems | None" = None  # the items a sampled softmax scores (loss "sampled_softmax")
    # row_groups of the rows, computed where the batch is built from numpy lengths, so that a training step
    # on a GPU never waits to read the lengths back; None: batch_loss computes them
    groups: "list[tuple[np.ndarray, int]] | None" = None


@dataclass
class SampledItems:
    """The items one batch's sampled softmax scores: every target of the batch, then distinct uniform
    draws that are not among them, so that each item is one column and a row's target is never also a
    negative (no accidental hits)."""

    items: torch.Tensor  # (C,) item ids
    log_inclusion: torch.Tensor  # (C,) log P(item is in the set): the logQ correction
    target_columns: torch.Tensor  # like Batch.targets: each target's column in `items` (0 where no target)


def target_frequency(data: SequenceData) -> np.ndarray:
    """(n_items + 1,) how often each item is a training target, as a fraction: in-batch negatives are
    drawn with these probabilities, so their logQ correction needs them."""
    keep = np.ones(data.n_interactions, dtype=bool)
    ends = data.offsets[1:]
    keep[ends - 1] = keep[ends - 2] = False  # the test and validation targets
    keep[data.offsets[:-1]] = False  # a sequence's first item is never a target
    counts = np.bincount(data.items[keep], minlength=data.n_items + 1).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def sample_items(targets: np.ndarray, frequency: np.ndarray, negatives: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(items, log_inclusion, target_columns) of a sampled softmax over `targets` (0 = none).

    An item is in the set if one of the batch's n targets (drawn by `frequency`) or one of the
    `negatives` uniform draws is it: P = 1 - (1 - f_i)^n (1 - 1/N)^negatives. Subtracting log P from the
    logits makes the sampled softmax an unbiased stand-in for the full one (Bengio and Senecal 2008; Yi et
    al. 2019): popular items, in nearly every batch as someone's target, are not over-penalised.
    """
    n_items = len(frequency) - 1
    real = targets[targets > 0]
    positives = np.unique(real)
    drawn = np.unique(rng.integers(1, n_items + 1, negatives))
    items = np.concatenate([positives, drawn[~np.isin(drawn, positives, assume_unique=True)]])
    log_miss = (len(real) * np.log1p(-np.minimum(frequency[items], 1 - 1e-12))
                + negatives * np.log1p(-1 / n_items))
    log_inclusion = np.log(-np.expm1(np.minimum(log_miss, -1e-12)))
    columns = np.where(targets > 0, np.searchsorted(positives, targets), 0)
    return items, log_inclusion.astype(np.float32), columns


def _sampled_items(targets: np.ndarray, frequency: np.ndarray | None, config: RunConfig,
                   rng: np.random.Generator, device: torch.device) -> SampledItems | None:
    """A batch's sampled items when the loss is "sampled_softmax", else None."""
    if config.loss != "sampled_softmax":
        return None
    items, log_inclusion, columns = sample_items(targets, frequency, config.sampled_negatives, rng)
    return SampledItems(torch.from_numpy(items).to(device), torch.from_numpy(log_inclusion).to(device),
                        torch.from_numpy(columns).to(device))


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Indices 0..n-1 in batches of `batch_size`, in a fresh random order."""
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _trainable_users(data: SequenceData) -> np.ndarray:
    """Users whose training sequence (all but the last two items) has at least one (input, next) pair."""
    return np.flatnonzero(data.lengths - 2 >= 2)


def steps_per_epoch(data: SequenceData, config: RunConfig) -> int:
    users = _trainable_users(data)
    samples = int((data.lengths[users] - 3).sum()) if config.mode == "faithful" else len(users)
    return -(-samples // config.batch_size)


def training_batches(data: SequenceData, config: RunConfig, rng: np.random.Generator,
                     device: torch.device) -> list[Batch]:
    """One epoch of training batches for the configured mode, shuffled by `rng`."""
    T = config.max_length
    users = _trainable_users(data)
    if len(users) == 0:
        raise DataError(f"{data.name}: no user has a training sequence of two or more items "
                        "(each user needs at least 4 interactions to train)")
    starts = data.offsets[users]
    train_lengths = data.lengths[users] - 2
    if config.mode == "faithful":
        # Every prefix: (user, e) for e in 1..n_train-1 predicts item e from items [0, e).
        repeat = train_lengths - 1
        sample_starts = np.repeat(starts, repeat)
        ends = np.concatenate([np.arange(1, n) for n in train_lengths]) + sample_starts
    elif config.training_windows == "last":  # the whole training sequence; the cut below keeps its last T
        sample_starts = starts
        ends = starts + train_lengths - 1
    else:
        sample_starts = starts
        ends = starts + rng.integers(1, train_lengths)  # e uniform in [1, n_train - 1]
    frequency = target_frequency(data) if config.loss == "sampled_softmax" else None
    batches = []
    # Shuffled, not grouped by length: batches of similar lengths learned about half as fast on ML-1M
    # (validation NDCG@10 0.065 against 0.120 after 7 epochs, BENCHMARKS.md); each batch is still cut to
    # its longest window.
    for pick in shuffled_batches(len(sample_starts), config.batch_size, rng):
        s, e = sample_starts[pick], ends[pick]
        width = cut_width(e - s, T)  # only the real positions, and under 1/8 of a row of padding
        inputs = window_batch(data.items, s, e, width)
        groups = row_groups(np.minimum(e - s, width), width)
        if config.mode == "causal":
            targets = window_batch(data.items, s + 1, e + 1, width)
        else:
            targets = data.items[e]
        batches.append(Batch(torch.from_numpy(inputs).to(device), torch.from_numpy(targets).to(device),
                             _sampled_items(targets, frequency, config, rng, device), groups))
    return batches


def validation_batches(data: SequenceData, config: RunConfig, rng: np.random.Generator,
                       device: torch.device) -> Iterator[Batch]:
    """Shuffled minibatches of (validation input, validation target), for the search's alpha steps;
    endless: a new permutation of the users each pass. Take a fresh stream each epoch, so that the
    random state at an epoch's end is all a checkpoint needs to resume the next epoch exactly."""
    targets = data.targets("valid")
    frequency = target_frequency(data) if config.loss == "sampled_softmax" else None
    while True:
        for users in shuffled_batches(data.n_users, config.batch_size, rng):  # as the training batches
            inputs = data.histories("valid", config.max_length, users, trim=True)
            yield Batch(torch.from_numpy(inputs).to(device), torch.from_numpy(targets[users]).to(device),
                        _sampled_items(targets[users], frequency, config, rng, device),
                        row_groups((inputs > 0).sum(axis=1), inputs.shape[1]))


# A shuffled batch mixes short and long windows: cut to its longest, most of a short row is padding. Its
# rows are therefore computed in up to MAX_ROW_GROUPS groups of similar length, each cut to its own longest
# window. The batch (and so the gradient) is the same as in one pass: rows are independent in both models,
# so only float sums change order. A group costs GROUP_POSITIONS positions more than its rows alone (the
# fixed cost of one more pass through the model's layers).
MAX_ROW_GROUPS = 4
GROUP_POSITIONS = 512


def row_groups(real_lengths: np.ndarray, max_length: int, max_groups: int = MAX_ROW_GROUPS,
               group_positions: int = GROUP_POSITIONS) -> list[tuple[np.ndarray, int]]:
    """(rows, width) groups of a batch's rows by real length: the rows sorted by the width `cut_width` gives
    them, split into at most `max_groups` runs of whole width classes, each run as wide as its widest,
    minimising sum(rows x width) + group_positions per group."""
    row_widths = window_widths(real_lengths, max_length)
    widths, counts = np.unique(row_widths, return_counts=True)
    rows_upto = np.concatenate([[0], np.cumsum(counts)])  # rows in the classes before class j
    m = len(widths)
    # cost[i, j]: the classes i..j-1 as one group; best[j]: the least cost of classes 0..j-1 so far
    i, j = np.meshgrid(np.arange(m + 1), np.arange(m + 1), indexing="ij")
    cost = np.where(i < j, (rows_upto[j] - rows_upto[i]) * widths[np.maximum(j - 1, 0)] + group_positions, np.inf)
    best = np.full(m + 1, np.inf)  # in no group yet: only the empty prefix costs nothing
    best[0] = 0.0
    cuts, whole = [], []  # per number of groups: each prefix's best last cut; the whole batch's cost
    for _ in range(max_groups):
        total = best[:, None] + cost
        cuts.append(total.argmin(axis=0))
        best = total.min(axis=0)
        whole.append(best[m])
    groups_used = int(np.argmin(whole)) + 1
    order = np.argsort(row_widths, kind="stable")
    groups, end = [], m
    for g in range(groups_used - 1, -1, -1):  # back from the last group
        start = int(cuts[g][end])
        groups.append((order[rows_upto[start]:rows_upto[end]], int(widths[end - 1])))
        end = start
    return groups[::-1]


def _rows(batch: Batch, rows: torch.Tensor, width: int) -> Batch:
    """The batch's `rows`, cut to their last `width` columns."""
    targets = batch.targets[rows][:, -width:] if batch.targets.dim() == 2 else batch.targets[rows]
    sample = batch.sample
    if sample is not None:
        columns = sample.target_columns[rows]
        sample = SampledItems(sample.items, sample.log_inclusion, columns[:, -width:] if columns.dim() == 2 else columns)
    return Batch(batch.inputs[rows][:, -width:], targets, sample)


def batch_loss(model: AutoMLP, batch: Batch, config: RunConfig) -> torch.Tensor:
    """Mean next-item loss of a batch: softmax cross-entropy over all items (`ce`), over the batch's
    sampled items (`sampled_softmax`), or paper Eq. 5 (`bce`); its rows computed in groups of similar
    length (`row_groups`)."""
    if MAX_ROW_GROUPS > 1 and len(batch.inputs) > 1:
        groups = batch.groups
        if groups is None:
            groups = row_groups((batch.inputs > 0).sum(dim=1).cpu().numpy(), batch.inputs.shape[1])
        if len(groups) > 1:
            terms = int((batch.targets > 0).sum()) if batch.targets.dim() == 2 else len(batch.targets)
            total = sum(_batch_loss(model, _rows(batch, torch.from_numpy(rows).to(batch.inputs.device), width),
                                    config, "sum") for rows, width in groups)
            return total / max(terms, 1)
    return _batch_loss(model, batch, config, "mean")


def _batch_loss(model: AutoMLP, batch: Batch, config: RunConfig, reduction: str) -> torch.Tensor:
    """The loss of one pass over the batch, its terms' mean or sum (`reduction`)."""
    columns = batch.sample.target_columns if batch.sample is not None else None
    if batch.targets.dim() == 2:  # every position (causal)
        hidden = model.hidden(batch.inputs, all_positions=True)  # (B, T, D)
        present = batch.targets > 0
        hidden, targets = hidden[present], batch.targets[present]  # (n, D), (n,)
        columns = columns[present] if columns is not None else None
    else:
        hidden, targets = model.hidden(batch.inputs), batch.targets  # (B, D), (B,)
    if config.loss in ("ce", "sampled_softmax"):
        # The (n, items) scores are most of a step's work: in bfloat16 an ML-1M step takes 0.75 of the time
        # (BENCHMARKS.md, precision)
        dtype = loss_dtype(config.precision, hidden.device)
        with torch.autocast(hidden.device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            if config.loss == "ce":
                logits = model.score(hidden)  # (n, N + 1)
            else:
                sample = batch.sample
                logits = hidden @ model.items.all_items()[sample.items].T  # (n, C)
        if config.loss == "sampled_softmax":
            logits = logits - sample.log_inclusion.to(logits.dtype)
            targets = columns
        if logits.dtype == torch.float32:
            return F.cross_entropy(logits, targets, reduction=reduction)
        losses = F.cross_entropy(logits, targets, reduction="none").float()  # a bfloat16 sum keeps 3 digits
        return losses.sum() if reduction == "sum" else losses.mean()
    if config.loss != "bce":
        raise ValueError(f"loss {config.loss!r}: fit the configuration to the data first (RunConfig.fitted_to)")
    items = model.items.all_items()  # (N + 1, D)
    negatives = torch.randint(1, items.shape[0], (len(targets), config.negatives), device=targets.device)
    positive = (hidden * items[targets]).sum(-1)  # (n,)
    negative = (hidden[:, None, :] * items[negatives]).sum(-1)  # (n, negatives)
    losses = -(F.logsigmoid(positive) + F.logsigmoid(-negative).sum(-1))
    return losses.sum() if reduction == "sum" else losses.mean()
