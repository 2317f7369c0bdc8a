"""A whole AutoMLP run: search the short-term length, retrain with it, evaluate on the test targets."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.core.config import AUTO, RunConfig
from engine.core.events import (
    LengthChosen,
    Message,
    Observer,
    PhaseFinished,
    PhaseStarted,
    SearchDecided,
)
from engine.data.sequences import SequenceData
from engine.evaluation.by_length import add_candidates_by_length, metrics_by_length, ranks_with_long_term
from engine.evaluation.metrics import evaluate, metrics_from_ranks, protocol_label
from engine.models.automlp import AutoMLP, ModelShape, build_model
from engine.training.checkpoint import Checkpoint, CheckpointError, pack_module, save_checkpoint, unpack_state
from engine.training.device import resolve_device, resolved_precision
from engine.training.distributed import Group, evaluate_shared, join_group
from engine.training.fit import RetrainResult, retrain
from engine.training.length_choice import choose_by_search, choose_exhaustively
from engine.training.search import SearchResult, search_outcome

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
    length_choice: dict = field(default_factory=dict)  # LengthChoice.summary(): the verdict and its evidence
    candidate_models: dict[int, AutoMLP] = field(default_factory=dict)  # exhaustive: every k's own model (what-if)

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
        if self.length_choice:
            out["length_choice"] = self.length_choice
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
    and ends as the uninterrupted run would have.

    Under torchrun (engine.training.distributed) every rank runs this with the same data and
    configuration and returns the same result; events come from rank 0 alone, and rank 0 alone writes
    the checkpoints."""
    observer = observer or Observer()
    device = resolve_device(config.device)
    config = fit_to_data(config, data, observer, device)
    group = join_group(device)
    if group is not None:
        device, observer = group.device, (observer if group.is_main else Observer())
    processes = f" x {group.size} processes" if group is not None else ""
    observer.emit(Message(f"{data.name}: {data.n_users} users, {data.n_items} items, "
                          f"{data.n_interactions} interactions; device {device}{processes}; mode {config.mode}"))
    fingerprint = data.fingerprint() if checkpoint_path is not None or resume is not None else ""
    if resume is not None:
        check_resumable(resume, config, fingerprint)

    def save(checkpoint: Checkpoint) -> None:
        checkpoint.fingerprint = fingerprint
        if checkpoint.phase == "retrain":  # `chosen` and `found` are set by then: the search's outcome goes along
            checkpoint.state["chosen_length"] = chosen
            checkpoint.state["length_choice"] = choice
            checkpoint.state["choice_seconds"] = {phase: seconds[phase] for phase in ("search", "confirm")
                                                  if phase in seconds}
            if found is not None:
                checkpoint.tensors.update(_search_tensors(found))
                checkpoint.state["search_seconds"] = found.seconds
                if found.supernet is not None:  # for the what-if view
                    checkpoint.tensors.update(pack_module(found.supernet, "supernet"))
        save_checkpoint(checkpoint, checkpoint_path)

    writes = checkpoint_path is not None and (group is None or group.is_main)
    on_epoch_end = save if writes else None
    seconds = {}
    found, choice, exhaustive = None, {}, None
    if resume is not None and resume.phase == "retrain":
        chosen = resume.state["chosen_length"]
        choice = resume.state.get("length_choice", {})
        if "search.alpha" in resume.tensors:
            found = search_outcome(list(config.candidate_lengths), resume.tensors["search.alpha"].numpy(),
                                   resume.tensors["search.train_loss"].tolist(),
                                   resume.tensors["search.valid_loss"].tolist(), resume.state["search_seconds"])
            if any(name.startswith("supernet.") for name in resume.tensors):
                found.supernet = _rebuilt_supernet(data, config, device, resume)
        seconds.update(resume.state.get("choice_seconds", {"search": found.seconds} if found else {}))
    elif len(config.candidate_lengths) > 1:
        if config.strategy == "exhaustive":  # keeps no checkpoint: a stopped exhaustive run starts over
            made = exhaustive = choose_exhaustively(data, config, observer, device, group)
        else:
            made = choose_by_search(data, config, observer, device, group, resume=resume, on_epoch_end=on_epoch_end)
        found = made.searches[0] if made.searches else None
        chosen, choice = made.chosen_length, made.summary()
        seconds[_choice_phase(config)] = made.seconds - made.confirm_seconds
        if made.confirm_rounds:
            seconds["confirm"] = made.confirm_seconds
        if found is not None and len(made.searches) == 1 and not made.confirm_rounds:
            observer.emit(Message(f"chosen short-term length k = {chosen} (weights "
                                  + ", ".join(f"{k}: {w:.3f}" for k, w in found.final_weights.items()) + ")"))
        else:
            observer.emit(Message(f"chosen short-term length: {made.verdict}", "info" if made.decided else "warning"))
    else:
        chosen = config.candidate_lengths[0]
    if found is not None:
        observer.emit(SearchDecided(found.chosen_length, found.final_weights, found.margin, found.noise,
                                    found.decisive, found.reason))
    if choice:
        observer.emit(LengthChosen(choice["chosen_length"], choice["decided"], choice["verdict"], choice["strategy"]))
    if exhaustive is not None:  # the run's seed's model of the chosen length is trained already
        retrained = exhaustive.models[chosen]
    else:
        retrained = retrain(data, config, chosen, observer, device,
                            resume=resume if resume is not None and resume.phase == "retrain" else None,
                            on_epoch_end=on_epoch_end, group=group)
        seconds["retrain"] = retrained.seconds
    test, seconds["evaluate"], by_length = evaluate_test(retrained.model, data, config, observer, group)
    if exhaustive is not None:  # where each window helps: every candidate's own model, bucket by bucket
        add_candidates_by_length(by_length, {k: trained.model for k, trained in exhaustive.models.items()}, data)
    candidate_models = {k: trained.model for k, trained in exhaustive.models.items()} if exhaustive else {}
    return RunResult(config, str(device), chosen, retrained.model, found, retrained, test, seconds, by_length,
                     choice, candidate_models)


def _rebuilt_supernet(data: SequenceData, config: RunConfig, device, resume: Checkpoint) -> AutoMLP:
    """The search's supernet from a retraining checkpoint's "supernet." tensors."""
    shape = ModelShape.from_config(config, data.n_items, list(config.candidate_lengths), data.features)
    supernet = build_model(shape, data.features, device)
    supernet.load_state_dict(unpack_state(resume.tensors, "supernet"))
    return supernet.eval()


def _choice_phase(config: RunConfig) -> str:
    """The name of the seconds the length choice took: the phase it ran as."""
    return "exhaustive" if config.strategy == "exhaustive" else "search"


def fit_to_data(config: RunConfig, data: SequenceData, observer: Observer | None = None,
                device: torch.device | None = None) -> RunConfig:
    """The configuration with "auto" K, T and loss fitted to the data (RunConfig.fitted_to), and an "auto"
    precision resolved for `device` when it is given, validated; says what "auto" became as a Message, so
    that the CLI and the GUI show it before training."""
    config.validate()
    fitted = config.fitted_to(data.history_lengths("train"), data.n_items)
    summary = config.fitted_summary(fitted)
    if device is not None and config.precision == AUTO:
        fitted = fitted.replace(precision=resolved_precision(config.precision, device))
        native = "computes" if fitted.precision == "bf16" else "does not compute"
        summary = "; ".join(filter(None, [summary, f"precision auto -> {fitted.precision} ({device.type} {native} "
                                                   "bfloat16 natively)"]))
    if summary and observer is not None:
        observer.emit(Message(f"{data.name}: {summary}"))
    return fitted


def evaluate_test(model, data: SequenceData, config: RunConfig, observer: Observer,
                  group: Group | None = None) -> tuple[dict, float, list[dict]]:
    """The test metrics under every reported protocol ({label: metrics}), the seconds they took, and the
    full-ranking metrics per history-length bucket (engine.evaluation.by_length). With a `group`, each
    rank ranks its share of the users and the metrics are summed across ranks (the buckets are computed
    whole on every rank)."""
    started = time.monotonic()
    observer.emit(PhaseStarted("evaluate", len(REPORTED_PROTOCOLS)))
    if group is None:
        # one pass gives the full-ranking metrics and, with the long-term module's ranks, the buckets
        ranks = ranks_with_long_term(model, data, "test", observer=observer)
        test = {protocol_label(protocol, config.eval_negatives):
                metrics_from_ranks(ranks[0]) if protocol == "full" else
                evaluate(model, data, "test", protocol, config.eval_negatives, config.seed, observer=observer)
                for protocol in REPORTED_PROTOCOLS}
        by_length = metrics_by_length(model, data, "test", ranks=ranks)
    else:
        test = {protocol_label(protocol, config.eval_negatives):
                evaluate_shared(model, data, "test", protocol, config.eval_negatives, config.seed, group, observer)
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
