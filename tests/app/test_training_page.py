"""The Training page on the real widgets: a tiny run end to end, cancel, a live event loop, errors."""

from __future__ import annotations

import time

import numpy as np

import pytest
from PySide6.QtCore import QTimer

from app.context import AppContext
from app.pages.training_page import TrainingPage
from engine.core.presets import quick_demo
from engine.data.run_records import get_run, list_runs, run_series
from tests.app.store_data import store_planted_dataset

TINY = dict(candidate_lengths=[1, 2, 4], max_length=10, embedding_dim=16, sequence_hidden=16,
            channel_hidden=32, search_epochs=2, retrain_epochs=2, device="cpu")


@pytest.fixture
def context(tmp_path):
    context = AppContext(f"sqlite:///{tmp_path}/store.sqlite")
    context.select_dataset(store_planted_dataset(context.sessions, tmp_path))
    context.set_config(quick_demo().replace(**TINY))
    yield context
    context.store.close()


@pytest.fixture
def page(qtbot, context):
    page = TrainingPage(context)
    qtbot.addWidget(page)
    yield page
    page.shutdown()


def run_to_idle(qtbot, page, timeout=30000):
    with qtbot.waitSignal(page.runner.running_changed, timeout=timeout,
                          check_params_cb=lambda running: not running):
        page.start_button.click()


def test_a_tiny_run_fills_every_curve_and_shows_the_chosen_length(qtbot, page, context):
    context.set_config(context.config.replace(protocol="popularity"))
    run_to_idle(qtbot, page)
    assert page.summary is not None, page.log_pane.toPlainText()
    assert page.chosen_length in (1, 2, 4)
    assert f"k = {page.chosen_length}" in page.chosen_label.text()
    assert page.summary["length_choice"]["verdict"] in page.chosen_label.text()  # the verdict over every seed
    for key, curve in page.loss_curves.items():
        x, y = curve.getData()
        assert x is not None and len(x) > 0, key
    assert sorted(page.weight_curves) == [1, 2, 4]
    steps = page.summary["search"]["steps"]
    for length, curve in page.weight_curves.items():
        x, y = curve.getData()
        assert len(x) == steps and 0 < y.min() and y.max() < 1, length
    # every metric names its protocol, in the legend and in the log
    names = [item.name() for item in page.metrics_plot.getPlotItem().listDataItems()]
    assert names == ["NDCG@10 [popularity-100]", "HR@10 [popularity-100]", "MRR@10 [popularity-100]"]
    assert "[popularity-100]" in page.log_pane.toPlainText()
    x, y = page.metric_curves["NDCG@10 [popularity-100]"].getData()
    assert list(x) == [1, 2]
    assert page.final_bars is not None
    assert page.start_button.isEnabled() and not page.cancel_button.isEnabled()
    with context.sessions() as session:
        run = get_run(session, page.summary["run_id"])
        assert run.status == "finished" and run.chosen_length == page.chosen_length
        assert len(run_series(session, run.id)) > 0


def test_cancel_mid_run_returns_to_idle_and_records_a_cancelled_run(qtbot, page, context):
    context.set_config(context.config.replace(search_epochs=200, retrain_epochs=200))
    page.start_button.click()
    assert page.running and not page.start_button.isEnabled() and page.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: page.phase_label.text() == "search", timeout=20000)
    # The engine stops at its next step (well under a second here); the margin is for a loaded machine.
    with qtbot.waitSignal(page.runner.running_changed, timeout=10000):
        page.cancel_button.click()
    assert not page.running and page.start_button.isEnabled() and not page.cancel_button.isEnabled()
    assert page.phase_label.text() == "cancelled"
    with context.sessions() as session:
        assert [run.status for run in list_runs(session)] == ["cancelled"]


def test_the_event_loop_keeps_ticking_during_a_run(qtbot, page, context):
    context.set_config(context.config.replace(search_epochs=4, retrain_epochs=4))
    ticks = []
    probe = QTimer()
    probe.setInterval(10)
    probe.timeout.connect(lambda: ticks.append((time.monotonic(), page.running)))
    probe.start()
    run_to_idle(qtbot, page)
    probe.stop()
    during = [t for t, running in ticks if running]
    assert len(during) >= 5
    # a 10 ms timer on a free GUI thread ticks ~100 times a second; a blocked one would not tick at all
    assert len(during) >= 0.25 * (during[-1] - during[0]) / 0.010


def test_start_is_disabled_without_a_dataset_or_with_an_invalid_configuration(qtbot, page, context):
    assert page.start_button.isEnabled()
    context.set_config_error("candidate_lengths: 50 is longer than max_length T=10")
    assert not page.start_button.isEnabled()
    assert "max_length" in page.start_button.toolTip()
    context.set_config(context.config)
    assert page.start_button.isEnabled()
    context.select_dataset(None)
    assert not page.start_button.isEnabled()


def test_an_engine_error_shows_a_dialog_and_the_traceback_in_the_log(qtbot, page, context):
    context.select_dataset("no such dataset")
    run_to_idle(qtbot, page)
    assert page.phase_label.text() == "failed"
    assert "no such dataset" in page.error_box.text()
    assert "Traceback" in page.log_pane.toPlainText()
    page.error_box.close()


def test_shutdown_during_a_run_cancels_and_joins_the_thread(qtbot, page, context):
    context.set_config(context.config.replace(search_epochs=200))
    page.start_button.click()
    qtbot.waitUntil(lambda: page.phase_label.text() == "search", timeout=20000)
    thread = page.runner.thread
    page.shutdown()
    assert thread.isFinished() and not page.running
    page.shutdown()  # idle: nothing to do


def test_the_smoothing_slider_smooths_the_loss_curves_but_not_the_raw_ones(qtbot, page):
    from engine.core.events import StepFinished

    page._on_phase_started("search", 100, "")
    losses = [5.0, 1.0, 5.0, 1.0, 5.0, 1.0]
    for step, loss in enumerate(losses, 1):
        page._on_step_finished(StepFinished("search", step, 100, {"train_loss": loss}, 1.0))
    key = ("search", "train_loss")
    page.smoothing_slider.setValue(0)
    page._repaint()
    assert list(page.loss_curves[key].getData()[1]) == losses
    page.smoothing_slider.setValue(90)
    page._repaint()
    smoothed = page.loss_curves[key].getData()[1]
    assert smoothed[0] == 5.0  # debiased: the first point is not pulled towards zero
    assert max(smoothed[1:]) - min(smoothed[1:]) < 4.0 * 0.5
    assert list(page.loss_raw_curves[key].getData()[1]) == losses
    assert page.eta_label.text() == "search ETA 1 s" and page.progress.value() == 6


def test_the_runs_page_resume_button_continues_a_cancelled_run_to_the_end(qtbot, page, context):
    from app.pages.runs import RunsPage
    from engine.core.events import Cancelled, EpochFinished, RecordingObserver
    from engine.experiments.stored_run import run_on_dataset

    observer = RecordingObserver(cancel_when=lambda e: isinstance(e, EpochFinished) and e.phase == "search")
    with pytest.raises(Cancelled):
        run_on_dataset(context.store, context.dataset_name, context.config, observer)
    runs = RunsPage(context)
    qtbot.addWidget(runs)
    runs.select_runs([1])
    assert runs.resume_button.isEnabled() and "resumable" in runs.table.item(0, 3).text()
    with qtbot.waitSignal(page.runner.running_changed, timeout=30000, check_params_cb=lambda running: not running):
        runs.resume_button.click()
    assert page.summary is not None and page.summary["run_id"] == 1, page.log_pane.toPlainText()
    assert "resuming run 1" in page.log_pane.toPlainText()
    with context.sessions() as session:
        assert get_run(session, 1).status == "finished"
    runs.select_runs([1])
    assert not runs.resume_button.isEnabled()


def test_a_cancelled_run_whose_dataset_was_deleted_is_not_offered_for_resuming(qtbot, page, context):
    from app.pages.runs import RunsPage
    from engine.core.events import Cancelled, EpochFinished, RecordingObserver
    from engine.data.store import delete_dataset
    from engine.experiments.stored_run import run_on_dataset

    observer = RecordingObserver(cancel_when=lambda e: isinstance(e, EpochFinished) and e.phase == "search")
    with pytest.raises(Cancelled):
        run_on_dataset(context.store, context.dataset_name, context.config, observer)
    with context.sessions() as session:
        delete_dataset(session, context.dataset_name)
    runs = RunsPage(context)
    qtbot.addWidget(runs)
    runs.select_runs([1])
    assert not runs.resume_button.isEnabled() and "resumable" not in runs.table.item(0, 3).text()


def test_a_run_with_auto_lengths_draws_one_weight_curve_per_fitted_candidate(qtbot, app_context, tmp_path):
    from engine.core.config import RunConfig
    from tests.app.store_data import store_planted_dataset
    name = store_planted_dataset(app_context.store.session, tmp_path, min_length=6, max_length=12)
    app_context.select_dataset(name)
    app_context.set_config(RunConfig(search_epochs=1, retrain_epochs=1, embedding_dim=8, eval_negatives=20))
    page = TrainingPage(app_context)
    qtbot.addWidget(page)
    page.start()
    assert sorted(page.weight_curves) == [1, 2, 3, 5, 10]
    page.shutdown()


def test_the_verdict_names_its_true_reason():
    from app.pages.training_page import verdict_text
    from engine.training.search import WINNER_CHANGED, WITHIN_NOISE

    # the case of the issue: a margin above the noise, but the winner changed late
    assert verdict_text(0.268, 0.237, False, WINNER_CHANGED) == (
        "NOT DECISIVE, winner changed in the last quarter: margin 0.268 > noise 0.237")
    assert verdict_text(0.01, 0.02, False, WITHIN_NOISE) == (
        "NOT DECISIVE, margin within noise: margin 0.010 ≤ noise 0.020")
    assert verdict_text(0.5, 0.02, True, "decisive") == "decisive: margin 0.500 > noise 0.020"


def test_the_chosen_length_and_final_weights_show_as_soon_as_the_search_decides(qtbot, page):
    from app.worker import RunWorker
    from engine.core.events import SearchDecided

    event = SearchDecided(2, {1: 0.2, 2: 0.7, 4: 0.1}, 0.5, 0.02, True, "decisive")
    worker = RunWorker(None, "planted", page.context.config)
    worker.search_decided.connect(page._on_search_decided)
    worker.observer.emit(event)  # what the engine sends when the search ends, before the retraining
    assert page.chosen_length == 2
    assert page.chosen_label.text() == "chosen length: k = 2 (decisive: margin 0.500 > noise 0.020)"
    assert page.final_bars is not None
    assert list(page.final_bars.opts["height"]) == [0.2, 0.7, 0.1]


def _seconds_shown(text: str) -> int:
    """The seconds of "run ETA ~2:05" or "run ETA ~50 s"."""
    shown = text.removeprefix("run ETA ~")
    if shown.endswith(" s"):
        return int(shown[:-2])
    minutes, seconds = shown.split(":")
    return int(minutes) * 60 + int(seconds)


def test_the_whole_runs_eta_appears_once_a_step_is_timed_and_decreases(qtbot, page):
    from app.worker import RunWorker
    from engine.core.events import PhaseStarted, StepFinished

    worker = RunWorker(None, "planted", page.context.config)
    page._connect_worker(worker)
    page._reset(page.context.config)  # what start() does before the worker runs
    page.show()
    worker.observer.emit(PhaseStarted("search", 200))
    assert page.run_eta_label.text() == ""  # nothing timed yet: no guess
    worker.observer.emit(StepFinished("search", 50, 200, eta_seconds=150.0))
    first = _seconds_shown(page.run_eta_label.text())
    worker.observer.emit(StepFinished("search", 150, 200, eta_seconds=50.0))
    second = _seconds_shown(page.run_eta_label.text())
    assert page.run_eta_label.isVisible()
    assert page.eta_label.text() == "search ETA 50 s"
    assert first > second > 50  # the retraining and evaluation to come are in the whole run's ETA


def _cancelled_run(context, phase):
    """Runs the context's configuration until the first epoch of `phase` ends: run 1, cancelled."""
    from engine.core.events import Cancelled, EpochFinished, RecordingObserver
    from engine.experiments.stored_run import run_on_dataset

    observer = RecordingObserver(cancel_when=lambda e: isinstance(e, EpochFinished) and e.phase == phase)
    with pytest.raises(Cancelled):
        run_on_dataset(context.store, context.dataset_name, context.config, observer)


def test_a_run_resumed_in_retraining_shows_its_stored_curves_first_and_draws_retraining_after_the_search(
        qtbot, page, context):
    context.set_config(context.config.replace(retrain_epochs=3))
    _cancelled_run(context, "retrain")
    with qtbot.waitSignal(page.runner.running_changed, timeout=30000, check_params_cb=lambda running: not running):
        page.resume(1)
        # before any live event: the stored search and the first retraining epoch are drawn
        assert all(len(series) > 0 for series in page.weight_series.values())
        assert all(len(series) > 0 for series in page.loss_series.values())
        assert list(page.metric_series[next(iter(page.metric_series))].x) == [1]
    assert page.summary is not None, page.log_pane.toPlainText()
    assert list(page.metric_curves[next(iter(page.metric_curves))].getData()[0]) == [1, 2, 3]
    search_x = page.loss_curves[("search", "train_loss")].getData()[0]
    retrain_x = page.loss_curves[("retrain", "train_loss")].getData()[0]
    assert retrain_x.min() > search_x.max()
    assert list(retrain_x) == sorted(set(retrain_x))  # no step drawn twice
    alpha_x = page.weight_curves[1].getData()[0]
    assert len(alpha_x) == page.summary["search"]["steps"]


def test_a_reopened_page_shows_the_latest_run_as_recorded(qtbot, context, tmp_path):
    from engine.experiments.stored_run import run_on_dataset

    run_id, result = run_on_dataset(context.store, context.dataset_name, context.config)
    page = TrainingPage(context)  # as after a relaunch
    qtbot.addWidget(page)
    assert page.phase_label.text() == "finished"
    assert f"k = {result.chosen_length} (" in page.chosen_label.text()
    assert result.length_choice["verdict"] in page.chosen_label.text()
    assert page.final_bars is not None
    for key, curve in {**page.loss_curves, **page.weight_curves}.items():
        assert len(curve.getData()[0]) > 0, key
    assert list(page.metric_curves[next(iter(page.metric_curves))].getData()[0]) == [1, 2]
    assert f"run {run_id} (finished)" in page.log_pane.toPlainText()
    context.open_store(f"sqlite:///{tmp_path}/empty.sqlite")  # a store without runs shows none
    assert page.phase_label.text() == "idle" and page.final_bars is None
    assert page.chosen_label.text() == "chosen length: –"
    assert all(len(curve.getData()[0] if curve.getData()[0] is not None else []) == 0
               for curve in {**page.loss_curves, **page.weight_curves}.values())
    page.shutdown()


def test_a_reopened_page_shows_a_cancelled_runs_curves_and_status(qtbot, context):
    _cancelled_run(context, "search")
    page = TrainingPage(context)
    qtbot.addWidget(page)
    assert page.phase_label.text() == "cancelled"
    assert len(page.weight_curves[1].getData()[0]) > 0
    assert page.chosen_label.text() == "chosen length: –"
    page.shutdown()


def test_steps_redone_after_a_checkpoint_replace_the_stored_ones_instead_of_doubling_back(qtbot, page):
    from engine.core.events import StepFinished

    page._on_phase_started("search", 10, "")
    for step in range(1, 7):  # stored beyond the checkpoint at step 3
        page._on_step_finished(StepFinished("search", step, 10, {"train_loss": 1.0}))
    page._on_step_finished(StepFinished("search", 4, 10, {"train_loss": 2.0}))  # the resumed phase
    series = page.loss_series[("search", "train_loss")]
    assert list(series.x) == [1, 2, 3, 4] and list(series.y) == [1.0, 1.0, 1.0, 2.0]


# ------------------------------------------------------------------ the length choice


def _weights(step, trial, seed, weights=(0.2, 0.3, 0.5)):
    from engine.core.events import ArchitectureWeights

    return ArchitectureWeights(step, (1, 2, 4), (0.0, 0.0, 0.0), weights, trial=trial, seed=seed)


def _scored(stage, length, seed, ndcg, epochs=2):
    from engine.core.events import CandidateScored

    return CandidateScored(stage, length, seed, epochs, {"NDCG@10": ndcg, "HR@10": 2 * ndcg}, "full")


def _fed_page(page, config, events):
    """The page as a run of `config` leaves it after `events`, sent through a worker's signals."""
    from app.worker import RunWorker

    worker = RunWorker(None, "planted", config)
    page._connect_worker(worker)
    page._reset(config)
    for event in events:
        worker.observer.emit(event)
    page._repaint()
    return worker


def test_several_seeds_searches_are_overlaid_per_seed_with_a_legend_by_length(qtbot, page, context):
    config = context.config.replace(seeds=3)
    _fed_page(page, config, [_weights(step, trial, 7 + trial) for trial in range(3) for step in (1, 11, 21)])
    assert page.seed_weights.trials == [0, 1, 2]
    for trial in range(3):
        curves = page.seed_weights.trial_curves(trial)
        assert sorted(curves) == [1, 2, 4]  # one curve per candidate length and seed
        assert all(list(curve.getData()[0]) == [1, 11, 21] for curve in curves.values())  # one step axis
    styles = {trial: page.seed_weights.trial_curves(trial)[1].opts["pen"].style() for trial in range(3)}
    assert len(set(styles.values())) == 3  # each seed its own line style
    legend = [label.text for _sample, label in page.weights_plot.getPlotItem().legend.items]
    assert legend == ["k=1", "k=2", "k=4", "seed 7", "seed 8", "seed 9"]  # colour by length, line style by seed
    assert "3 seeds" in page.weights_plot.getPlotItem().full_title
    assert page.phase_label.text() == "search · seed 9 (3 of 3)"


def test_exhaustive_scores_are_drawn_as_the_mean_with_the_sample_std_over_seeds_and_the_chosen_length_marked(
        qtbot, page, context):
    from engine.core.events import LengthChosen

    config = context.config.replace(strategy="exhaustive", seeds=2)
    values = {1: (0.10, 0.14), 2: (0.20, 0.22), 4: (0.05, 0.07)}
    events = [_scored("exhaustive", k, seed, values[k][seed]) for seed in (0, 1) for k in (1, 2, 4)]
    _fed_page(page, config, events + [LengthChosen(2, True, "k = 2 (validation NDCG@10, 2 seeds)", "exhaustive")])
    bars = page.scores.error_bars
    assert list(bars.opts["x"]) == [0, 1, 2]
    assert list(bars.opts["y"]) == pytest.approx([0.12, 0.21, 0.06])
    assert list(bars.opts["top"]) == pytest.approx([np.std(values[k], ddof=1) for k in (1, 2, 4)])
    assert list(bars.opts["bottom"]) == list(bars.opts["top"])
    ticks = page.scores_plot.getPlotItem().getAxis("bottom")._tickLevels[0]
    assert [label for _x, label in ticks] == ["k=1", "k=2 ✓", "k=4"]
    assert not page.scores_plot.isHidden() and page.weights_plot.isHidden()  # exhaustive: no softmax(alpha)
    assert page.phase_label.text() == "exhaustive · 6 of 6 trained"


def test_a_confirm_stage_draws_each_rounds_scores_beside_the_lengths(qtbot, page, context):
    config = context.config.replace(seeds=2, confirm_epochs=1)
    _fed_page(page, config, [_scored("confirm", 1, 0, 0.1, 1), _scored("confirm", 4, 0, 0.2, 1),
                             _scored("confirm", 4, 0, 0.3, 2)])
    assert page.scores.rounds == [{1: 0.1, 4: 0.2}, {4: 0.3}]
    assert page.scores.error_bars is None  # one seed per round: nothing to spread
    names = [label.text for _sample, label in page.scores_plot.getPlotItem().legend.items]
    assert names == ["confirm, 1 epochs", "confirm, 2 epochs"]
    assert page.phase_label.text() == "confirm · round 2"


def test_a_verdict_that_is_no_decision_is_shown_as_undecided(qtbot, page, context):
    from engine.core.events import LengthChosen

    verdict = "k = 4, undecided: the seeds disagree (k = 4: 1, k = 2: 1 of 2 seeds)"
    _fed_page(page, context.config, [LengthChosen(4, False, verdict, "search")])
    assert page.chosen_label.text() == f"chosen length, UNDECIDED: {verdict}"
    assert page.chosen_label.property("undecided") is True
    assert "color" in page.chosen_label.styleSheet()
    _fed_page(page, context.config, [LengthChosen(2, True, "k = 2 (2 of 2 seeds)", "search")])
    assert page.chosen_label.text() == "chosen length: k = 2 (2 of 2 seeds)"
    assert page.chosen_label.property("undecided") is False
    assert "color" not in page.chosen_label.styleSheet()


def test_a_tiny_exhaustive_run_scores_every_length_live_and_as_reopened(qtbot, page, context):
    context.set_config(context.config.replace(strategy="exhaustive", seeds=2))
    run_to_idle(qtbot, page)
    assert page.summary is not None, page.log_pane.toPlainText()
    choice = page.summary["length_choice"]
    drawn = page.scores.means, page.scores.spreads
    assert drawn == ({int(k): pytest.approx(s["mean"]) for k, s in choice["scores"].items()},
                     {int(k): pytest.approx(s["spread"]) for k, s in choice["scores"].items()})
    assert choice["verdict"] in page.chosen_label.text()
    assert page.chosen_label.property("undecided") is (not choice["decided"])
    assert len(page.loss_curves[("exhaustive", "train_loss")].getData()[0]) > 0
    reopened = TrainingPage(context)
    qtbot.addWidget(reopened)
    assert (reopened.scores.means, reopened.scores.spreads) == drawn
    assert choice["verdict"] in reopened.chosen_label.text()
    assert len(reopened.loss_curves[("exhaustive", "train_loss")].getData()[0]) > 0
    reopened.shutdown()


def test_a_tiny_search_over_two_seeds_draws_both_seeds_curves_live_and_as_reopened(qtbot, page, context):
    context.set_config(context.config.replace(seeds=2))
    run_to_idle(qtbot, page)
    assert page.summary is not None, page.log_pane.toPlainText()
    searches = page.summary["length_choice"]["searches"]
    assert page.seed_weights.trials == [0, 1]
    second = page.seed_weights.trial_curves(1)
    assert len(second[1].getData()[0]) == len(searches[1]["weight_steps"])
    search_x = page.loss_curves[("search", "train_loss")].getData()[0]
    retrain_x = page.loss_curves[("retrain", "train_loss")].getData()[0]
    assert retrain_x.min() > search_x.max()  # both seeds' search steps, then the retraining
    reopened = TrainingPage(context)
    qtbot.addWidget(reopened)
    assert reopened.seed_weights.trials == [0, 1]
    assert list(reopened.seed_weights.trial_curves(1)[2].getData()[1]) == pytest.approx(
        [row[1] for row in searches[1]["weight_history"]])
    reopened.shutdown()
