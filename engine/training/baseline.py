"""The SASRec baseline trained and tested exactly as AutoMLP's retraining is: the same `fit`, seed,
batches, loss, validation and test protocols."""

from __future__ import annotations

import torch

from engine.core.config import RunConfig
from engine.core.events import Message, Observer
from engine.data.sequences import SequenceData
from engine.models.sasrec import SASRecShape, build_sasrec
from engine.training.device import resolve_device, seed_everything
from engine.training.fit import RetrainResult, fit
from engine.training.runner import RunResult, evaluate_test, fit_to_data


def train_baseline(data: SequenceData, config: RunConfig, observer: Observer | None = None,
                   device: torch.device | None = None, num_heads: int = 1) -> RetrainResult:
    """Trains a fresh SASRec of the configuration's sizes (T, L, D, R_c as the FFN width, dropout) with
    AutoMLP's retraining: the same seed, batches, loss, optimiser, validation and early stopping.

    Returns a RetrainResult whose `model` is the SASRec with the best validation epoch's weights.
    `candidate_lengths` and the search settings are ignored.
    """
    config = config.fitted_to(data.history_lengths("train"), data.n_items)  # "auto" left by a direct caller
    device = device or resolve_device(config.device)
    rng = seed_everything(config.seed + 1)
    shape = SASRecShape.from_config(config, data.n_items, data.features, num_heads)
    model = build_sasrec(shape, data.features, device)
    return fit(model, data, config, rng, observer, device,
               f"SASRec baseline, {num_heads} head(s), up to {config.retrain_epochs} epochs")


def run_baseline(data: SequenceData, config: RunConfig, observer: Observer | None = None,
                 num_heads: int = 1) -> RunResult:
    """`train_baseline`, then the test targets under both reported protocols, as `run_automlp` does.

    The RunResult has no search and `chosen_length` None (SASRec attends over all T positions).
    """
    observer = observer or Observer()
    config = fit_to_data(config, data, observer)
    device = resolve_device(config.device)
    observer.emit(Message(f"SASRec baseline on {data.name}: {data.n_users} users, {data.n_items} items; "
                          f"device {device}; mode {config.mode}"))
    trained = train_baseline(data, config, observer, device, num_heads)
    test, evaluate_seconds, by_length = evaluate_test(trained.model, data, config, observer)
    seconds = {"retrain": trained.seconds, "evaluate": evaluate_seconds}
    return RunResult(config, str(device), None, trained.model, None, trained, test, seconds, by_length)
