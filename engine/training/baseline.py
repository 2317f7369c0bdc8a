"""The SASRec baseline trained and tested exactly as AutoMLP's retraining is: the same `fit`, seed,
batches, loss, validation and test protocols."""

from __future__ import annotations

import torch

from engine.core.config import RunConfig
from engine.core.events import Message, Observer
from engine.data.sequences import SequenceData
from engine.models.sasrec import SASRecShape, build_sasrec
from engine.training.device import resolve_device, seed_everything
from engine.training.distributed import Group, join_group
from engine.training.fit import RetrainResult, fit
from engine.training.runner import RunResult, evaluate_test, fit_to_data


def train_baseline(data: SequenceData, config: RunConfig, observer: Observer | None = None,
                   device: torch.device | None = None, num_heads: int = 1,
                   group: Group | None = None, variant: str = "pre_norm") -> RetrainResult:
    """Trains a fresh SASRec of the configuration's sizes (T, L, D, dropout; R_c as the FFN width of the
    "pre_norm" variant, D of "sasrec_plus") with AutoMLP's retraining: the same seed, batches, loss,
    optimiser, validation and early stopping.

    Returns a RetrainResult whose `model` is the SASRec with the best validation epoch's weights.
    `candidate_lengths` and the search settings are ignored. With a `group`, trained across its ranks.
    """
    config = config.fitted_to(data.history_lengths("train"), data.n_items)  # "auto" left by a direct caller
    device = device or resolve_device(config.device)
    rng = seed_everything(config.seed + 1)
    shape = SASRecShape.from_config(config, data.n_items, data.features, num_heads, variant)
    model = build_sasrec(shape, data.features, device)
    return fit(model, data, config, rng, observer, device,
               f"SASRec baseline ({variant}), {num_heads} head(s), up to {config.retrain_epochs} epochs",
               group=group)


def run_baseline(data: SequenceData, config: RunConfig, observer: Observer | None = None,
                 num_heads: int = 1, variant: str = "pre_norm") -> RunResult:
    """`train_baseline`, then the test targets under both reported protocols, as `run_automlp` does.

    The RunResult has no search and `chosen_length` None (SASRec attends over all T positions). Under
    torchrun, trained and tested across the ranks, as `run_automlp`.
    """
    observer = observer or Observer()
    device = resolve_device(config.device)
    config = fit_to_data(config, data, observer, device)
    group = join_group(device)
    if group is not None:
        device, observer = group.device, (observer if group.is_main else Observer())
    observer.emit(Message(f"SASRec baseline on {data.name}: {data.n_users} users, {data.n_items} items; "
                          f"device {device}; mode {config.mode}"))
    trained = train_baseline(data, config, observer, device, num_heads, group, variant)
    test, evaluate_seconds, by_length = evaluate_test(trained.model, data, config, observer, group)
    seconds = {"retrain": trained.seconds, "evaluate": evaluate_seconds}
    return RunResult(config, str(device), None, trained.model, None, trained, test, seconds, by_length)
