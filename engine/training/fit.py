"""The one training loop (`fit`: epochs, validation, early stopping, checkpoints) for AutoMLP and the
SASRec baseline, and `retrain`, AutoMLP's retraining phase with the chosen length."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from engine.core.config import RunConfig
from engine.core.events import (
    EpochFinished,
    Message,
    Observer,
    PhaseFinished,
    PhaseStarted,
    StepClock,
    StepFinished,
    Throttle,
)
from engine.data.sequences import SequenceData
from engine.evaluation.metrics import evaluate, protocol_label
from engine.models.automlp import AutoMLP, ModelShape, build_model
from engine.training.batches import batch_loss, steps_per_epoch, training_batches
from engine.training.checkpoint import (
    Checkpoint,
    pack_module,
    pack_optimizer,
    pack_rng,
    unpack_optimizer,
    unpack_rng,
    unpack_state,
)
from engine.training.device import resolve_device, seed_everything, subnormals_flushed
from engine.training.distributed import (
    Group,
    broadcast_parameters,
    evaluate_shared,
    optimizer_parameters,
    seed_rank_stream,
    shared_backward,
)


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
            on_epoch_end: Callable[[Checkpoint], None] | None = None, group: Group | None = None) -> RetrainResult:
    """Trains a fresh model with the long-term module and the `chosen_length` short-term module only,
    with `fit` (across the ranks of `group` under torchrun)."""
    config = config.fitted_to(data.history_lengths("train"), data.n_items)  # "auto" left by a direct caller
    device = device or resolve_device(config.device)
    rng = seed_everything(config.seed + 1)
    shape = ModelShape.from_config(config, data.n_items, [chosen_length], data.features)
    model = build_model(shape, data.features, device)
    return fit(model, data, config, rng, observer, device, f"k = {chosen_length}, up to {config.retrain_epochs} epochs",
               resume, on_epoch_end, group)


def scheduled_lr(config: RunConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate of retraining step `step` (from 0): a linear rise to config.lr over the first
    config.lr_warmup_epochs, then config.lr held, or with lr_decay = "cosine" a half cosine from config.lr
    down to 0 at the last step of config.retrain_epochs. A function of the step alone, so a resumed run
    continues the same schedule."""
    warmup = config.lr_warmup_epochs * steps_per_epoch
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.lr_decay == "cosine":
        progress = (step - warmup) / max(1, config.retrain_epochs * steps_per_epoch - warmup)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return config.lr


def fit(model: torch.nn.Module, data: SequenceData, config: RunConfig, rng: np.random.Generator,
        observer: Observer | None = None, device: torch.device | None = None, description: str = "",
        resume: Checkpoint | None = None, on_epoch_end: Callable[[Checkpoint], None] | None = None,
        group: Group | None = None) -> RetrainResult:
    """Trains `model` (AutoMLP, or any model with its `hidden`/`score` interface, such as the SASRec
    baseline) on `training_batches` drawn from `rng`: Adam (config.lr, by `scheduled_lr`), validation under
    config.protocol after every epoch, early stopping on validation NDCG@10 with config.patience; the best
    epoch's weights are restored. Events: phase "retrain".

    `on_epoch_end` receives a checkpoint after every epoch that the training goes on from (or ends with);
    `resume` continues from such a checkpoint as if never stopped.

    With a `group` (torchrun), each rank trains on its slice of every batch and validates its share of
    the users; gradients and metrics are reduced, so every rank holds the same weights and result.
    """
    observer = observer or Observer()
    device = device or next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999),
                                 weight_decay=config.weight_decay)
    label = protocol_label(config.protocol, config.eval_negatives)
    per_epoch = steps_per_epoch(data, config)
    total = per_epoch * config.retrain_epochs
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
    if group is not None:
        broadcast_parameters(model)
    resumed = f", resumed after epoch {resume.epoch}" if resume is not None else ""
    observer.emit(PhaseStarted("retrain", total, (description or f"up to {config.retrain_epochs} epochs") + resumed,
                               config.retrain_epochs))
    clock, throttle = StepClock(total, step, spent), Throttle(done_steps=step)  # a resumed run reports the same steps
    with subnormals_flushed(device):  # subnormals: 7.5x slower on x86
        for epoch in range(first_epoch, config.retrain_epochs + 1):
            model.train()
            losses = []
            if group is not None:
                seed_rank_stream(config.seed, "retrain", epoch, group)
            for batch in training_batches(data, config, rng, device):
                observer.check()
                for parameters in optimizer.param_groups:
                    parameters["lr"] = scheduled_lr(config, step, per_epoch)
                if group is None:
                    loss = batch_loss(model, batch, config)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    losses.append(loss.item())
                else:
                    optimizer.zero_grad(set_to_none=True)
                    losses.append(shared_backward(lambda part: batch_loss(model, part, config), batch,
                                                  optimizer_parameters(optimizer), group))
                    optimizer.step()
                step += 1
                if throttle.ready():
                    observer.emit(StepFinished("retrain", step, total, {"train_loss": losses[-1]}, clock.eta(step)))
            if group is None:
                valid = evaluate(model, data, "valid", config.protocol, config.eval_negatives, config.seed,
                                 observer=observer)
            else:
                valid = evaluate_shared(model, data, "valid", config.protocol, config.eval_negatives, config.seed,
                                        group, observer)
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
