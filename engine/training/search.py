"""The search phase (paper Algorithm 1): architecture weights alpha on validation batches, network
weights W on training batches, alternating.

The alpha step follows DARTS. Second order: with the one-step unrolled weights W' = W - xi grad_W L_train
(Eq. 7), grad_alpha L_val(W', alpha) - xi * H, where the Hessian-vector product H is the finite
difference (grad_alpha L_train(W+) - grad_alpha L_train(W-)) / (2 eps), W+- = W +- eps grad_W' L_val.
First order is xi = 0: grad_alpha L_val(W, alpha).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from engine.core.config import RunConfig
from engine.core.events import (
    ArchitectureWeights,
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
from engine.models.automlp import AutoMLP, ModelShape, build_model
from engine.training.batches import (
    Batch,
    batch_loss,
    steps_per_epoch,
    training_batches,
    validation_batches,
)
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
    optimizer_parameters,
    seed_rank_stream,
    shared_backward,
    shared_gradients,
    shared_loss,
)

# A winner less than this far ahead of the runner-up (in softmax weight) is never called decisive.
MARGIN_FLOOR = 0.02

# Why a search's choice is, or is not, decisive: the verdict names its true reason.
DECISIVE = "decisive"
WITHIN_NOISE = "margin within noise"
WINNER_CHANGED = "winner changed in the last quarter"


@dataclass
class SearchResult:
    candidates: list[int]
    alpha_history: np.ndarray  # (steps, M) alpha after each step
    weight_history: np.ndarray  # (steps, M) softmax(alpha) after each step
    train_losses: list[float] = field(default_factory=list)  # per step
    valid_losses: list[float] = field(default_factory=list)  # per step (at the unrolled weights)
    chosen_length: int = 0
    margin: float = 0.0  # final weight of the winner minus the runner-up
    noise: float = 0.0  # how much that gap still moved over the last quarter of the search
    decisive: bool = False
    reason: str = ""  # why decisive or not: DECISIVE, WITHIN_NOISE and/or WINNER_CHANGED, joined by "; "
    seconds: float = 0.0
    # the searched network itself, for the what-if view (engine/serving/what_if.py); None once only
    # alpha's history is left (a resumed retraining rebuilds it from the checkpoint)
    supernet: object = field(default=None, repr=False, compare=False)

    @property
    def final_weights(self) -> dict[int, float]:
        return {k: float(w) for k, w in zip(self.candidates, self.weight_history[-1])}


def decide(candidates: list[int], weight_history: np.ndarray) -> tuple[int, float, float, bool, str]:
    """The argmax candidate, its margin over the runner-up, the noise of that margin, whether the
    choice is decisive: ahead by more than the noise (3 standard deviations of the gap over the last
    quarter of steps, at least MARGIN_FLOOR) and the winner over that whole quarter, and the reason
    (DECISIVE, or each failed condition: WITHIN_NOISE, WINNER_CHANGED)."""
    final = weight_history[-1]
    order = np.argsort(-final, kind="stable")
    winner, runner_up = order[0], order[1]
    margin = float(final[winner] - final[runner_up])
    tail = weight_history[-max(1, len(weight_history) // 4):]
    gaps = tail[:, winner] - tail[:, runner_up]
    noise = max(MARGIN_FLOOR, 3.0 * float(gaps.std()))
    stable = bool((tail.argmax(axis=1) == winner).all())
    failed = [reason for reason, ok in ((WITHIN_NOISE, margin > noise), (WINNER_CHANGED, stable)) if not ok]
    return candidates[winner], margin, noise, not failed, "; ".join(failed) or DECISIVE


class Architect:
    """Updates alpha from validation batches (DARTS's Architect), never touching W for good. With a
    `group` (torchrun), every gradient is the global batch's, reduced across the ranks, so that alpha takes
    the same Adam step on every rank."""

    def __init__(self, model: AutoMLP, config: RunConfig, group: Group | None = None) -> None:
        self.model = model
        self.config = config
        self.group = group
        self.xi = config.chosen_xi
        self.optimizer = torch.optim.Adam(model.arch_parameters(), lr=config.arch_lr, betas=(0.5, 0.999))

    def step(self, train_batch: Batch, valid_batch: Batch) -> float:
        """One alpha update; returns the validation loss it descended. W is restored exactly."""
        model, config = self.model, self.config
        weights = model.network_parameters()
        was_training = model.training
        model.eval()  # no dropout: the finite difference must compare like with like
        if self.xi == 0:
            valid_loss, (alpha_grad,) = self._gradients(valid_batch, [model.alpha])
        else:
            backup = [w.detach().clone() for w in weights]
            _, train_grads = self._gradients(train_batch, weights)
            with torch.no_grad():  # W' = W - xi * grad_W L_train(W, alpha)   (Eq. 7)
                for w, g in zip(weights, train_grads):
                    if g is not None:
                        w.sub_(self.xi * g)
            valid_loss, (alpha_grad, *weight_grads) = self._gradients(valid_batch, [model.alpha, *weights])
            weight_grads = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, weight_grads)]
            hessian_vector = self._hessian_vector_product(train_batch, weights, backup, weight_grads)
            alpha_grad = alpha_grad - self.xi * hessian_vector
            with torch.no_grad():
                for w, b in zip(weights, backup):
                    w.copy_(b)
        self.optimizer.zero_grad(set_to_none=True)
        model.alpha.grad = alpha_grad.detach()
        self.optimizer.step()
        model.train(was_training)
        return float(valid_loss.detach()) if isinstance(valid_loss, torch.Tensor) else valid_loss

    def validation_loss(self, valid_batch: Batch) -> float:
        """The validation loss at the current W and alpha, without a step (for warm-up epochs)."""
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            if self.group is None:
                loss = float(batch_loss(self.model, valid_batch, self.config))
            else:
                loss = shared_loss(lambda part: batch_loss(self.model, part, self.config), valid_batch, self.group)
        self.model.train(was_training)
        return loss

    def _gradients(self, batch: Batch, inputs: list[torch.Tensor]) -> tuple[torch.Tensor | float, list]:
        """(loss, its gradients with respect to `inputs`) of a batch; under torchrun, of the global batch."""
        if self.group is None:
            loss = batch_loss(self.model, batch, self.config)
            return loss, list(torch.autograd.grad(loss, inputs, allow_unused=True))
        return shared_gradients(lambda part: batch_loss(self.model, part, self.config), batch, inputs, self.group)

    def _hessian_vector_product(self, train_batch, weights, backup, vector, scale: float = 0.01) -> torch.Tensor:
        """(grad_alpha L_train(W + eps v) - grad_alpha L_train(W - eps v)) / (2 eps), eps = scale / |v|.

        DARTS's scale of 0.01 trades truncation error against float32 cancellation."""
        norm = torch.sqrt(sum((v * v).sum() for v in vector))
        eps = scale / float(norm.clamp(min=1e-12))
        gradients = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for w, b, v in zip(weights, backup, vector):
                    w.copy_(b + sign * eps * v)
            gradients.append(self._gradients(train_batch, [self.model.alpha])[1][0])
        return (gradients[0] - gradients[1]) / (2 * eps)


def weight_step(model: AutoMLP, optimizer: torch.optim.Optimizer, batch: Batch, config: RunConfig,
                group: Group | None = None) -> float:
    """One update of the network weights W on a training batch (Algorithm 1, line 6); alpha stays."""
    if group is not None:  # the global batch's gradient, on every rank
        optimizer.zero_grad(set_to_none=True)
        loss = shared_backward(lambda part: batch_loss(model, part, config), batch, optimizer_parameters(optimizer),
                               group)
        model.alpha.grad = None
        optimizer.step()
        return loss
    loss = batch_loss(model, batch, config)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    model.alpha.grad = None  # alpha moves on validation data only
    optimizer.step()
    return loss.item()


def search(data: SequenceData, config: RunConfig, observer: Observer | None = None,
           device: torch.device | None = None, resume: Checkpoint | None = None,
           on_epoch_end: Callable[[Checkpoint], None] | None = None, group: Group | None = None) -> SearchResult:
    """Runs the search phase over config.candidate_lengths and returns alpha's history and the choice.

    `on_epoch_end` receives a checkpoint after every epoch; `resume` continues from such a checkpoint
    exactly as if the search had never stopped. With a `group` (torchrun), each rank computes its slice
    of every batch; W's and alpha's gradients are reduced, so alpha is the same on every rank."""
    observer = observer or Observer()
    config = config.fitted_to(data.history_lengths("train"), data.n_items)  # "auto" left by a direct caller
    device = device or resolve_device(config.device)
    candidates = list(config.candidate_lengths)
    rng = seed_everything(config.seed)
    shape = ModelShape.from_config(config, data.n_items, candidates, data.features)
    model = build_model(shape, data.features, device)
    if model.alpha is None:
        raise ValueError("search needs at least two candidate lengths")
    weight_optimizer = torch.optim.Adam(model.network_parameters(), lr=config.lr, betas=(0.9, 0.999),
                                        weight_decay=config.weight_decay)
    architect = Architect(model, config, group)
    alphas, train_losses, valid_losses, step, first_epoch, spent, settled = [], [], [], 0, 1, 0.0, 0
    if resume is not None:
        model.load_state_dict(unpack_state(resume.tensors, "model"))
        unpack_optimizer(weight_optimizer, resume.tensors, resume.state["weight_optimizer"], "weight_optimizer")
        unpack_optimizer(architect.optimizer, resume.tensors, resume.state["arch_optimizer"], "arch_optimizer")
        unpack_rng(rng, resume.tensors, resume.state["rng"])
        alphas = list(resume.tensors["history.alpha"].numpy())
        train_losses = resume.tensors["history.train_loss"].tolist()
        valid_losses = resume.tensors["history.valid_loss"].tolist()
        step, first_epoch, spent = resume.step, resume.epoch + 1, resume.seconds
        settled = resume.state.get("settled", 0)
    if group is not None:
        broadcast_parameters(model)
    total = steps_per_epoch(data, config) * config.search_epochs
    order = "second order" if architect.xi else "first order"
    resumed = f", resumed after epoch {resume.epoch}" if resume is not None else ""
    observer.emit(PhaseStarted("search", total, f"{len(candidates)} candidates {candidates}, {order}{resumed}",
                               config.search_epochs))
    clock, throttle = StepClock(total, step, spent), Throttle(done_steps=step)  # a resumed run reports the same steps
    with subnormals_flushed(device):  # subnormals: 7.5x slower on x86
        for epoch in range(first_epoch, config.search_epochs + 1):
            model.train()
            epoch_train, epoch_valid = [], []
            if group is not None:
                seed_rank_stream(config.seed, "search", epoch, group)
            batches = training_batches(data, config, rng, device)
            for train_batch, valid_batch in zip(batches, validation_batches(data, config, rng, device)):
                observer.check()
                if epoch > config.search_warmup_epochs:
                    valid_loss = architect.step(train_batch, valid_batch)
                else:  # warm-up: W alone; the validation loss is still measured, so that its curve is whole
                    valid_loss = architect.validation_loss(valid_batch)
                loss = weight_step(model, weight_optimizer, train_batch, config, group)
                step += 1
                alphas.append(model.alpha.detach().cpu().numpy().copy())
                train_losses.append(loss)
                valid_losses.append(valid_loss)
                epoch_train.append(train_losses[-1])
                epoch_valid.append(valid_loss)
                if throttle.ready(force=step == total):
                    weights = torch.softmax(model.alpha.detach(), 0).cpu().numpy()
                    observer.emit(StepFinished("search", step, total,
                                               {"train_loss": train_losses[-1], "valid_loss": valid_loss},
                                               clock.eta(step)))
                    observer.emit(ArchitectureWeights(step, tuple(candidates), tuple(map(float, alphas[-1])),
                                                      tuple(map(float, weights))))
            observer.emit(EpochFinished("search", epoch, {"train_loss": float(np.mean(epoch_train)),
                                                          "valid_loss": float(np.mean(epoch_valid))}, "loss"))
            settled = settled + 1 if epoch > config.search_warmup_epochs and _decisive(candidates, alphas) else 0
            if on_epoch_end is not None:
                weight_tensors, weight_state = pack_optimizer(weight_optimizer, "weight_optimizer")
                arch_tensors, arch_state = pack_optimizer(architect.optimizer, "arch_optimizer")
                rng_tensors, rng_state = pack_rng(rng)
                on_epoch_end(Checkpoint(
                    "search", epoch, step, clock.elapsed, config.to_dict(), fingerprint="",
                    tensors={**pack_module(model, "model"), **weight_tensors, **arch_tensors, **rng_tensors,
                             "history.alpha": torch.from_numpy(np.array(alphas)),
                             "history.train_loss": torch.tensor(train_losses, dtype=torch.float64),
                             "history.valid_loss": torch.tensor(valid_losses, dtype=torch.float64)},
                    state={"weight_optimizer": weight_state, "arch_optimizer": arch_state, "rng": rng_state,
                           "settled": settled}))
            if config.settle_epochs and settled >= config.settle_epochs and epoch < config.search_epochs:
                observer.emit(Message(f"search stopped after epoch {epoch} of {config.search_epochs}: its choice "
                                      f"has been decisive for {settled} epochs (settle_epochs)"))
                break
    alpha_history = np.array(alphas)
    result = search_outcome(candidates, alpha_history, train_losses, valid_losses, clock.elapsed)
    result.supernet = model.eval()
    if not result.decisive:
        observer.emit(Message(f"the search did not decide ({result.reason}): k = {result.chosen_length} leads by "
                              f"{result.margin:.3f}, noise {result.noise:.3f}; run more search epochs or raise arch_lr",
                              "warning"))
    observer.emit(PhaseFinished("search", result.seconds))
    return result


def _decisive(candidates: list[int], alphas: list[np.ndarray]) -> bool:
    """Whether the search so far has decided (`decide` on its softmax(alpha) history)."""
    return search_outcome(candidates, np.array(alphas), [], [], 0.0).decisive


def search_outcome(candidates: list[int], alpha_history: np.ndarray, train_losses: list[float],
                   valid_losses: list[float], seconds: float) -> SearchResult:
    """The SearchResult of a finished search from its alpha history (steps, M): softmax weights, choice,
    margin and verdict."""
    weight_history = np.exp(alpha_history - alpha_history.max(axis=1, keepdims=True))
    weight_history /= weight_history.sum(axis=1, keepdims=True)
    chosen, margin, noise, decisive, reason = decide(candidates, weight_history)
    return SearchResult(candidates, alpha_history, weight_history, list(train_losses), list(valid_losses),
                        chosen, margin, noise, decisive, reason, seconds)
