"""A whole run, its modes, cancellation, reproducibility and the CLI."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from engine.cli.main import format_result
from engine.cli.main import main as cli_main
from engine.core.config import RunConfig
from engine.core.events import (
    ArchitectureWeights,
    Cancelled,
    EpochFinished,
    PhaseStarted,
    RecordingObserver,
    SearchDecided,
    StepFinished,
)
from engine.data.sequences import build_sequences
from engine.data.synthetic import planted_log
from engine.training.fit import retrain
from engine.training.runner import run_automlp

ENGINE = Path(__file__).resolve().parents[2] / "engine"


@pytest.fixture(scope="module")
def data():
    return build_sequences(planted_log(n_users=120, n_items=200, min_length=8, max_length=16, seed=0))


def tiny(**changes) -> RunConfig:
    base = dict(candidate_lengths=[1, 2, 4], max_length=12, embedding_dim=16, sequence_hidden=16,
                channel_hidden=16, batch_size=32, lr=0.01, search_epochs=2, retrain_epochs=3, patience=2)
    return RunConfig(**{**base, **changes})


def test_a_run_searches_retrains_and_reports_both_protocols(data):
    observer = RecordingObserver()
    result = run_automlp(data, tiny(), observer)
    assert result.chosen_length in (1, 2, 4)
    assert set(result.test_metrics) == {"full", "popularity-100"}
    assert {"HR@10", "NDCG@10", "MRR@10", "HR@5", "NDCG@20"} <= set(result.test_metrics["full"])
    phases = [e.phase for e in observer.of_type(PhaseStarted)]
    assert phases == ["search", "retrain", "evaluate"]
    assert observer.of_type(ArchitectureWeights)[-1].candidates == (1, 2, 4)
    assert json.dumps(result.summary())  # JSON-ready


def test_a_run_reports_test_metrics_by_history_length_against_the_long_term_module(data):
    result = run_automlp(data, tiny(candidate_lengths=[2], retrain_epochs=1))
    rows = result.summary()["by_length"]
    assert sum(row["users"] for row in rows) == data.n_users
    assert {"model", "long_term_only", "short_term_gain"} <= set(rows[0])
    assert "by history length" in format_result(result.summary())


@pytest.mark.parametrize("mode", ["causal", "sampled", "faithful"])
@pytest.mark.parametrize("loss", ["ce", "sampled_softmax", "bce"])
def test_every_mode_and_loss_learns(data, mode, loss):
    result = retrain(data, tiny(mode=mode, loss=loss, negatives=4, retrain_epochs=6, patience=10), 2)
    losses = [epoch["train_loss"] for epoch in result.history]
    # one window per user and epoch is a noisy estimate: compare the first and the last two epochs
    assert np.mean(losses[-2:]) < losses[0]


def test_retraining_keeps_the_best_validation_epoch(data):
    result = retrain(data, tiny(retrain_epochs=4, patience=10), 2)
    best = max(result.history, key=lambda e: e["NDCG@10"])
    assert result.best_epoch == best["epoch"]
    assert result.best_valid["NDCG@10"] == best["NDCG@10"]


def test_early_stopping_waits_patience_epochs(data):
    result = retrain(data, tiny(retrain_epochs=30, patience=1, lr=0.05), 2)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 1


def test_a_cancelled_run_stops_within_one_step(data):
    observer = RecordingObserver(cancel_when=lambda e: isinstance(e, StepFinished))
    with pytest.raises(Cancelled):
        run_automlp(data, tiny(), observer)
    steps = observer.of_type(StepFinished)
    assert [e.step for e in steps] == [1]
    assert not observer.of_type(EpochFinished)


def test_runs_repeat_exactly_with_the_same_seed_on_cpu(data):
    first = run_automlp(data, tiny(device="cpu"))
    second = run_automlp(data, tiny(device="cpu"))
    assert np.array_equal(first.search.alpha_history, second.search.alpha_history)
    assert first.test_metrics == second.test_metrics


def test_the_search_decision_is_announced_before_the_retraining(data):
    observer = RecordingObserver()
    result = run_automlp(data, tiny(search_epochs=1, retrain_epochs=1), observer)
    decided = observer.of_type(SearchDecided)
    assert len(decided) == 1
    retrain_start = next(i for i, e in enumerate(observer.events)
                         if isinstance(e, PhaseStarted) and e.phase == "retrain")
    assert observer.events.index(decided[0]) < retrain_start
    assert decided[0] == SearchDecided(result.chosen_length, result.search.final_weights, result.search.margin,
                                       result.search.noise, result.search.decisive, result.search.reason)


def test_a_single_candidate_skips_the_search(data):
    result = run_automlp(data, tiny(candidate_lengths=[3]))
    assert result.search is None and result.chosen_length == 3


def test_cli_run_on_synthetic_data_prints_the_choice_and_writes_json(tmp_path, capsys):
    out = tmp_path / "result.json"
    code = cli_main(["run", "--synthetic", "--quiet", "--set", "search_epochs=2", "--set", "retrain_epochs=2",
                     "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert re.search(r"chosen short-term length: k = \d", printed)
    assert "[popularity-100]" in printed and "[full]" in printed
    saved = json.loads(out.read_text())
    assert len(saved["search"]["weight_history"][0]) == 4
    assert saved["search"]["reason"] in printed  # the verdict names its reason, in the summary and the print


def test_cli_refuses_an_impossible_configuration_with_its_message(capsys):
    code = cli_main(["run", "--synthetic", "--quiet", "--set", "candidate_lengths=[5, 50]"])
    assert code == 2
    assert "candidate_lengths: 50 is longer than max_length T=20" in capsys.readouterr().err


def test_cli_run_on_a_csv_file(tmp_path, capsys):
    log = planted_log(n_users=40, n_items=50, min_length=6, max_length=10)
    lines = ["user,item,timestamp"] + [f"{u},{i},{t}" for u, i, t in zip(log.users, log.items, log.timestamps)]
    (tmp_path / "log.csv").write_text("\n".join(lines))
    code = cli_main(["run", str(tmp_path / "log.csv"), "--quiet", "--preset", "quick-demo", "--set",
                     "search_epochs=1", "--set", "retrain_epochs=1", "--set", "eval_negatives=20"])
    assert code == 0 and "chosen short-term length" in capsys.readouterr().out
