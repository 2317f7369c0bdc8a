"""One tiny trained AutoMLP run, shared by the recommendation and bundle tests (trained once per session)."""

from __future__ import annotations

from functools import lru_cache

from engine.core.config import RunConfig
from engine.data.sequences import SequenceData, build_sequences
from engine.data.synthetic import planted_log
from engine.training.runner import RunResult, run_automlp


@lru_cache(maxsize=1)
def tiny_run() -> tuple[RunResult, SequenceData]:
    """A search over k in {1, 2, 4} and a retrain, one epoch each, on 120 planted users: a few seconds."""
    log = planted_log(n_users=120, n_items=80, min_length=8, max_length=16, seed=3)
    # titles for some items only: views must cope with items that have none
    log.item_titles = {f"i{i}": f"Title {i}" for i in range(1, 41)}
    data = build_sequences(log)
    config = RunConfig(candidate_lengths=[1, 2, 4], max_length=10, embedding_dim=16, sequence_hidden=16,
                       channel_hidden=32, batch_size=64, search_epochs=1, retrain_epochs=1, eval_negatives=20,
                       device="cpu")
    return run_automlp(data, config), data
