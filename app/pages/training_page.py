"""Training page: start and cancel a run of the selected dataset with the current configuration, and watch
it live: phase and progress with the phase's ETA and the whole run's (engine.core.run_eta), loss curves (EMA-smoothed as in TensorBoard), validation metrics
labelled with their protocol, softmax(alpha) per candidate over the search steps (every seed's, overlaid), the
final weights as bars with the chosen length highlighted, validation NDCG@10 per candidate length of an
exhaustive search or a confirm stage (app.length_choice_view), the length choice's verdict, and a log.

Events arrive as queued signals from the worker thread; slots only append to numpy buffers and mark curves
dirty, and a 10 Hz timer calls setData on the dirty curves, so that bursts never pile up repaints.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.length_choice_view import (
    ScoreBook,
    ScoresPlot,
    SeedWeightCurves,
    clear_verdict,
    evidence_of,
    make_scores_plot,
    make_weights_plot,
    show_verdict,
)
from app.plots import EmaSmoother, GrowingSeries, add_curve, colour, make_plot
from app.worker import RunThread, RunWorker
from engine.core.config import RunConfig
from engine.core.events import PhaseFinished, PhaseStarted
from engine.core.run_eta import RunEta
from engine.data.run_records import get_run, list_runs, run_series
from engine.data.store import fitted_config
from engine.data.store_errors import StoreError
from engine.evaluation.metrics import protocol_label

REPAINT_MS = 100  # ~10 Hz: smooth enough to watch, cheap enough to never block the event loop
SHOWN_METRICS = ("NDCG@10", "HR@10", "MRR@10")
LOSS_CURVES = (("search", "train_loss"), ("search", "valid_loss"), ("retrain", "train_loss"))
# Phases whose loss curves appear only in the runs that have them (exhaustive search, confirm stage)
CHOICE_LOSS_CURVES = (("exhaustive", "train_loss"), ("confirm", "train_loss"))
# The training phases in the order they run, on one step axis: each starts where the ones before it ended
PHASE_ORDER = ("search", "exhaustive", "confirm", "retrain")


class TrainingPage(QWidget):
    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.runner = RunThread(self)
        self.runner.running_changed.connect(self._on_running_changed)
        self.summary: dict | None = None  # the last finished run's summary
        self.chosen_length: int | None = None
        self._run_listed = False  # runs_changed was emitted for the run in progress
        self._dirty: set[str] = set()
        self._phase_offset = 0  # x of step 0 of the current phase: search and retrain share one step axis
        self._phase_totals: dict[str, int] = {}
        self.run_eta: RunEta | None = None  # the run in progress's whole ETA, fed with its events
        self._build()
        self._repaint_timer = QTimer(self)
        self._repaint_timer.setInterval(REPAINT_MS)
        self._repaint_timer.timeout.connect(self._repaint)
        self._repaint_timer.start()
        for signal in (context.store_changed, context.config_changed, context.dataset_selected,
                       context.config_invalidated):
            signal.connect(self._on_context_changed)
        context.resume_requested.connect(self.resume)
        context.store_changed.connect(self.show_latest_run)
        self._on_context_changed()
        self.show_latest_run()

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.dataset_label = QLabel()
        self.phase_label = QLabel("idle")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.eta_label = QLabel("")
        self.run_eta_label = QLabel("")
        self.run_eta_label.setToolTip(
            "Time left in the whole run: the length choice (search, exhaustive or confirm stage), the retraining and "
            "the test evaluation. The retraining is "
            "estimated from the search's time per step until its own steps are timed; early stopping can end "
            "it sooner.")
        self.chosen_label = QLabel("chosen length: –")
        self.chosen_label.setWordWrap(True)  # a verdict with its evidence is long
        self.chosen_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bar = QHBoxLayout()
        for widget in (self.start_button, self.cancel_button, self.dataset_label, self.phase_label):
            bar.addWidget(widget)
        bar.addWidget(self.progress, 1)
        bar.addWidget(self.eta_label)
        bar.addWidget(self.run_eta_label)

        self.smoothing_slider = QSlider(Qt.Orientation.Horizontal)
        self.smoothing_slider.setRange(0, 99)  # EMA weight in hundredths, as TensorBoard's 0..0.99
        self.smoothing_slider.setValue(60)
        self.smoothing_slider.valueChanged.connect(self._on_smoothing_changed)
        self.smoothing_label = QLabel()
        smoothing = QHBoxLayout()
        smoothing.addWidget(QLabel("Loss smoothing"))
        smoothing.addWidget(self.smoothing_slider, 1)
        smoothing.addWidget(self.smoothing_label)
        smoothing.addWidget(self.chosen_label, 3)

        self.loss_plot = make_plot("Loss per step", "step (length choice, then retrain)", "loss")
        self.metrics_plot = make_plot("Validation metrics per epoch", "retrain epoch", "metric")
        self.weights_plot = make_weights_plot()
        self.scores_plot = make_scores_plot()
        self.final_plot = make_plot("Final weights", "candidate length k", "softmax(α)")
        self.final_plot.getPlotItem().legend.setVisible(False)  # the bars are labelled on their axis
        # Curves are created once; each run only resets their buffers (weights: one curve per candidate).
        self.loss_series = {key: GrowingSeries() for key in LOSS_CURVES}
        self.loss_smoothers = {key: EmaSmoother() for key in LOSS_CURVES}
        self.loss_raw_curves, self.loss_curves = {}, {}
        for index, key in enumerate(LOSS_CURVES):
            self.loss_raw_curves[key] = add_curve(self.loss_plot, None, index, width=1, alpha=70)
            self.loss_curves[key] = add_curve(self.loss_plot, f"{key[0]} {key[1].replace('_', ' ')}", index)
        self.metric_series: dict[str, GrowingSeries] = {}
        self.metric_curves: dict[str, pg.PlotDataItem] = {}
        self.seed_weights = SeedWeightCurves(self.weights_plot)  # every seed's softmax(alpha)
        self.scores = ScoresPlot(self.scores_plot)
        self.score_book = ScoreBook()  # the CandidateScored events of the run in progress
        self.candidates: list[int] = []
        self.seeds = 1
        self.final_bars: pg.BarGraphItem | None = None

        plots = QGridLayout()
        plots.addWidget(self.loss_plot, 0, 0)
        plots.addWidget(self.metrics_plot, 0, 1)
        plots.addWidget(self.scores_plot, 0, 2)  # shown for the runs that score candidates (_show_plots_of)
        plots.addWidget(self.weights_plot, 1, 0)
        plots.addWidget(self.final_plot, 1, 1, 1, 2)
        self.scores_plot.setVisible(False)
        plots_widget = QWidget()
        plots_widget.setLayout(plots)
        self.log_pane = QPlainTextEdit()
        self.log_pane.setReadOnly(True)
        self.log_pane.setMaximumBlockCount(5000)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(plots_widget)
        splitter.addWidget(self.log_pane)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 1)

        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addLayout(smoothing)
        layout.addWidget(splitter, 1)
        self._on_smoothing_changed(self.smoothing_slider.value())

    # ------------------------------------------------------------------ state

    @property
    def running(self) -> bool:
        return self.runner.running

    @property
    def weight_series(self) -> dict[int, GrowingSeries]:
        """The run's own seed's softmax(alpha) per candidate (the others: seed_weights)."""
        return self.seed_weights.trial_series(0)

    @property
    def weight_curves(self) -> dict[int, pg.PlotDataItem]:
        return self.seed_weights.trial_curves(0)

    def start_blocker(self) -> str | None:
        """Why Start is disabled, or None when a run can start."""
        if self.running:
            return "a run is in progress"
        if self.context.store is None:
            return "no store is open"
        if not self.context.dataset_name:
            return "choose a dataset on the Data page"
        if self.context.config_error:
            return f"the configuration is invalid: {self.context.config_error}"
        return None

    @Slot()
    def _on_context_changed(self, *_) -> None:
        blocker = self.start_blocker()
        self.start_button.setEnabled(blocker is None)
        self.start_button.setToolTip(blocker or "train on the selected dataset with this configuration")
        self.dataset_label.setText(f"dataset: {self.context.dataset_name or '–'}")

    @Slot(bool)
    def _on_running_changed(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)
        if not running:
            self._repaint()
        self._on_context_changed()

    # ------------------------------------------------------------------ actions

    @Slot()
    def start(self) -> None:
        if self.start_blocker() is not None:
            return
        config = self.context.config
        if not config.is_fitted:  # "auto" K, T, loss: the values the run will fit, for the curves and the log
            try:
                with self.context.store.session() as session:
                    config = fitted_config(session, self.context.dataset_name, config)
            except StoreError:  # no such dataset (any more): the run itself fails and says so
                pass
        self._reset(config)
        self._log(f"starting on {self.context.dataset_name}: candidates {config.candidate_lengths}, "
                  f"T={config.max_length}, mode {config.mode}, device {config.device}")
        self._run_listed = False
        self.runner.start(self.context.store, self.context.dataset_name, config, self._connect_worker)
        self.phase_label.setText("starting…")  # the first phase takes a while to load the data: not "idle"

    @Slot(int)
    def resume(self, run_id: int) -> None:
        """Continues an interrupted run from its last checkpoint, watched here like a new run: its stored
        curves first, then the live ones."""
        if self.running:
            QMessageBox.information(self, "A run is in progress",
                                    f"Run {run_id} can be resumed once the current run has ended or been cancelled.")
            return
        with self.context.sessions() as session:
            run = get_run(session, run_id)
            config, dataset_name = RunConfig.from_dict(run.config), run.dataset_name
            frame = run_series(session, run_id)
        self._reset(config)
        self._show_stored_series(frame)
        self._log(f"resuming run {run_id} on {dataset_name} from its last checkpoint")
        self._run_listed = False
        self.runner.start(self.context.store, dataset_name, config, self._connect_worker, resume_run_id=run_id)
        self.phase_label.setText("resuming…")

    @Slot()
    def show_latest_run(self) -> None:
        """Shows the store's latest run as recorded (curves, status, chosen length), so that the page is
        not blank after a relaunch or on opening a store; does nothing during a run or without runs."""
        if self.running or self.context.store is None:
            return
        try:
            with self.context.sessions() as session:
                runs = list_runs(session)
                if not runs:
                    self._show_no_run()
                    return
                run = runs[0]
                run_id, status, chosen, metrics = run.id, run.status, run.chosen_length, run.metrics or {}
                config, frame = RunConfig.from_dict(run.config), run_series(session, run_id)
        except Exception as error:  # a record this version cannot read must not keep the window from opening
            self._log(f"cannot show the latest run: {error}")
            return
        self._reset(config)
        self._show_stored_series(frame)
        if chosen is not None:
            self._show_outcome(chosen, metrics.get("search"), metrics.get("length_choice"))
        self.phase_label.setText(status)
        self._log(f"run {run_id} ({status}), as recorded")
        self._repaint()

    def _show_no_run(self) -> None:
        # A store without runs: what another store's run left on show goes.
        self.summary, self.chosen_length = None, None
        clear_verdict(self.chosen_label)
        self.phase_label.setText("idle")
        self._drop_choice_loss_curves()
        for key, series in self.loss_series.items():
            series.clear()
            self.loss_smoothers[key].reset()
        for series in self.metric_series.values():
            series.clear()
        self.seed_weights.reset(self.candidates)
        self.score_book.clear()
        self.scores.clear()
        if self.final_bars is not None:
            self.final_plot.removeItem(self.final_bars)
            self.final_bars = None
        self._dirty.update({"loss", "weights", "metrics"})
        self._repaint()

    def _show_stored_series(self, frame) -> None:
        """Fills the curves with a run's stored series (engine.data.run_records.run_series), retraining
        steps placed after the search's as live ones are."""
        steps = frame[frame["per"] == "step"]
        for phase in PHASE_ORDER[:-1]:  # a phase's last step is always recorded: it is the phase's length
            phase_steps = steps[steps["phase"] == phase]["step"]
            if len(phase_steps):
                self._phase_totals[phase] = int(phase_steps.max())
        for key in CHOICE_LOSS_CURVES:
            if ((steps["phase"] == key[0]) & (steps["name"] == key[1])).any():
                self._loss_series_of(key)
        for (phase, name), series in self.loss_series.items():
            points = steps[(steps["phase"] == phase) & (steps["name"] == name)]
            series.replace(points["step"].to_numpy(float) + self._offset_of(phase),
                           points["value"].to_numpy(float))
            self.loss_smoothers[(phase, name)].reset()
        for length, series in self.weight_series.items():
            points = steps[(steps["phase"] == "search") & (steps["name"] == f"weight/k={length}")]
            series.replace(points["step"].to_numpy(float), points["value"].to_numpy(float))
        epochs = frame[(frame["per"] == "epoch") & (frame["phase"] == "retrain")]
        for key, series in self.metric_series.items():
            points = epochs[epochs["name"] == key.split(" [")[0]]
            series.replace(points["step"].to_numpy(float), points["value"].to_numpy(float))
        self._dirty.update({"loss", "weights", "metrics"})

    def _connect_worker(self, worker: RunWorker) -> None:
        worker.phase_started.connect(self._on_phase_started)
        worker.search_decided.connect(self._on_search_decided)
        worker.candidate_scored.connect(self._on_candidate_scored)
        worker.length_chosen.connect(self._on_length_chosen)
        worker.step_finished.connect(self._on_step_finished)
        worker.weights_updated.connect(self._on_weights_updated)
        worker.epoch_finished.connect(self._on_epoch_finished)
        worker.phase_finished.connect(self._on_phase_finished)
        worker.message_logged.connect(self._on_message_logged)
        worker.run_finished.connect(self._on_run_finished)
        worker.run_failed.connect(self._on_run_failed)
        worker.run_cancelled.connect(self._on_run_cancelled)

    @Slot()
    def cancel(self) -> None:
        if self.running:
            self.runner.cancel()
            self.phase_label.setText("cancelling…")
            self.cancel_button.setEnabled(False)

    def shutdown(self) -> None:
        """For the main window's closeEvent: cancels a running run and waits for its thread; safe when
        idle."""
        self._repaint_timer.stop()
        self.runner.shutdown()

    # ------------------------------------------------------------------ per run

    def _reset(self, config) -> None:
        self.summary, self.chosen_length = None, None
        self._phase_offset, self._phase_totals = 0, {}
        clear_verdict(self.chosen_label)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.eta_label.setText("")
        self.run_eta = RunEta(config)
        self.run_eta_label.setText("")
        self._drop_choice_loss_curves()
        for key, series in self.loss_series.items():
            series.clear()
            self.loss_smoothers[key].reset()
        self._dirty.add("loss")
        self._show_plots_of(config)
        label = protocol_label(config.protocol, config.eval_negatives)
        self._rebuild_curves(self.metrics_plot, self.metric_curves, self.metric_series,
                             [f"{name} [{label}]" for name in SHOWN_METRICS], lambda key: key, "o")
        self.candidates = [] if config.candidate_lengths == "auto" else list(config.candidate_lengths)
        self.seeds = config.seeds
        self.seed_weights.reset(self.candidates)
        self.score_book.clear()
        self.scores.clear()
        if self.final_bars is not None:
            self.final_plot.removeItem(self.final_bars)
            self.final_bars = None
        self.metrics_plot.getPlotItem().setTitle(f"Validation metrics per epoch [{label}]")

    def _show_plots_of(self, config) -> None:
        """The plots a run of `config` fills: an exhaustive search has no softmax(alpha) and no retraining
        epochs (its chosen model is one of its candidates), only scores; a search scores candidates only in a
        confirm stage."""
        search = config.strategy != "exhaustive"
        for plot in (self.metrics_plot, self.weights_plot, self.final_plot):
            plot.setVisible(search)
        self.scores_plot.setVisible(not search or config.confirm_epochs > 0)
        self.final_plot.getPlotItem().setTitle("Final weights")

    def _loss_series_of(self, key: tuple[str, str]) -> GrowingSeries | None:
        """The loss series of (phase, loss name); an exhaustive search's or a confirm stage's curve is made
        on its first point. None: a loss the page does not draw."""
        if key not in self.loss_series and key in CHOICE_LOSS_CURVES:
            index = len(LOSS_CURVES) + CHOICE_LOSS_CURVES.index(key)
            self.loss_series[key], self.loss_smoothers[key] = GrowingSeries(), EmaSmoother()
            self.loss_raw_curves[key] = add_curve(self.loss_plot, None, index, width=1, alpha=70)
            self.loss_curves[key] = add_curve(self.loss_plot, f"{key[0]} {key[1].replace('_', ' ')}", index)
        return self.loss_series.get(key)

    def _drop_choice_loss_curves(self) -> None:
        for key in CHOICE_LOSS_CURVES:
            if key in self.loss_series:
                for curves in (self.loss_raw_curves, self.loss_curves):
                    self.loss_plot.removeItem(curves.pop(key))
                del self.loss_series[key], self.loss_smoothers[key]

    def _offset_of(self, phase: str) -> int:
        """Where `phase`'s step 0 lies on the loss plot's step axis: after every earlier phase's steps."""
        if phase not in PHASE_ORDER:
            return 0
        return sum(self._phase_totals.get(p, 0) for p in PHASE_ORDER[:PHASE_ORDER.index(phase)])

    @staticmethod
    def _rebuild_curves(plot, curves: dict, series: dict, keys: list, name_of, symbol) -> None:
        # Once per run, only when the keys change (a different candidate list or protocol).
        if list(curves) == keys:
            for s in series.values():
                s.clear()
            for curve in curves.values():
                curve.setData([], [])
            return
        for curve in curves.values():
            plot.removeItem(curve)
        curves.clear()
        series.clear()
        for index, key in enumerate(keys):
            series[key] = GrowingSeries()
            curves[key] = add_curve(plot, name_of(key), index, symbol=symbol)

    # ------------------------------------------------------------------ event slots

    @Slot(str, int, str, int)
    def _on_phase_started(self, phase: str, total_steps: int, description: str, epochs: int = 0) -> None:
        if not self._run_listed:  # the engine records the run before its first phase: list it as running
            self._run_listed = True
            self.context.runs_changed.emit()
        self._phase_offset = self._offset_of(phase)
        self._phase_totals[phase] = total_steps
        self.phase_label.setText(phase)
        self.progress.setRange(0, max(total_steps, 1))
        self.progress.setValue(0)
        self.eta_label.setText("")
        self._observe_for_eta(PhaseStarted(phase, total_steps, description, epochs))
        self._log(f"— {phase} — {description}" if description else f"— {phase} —")

    @Slot(object)
    def _on_step_finished(self, event) -> None:
        self.progress.setValue(min(event.step, self.progress.maximum()))
        if event.eta_seconds is not None:
            self.eta_label.setText(f"{event.phase} ETA {_duration(event.eta_seconds)}")
        self._observe_for_eta(event)
        x = self._phase_offset + event.step
        for name, value in event.losses.items():
            series = self._loss_series_of((event.phase, name))
            if series is not None:
                if series.drop_from(x):  # a resumed phase redoes the steps after its checkpoint
                    self.loss_smoothers[(event.phase, name)].reset()
                series.append(x, value)
                self._dirty.add("loss")

    @Slot(object)
    def _on_weights_updated(self, event) -> None:
        self.seed_weights.add(event)
        if self.seeds > 1:
            self.phase_label.setText(f"search · seed {event.seed} ({event.trial + 1} of {self.seeds})")
        self._dirty.add("weights")

    @Slot(object)
    def _on_candidate_scored(self, event) -> None:
        self.score_book.add(event)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in event.metrics.items() if k != "epoch")
        self._log(f"{event.stage}: k = {event.length}, seed {event.seed}, {event.epochs} epochs: {shown} "
                  f"[{event.protocol}]")
        if event.stage == "exhaustive":
            total = len(self.candidates) * self.seeds
            self.phase_label.setText(f"exhaustive · {len(self.score_book)} of {total} trained")
        else:
            self.phase_label.setText(f"confirm · round {len(self.score_book.confirm)}")
        self._dirty.add("scores")

    @Slot(object)
    def _on_length_chosen(self, event) -> None:
        # after SearchDecided (one seed's figures): the verdict over every seed and stage replaces them
        self.chosen_length = event.chosen_length
        show_verdict(self.chosen_label, event.verdict, event.decided)
        self._dirty.add("scores")

    @Slot(object)
    def _on_epoch_finished(self, event) -> None:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in event.metrics.items() if k != "epoch")
        self._log(f"{event.phase} epoch {event.epoch}: {shown} [{event.protocol}]")
        if event.phase != "retrain":
            return
        for name in SHOWN_METRICS:
            key = f"{name} [{event.protocol}]"
            if name in event.metrics and key in self.metric_series:
                self.metric_series[key].drop_from(event.epoch)
                self.metric_series[key].append(event.epoch, event.metrics[name])
        self._dirty.add("metrics")

    @Slot(str, float)
    def _on_phase_finished(self, phase: str, seconds: float) -> None:
        self.progress.setValue(self.progress.maximum())
        self.eta_label.setText("")
        self._observe_for_eta(PhaseFinished(phase, seconds))
        self._log(f"{phase} finished in {_duration(seconds)}")

    @Slot(object)
    def _on_search_decided(self, event) -> None:
        # The retraining that follows takes long: the choice is shown now, not when the whole run ends.
        self._show_choice(event.chosen_length, event.final_weights,
                          verdict_text(event.margin, event.noise, event.decisive, event.reason), event.decisive)

    @Slot(str, str)
    def _on_message_logged(self, text: str, level: str) -> None:
        self._log(("warning: " if level == "warning" else "") + text)

    @Slot(object)
    def _on_run_finished(self, summary: dict) -> None:
        self.summary = summary
        self.chosen_length = summary["chosen_length"]
        search = summary.get("search")
        self._show_outcome(self.chosen_length, search, summary.get("length_choice"))
        if search:
            # The live curves hold the rate-limited events; the exact per-step history replaces them.
            history = np.asarray(search["weight_history"])
            steps = np.arange(1, len(history) + 1)
            for column, length in enumerate(search["candidates"]):
                if length in self.weight_series:
                    self.weight_series[length].replace(steps, history[:, column])
            if len((summary.get("length_choice") or {}).get("searches") or []) <= 1:
                # one seed: its search is the whole search phase (several count their steps on from seed to seed)
                for name in ("train_loss", "valid_loss"):
                    self.loss_series[("search", name)].replace(steps, search[name.replace("_loss", "_losses")])
                    self.loss_smoothers[("search", name)].reset()
        self._dirty.update({"loss", "weights", "metrics"})
        self.phase_label.setText("finished")
        self._end_run_eta()
        for label, metrics in summary["test_metrics"].items():
            shown = ", ".join(f"{name} {metrics[name]:.4f}" for name in SHOWN_METRICS if name in metrics)
            self._log(f"test [{label}]: {shown}")
        self._log(f"run {summary.get('run_id')} finished: k = {self.chosen_length}; model bundle saved")
        self.context.runs_changed.emit()

    def _show_choice(self, chosen: int, final_weights: dict | None, verdict: str, decided: bool = True) -> None:
        self.chosen_length = chosen
        show_verdict(self.chosen_label, f"k = {chosen} ({verdict})", decided)
        if final_weights:
            self._show_final_weights(final_weights)

    def _show_outcome(self, chosen: int, search: dict | None, choice: dict | None) -> None:
        """A finished run's choice (its summary's or stored metrics' "search" and "length_choice"): the
        verdict, the final weights (the mean over the seeds of several), every seed's softmax(alpha) and the
        candidates' scores. Runs recorded before the length choice have only "search"."""
        if choice:
            searches = choice.get("searches") or []
            self.candidates = self.candidates or [int(k) for k in choice["candidates"]]
            if len(searches) > 1:  # the first seed's curves are the stored series (or the exact history)
                self.seed_weights.show_searches(searches[1:], self.candidates, first_trial=1)
            final = mean_final_weights(searches) if searches else None
            self.chosen_length = chosen
            if final:
                self._show_final_weights(final)
                if len(searches) > 1:
                    self.final_plot.getPlotItem().setTitle(f"Final weights, mean of {len(searches)} seeds")
            show_verdict(self.chosen_label, choice["verdict"], choice["decided"])
            scores, confirm = evidence_of(choice)
            self.score_book.scores, self.score_book.confirm = scores, confirm
            self._dirty.update({"weights", "scores"})
        elif search:
            self._show_choice(chosen, search["final_weights"], verdict_text(
                search["margin"], search["noise"], search["decisive"], search.get("reason")), search["decisive"])
        else:
            self._show_choice(chosen, None, "the only candidate")

    def _show_final_weights(self, final_weights: dict) -> None:
        """Bars of softmax(alpha) per candidate ({length: weight}, lengths as ints or strings)."""
        if self.final_bars is not None:
            self.final_plot.removeItem(self.final_bars)
        lengths = [int(k) for k in final_weights]
        weights = list(final_weights.values())
        brushes = [pg.mkBrush(colour(3) if k == self.chosen_length else "#9aa5b1") for k in lengths]
        positions = np.arange(len(lengths))
        self.final_bars = pg.BarGraphItem(x=positions, height=weights, width=0.6, brushes=brushes)
        self.final_plot.addItem(self.final_bars)
        self.final_plot.getPlotItem().getAxis("bottom").setTicks(
            [[(i, f"k={k}" + (" ✓" if k == self.chosen_length else "")) for i, k in enumerate(lengths)]])

    @Slot(str, str)
    def _on_run_failed(self, message: str, details: str) -> None:
        self.phase_label.setText("failed")
        self._end_run_eta()
        self._log(f"error: {message}\n{details}")
        self.context.runs_changed.emit()
        # open(), not exec(): the dialog must not start a nested event loop inside a queued slot
        self.error_box = QMessageBox(QMessageBox.Icon.Critical, "Run failed", message, parent=self)
        self.error_box.setDetailedText(details)
        self.error_box.open()

    @Slot()
    def _on_run_cancelled(self) -> None:
        self.phase_label.setText("cancelled")
        self.eta_label.setText("")
        self._end_run_eta()
        self._log("run cancelled")
        self.context.runs_changed.emit()

    # ------------------------------------------------------------------ drawing

    @Slot(int)
    def _on_smoothing_changed(self, value: int) -> None:
        self.smoothing_label.setText(f"{value / 100:.2f}")
        self._dirty.add("loss")

    def _observe_for_eta(self, event) -> None:
        if self.run_eta is not None:
            self.run_eta.observe(event)
        self._show_run_eta()

    def _show_run_eta(self) -> None:
        remaining = self.run_eta.remaining() if self.run_eta is not None else None
        if remaining is not None:  # None: nothing timed yet
            self.run_eta_label.setText(f"run ETA ~{_duration(remaining)}")

    def _end_run_eta(self) -> None:
        self.run_eta = None
        self.run_eta_label.setText("")

    @Slot()
    def _repaint(self) -> None:
        self._show_run_eta()  # counts down between events, and through the evaluation, which has no steps
        if "loss" in self._dirty:
            weight = self.smoothing_slider.value() / 100
            for key, series in self.loss_series.items():
                self.loss_raw_curves[key].setData(series.x, series.y)
                self.loss_curves[key].setData(series.x, self.loss_smoothers[key].smooth(series.y, weight))
        if "metrics" in self._dirty:
            for key, series in self.metric_series.items():
                self.metric_curves[key].setData(series.x, series.y)
        if "weights" in self._dirty:
            self.seed_weights.repaint()
        if "scores" in self._dirty:
            if len(self.score_book):
                self.scores_plot.setVisible(True)
            self.scores.show(self.candidates, self.score_book.scores, self.score_book.confirm, self.chosen_length)
        self._dirty.clear()

    def _log(self, text: str) -> None:
        self.log_pane.appendPlainText(text)


def verdict_text(margin: float, noise: float, decisive: bool, reason: str | None) -> str:
    """The search's verdict with its true reason (engine.training.search.decide), then the figures.
    Runs recorded before the engine gave reasons have none: only the figures are certain then."""
    figures = f"margin {margin:.3f} {'>' if margin > noise else '≤'} noise {noise:.3f}"
    if decisive:
        return f"decisive: {figures}"
    return f"NOT DECISIVE, {reason}: {figures}" if reason else f"NOT DECISIVE: {figures}"


def mean_final_weights(searches: list[dict]) -> dict[str, float]:
    """softmax(alpha) at the end of the search, per candidate, averaged over the seeds' searches."""
    lengths = list(searches[0]["final_weights"])
    return {k: float(np.mean([found["final_weights"][k] for found in searches])) for k in lengths}


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def main() -> None:
    """A quick look: `python -m app.pages.training_page` trains the quick demo on generated data."""
    import sys
    import tempfile

    from PySide6.QtWidgets import QApplication

    from app.context import AppContext
    from tests.app.store_data import store_planted_dataset

    app = QApplication(sys.argv)
    folder = tempfile.mkdtemp(prefix="automlp-training-page-")
    context = AppContext(f"sqlite:///{folder}/store.sqlite")
    context.select_dataset(store_planted_dataset(context.sessions, folder, n_users=400))
    page = TrainingPage(context)
    page.resize(1200, 800)
    page.show()
    app.aboutToQuit.connect(page.shutdown)
    page.start()
    sys.exit(app.exec())


if __name__ == "__main__":
    main()
