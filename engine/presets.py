"""Named starting configurations, offered by the GUI's Experiment page and `automlp run --preset`."""

from __future__ import annotations

from engine.config import RunConfig


def quick_demo() -> RunConfig:
    """Small and fast: the generated demo data (planted lag 3) trains in about a minute on a laptop CPU."""
    return RunConfig(candidate_lengths=[1, 2, 4, 8], max_length=20, num_layers=2, embedding_dim=32,
                     sequence_hidden=32, channel_hidden=64, dropout=0.1, batch_size=64, lr=0.01, arch_lr=0.03,
                     search_epochs=15, retrain_epochs=30, patience=5)


def paper_ml1m() -> RunConfig:
    """MovieLens-1M as in the paper's Table 2: users with >= 10 interactions, 100 popularity negatives,
    the second-order search and patience 10 (the learning rate stays at the faster 3e-3)."""
    return RunConfig(candidate_lengths=[5, 10, 20, 50, 100], max_length=200, embedding_dim=64,
                     search_order="second", retrain_epochs=100, min_user_interactions=10, protocol="popularity")


def paper_beauty() -> RunConfig:
    """Amazon Beauty as in the paper's Table 2: short sequences, so shorter T and candidates."""
    return RunConfig(candidate_lengths=[1, 2, 3, 5, 10], max_length=50, embedding_dim=64, dropout=0.5,
                     search_order="second", retrain_epochs=100, min_user_interactions=10, protocol="popularity")


PRESETS = {"quick-demo": quick_demo, "paper-ml1m": paper_ml1m, "paper-beauty": paper_beauty}
