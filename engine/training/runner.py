"""A whole AutoMLP run: search the short-term length, retrain with it, evaluate on the test targets."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.core.config import RunConfig
from engine.core.events import (
    Message,
    Observer,
    PhaseFinished,
    PhaseStarted,
    SearchDecided,
)
from engine.data.sequences import SequenceData
from engine.evaluation.by_length import metrics_by_length
from engine.evaluation.metrics import evaluate, protocol_label
from engine.models.automlp import AutoMLP
from engine.training.checkpoint import Checkpoint, CheckpointError, save_checkpoint
from engine.training.device import resolve_device
from engine.training.fit import RetrainResult, retrain
from engine.training.search import SearchResult, search, search_outcome

# Test metrics are always reported under both protocols: sampled figures alone mislead (DESIGN, Evaluation).
REPORTED_PROTOCOLS = ("full", "popularity")


@dataclass
class RunResult:
    config: RunConfig
    device: str
    chosen_length: int
    model: AutoMLP
    search: SearchResult | None  # None when there was a single candidate
    retrain: RetrainResult
    test_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # protocol label -> metrics
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> wall seconds
    by_length: list[dict] = field(default_factory=list)  # test metrics per history-length bucket (full ranking)

    def summary(self) -> dict:
        """Everything but the model, as plain JSON-ready values."""
        out = {
            "config": self.config.to_dict(),
            "device": self.device,
            "chosen_length": self.chosen_length,
            "valid_metrics": self.retrain.best_valid,
            "valid_protocol": protocol_label(self.config.protocol, self.config.eval_negatives),
            "best_epoch": self.retrain.best_epoch,
            "epochs": self.retrain.history,
            "test_metrics": self.test_metrics,
            "seconds": self.seconds,
            "by_length": self.by_length,
        }
        if self.search is not None:
            out["search"] = {
                "candidates": self.search.candidates,
                "final_weights": {str(k): w for k, w in self.search.final_weights.items()},
                "final_alpha": self.search.alpha_history[-1].tolist(),
                "margin": self.search.margin,
                "noise": self.search.noise,
                "decisive": self.search.decisive,
                "reason": self.search.reason,
                "steps": len(self.search.weight_history),
                "weight_history": self.search.weight_history.tolist(),
                "train_losses": self.search.train_losses,
                "valid_losses": self.search.valid_losses,
            }
        return out


def run_automlp(data: SequenceData, config: RunConfig, observer: Observer | None = None,
                checkpoint_path: str | Path | None = None, resume: Checkpoint | None = None) -> RunResult:
    """Search (if there are several candidates), retrain with the chosen length, and evaluate the test
    targets under the full-ranking and popularity-sampled protocols. Raises `Cancelled` if cancelled.

    With `checkpoint_path`, the state after every epoch is saved there (engine.checkpoint); with `resume`,
    the run continues from such a checkpoint (CheckpointError if it belongs to other data or settings)
    and ends as the uninterrupted run would have."""
    observer = observer or Observer()
    config = fit_to_data(config, data, observer)
    device = resolve_device(config.device)
    observer.emit(Message(f"{data.name}: {data.n_users} users, {data.n_items} items, "
                          f"{data.n_interactions} interactions; device {device}; mode {config.mode}"))
    fingerprint = data.fingerprint() if checkpoint_path is not None or resume is not None else ""
    if resume is not None:
        check_resumable(resume, config, fingerprint)

    def save(checkpoint: Checkpoint) -> None:
        checkpoint.fingerprint = fingerprint
        if checkpoint.phase == "retrain":  # `chosen` and `found` are set by then: the search's outcome goes along
            checkpoint.state["chosen_length"] = chosen
            if found is not None:
                checkpoint.tensors.update(_search_tensors(found))
                checkpoint.state["search_seconds"] = found.seconds
        save_checkpoint(checkpoint, checkpoint_path)

    on_epoch_end = save if checkpoint_path is not None else None
    seconds = {}
    found = None
    if resume is not None and resume.phase == "retrain":
        chosen = resume.state["chosen_length"]
        if "search.alpha" in resume.tensors:
            found = search_outcome(list(config.candidate_lengths), resume.tensors["search.alpha"].numpy(),
                                   resume.tensors["search.train_loss"].tolist(),
                                   resume.tensors["search.valid_loss"].tolist(), resume.state["search_seconds"])
            seconds["search"] = found.seconds
    elif len(config.candidate_lengths) > 1:
        found = search(data, config, observer, device, resume=resume, on_epoch_end=on_epoch_end)
        seconds["search"] = found.seconds
        chosen = found.chosen_length
        observer.emit(Message(f"chosen short-term length k = {chosen} (weights "
                              + ", ".join(f"{k}: {w:.3f}" for k, w in found.final_weights.items()) + ")"))
    else:
        chosen = config.candidate_lengths[0]
    if found is not None:
        observer.emit(SearchDecided(found.chosen_length, found.final_weights, found.margin, found.noise,
                                    found.decisive, found.reason))
    retrained = retrain(data, config, chosen, observer, device,
                        resume=resume if resume is not None and resume.phase == "retrain" else None,
                        on_epoch_end=on_epoch_end)
    seconds["retrain"] = retrained.seconds
    test, seconds["evaluate"], by_length = evaluate_test(retrained.model, data, config, observer)
    return RunResult(config, str(device), chosen, retrained.model, found, retrained, test, seconds, by_length)


def fit_to_data(config: RunConfig, data: SequenceData, observer: Observer | None = None) -> RunConfig:
    """The configuration with "auto" K, T and loss fitted to the data (RunConfig.fitted_to),
    validated; says what "auto" became as a Message, so that the CLI and the GUI show it before training."""
    config.validate()
    fitted = config.fitted_to(data.history_lengths("train"), data.n_items)
    summary = config.fitted_summary(fitted)
    if summary and observer is not None:
        observer.emit(Message(f"{data.name}: {summary}"))
    return fitted


def evaluate_test(model, data: SequenceData, config: RunConfig,
                  observer: Observer) -> tuple[dict, float, list[dict]]:
    """The test metrics under every reported protocol ({label: metrics}), the seconds they took, and the
    full-ranking metrics per history-length bucket (engine.evaluation.by_length)."""
    started = time.monotonic()
    observer.emit(PhaseStarted("evaluate", len(REPORTED_PROTOCOLS)))
    test = {protocol_label(protocol, config.eval_negatives):
            evaluate(model, data, "test", protocol, config.eval_negatives, config.seed, observer=observer)
            for protocol in REPORTED_PROTOCOLS}
    by_length = metrics_by_length(model, data, "test", observer=observer)
    seconds = time.monotonic() - started
    observer.emit(PhaseFinished("evaluate", seconds))
    return test, seconds, by_length


def check_resumable(checkpoint: Checkpoint, config: RunConfig, fingerprint: str) -> None:
    """CheckpointError unless the checkpoint was written by a run of this configuration on this data."""
    if checkpoint.fingerprint != fingerprint:
        raise CheckpointError("the checkpoint was written for other data: the dataset changed since the run "
                              "started, so it cannot be resumed (start a new run)")
    saved, wanted = checkpoint.config, json.loads(json.dumps(config.to_dict()))
    # The device may change: a run started on a GPU can go on on the CPU.
    differing = sorted(key for key in set(saved) | set(wanted) if key != "device" and saved.get(key) != wanted.get(key))
    if differing:
        raise CheckpointError(f"the checkpoint was written with other settings ({', '.join(differing)} differ); "
                              "resume with the run's own configuration")


def _search_tensors(found: SearchResult) -> dict[str, torch.Tensor]:
    return {"search.alpha": torch.from_numpy(np.asarray(found.alpha_history)),
            "search.train_loss": torch.tensor(found.train_losses, dtype=torch.float64),
            "search.valid_loss": torch.tensor(found.valid_losses, dtype=torch.float64)}
