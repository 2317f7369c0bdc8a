"""A whole AutoMLP run: search the short-term length, retrain with it, evaluate on the test targets."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


from engine.config import RunConfig
from engine.events import Message, Observer, PhaseFinished, PhaseStarted
from engine.metrics import evaluate, protocol_label
from engine.model import AutoMLP
from engine.search import SearchResult, search
from engine.sequences import SequenceData
from engine.training import RetrainResult, resolve_device, retrain

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
        }
        if self.search is not None:
            out["search"] = {
                "candidates": self.search.candidates,
                "final_weights": {str(k): w for k, w in self.search.final_weights.items()},
                "final_alpha": self.search.alpha_history[-1].tolist(),
                "margin": self.search.margin,
                "noise": self.search.noise,
                "decisive": self.search.decisive,
                "steps": len(self.search.weight_history),
                "weight_history": self.search.weight_history.tolist(),
                "train_losses": self.search.train_losses,
                "valid_losses": self.search.valid_losses,
            }
        return out


def run_automlp(data: SequenceData, config: RunConfig, observer: Observer | None = None) -> RunResult:
    """Search (if there are several candidates), retrain with the chosen length, and evaluate the test
    targets under the full-ranking and popularity-sampled protocols. Raises `Cancelled` if cancelled."""
    observer = observer or Observer()
    config.validate()
    device = resolve_device(config.device)
    observer.emit(Message(f"{data.name}: {data.n_users} users, {data.n_items} items, "
                          f"{data.n_interactions} interactions; device {device}; mode {config.mode}"))
    seconds = {}
    found = None
    if len(config.candidate_lengths) > 1:
        found = search(data, config, observer, device)
        seconds["search"] = found.seconds
        chosen = found.chosen_length
        observer.emit(Message(f"chosen short-term length k = {chosen} (weights "
                              + ", ".join(f"{k}: {w:.3f}" for k, w in found.final_weights.items()) + ")"))
    else:
        chosen = config.candidate_lengths[0]
    retrained = retrain(data, config, chosen, observer, device)
    seconds["retrain"] = retrained.seconds
    started = time.monotonic()
    observer.emit(PhaseStarted("evaluate", len(REPORTED_PROTOCOLS)))
    test = {}
    for protocol in REPORTED_PROTOCOLS:
        label = protocol_label(protocol, config.eval_negatives)
        test[label] = evaluate(retrained.model, data, "test", protocol, config.eval_negatives, config.seed,
                               observer=observer)
    seconds["evaluate"] = time.monotonic() - started
    observer.emit(PhaseFinished("evaluate", seconds["evaluate"]))
    return RunResult(config, str(device), chosen, retrained.model, found, retrained, test, seconds)
