"""Batches, losses, the retraining phase and the whole run: search -> retrain -> evaluate.

Training modes (DESIGN.md, Training modes):
- `causal`: each epoch, one window per user ending at a random point of its training sequence; the
  causal model predicts the next item at every position of the window in one pass.
- `sampled`: each epoch, one random prefix per user, predicted at its last position (the paper's model).
- `faithful`: every prefix of every training sequence is a sample, as the paper and RecBole train.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from engine.checkpoint import (Checkpoint, pack_module, pack_optimizer, pack_rng, unpack_optimizer, unpack_rng,
                               unpack_state)
from engine.config import ConfigError, RunConfig
from engine.events import EpochFinished, Message, Observer, PhaseFinished, PhaseStarted, StepClock, StepFinished, Throttle
from engine.metrics import evaluate, protocol_label
from engine.model import AutoMLP, ModelShape, build_model
from engine.sequences import DataError, SequenceData, window_batch


@dataclass
class Batch:
    inputs: torch.Tensor  # (B, T) left-padded item ids
    targets: torch.Tensor  # (B,) next item after the last position, or (B, T) at every position (0 = none)


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when torch sees a GPU, else the CPU; `cuda` without a GPU is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        built = "with" if torch.backends.cuda.is_built() else "without"
        raise ConfigError(f"device: cuda was asked for, but torch {torch.__version__} (built {built} CUDA) "
                          "sees no GPU; use device = \"auto\" or \"cpu\"")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device: {name!r} is not one of auto, cpu, cuda")
    return torch.device(name)


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


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
    else:
        sample_starts = starts
        ends = starts + rng.integers(1, train_lengths)  # e uniform in [1, n_train - 1]
    order = rng.permutation(len(ends))
    batches = []
    for first in range(0, len(order), config.batch_size):
        pick = order[first:first + config.batch_size]
        s, e = sample_starts[pick], ends[pick]
        inputs = window_batch(data.items, s, e, T)
        if config.mode == "causal":
            targets = window_batch(data.items, s + 1, e + 1, T)
        else:
            targets = data.items[e]
        batches.append(Batch(torch.from_numpy(inputs).to(device), torch.from_numpy(targets).to(device)))
    return batches


def validation_batches(data: SequenceData, config: RunConfig, rng: np.random.Generator,
                       device: torch.device) -> Iterator[Batch]:
    """Shuffled minibatches of (validation input, validation target), for the search's alpha steps;
    endless: a new permutation of the users each pass. Take a fresh stream each epoch, so that the
    random state at an epoch's end is all a checkpoint needs to resume the next epoch exactly."""
    targets = data.targets("valid")
    while True:
        order = rng.permutation(data.n_users)
        for first in range(0, len(order), config.batch_size):
            users = order[first:first + config.batch_size]
            inputs = data.histories("valid", config.max_length, users)
            yield Batch(torch.from_numpy(inputs).to(device), torch.from_numpy(targets[users]).to(device))


def batch_loss(model: AutoMLP, batch: Batch, config: RunConfig) -> torch.Tensor:
    """Mean next-item loss of a batch: softmax cross-entropy over all items (`ce`) or paper Eq. 5 (`bce`)."""
    if batch.targets.dim() == 2:  # every position (causal)
        hidden = model.hidden(batch.inputs, all_positions=True)  # (B, T, D)
        present = batch.targets > 0
        hidden, targets = hidden[present], batch.targets[present]  # (n, D), (n,)
    else:
        hidden, targets = model.hidden(batch.inputs), batch.targets  # (B, D), (B,)
    if config.loss == "ce":
        return F.cross_entropy(model.score(hidden), targets)
    items = model.items.all_items()  # (N + 1, D)
    negatives = torch.randint(1, items.shape[0], (len(targets), config.negatives), device=targets.device)
    positive = (hidden * items[targets]).sum(-1)  # (n,)
    negative = (hidden[:, None, :] * items[negatives]).sum(-1)  # (n, negatives)
    return -(F.logsigmoid(positive) + F.logsigmoid(-negative).sum(-1)).mean()


@dataclass
class RetrainResult:
    model: AutoMLP
    history: list[dict] = field(default_factory=list)  # per epoch: train_loss, valid metrics
    best_epoch: int = 0
    best_valid: dict = field(default_factory=dict)
    stopped_early: bool = False
    seconds: float = 0.0


def retrain(data: SequenceData, config: RunConfig, chosen_length: int, observer: Observer | None = None,
            device: torch.device | None = None, resume: Checkpoint | None = None,
            on_epoch_end: Callable[[Checkpoint], None] | None = None) -> RetrainResult:
    """Trains a fresh model with the long-term module and the `chosen_length` short-term module only,
    with `fit`."""
    device = device or resolve_device(config.device)
    rng = seed_everything(config.seed + 1)
    shape = ModelShape.from_config(config, data.n_items, [chosen_length], data.features)
    model = build_model(shape, data.features, device)
    return fit(model, data, config, rng, observer, device, f"k = {chosen_length}, up to {config.retrain_epochs} epochs",
               resume, on_epoch_end)


def fit(model: torch.nn.Module, data: SequenceData, config: RunConfig, rng: np.random.Generator,
        observer: Observer | None = None, device: torch.device | None = None, description: str = "",
        resume: Checkpoint | None = None, on_epoch_end: Callable[[Checkpoint], None] | None = None) -> RetrainResult:
    """Trains `model` (AutoMLP, or any model with its `hidden`/`score` interface, such as the SASRec
    baseline) on `training_batches` drawn from `rng`: Adam (config.lr), validation under config.protocol
    after every epoch, early stopping on validation NDCG@10 with config.patience; the best epoch's weights
    are restored. Events: phase "retrain".

    `on_epoch_end` receives a checkpoint after every epoch that the training goes on from (or ends with);
    `resume` continues from such a checkpoint as if never stopped.
    """
    observer = observer or Observer()
    device = device or next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999),
                                 weight_decay=config.weight_decay)
    label = protocol_label(config.protocol, config.eval_negatives)
    total = steps_per_epoch(data, config) * config.retrain_epochs
    result = RetrainResult(model=model)
    best_state, best_score, waited, step, first_epoch, spent = None, -1.0, 0, 0, 1, 0.0
    if resume is not None:
        model.load_state_dict(unpack_state(resume.tensors, "model"))
        unpack_optimizer(optimizer, resume.tensors, resume.state["optimizer"], "optimizer")
        unpack_rng(rng, resume.tensors, resume.state["rng"])
        best_state = {name: tensor.to(device) for name, tensor in unpack_state(resume.tensors, "best").items()}
        best_score, waited = resume.state["best_score"], resume.state["waited"]
        result.history, result.best_epoch, result.best_valid = (resume.state["history"], resume.state["best_epoch"],
                                                                resume.state["best_valid"])
        step, first_epoch, spent = resume.step, resume.epoch + 1, resume.seconds
    resumed = f", resumed after epoch {resume.epoch}" if resume is not None else ""
    observer.emit(PhaseStarted("retrain", total, (description or f"up to {config.retrain_epochs} epochs") + resumed))
    clock, throttle = StepClock(total, step, spent), Throttle()
    for epoch in range(first_epoch, config.retrain_epochs + 1):
        model.train()
        losses = []
        for batch in training_batches(data, config, rng, device):
            observer.check()
            loss = batch_loss(model, batch, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if throttle.ready():
                observer.emit(StepFinished("retrain", step, total, {"train_loss": losses[-1]}, clock.eta(step)))
        valid = evaluate(model, data, "valid", config.protocol, config.eval_negatives, config.seed, observer=observer)
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)), **valid}
        result.history.append(record)
        observer.emit(EpochFinished("retrain", epoch, record, label))
        if valid["NDCG@10"] > best_score:
            best_score, best_state, waited = valid["NDCG@10"], copy.deepcopy(model.state_dict()), 0
            result.best_epoch, result.best_valid = epoch, valid
        else:
            waited += 1
            if waited >= config.patience:
                result.stopped_early = True
                observer.emit(Message(f"early stop after epoch {epoch}: validation NDCG@10 has not improved "
                                      f"for {config.patience} epochs (best {best_score:.4f} at epoch "
                                      f"{result.best_epoch})"))
                break
        if on_epoch_end is not None:
            optimizer_tensors, optimizer_state = pack_optimizer(optimizer, "optimizer")
            rng_tensors, rng_state = pack_rng(rng)
            on_epoch_end(Checkpoint(
                "retrain", epoch, step, clock.elapsed, config.to_dict(), fingerprint="",
                tensors={**pack_module(model, "model"), **{f"best.{k}": v for k, v in best_state.items()},
                         **optimizer_tensors, **rng_tensors},
                state={"optimizer": optimizer_state, "rng": rng_state, "best_score": best_score, "waited": waited,
                       "history": result.history, "best_epoch": result.best_epoch, "best_valid": result.best_valid}))
    model.load_state_dict(best_state)
    result.seconds = clock.elapsed
    observer.emit(PhaseFinished("retrain", result.seconds))
    return result
