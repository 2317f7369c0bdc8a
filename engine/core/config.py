"""The one configuration object of a run: a dataclass, validated, saved and loaded as TOML.

The GUI form, the CLI flags (`--set key=value`) and the stored run record are all views of `RunConfig`.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import tomli_w

from engine.core.files import MiB, FileRefused, read_bounded

CONFIG_VERSION = 1

MODES = ("causal", "sampled", "faithful")
LOSSES = ("ce", "sampled_softmax", "bce", "auto")
PROTOCOLS = ("full", "popularity", "uniform")
SEARCH_ORDERS = ("first", "second")
# How the short-term length is chosen: the differentiable "search" (AutoMLP), or "exhaustive" retraining of
# every candidate and the best on validation (the paper's AutoMLP-s)
STRATEGIES = ("search", "exhaustive")
# Which window of a training sequence a causal epoch trains: one ending at a random point (the default), or
# the last T items (SASRec's and SASRec+'s recipe: every position of the most recent window)
TRAINING_WINDOWS = ("random", "last")
TOKEN_MAPS = ("positional", "relative")
# The retraining's learning rate after its warm-up: held, or a cosine from lr down to 0 at retrain_epochs
LR_DECAYS = ("none", "cosine")
DEVICES = ("auto", "cpu", "cuda")
# The number format of the training loss's item scores (the product with every item, or every sampled one, and
# its softmax): "bf16" where the device computes bfloat16 natively (engine.training.device.native_bf16)
PRECISIONS = ("auto", "fp32", "bf16")
# torch.manual_seed takes a 64-bit integer and numpy's generators no negative one; a store keeps it as a
# signed 64-bit column
MAX_SEED = 2**63 - 1
# a run configuration is a page of TOML; anything larger is not one (and /dev/zero would never end)
MAX_CONFIG_BYTES = MiB


AUTO = "auto"
# Data-fitted defaults (`fitted_to`): T covers this percentile of the training histories, within
# [MIN_FITTED_T, MAX_FITTED_T]; the candidates are the FITTED_CANDIDATES largest of LENGTH_LADDER below T.
FITTED_PERCENTILE = 95
MIN_FITTED_T, MAX_FITTED_T = 8, 200
LENGTH_LADDER = (1, 2, 3, 5, 10, 20, 50, 100)
FITTED_CANDIDATES = 5
# "auto" loss: the sampled softmax above this many items, the full softmax below. On Amazon Sports (18,357
# items) it trained as accurately in a third of the time (BENCHMARKS.md, sampled softmax); smaller
# catalogues were not measured, and at ML-1M's 3,416 items 3,000 draws would save nothing.
SAMPLED_SOFTMAX_ABOVE = 15_000


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key and the problem."""


@dataclass
class RunConfig:
    # Architecture (paper section 2.3)
    # K and T: "auto" fits them to the data's history lengths when a run starts (`fitted_to`)
    candidate_lengths: list[int] | str = AUTO  # K
    max_length: int | str = AUTO  # T
    num_layers: int = 2  # L
    embedding_dim: int = 64  # D
    sequence_hidden: int = 64  # R_s (faithful/sampled modes; causal mode ties hidden units to positions)
    channel_hidden: int = 128  # R_c
    dropout: float = 0.2
    # Objective (paper section 2.4)
    # "ce": softmax over all items; "sampled_softmax": softmax over the batch's targets plus `sampled_negatives`
    # uniform items, logQ-corrected; "bce": paper Eq. 5 with `negatives` sampled items per target
    loss: str = AUTO  # "auto": "sampled_softmax" above SAMPLED_SOFTMAX_ABOVE items, else "ce"
    negatives: int = 1
    sampled_negatives: int = 3000
    # Optimisation (paper 3.5: Adam, lr 1e-3, betas 0.9/0.999; early stopping, patience 10)
    batch_size: int = 128
    lr: float = 3e-3  # the paper's 1e-3 needed twice the epochs for the same accuracy (BENCHMARKS.md)
    weight_decay: float = 0.0
    search_epochs: int = 5
    retrain_epochs: int = 30
    patience: int = 10
    lr_warmup_epochs: int = 0  # retraining: the learning rate rises linearly from 0 to lr over these epochs
    lr_decay: str = "none"  # then "none" (held at lr) or "cosine" (to 0 at the last of retrain_epochs)
    # Search (paper Algorithm 1, DARTS)
    # "second": one-step unrolled W' = W - xi * grad (Eq. 7); "first": xi = 0. On MovieLens-1M both chose
    # the same length with the same weights, and first order costs 2.5x less on a CPU (BENCHMARKS.md).
    search_order: str = "first"
    xi: float = 1e-3
    arch_lr: float = 0.03  # Adam on alpha; DARTS's 3e-4 leaves alpha near uniform (DESIGN, pitfalls)
    # Epochs of W alone before alpha moves (P-DARTS, DARTS+: the candidate that learns fastest early should
    # not win for that alone)
    search_warmup_epochs: int = 0
    # Stop the search once its choice has been decisive at the end of this many epochs in a row
    # (engine.training.search.decide); 0: always run every search epoch
    settle_epochs: int = 0
    # The length choice (engine.training.length_choice)
    strategy: str = "search"
    seeds: int = 1  # the search once per seed (seed, seed + 1, ...); exhaustive: every candidate per seed
    # Search only: when the seeds do not agree, successive halving among the leading candidates, retrained
    # this many epochs in the first round and twice as many in each next; 0: no confirm stage
    confirm_epochs: int = 0
    # Training mode (DESIGN, Training modes)
    mode: str = "causal"
    training_windows: str = "random"  # causal mode: "random" end points, or the "last" T items of each sequence
    token_maps: str = "positional"  # causal mode: a weight per pair of positions, or "relative": per look-back
    # Data and evaluation
    min_user_interactions: int = 3  # leave-one-out needs one training, one validation, one test item
    protocol: str = "full"  # "full" ranking, or 100 negatives by "popularity" (paper) or "uniform"
    eval_negatives: int = 100
    device: str = "auto"
    # "bf16": the training loss scores the items in bfloat16 (weights, layers and evaluation stay float32);
    # "auto": bf16 where the device computes it natively, else fp32. On ML-1M bf16 tested as accurately as
    # fp32 (BENCHMARKS.md, precision)
    precision: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.candidate_lengths, (str, list)):
            try:
                self.candidate_lengths = list(self.candidate_lengths)
            except TypeError:
                pass  # a single number, say: validate() names the key and what it expected
        self.validate()

    @property
    def is_fitted(self) -> bool:
        """Whether K, T and the loss are set (not "auto"): what a model is built and trained from."""
        return self.candidate_lengths != AUTO and self.max_length != AUTO and self.loss != AUTO

    def fitted_to(self, train_lengths: np.ndarray, n_items: int) -> "RunConfig":
        """This configuration with "auto" K, T and loss resolved from the data:

        T = the 95th percentile of the training lengths, rounded up to a multiple of 8, within [8, 200];
        K = the five largest of 1, 2, 3, 5, 10, 20, 50, 100 below T (at T = 200: 5, 10, 20, 50, 100);
        loss = "sampled_softmax" above SAMPLED_SOFTMAX_ABOVE items, else "ce".
        Explicit values are kept; a T too short for explicit candidates is raised to the longest of them.
        """
        T = self.max_length
        if T == AUTO:
            lengths = np.asarray(train_lengths)
            high = float(np.percentile(lengths, FITTED_PERCENTILE)) if len(lengths) else MIN_FITTED_T
            T = int(min(MAX_FITTED_T, max(MIN_FITTED_T, -(-int(np.ceil(high)) // 8) * 8)))
            if self.candidate_lengths != AUTO:
                T = max(T, max(self.candidate_lengths))
        K = self.candidate_lengths
        if K == AUTO:
            K = [k for k in LENGTH_LADDER if k < T][-FITTED_CANDIDATES:]
        loss = self.loss
        if loss == AUTO:
            loss = "sampled_softmax" if n_items > SAMPLED_SOFTMAX_ABOVE else "ce"
        return self.replace(max_length=T, candidate_lengths=list(K), loss=loss)

    def fitted_summary(self, fitted: "RunConfig") -> str:
        """One line saying what "auto" became, for the CLI, the GUI and the run's messages ("" if nothing)."""
        parts = []
        if self.max_length == AUTO:
            parts.append(f"max_length auto -> T = {fitted.max_length} ({FITTED_PERCENTILE}th percentile of the "
                         f"training lengths, within {MIN_FITTED_T}..{MAX_FITTED_T})")
        if self.candidate_lengths == AUTO:
            parts.append(f"candidate_lengths auto -> {fitted.candidate_lengths}")
        if self.loss == AUTO:
            size = (f"more than {SAMPLED_SOFTMAX_ABOVE:,} items" if fitted.loss == "sampled_softmax"
                    else f"{SAMPLED_SOFTMAX_ABOVE:,} items or fewer")
            parts.append(f"loss auto -> {fitted.loss} ({size})")
        return "; ".join(parts)

    def validate(self) -> None:
        """Raises ConfigError naming the first wrong key."""
        _check_types(self)
        k = [] if self.candidate_lengths == AUTO else self.candidate_lengths
        if self.candidate_lengths != AUTO and not k:
            raise ConfigError("candidate_lengths: give at least one candidate short-term length")
        if any(x <= 0 for x in k):
            raise ConfigError(f"candidate_lengths: every length must be positive, got {k}")
        if len(set(k)) != len(k):
            raise ConfigError(f"candidate_lengths: lengths must be distinct, got {k}")
        positive = ([] if self.max_length == AUTO else ["max_length"]) + ["num_layers", "embedding_dim", "sequence_hidden", "channel_hidden",
                    "negatives", "sampled_negatives", "batch_size", "search_epochs", "retrain_epochs", "patience",
                    "eval_negatives", "seeds"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        if k and self.max_length != AUTO and max(k) > self.max_length:
            raise ConfigError(f"candidate_lengths: {max(k)} is longer than max_length T={self.max_length}; "
                              "a short-term window cannot exceed the sequence")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout}")
        for name in ("lr", "arch_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        for name in ("search_warmup_epochs", "confirm_epochs", "settle_epochs", "lr_warmup_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must not be negative, got {getattr(self, name)}")
        if self.search_warmup_epochs >= self.search_epochs:
            raise ConfigError(f"search_warmup_epochs: {self.search_warmup_epochs} leaves alpha no epoch of the "
                              f"{self.search_epochs} search epochs; make it smaller than search_epochs")
        if self.lr_warmup_epochs >= self.retrain_epochs:
            raise ConfigError(f"lr_warmup_epochs: {self.lr_warmup_epochs} leaves no epoch at the full learning rate "
                              f"of the {self.retrain_epochs} retraining epochs; make it smaller than retrain_epochs")
        if self.confirm_epochs and self.lr_warmup_epochs >= self.confirm_epochs:
            # the confirm stage's first round retrains for confirm_epochs only
            raise ConfigError(f"lr_warmup_epochs: {self.lr_warmup_epochs} outlasts the confirm stage's first round of "
                              f"{self.confirm_epochs} epochs; make it smaller than confirm_epochs")
        for name in ("xi", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must not be negative, got {getattr(self, name)}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed: must be in 0..{MAX_SEED} (2**63 - 1), got {self.seed}")
        if self.seed + self.seeds - 1 > MAX_SEED:
            raise ConfigError(f"seeds: seeds {self.seed}..{self.seed + self.seeds - 1} pass {MAX_SEED} (2**63 - 1)")
        if self.min_user_interactions < 3:
            raise ConfigError("min_user_interactions: leave-one-out needs at least 3 interactions per user, "
                              f"got {self.min_user_interactions}")
        for name, allowed in (("mode", MODES), ("loss", LOSSES), ("protocol", PROTOCOLS),
                              ("search_order", SEARCH_ORDERS), ("device", DEVICES), ("strategy", STRATEGIES),
                              ("training_windows", TRAINING_WINDOWS), ("lr_decay", LR_DECAYS),
                              ("token_maps", TOKEN_MAPS), ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}: {getattr(self, name)!r} is not one of {', '.join(allowed)}")

        if self.training_windows == "last" and self.mode != "causal":
            raise ConfigError(f"training_windows: 'last' trains every position of a window, which only the causal "
                              f"mode does (mode is {self.mode!r})")
        if self.token_maps == "relative" and self.mode != "causal":
            raise ConfigError(f"token_maps: 'relative' shares one weight per look-back across positions, which only "
                              f"the causal mode's maps have (mode is {self.mode!r})")

    @property
    def chosen_xi(self) -> float:
        """The unrolling step of the architecture gradient: 0 for a first-order search."""
        return self.xi if self.search_order == "second" else 0.0

    def replace(self, **changes) -> "RunConfig":
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"{sorted(unknown)[0]}: unknown configuration key")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        values = dict(values)
        version = values.pop("version", CONFIG_VERSION)
        values.pop("description", None)  # a file's own note on what it is for
        if not isinstance(version, int) or version > CONFIG_VERSION:
            raise ConfigError(f"version: configuration version {version!r} is newer than this release "
                              f"understands ({CONFIG_VERSION})")
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(f"{key}: unknown configuration key")
        try:
            return cls(**values)
        except TypeError as exc:  # a constructor call that validation could not catch
            raise ConfigError(str(exc)) from exc

    def save_toml(self, path: str | Path) -> None:
        text = tomli_w.dumps({"version": CONFIG_VERSION, **self.to_dict()})
        Path(path).write_text(text, encoding="utf-8")

    @classmethod
    def load_toml(cls, path: str | Path) -> "RunConfig":
        path = Path(path)
        try:
            values = tomllib.loads(read_bounded(path, MAX_CONFIG_BYTES).decode("utf-8"))
        except FileRefused as exc:
            raise ConfigError(f"configuration {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path.name}: not valid TOML: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path.name}: cannot be read: {exc}") from exc
        except RecursionError:
            raise ConfigError(f"{path.name}: not a run configuration (nested too deeply)") from None
        return cls.from_dict(values)


def parse_override(text: str) -> tuple[str, object]:
    """`'lr=0.01'` -> `('lr', 0.01)`; the value is read as TOML, so lists and strings work too."""
    if "=" not in text:
        raise ConfigError(f"{text!r}: expected key=value")
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word such as `mode=sampled`
    except RecursionError:
        raise ConfigError(f"{key}: the value is nested too deeply") from None
    return key, value


def _check_types(config: RunConfig) -> None:
    for f in fields(config):
        value = getattr(config, f.name)
        expected = f.type
        if expected == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif expected == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                setattr(config, f.name, float(value))
        elif expected == "str":
            ok = isinstance(value, str)
        elif expected == "list[int]":
            ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        elif expected == "int | str":
            ok = value == AUTO or (isinstance(value, int) and not isinstance(value, bool))
            expected = 'int or "auto"'
        elif expected == "list[int] | str":
            ok = value == AUTO or (isinstance(value, list) and
                                   all(isinstance(v, int) and not isinstance(v, bool) for v in value))
            expected = 'list of int or "auto"'

        else:  # pragma: no cover - a field type this checker does not know
            raise AssertionError(f"unchecked field type {expected}")
        if not ok:
            raise ConfigError(f"{f.name}: expected {expected}, got {type(value).__name__} {value!r}")
