"""Choosing the short-term length with evidence (engine.training.length_choice): the search over several
seeds as one job, exhaustive retraining as a run type, the successive-halving confirm stage, W warm-up
before alpha moves, and verdicts that name their evidence, a non-decision included."""

from __future__ import annotations

import numpy as np
import pytest

from engine.cli.main import main as cli_main
from engine.core.config import ConfigError, RunConfig
from engine.core.events import (
    ArchitectureWeights,
    CandidateScored,
    Cancelled,
    EpochFinished,
    LengthChosen,
    PhaseStarted,
    RecordingObserver,
    StepFinished,
)
from engine.core.run_eta import RunEta
from engine.data.run_records import get_run
from engine.data.sequences import build_sequences
from engine.data.synthetic import planted_log
from engine.experiments.stored_run import resume_run, run_on_dataset
from engine.training.fit import retrain
from engine.training.length_choice import (
    LengthChoice,
    confirm,
    exhaustive_verdict,
    halving_budgets,
    search_verdict,
)
from engine.training.runner import run_automlp
from engine.training.search import search, search_outcome

CONFIG = RunConfig(candidate_lengths=[1, 2, 4], max_length=10, embedding_dim=8, sequence_hidden=8, channel_hidden=8,
                   dropout=0.0, batch_size=16, loss="ce", search_epochs=2, retrain_epochs=2, eval_negatives=20,
                   device="cpu", seed=3)


@pytest.fixture(scope="module")
def data():
    return build_sequences(planted_log(n_users=80, n_items=60, min_length=8, max_length=14, seed=3))


def searched(chosen: int, weights: dict[int, float], decisive: bool = True):
    """A finished search whose softmax(alpha) ended at `weights` (held for 8 steps), for the verdict rules."""
    alpha = np.log(np.array([list(weights.values())] * 8))
    found = search_outcome(list(weights), alpha, [0.0] * 8, [0.0] * 8, 1.0)
    assert found.chosen_length == chosen and found.decisive == decisive
    return found


# ---------------------------------------------------------------- the verdict rules


def test_seeds_that_mostly_agree_decide_and_the_verdict_counts_them():
    searches = [searched(20, {5: 0.1, 20: 0.9})] * 4 + [searched(5, {5: 0.8, 20: 0.2})]
    chosen, decided, verdict = search_verdict(searches)
    assert (chosen, decided, verdict) == (20, True, "k = 20 (4 of 5 seeds)")


def test_seeds_that_split_evenly_are_reported_as_undecided_with_the_split():
    searches = [searched(20, {5: 0.1, 20: 0.9}), searched(5, {5: 0.8, 20: 0.2})]
    chosen, decided, verdict = search_verdict(searches)
    assert not decided
    assert "undecided" in verdict and "k = 20: 1" in verdict and "k = 5: 1" in verdict and "of 2 seeds" in verdict


def test_a_tie_between_seeds_goes_to_the_higher_mean_weight():
    searches = [searched(20, {5: 0.4, 20: 0.6}), searched(5, {5: 0.95, 20: 0.05})]
    assert search_verdict(searches)[0] == 5  # mean weight 0.675 against 0.325


def test_one_seed_decides_by_its_margin_and_names_it():
    chosen, decided, verdict = search_verdict([searched(5, {5: 0.7, 20: 0.3})])
    assert decided and verdict.startswith("k = 5 (1 seed: softmax(alpha) 0.700, 0.400 ahead")


def test_one_seed_within_noise_is_undecided_and_says_why():
    chosen, decided, verdict = search_verdict([searched(5, {5: 0.505, 20: 0.495}, decisive=False)])
    assert not decided and "undecided" in verdict and "margin within noise" in verdict


def test_exhaustive_best_outside_the_others_noise_decides():
    chosen, decided, verdict, band, equal = exhaustive_verdict({5: [0.10, 0.11, 0.10], 20: [0.15, 0.16, 0.15]})
    assert (chosen, decided, equal) == (20, True, [20])
    assert band == pytest.approx(np.mean([0.15, 0.16, 0.15]) - np.std([0.15, 0.16, 0.15], ddof=1))  # same spreads
    assert verdict.startswith("k = 20 (validation NDCG@10, 3 seeds: 0.1533 ± 0.0058; next k = 5 at 0.1033")


def test_the_exhaustive_band_pools_the_spread_over_every_length():
    # the best length's three seeds agree by chance; the other length's spread shows the seed noise
    scores = {3: [0.0287, 0.0287, 0.0286], 2: [0.0297, 0.0273, 0.0288]}
    chosen, decided, verdict, band, equal = exhaustive_verdict(scores)
    pooled = np.sqrt(np.mean([np.var(v, ddof=1) for v in scores.values()]))
    assert band == pytest.approx(np.mean(scores[3]) - pooled)
    assert (chosen, decided, sorted(equal)) == (3, False, [2, 3])
    assert "the length does not matter on this data" in verdict


def test_exhaustive_lengths_within_the_band_are_reported_equal_within_noise():
    scores = {5: [0.100, 0.110], 20: [0.104, 0.114], 50: [0.05, 0.05]}
    chosen, decided, verdict, band, equal = exhaustive_verdict(scores)
    assert not decided and chosen == 20 and equal == [20, 5]
    assert verdict.startswith("k = 20 and k = 5 are equal within noise on this data")


def test_exhaustive_with_every_length_within_noise_says_the_length_does_not_matter():
    chosen, decided, verdict, _, equal = exhaustive_verdict({5: [0.10, 0.12], 20: [0.11, 0.115]})
    assert not decided and sorted(equal) == [5, 20]
    assert verdict.startswith("the length does not matter on this data")


def test_one_exhaustive_seed_says_it_has_no_noise_band():
    verdict = exhaustive_verdict({5: [0.10], 20: [0.12]})[2]
    assert "1 seed, no noise band from one seed" in verdict


def test_successive_halving_keeps_half_and_doubles_the_epochs_up_to_the_cap():
    assert halving_budgets(4, 2, 30) == [(4, 2), (2, 4)]
    assert halving_budgets(5, 3, 30) == [(5, 3), (3, 6), (2, 12)]
    assert halving_budgets(3, 8, 10) == [(3, 8), (2, 10)]
    assert halving_budgets(3, 20, 10) == [(3, 10)]


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize("changes, message", [
    (dict(seeds=0), "seeds: must be positive"),
    (dict(strategy="grid"), "strategy: 'grid' is not one of search, exhaustive"),
    (dict(search_warmup_epochs=2), "search_warmup_epochs: 2 leaves alpha no epoch"),
    (dict(confirm_epochs=-1), "confirm_epochs: must not be negative"),
    (dict(seed=2**63 - 2, seeds=3), "seeds: seeds"),
])
def test_impossible_length_choice_settings_are_refused_by_name(changes, message):
    with pytest.raises(ConfigError, match=message):
        CONFIG.replace(**changes).validate()


# ---------------------------------------------------------------- the jobs


def test_a_multi_seed_search_is_one_phase_whose_steps_and_epochs_count_on_across_seeds(data):
    events = RecordingObserver()
    result = run_automlp(data, CONFIG.replace(seeds=3), events)
    starts = [e for e in events.of_type(PhaseStarted) if e.phase == "search"]
    assert len(starts) == 1 and starts[0].epochs == 3 * CONFIG.search_epochs
    steps = [e.step for e in events.of_type(StepFinished) if e.phase == "search"]
    assert steps == sorted(steps) and steps[-1] == starts[0].total_steps
    epochs = [e.epoch for e in events.of_type(EpochFinished) if e.phase == "search"]
    assert epochs == list(range(1, 3 * CONFIG.search_epochs + 1))
    weights = events.of_type(ArchitectureWeights)
    assert sorted({(e.trial, e.seed) for e in weights}) == [(0, 3), (1, 4), (2, 5)]
    choice = result.summary()["length_choice"]
    assert choice["seeds"] == [3, 4, 5] and len(choice["searches"]) == 3
    assert sum(choice["votes"].values()) == 3
    assert events.of_type(LengthChosen)[-1].verdict == choice["verdict"]


def test_each_seed_of_a_multi_seed_search_is_the_search_that_seed_runs_alone(data):
    together = run_automlp(data, CONFIG.replace(seeds=2)).summary()["length_choice"]["searches"]
    alone = search(data, CONFIG.replace(seed=4))
    assert together[1]["final_weights"] == {str(k): w for k, w in alone.final_weights.items()}


def test_an_exhaustive_run_trains_every_candidate_per_seed_and_keeps_the_run_seeds_model(data):
    events = RecordingObserver()
    config = CONFIG.replace(strategy="exhaustive", seeds=2)
    result = run_automlp(data, config, events)
    assert [e.phase for e in events.of_type(PhaseStarted)] == ["exhaustive", "evaluate"]
    scored = events.of_type(CandidateScored)
    assert sorted((e.length, e.seed) for e in scored) == [(k, s) for k in (1, 2, 4) for s in (3, 4)]
    choice = result.summary()["length_choice"]
    assert choice["strategy"] == "exhaustive" and choice["chosen_length"] == result.chosen_length
    means = {int(k): v["mean"] for k, v in choice["scores"].items()}
    assert result.chosen_length == max(means, key=means.get)
    alone = retrain(data, CONFIG, result.chosen_length)  # the run's own seed, that length
    assert result.retrain.best_valid == alone.best_valid
    assert set(result.seconds) == {"exhaustive", "evaluate"}


def test_the_confirm_stage_continues_each_survivor_to_the_round_as_if_trained_straight(data):
    events = RecordingObserver()
    choice = LengthChoice("search", 1, False, "undecided", [1, 2, 4], [3])
    config = CONFIG.replace(confirm_epochs=1, retrain_epochs=4)
    confirm(data, config, [1, 2, 4], choice, events, device=__import__("torch").device("cpu"))
    first, second = choice.confirm_rounds
    assert (first["epochs"], sorted(first["scores"])) == (1, [1, 2, 4])
    survivors = sorted(first["scores"], key=lambda k: -first["scores"][k])[:2]
    assert (second["epochs"], sorted(second["scores"])) == (2, sorted(survivors))
    for k in survivors:
        straight = retrain(data, config.replace(retrain_epochs=2), k)
        assert second["scores"][k] == pytest.approx(straight.best_valid["NDCG@10"], abs=1e-6)
    winner = max(second["scores"], key=second["scores"].get)
    assert choice.decided and choice.chosen_length == winner
    assert choice.verdict.startswith(f"k = {winner} (confirmed by successive halving")
    assert "before it: undecided" in choice.verdict
    assert [e.phase for e in events.of_type(PhaseStarted)] == ["confirm"]


def test_an_undecided_search_with_confirm_epochs_is_decided_by_the_confirm_stage(data):
    # alpha's learning rate too small to leave uniform: the margin is within noise
    config = CONFIG.replace(confirm_epochs=1, search_epochs=1, arch_lr=1e-5)
    events = RecordingObserver()
    result = run_automlp(data, config, events)
    choice = result.summary()["length_choice"]
    assert "confirm" in choice and choice["decided"]
    assert "confirm" in result.seconds and result.chosen_length == choice["chosen_length"]
    assert [e.phase for e in events.of_type(PhaseStarted)] == ["search", "confirm", "retrain", "evaluate"]


def test_warm_up_epochs_train_the_weights_while_alpha_stays_put(data):
    events = RecordingObserver()
    found = search(data, CONFIG.replace(search_epochs=3, search_warmup_epochs=1), events)
    per_epoch = len(found.alpha_history) // 3
    assert np.all(found.alpha_history[:per_epoch] == found.alpha_history[0])
    assert not np.allclose(found.alpha_history[-1], found.alpha_history[0])
    assert all(np.isfinite(found.valid_losses))  # the validation loss is measured during the warm-up too


def test_a_stored_multi_seed_run_keeps_its_verdict_and_a_resume_in_the_retraining_keeps_it_too(sqlite_store):
    config = RunConfig(candidate_lengths=[1, 2, 4], max_length=10, embedding_dim=8, sequence_hidden=8,
                       channel_hidden=8, batch_size=32, search_epochs=1, retrain_epochs=2, eval_negatives=20,
                       device="cpu", seeds=2)
    cancel = RecordingObserver(cancel_when=lambda e: isinstance(e, EpochFinished) and e.phase == "retrain")
    with pytest.raises(Cancelled):
        run_on_dataset(sqlite_store, "planted", config, cancel)
    before = cancel.of_type(LengthChosen)[0]
    resumed = resume_run(sqlite_store, 1)
    with sqlite_store.session() as session:
        stored = get_run(session, 1).metrics["length_choice"]
    assert stored["verdict"] == before.verdict == resumed.summary()["length_choice"]["verdict"]
    assert stored["seeds"] == [0, 1] and len(stored["searches"]) == 2


def test_the_cli_runs_an_exhaustive_job_and_prints_the_verdict_with_every_lengths_figures(capsys):
    status = cli_main(["run", "--synthetic", "--quiet", "--strategy", "exhaustive", "--seeds", "2",
                       "--set", "candidate_lengths=[1,2]", "--set", "max_length=8", "--set", "retrain_epochs=1",
                       "--set", "eval_negatives=20", "--set", "device='cpu'"])
    out = capsys.readouterr().out
    assert status == 0
    assert "verdict" in out and "validation NDCG@10 per k over 2 seed(s)" in out
    assert "k =    1:" in out and "k =    2:" in out


def test_the_whole_run_eta_of_an_exhaustive_run_counts_its_candidates_then_the_evaluation():
    now = [0.0]
    eta = RunEta(CONFIG.replace(strategy="exhaustive"), clock=lambda: now[0])
    eta.observe(PhaseStarted("exhaustive", 60, epochs=6))  # 3 candidates x 2 epochs, 10 steps per epoch
    eta.observe(StepFinished("exhaustive", 10, 60, eta_seconds=50.0))  # 1 s per step
    assert eta.remaining() == pytest.approx(50.0 + 0.5 * 10 * 1.0)


def test_an_exhaustive_run_reports_each_candidates_own_model_per_history_length(data):
    result = run_automlp(data, CONFIG.replace(strategy="exhaustive"))
    for row in result.by_length:
        assert sorted(row["per_candidate"]) == ["1", "2", "4"]
        # the run's model is the chosen length's own model: its column is the model's
        assert row["per_candidate"][str(result.chosen_length)] == pytest.approx(row["model"]["NDCG@10"])


def test_a_search_whose_choice_has_settled_stops_before_its_last_epoch(data):
    events = RecordingObserver()
    config = CONFIG.replace(search_epochs=6, settle_epochs=1, arch_lr=0.5)
    found = search(data, config, events)
    full = search(data, config.replace(settle_epochs=0))
    assert found.decisive and len(found.alpha_history) < len(full.alpha_history)
    assert np.array_equal(found.alpha_history, full.alpha_history[:len(found.alpha_history)])  # the same steps, fewer
    assert any("search stopped after epoch" in getattr(e, "text", "") for e in events.events)


def test_a_search_that_has_not_settled_runs_every_epoch(data):
    config = CONFIG.replace(search_epochs=3, settle_epochs=1, arch_lr=1e-5)
    found = search(data, config)
    assert not found.decisive
    assert len(found.alpha_history) == len(search(data, config.replace(settle_epochs=0)).alpha_history)


def test_the_summary_keeps_every_tenth_step_of_each_seeds_weights_and_the_last(data):
    config = CONFIG.replace(seeds=2, search_epochs=3)  # 15 steps per seed
    searches = run_automlp(data, config).summary()["length_choice"]["searches"]
    total = len(search(data, config.replace(seeds=1)).weight_history)
    for kept in searches:
        assert kept["weight_steps"] == [*range(1, total + 1, 10), total]
        assert len(kept["weight_history"]) == len(kept["weight_steps"])


def test_a_cancel_during_a_later_seeds_search_stops_the_multi_seed_job(data):
    events = RecordingObserver(cancel_when=lambda e: isinstance(e, ArchitectureWeights) and e.trial == 1)
    with pytest.raises(Cancelled):
        run_automlp(data, CONFIG.replace(seeds=3), events)
    assert not any(isinstance(e, ArchitectureWeights) and e.trial == 2 for e in events.events)
