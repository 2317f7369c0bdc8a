"""How a run chooses its short-term length, and the evidence its verdict names.

- "search" (AutoMLP): the differentiable search once per seed (config.seed, config.seed + 1, ...).
  One seed: decided when its softmax(alpha) margin is above the noise of its last quarter
  (engine.training.search.decide). Several: decided when a strict majority of the seeds chose one length,
  "k = 20 (4 of 5 seeds)". When undecided and `confirm_epochs` is set, successive halving among the leading
  candidates decides on validation NDCG@10.
- "exhaustive" (the paper's AutoMLP-s): every candidate retrained alone under every seed; the best mean
  validation NDCG@10 wins. Its noise band is the best mean minus the spread of one seed's figure (the
  sample standard deviation over the seeds, pooled over every length): every length whose mean lies within
  the band is equal to the best within noise, and the verdict says so ("k = 5 and k = 20 are equal within
  noise on this data").
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from engine.core.config import RunConfig
from engine.core.events import (
    ArchitectureWeights,
    CandidateScored,
    EpochFinished,
    ForwardingObserver,
    Message,
    Observer,
    PhaseFinished,
    PhaseStarted,
    StepClock,
    StepFinished,
)
from engine.data.sequences import SequenceData
from engine.evaluation.metrics import protocol_label
from engine.models.automlp import ModelShape, build_model
from engine.training.batches import steps_per_epoch
from engine.training.checkpoint import Checkpoint
from engine.training.distributed import Group
from engine.training.fit import RetrainResult, fit, retrain
from engine.training.search import SearchResult, search

VALIDATION_METRIC = "NDCG@10"
WEIGHT_EVERY = 10  # the summary keeps every 10th step of each seed's softmax(alpha), as the recorder does


@dataclass
class LengthChoice:
    strategy: str  # "search" | "exhaustive"
    chosen_length: int
    decided: bool
    verdict: str
    candidates: list[int]
    seeds: list[int]
    searches: list[SearchResult] = field(default_factory=list)  # one per seed ("search")
    scores: dict[int, list[float]] = field(default_factory=dict)  # "exhaustive": validation NDCG@10 per seed
    band: float | None = None  # "exhaustive": the lowest mean that is still equal to the best within noise
    equal_lengths: list[int] = field(default_factory=list)  # "exhaustive": the lengths within the band
    confirm_rounds: list[dict] = field(default_factory=list)  # {"epochs": total epochs, "scores": {k: NDCG@10}}
    seconds: float = 0.0  # the whole choice, confirm stage included
    confirm_seconds: float = 0.0
    models: dict[int, RetrainResult] = field(default_factory=dict, repr=False)  # "exhaustive": the run's seed's

    @property
    def votes(self) -> dict[int, int]:
        """How many seeds' searches chose each length."""
        return dict(Counter(found.chosen_length for found in self.searches))

    def summary(self) -> dict:
        """JSON-ready: what the run record, the CLI report and the GUI show (no models)."""
        out = {"strategy": self.strategy, "chosen_length": self.chosen_length, "decided": self.decided,
               "verdict": self.verdict, "candidates": self.candidates, "seeds": self.seeds,
               "metric": VALIDATION_METRIC, "seconds": self.seconds}
        if self.searches:
            out["votes"] = {str(k): n for k, n in self.votes.items()}
            out["searches"] = [
                {"seed": seed, "chosen_length": found.chosen_length,
                 "final_weights": {str(k): w for k, w in found.final_weights.items()},
                 "margin": found.margin, "noise": found.noise, "decisive": found.decisive, "reason": found.reason,
                 "weight_steps": [step + 1 for step in _kept_steps(len(found.weight_history))],
                 "weight_history": found.weight_history[_kept_steps(len(found.weight_history))].tolist()}
                for seed, found in zip(self.seeds, self.searches)]
        if self.scores:
            out["scores"] = {str(k): {"values": values, "mean": float(np.mean(values)), "spread": spread(values)}
                             for k, values in self.scores.items()}
            out["band"] = self.band
            out["equal_lengths"] = self.equal_lengths
        if self.confirm_rounds:
            out["confirm"] = [{"epochs": r["epochs"], "scores": {str(k): v for k, v in r["scores"].items()}}
                              for r in self.confirm_rounds]
        return out


def _kept_steps(steps: int) -> list[int]:
    """The 0-based steps a summary keeps of a search's history: every WEIGHT_EVERY-th, and the last."""
    kept = list(range(0, steps, WEIGHT_EVERY))
    return kept + [steps - 1] if steps and kept[-1] != steps - 1 else kept


def spread(values: list[float]) -> float:
    """The noise of a length's figure over seeds: the sample standard deviation (0 for one seed)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def pooled_spread(scores: dict) -> float:
    """The noise of one seed's figure on this data: the sample standard deviation pooled over every length
    (the root of the mean of their sample variances; 0 for one seed). Three seeds of one length give a
    spread that is itself noisy (on Amazon Sports the best length's three seeds agreed within 0.0001 where
    another's spread was 0.0012), so the band takes the noise from every length's seeds."""
    variances = [float(np.var(values, ddof=1)) for values in scores.values() if len(values) > 1]
    return float(np.sqrt(np.mean(variances))) if variances else 0.0


def seeds_of(config: RunConfig) -> list[int]:
    return [config.seed + i for i in range(config.seeds)]


# ---------------------------------------------------------------- verdicts (pure: what the evidence says)


def search_verdict(searches: list[SearchResult]) -> tuple[int, bool, str]:
    """(chosen length, decided, verdict) of one or more seeds' searches. The most chosen length wins; a tie,
    the one with the highest mean final weight over the seeds."""
    votes = Counter(found.chosen_length for found in searches)
    mean_weight = {k: float(np.mean([found.final_weights[k] for found in searches])) for k in searches[0].candidates}
    ranked = sorted(votes, key=lambda k: (-votes[k], -mean_weight[k]))
    chosen, n = ranked[0], len(searches)
    if n == 1:
        found = searches[0]
        if found.decisive:
            return chosen, True, (f"k = {chosen} (1 seed: softmax(alpha) {found.final_weights[chosen]:.3f}, "
                                  f"{found.margin:.3f} ahead, noise {found.noise:.3f})")
        return chosen, False, (f"k = {chosen}, undecided (1 seed: {found.reason}; {found.margin:.3f} ahead, "
                               f"noise {found.noise:.3f})")
    if votes[chosen] * 2 > n:
        return chosen, True, f"k = {chosen} ({votes[chosen]} of {n} seeds)"
    split = ", ".join(f"k = {k}: {votes[k]}" for k in ranked)
    return chosen, False, f"k = {chosen}, undecided: the seeds disagree ({split} of {n} seeds)"


def exhaustive_verdict(scores: dict[int, list[float]]) -> tuple[int, bool, str, float, list[int]]:
    """(chosen length, decided, verdict, band, lengths within the band) from every length's validation
    NDCG@10 per seed. The band is the best mean minus the pooled spread (`pooled_spread`); decided when the
    best alone lies in it."""
    means = {k: float(np.mean(v)) for k, v in scores.items()}
    ranked = sorted(means, key=lambda k: -means[k])
    best, seeds = ranked[0], len(scores[ranked[0]])
    band = means[best] - pooled_spread(scores)
    equal = [k for k in ranked if means[k] >= band]
    evidence = f"validation {VALIDATION_METRIC}, {seeds} seed{'s' if seeds > 1 else ''}"
    if seeds == 1:
        evidence += ", no noise band from one seed"
    if len(equal) == 1:
        runner_up = (f"; next k = {ranked[1]} at {means[ranked[1]]:.4f}" if len(ranked) > 1 else "")
        return best, True, f"k = {best} ({evidence}: {_mean_text(scores[best])}{runner_up})", band, equal
    if len(equal) == len(ranked):
        return best, False, (f"the length does not matter on this data: every k is within noise of the best "
                             f"({evidence}: {means[ranked[-1]]:.4f} to {means[best]:.4f}, band from {band:.4f}); "
                             f"k = {best} kept, the best mean"), band, equal
    names = ", ".join(f"k = {k}" for k in equal[:-1]) + f" and k = {equal[-1]}"
    return best, False, (f"{names} are equal within noise on this data ({evidence}: "
                         f"{means[equal[-1]]:.4f} to {means[best]:.4f}, band from {band:.4f}); "
                         f"k = {best} kept, the best mean"), band, equal


def _mean_text(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {spread(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


# ---------------------------------------------------------------- the stages


class _WithinPhase(ForwardingObserver):
    """Reports a sub-run (one seed's search, one candidate's training) as part of one enclosing phase: its
    steps shifted by `offset` into the phase's count, with the phase's overall ETA. The enclosing phase
    starts and finishes itself; a search's epochs go on counting across seeds; a candidate's epochs are
    left to CandidateScored."""

    def __init__(self, outer: Observer, phase: str, offset: int, total: int, clock: StepClock,
                 trial: int = 0, seed: int = 0, epoch_offset: int = 0) -> None:
        super().__init__(outer)
        self.phase, self.offset, self.total, self.clock = phase, offset, total, clock
        self.trial, self.seed, self.epoch_offset = trial, seed, epoch_offset

    def emit(self, event) -> None:
        if isinstance(event, StepFinished):
            step = self.offset + event.step
            self.inner.emit(StepFinished(self.phase, step, self.total, event.losses, self.clock.eta(step)))
        elif isinstance(event, ArchitectureWeights):
            self.inner.emit(dataclasses.replace(event, trial=self.trial, seed=self.seed))
        elif isinstance(event, EpochFinished) and event.phase == self.phase == "search":
            self.inner.emit(dataclasses.replace(event, epoch=self.epoch_offset + event.epoch))
        elif isinstance(event, Message):
            self.inner.emit(event)



def choose_by_search(data: SequenceData, config: RunConfig, observer: Observer, device: torch.device,
                     group: Group | None = None, resume: Checkpoint | None = None,
                     on_epoch_end=None) -> LengthChoice:
    """The search under each of config.seeds seeds, the verdict, and the confirm stage if it is needed and
    asked for. One seed keeps the search's checkpoints (`resume`, `on_epoch_end`); several seeds run as one
    "search" phase whose steps count on from seed to seed and keep no checkpoint until the length is chosen."""
    seeds = seeds_of(config)
    if len(seeds) == 1:
        searches = [search(data, config, observer, device, resume=resume, on_epoch_end=on_epoch_end, group=group)]
    else:
        per_seed = steps_per_epoch(data, config) * config.search_epochs
        total = per_seed * len(seeds)
        observer.emit(PhaseStarted("search", total, f"{len(seeds)} seeds ({seeds[0]}..{seeds[-1]}), "
                                                    f"{len(config.candidate_lengths)} candidates "
                                                    f"{list(config.candidate_lengths)}",
                                   config.search_epochs * len(seeds)))
        clock, searches = StepClock(total), []
        for trial, seed in enumerate(seeds):
            inner = _WithinPhase(observer, "search", trial * per_seed, total, clock, trial, seed,
                                 trial * config.search_epochs)
            found = search(data, config.replace(seed=seed), inner, device, group=group)
            if trial > 0:
                found.supernet = None  # the what-if view uses the run's own seed's; the others' weights are in the summary
            searches.append(found)
            observer.emit(Message(f"seed {seed}: k = {found.chosen_length} (softmax(alpha) "
                                  f"{found.final_weights[found.chosen_length]:.3f})"))
        observer.emit(PhaseFinished("search", clock.elapsed))
    chosen, decided, verdict = search_verdict(searches)
    choice = LengthChoice("search", chosen, decided, verdict, list(config.candidate_lengths), seeds, searches,
                          seconds=sum(found.seconds for found in searches))
    if not decided and config.confirm_epochs > 0:
        confirm(data, config, leading_lengths(searches), choice, observer, device, group)
    return choice


def leading_lengths(searches: list[SearchResult]) -> list[int]:
    """The candidates the confirm stage weighs: every length some seed chose, most chosen first; with the
    runner-up by mean final weight when the seeds all chose one."""
    votes = Counter(found.chosen_length for found in searches)
    mean_weight = {k: float(np.mean([found.final_weights[k] for found in searches])) for k in searches[0].candidates}
    leaders = sorted(votes, key=lambda k: (-votes[k], -mean_weight[k]))
    if len(leaders) == 1:
        leaders.append(max((k for k in mean_weight if k != leaders[0]), key=mean_weight.get))
    return leaders


def halving_budgets(leaders: int, first_epochs: int, max_epochs: int) -> list[tuple[int, int]]:
    """(candidates, total epochs) of each successive-halving round: all leaders for `first_epochs`, then the
    better half for twice as many, ..., until one is left (or the epochs reach `max_epochs`)."""
    rounds, alive, epochs = [], leaders, first_epochs
    while alive > 1:
        epochs = min(epochs, max_epochs)
        rounds.append((alive, epochs))
        if epochs == max_epochs:
            break
        alive, epochs = math.ceil(alive / 2), epochs * 2
    return rounds


def confirm(data: SequenceData, config: RunConfig, leaders: list[int], choice: LengthChoice, observer: Observer,
            device: torch.device, group: Group | None = None) -> None:
    """Successive halving among `leaders` (phase "confirm"): each round trains the survivors on to the
    round's epochs (each continuing its own model) and keeps the better half by best validation NDCG@10.
    Sets the choice's length, decision and verdict from the last round."""
    rounds = halving_budgets(len(leaders), config.confirm_epochs, config.retrain_epochs)
    per_epoch = steps_per_epoch(data, config)
    total = sum(alive * (epochs - previous) * per_epoch
                for (alive, epochs), previous in zip(rounds, [0] + [e for _, e in rounds[:-1]]))
    observer.emit(PhaseStarted("confirm", total, f"successive halving among k = {leaders}, "
                                                 f"{' -> '.join(str(e) for _, e in rounds)} epochs",
                                   total // per_epoch))
    clock, done = StepClock(total), 0
    label = protocol_label(config.protocol, config.eval_negatives)
    alive, last, results, trained = list(leaders), {}, {}, {}
    for _, epochs in rounds:
        for k in alive:
            result = results.get(k)
            if result is not None and (result.stopped_early or trained[k] >= epochs):
                continue  # early stopping ended it: its best is final
            inner = _WithinPhase(observer, "confirm", done, total, clock)
            kept = {}
            keep = lambda checkpoint, kept=kept: kept.update(last=checkpoint)  # noqa: E731
            budget = config.replace(retrain_epochs=epochs)
            if k not in last:
                result = retrain(data, budget, k, inner, device, on_epoch_end=keep, group=group)
            else:
                shape = ModelShape.from_config(config, data.n_items, [k], data.features)
                model = build_model(shape, data.features, device)  # its weights come from the checkpoint
                result = fit(model, data, budget, np.random.default_rng(), inner, device, resume=last[k],
                             on_epoch_end=keep, group=group)
            done += (epochs - trained.get(k, 0)) * per_epoch
            last[k], results[k], trained[k] = kept["last"], result, len(result.history)
            observer.emit(CandidateScored("confirm", k, config.seed, len(result.history), result.best_valid, label))
        scores = {k: results[k].best_valid[VALIDATION_METRIC] for k in alive}
        choice.confirm_rounds.append({"epochs": epochs, "scores": scores})
        alive = sorted(alive, key=lambda k: -scores[k])[:math.ceil(len(alive) / 2)]
    observer.emit(PhaseFinished("confirm", clock.elapsed))
    final = choice.confirm_rounds[-1]
    ranked = sorted(final["scores"], key=lambda k: -final["scores"][k])
    winner = ranked[0]
    others = ", ".join(f"k = {k} {final['scores'][k]:.4f}" for k in ranked[1:])
    choice.verdict = (f"k = {winner} (confirmed by successive halving: validation {VALIDATION_METRIC} "
                      f"{final['scores'][winner]:.4f} after {final['epochs']} epochs, against {others}; "
                      f"before it: {choice.verdict})")
    choice.chosen_length, choice.decided = winner, True
    choice.seconds += clock.elapsed
    choice.confirm_seconds = clock.elapsed


def choose_exhaustively(data: SequenceData, config: RunConfig, observer: Observer, device: torch.device,
                        group: Group | None = None) -> LengthChoice:
    """Every candidate retrained alone under every seed (phase "exhaustive"), and the verdict with its
    noise band. The run's own seed's model of each length is kept: the chosen one is the run's model."""
    seeds, candidates = seeds_of(config), list(config.candidate_lengths)
    per_run = steps_per_epoch(data, config) * config.retrain_epochs
    total = per_run * len(seeds) * len(candidates)
    observer.emit(PhaseStarted("exhaustive", total, f"{len(candidates)} candidates {candidates} x "
                                                    f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}, "
                                                    f"up to {config.retrain_epochs} epochs each",
                                   config.retrain_epochs * len(seeds) * len(candidates)))
    clock = StepClock(total)
    label = protocol_label(config.protocol, config.eval_negatives)
    scores: dict[int, list[float]] = {k: [] for k in candidates}
    models: dict[int, RetrainResult] = {}
    for trial, seed in enumerate(seeds):
        for index, k in enumerate(candidates):
            inner = _WithinPhase(observer, "exhaustive", (trial * len(candidates) + index) * per_run, total, clock)
            result = retrain(data, config.replace(seed=seed), k, inner, device, group=group)
            scores[k].append(result.best_valid[VALIDATION_METRIC])
            observer.emit(CandidateScored("exhaustive", k, seed, len(result.history), result.best_valid, label))
            if seed == config.seed:
                models[k] = result
            else:
                del result
    observer.emit(PhaseFinished("exhaustive", clock.elapsed))
    chosen, decided, verdict, band, equal = exhaustive_verdict(scores)
    return LengthChoice("exhaustive", chosen, decided, verdict, candidates, seeds, scores=scores, band=band,
                        equal_lengths=equal, seconds=clock.elapsed, models=models)
