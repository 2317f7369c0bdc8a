"""What the Training and Runs pages show of a run's length choice (engine.training.length_choice): its
verdict, styled as undecided when the evidence does not single one length out; every seed's softmax(alpha)
overlaid on one step axis; and validation NDCG@10 per candidate length with error bars over the seeds.

Live events (ArchitectureWeights, CandidateScored) and a stored LengthChoice.summary() are drawn by the same
code: the events are gathered into the summary's shape first.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from app.plots import GrowingSeries, colour, fit_legend, make_plot
from app.theme import colour as theme_colour

VALIDATION_METRIC = "NDCG@10"  # engine.training.length_choice.VALIDATION_METRIC
# A seed's curves: the first seed's solid and named in the legend (by k), the others dashed, dotted, ...
SEED_STYLES = (Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine, Qt.PenStyle.DashDotLine,
               Qt.PenStyle.DashDotDotLine)
OTHER_SEED_ALPHA = 150  # of 255: the other seeds' curves lighter than the first's
CHOSEN_COLOUR = 3  # palette index (red): the chosen length, as on the final weights' bars
OTHER_COLOUR = "#9aa5b1"
CONFIRM_SYMBOLS = ("t", "s", "d", "star")
UNDECIDED_STYLE = "font-weight: bold; color: {error};"
DECIDED_STYLE = "font-weight: bold;"


# ------------------------------------------------------------------ verdict


def show_verdict(label: QLabel, verdict: str, decided: bool) -> None:
    """The verdict on `label`: bold; in the error colour and marked UNDECIDED when it is not a decision.
    The label's `undecided` property says which (for the stylesheet and for tests)."""
    label.setText(f"chosen length: {verdict}" if decided else f"chosen length, UNDECIDED: {verdict}")
    label.setProperty("undecided", not decided)
    label.setStyleSheet(DECIDED_STYLE if decided else UNDECIDED_STYLE.format(error=theme_colour("error").name()))
    label.setToolTip("" if decided else "the evidence does not single one length out; the run kept the one "
                                        "named, but another length is as good on this data")


def clear_verdict(label: QLabel) -> None:
    label.setText("chosen length: –")
    label.setProperty("undecided", False)
    label.setStyleSheet("")
    label.setToolTip("")


# ------------------------------------------------------------------ every seed's softmax(alpha)


class SeedWeightCurves:
    """softmax(alpha) per candidate over the search steps, one set of curves per seed, overlaid: colour per
    candidate length, line style per seed; the legend names the lengths (the first seed's curves)."""

    def __init__(self, plot: pg.PlotWidget) -> None:
        self.plot = plot
        self.candidates: list[int] = []
        self.series: dict[tuple[int, int], GrowingSeries] = {}  # (trial, length) -> points
        self.curves: dict[tuple[int, int], pg.PlotDataItem] = {}
        self.seeds: dict[int, int] = {}  # trial -> seed
        self.seed_keys: dict[int, pg.PlotDataItem] = {}  # trial -> its line style in the legend (no data)

    def reset(self, candidates: list[int]) -> None:
        """No curves of other seeds; the first seed's curves, one per candidate, kept when the candidates are
        the same (curves are created once per candidate list)."""
        for key in [key for key in self.curves if key[0] > 0 or candidates != self.candidates]:
            self.plot.removeItem(self.curves.pop(key))
            self.series.pop(key)
        for trial in list(self.seed_keys):
            self.plot.removeItem(self.seed_keys.pop(trial))
        if candidates != self.candidates:
            self.candidates = list(candidates)
            for length in self.candidates:
                self._add(0, length)
        for series in self.series.values():
            series.clear()
        self.seeds = {}

    def trial_series(self, trial: int) -> dict[int, GrowingSeries]:
        """{length: series} of one seed's search (created on its first use)."""
        for length in self.candidates:
            if (trial, length) not in self.series:
                self._add(trial, length)
        return {length: self.series[(trial, length)] for length in self.candidates}

    def trial_curves(self, trial: int) -> dict[int, pg.PlotDataItem]:
        return {length: curve for (t, length), curve in self.curves.items() if t == trial}

    @property
    def trials(self) -> list[int]:
        return sorted({trial for trial, _ in self.curves})

    def add(self, event) -> None:
        """One ArchitectureWeights event (its `trial` says which seed's search)."""
        series = self.trial_series(event.trial)
        self.seeds[event.trial] = event.seed
        for length, weight in zip(event.candidates, event.weights):
            if length in series:
                series[length].drop_from(event.step)  # a resumed search redoes the steps after its checkpoint
                series[length].append(event.step, weight)

    def show_searches(self, searches: list[dict], candidates: list[int], first_trial: int = 0) -> None:
        """The seeds' curves from a LengthChoice summary's "searches" (weight_steps, weight_history), the
        first of them as trial `first_trial`."""
        if list(candidates) != self.candidates:
            self.reset(list(candidates))
        for trial, found in enumerate(searches, start=first_trial):
            history = np.asarray(found["weight_history"], dtype=float)
            if history.size == 0:
                continue
            steps = np.asarray(found["weight_steps"], dtype=float)
            for column, series in enumerate(self.trial_series(trial).values()):
                series.replace(steps, history[:, column])
            self.seeds[trial] = found["seed"]

    def repaint(self) -> None:
        for key, series in self.series.items():
            self.curves[key].setData(series.x, series.y)
        title = "Architecture weights softmax(α)"
        if len(self.trials) > 1:
            title += f", {len(self.trials)} seeds"
            for trial in self.trials:  # the legend says which line style is which seed
                if trial not in self.seed_keys:
                    self.seed_keys[trial] = self.plot.plot(
                        [], [], pen=self._pen(OTHER_COLOUR, trial), name=f"seed {self.seeds.get(trial, trial)}")
                    fit_legend(self.plot.getPlotItem(), self.plot.width())
        if title != self.plot.getPlotItem().full_title:
            self.plot.getPlotItem().setTitle(title)

    @staticmethod
    def _pen(name: str, trial: int):
        color = pg.mkColor(name)
        if trial > 0:
            color.setAlpha(OTHER_SEED_ALPHA)
        return pg.mkPen(color, width=2 if trial == 0 else 1.5, style=SEED_STYLES[trial % len(SEED_STYLES)])

    def _add(self, trial: int, length: int) -> None:
        self.series[(trial, length)] = GrowingSeries()
        pen = self._pen(colour(self.candidates.index(length)), trial)
        self.curves[(trial, length)] = self.plot.plot([], [], pen=pen, name=f"k={length}" if trial == 0 else None)
        if trial == 0:
            fit_legend(self.plot.getPlotItem(), self.plot.width())


# ------------------------------------------------------------------ validation NDCG@10 per k


class ScoreBook:
    """CandidateScored events gathered into a LengthChoice summary's shape: "scores" (exhaustive: every
    seed's value per length) and "confirm" (one {epochs, scores} per successive-halving round)."""

    def __init__(self) -> None:
        self.scores: dict[int, list[float]] = {}
        self.confirm: list[dict] = []

    def clear(self) -> None:
        self.scores, self.confirm = {}, []

    def __len__(self) -> int:
        return sum(len(values) for values in self.scores.values()) + sum(len(r["scores"]) for r in self.confirm)

    def add(self, event) -> None:
        value = event.metrics.get(VALIDATION_METRIC)
        if value is None:
            return
        if event.stage == "exhaustive":
            self.scores.setdefault(event.length, []).append(float(value))
            return
        # a round scores each survivor once: a length scored again starts the next round
        if not self.confirm or event.length in self.confirm[-1]["scores"]:
            self.confirm.append({"epochs": event.epochs, "scores": {}})
        round_ = self.confirm[-1]
        round_["scores"][event.length] = float(value)
        round_["epochs"] = max(round_["epochs"], event.epochs)


def evidence_of(choice: dict) -> tuple[dict[int, list[float]], list[dict]]:
    """({length: values over seeds}, [{"epochs", "scores": {length: value}}]) of a LengthChoice summary,
    lengths as ints (JSON keeps them as strings)."""
    scores = {int(k): list(entry["values"]) for k, entry in (choice.get("scores") or {}).items()}
    confirm = [{"epochs": r["epochs"], "scores": {int(k): float(v) for k, v in r["scores"].items()}}
               for r in choice.get("confirm") or []]
    return scores, confirm


def spread(values: list[float]) -> float:
    """The sample standard deviation over seeds (engine.training.length_choice.spread): 0 for one seed."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


class ScoresPlot:
    """Validation NDCG@10 per candidate length: the exhaustive stage's mean over seeds with its sample
    standard deviation as an error bar (and each seed's value as a small dot), each confirm round's scores
    beside it; the chosen length in red and ticked on the axis."""

    def __init__(self, plot: pg.PlotWidget) -> None:
        self.plot = plot
        self.items: list = []
        self.error_bars: pg.ErrorBarItem | None = None
        self.means: dict[int, float] = {}
        self.spreads: dict[int, float] = {}
        self.rounds: list[dict[int, float]] = []

    def clear(self) -> None:
        for item in self.items:
            self.plot.removeItem(item)
        self.items, self.error_bars, self.means, self.spreads, self.rounds = [], None, {}, {}, []
        self.plot.getPlotItem().getAxis("bottom").setTicks(None)

    def show(self, candidates: list[int], scores: dict[int, list[float]], confirm: list[dict],
             chosen: int | None) -> None:
        self.clear()
        lengths = [k for k in candidates if k in scores or any(k in r["scores"] for r in confirm)]
        if not lengths:
            return
        position = {k: i for i, k in enumerate(lengths)}
        scored = [k for k in lengths if scores.get(k)]
        if scored:
            x = np.array([position[k] for k in scored], dtype=float)
            self.means = {k: float(np.mean(scores[k])) for k in scored}
            self.spreads = {k: spread(scores[k]) for k in scored}
            y = np.array([self.means[k] for k in scored])
            sd = np.array([self.spreads[k] for k in scored])
            self.error_bars = pg.ErrorBarItem(x=x, y=y, top=sd, bottom=sd, beam=0.2,
                                              pen=pg.mkPen(OTHER_COLOUR, width=1.5))
            self.plot.addItem(self.error_bars)
            self.items.append(self.error_bars)
            seeds = max(len(scores[k]) for k in scored)
            brushes = [pg.mkBrush(colour(CHOSEN_COLOUR) if k == chosen else colour(0)) for k in scored]
            name = f"mean ± sd over {seeds} seeds" if seeds > 1 else "1 seed"
            self.items.append(self.plot.plot(x, y, pen=None, symbol="o", symbolSize=10, symbolBrush=brushes,
                                             symbolPen=None, name=name))
            if seeds > 1:
                dots_x = np.concatenate([[position[k]] * len(scores[k]) for k in scored]).astype(float)
                dots_y = np.concatenate([scores[k] for k in scored])
                self.items.append(self.plot.plot(dots_x, dots_y, pen=None, symbol="o", symbolSize=4,
                                                 symbolBrush=None, symbolPen=pg.mkPen(OTHER_COLOUR)))
        for number, round_ in enumerate(confirm):
            self.rounds.append(dict(round_["scores"]))
            ks = [k for k in lengths if k in round_["scores"]]
            x = np.array([position[k] + 0.15 * (number + 1) for k in ks])
            y = np.array([round_["scores"][k] for k in ks])
            brushes = [pg.mkBrush(colour(CHOSEN_COLOUR) if k == chosen and number == len(confirm) - 1
                                  else colour(4 + number)) for k in ks]
            symbol = CONFIRM_SYMBOLS[number % len(CONFIRM_SYMBOLS)]
            self.items.append(self.plot.plot(x, y, pen=None, symbol=symbol, symbolSize=9, symbolBrush=brushes,
                                             symbolPen=None, name=f"confirm, {round_['epochs']} epochs"))
        self.plot.getPlotItem().getAxis("bottom").setTicks(
            [[(i, f"k={k}" + (" ✓" if k == chosen else "")) for i, k in enumerate(lengths)]])
        self.plot.getPlotItem().setXRange(-0.5, len(lengths) - 0.5 + 0.15 * len(confirm), padding=0)
        fit_legend(self.plot.getPlotItem(), self.plot.width())


def make_scores_plot() -> pg.PlotWidget:
    return make_plot(f"Validation {VALIDATION_METRIC} per k", "candidate length k", VALIDATION_METRIC)


def make_weights_plot() -> pg.PlotWidget:
    return make_plot("Architecture weights softmax(α)", "search step", "weight")


# ------------------------------------------------------------------ a stored run's length choice


class LengthChoicePanel(QWidget):
    """A finished run's length choice: its verdict, every seed's softmax(alpha) and the per-length scores.
    Hidden unless the run has a length choice."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.verdict_label = QLabel()
        self.verdict_label.setWordWrap(True)
        self.verdict_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.weights_plot = make_weights_plot()
        self.scores_plot = make_scores_plot()
        self.weights = SeedWeightCurves(self.weights_plot)
        self.scores = ScoresPlot(self.scores_plot)
        plots = QHBoxLayout()
        plots.setContentsMargins(0, 0, 0, 0)
        plots.addWidget(self.weights_plot)
        plots.addWidget(self.scores_plot)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.verdict_label)
        layout.addLayout(plots, 1)
        self.setVisible(False)

    def show_run(self, metrics: dict | None) -> None:
        choice = (metrics or {}).get("length_choice")
        if not choice:
            self.weights.reset([])
            self.scores.clear()
            clear_verdict(self.verdict_label)
            self.setVisible(False)
            return
        show_verdict(self.verdict_label, choice["verdict"], choice["decided"])
        candidates = [int(k) for k in choice["candidates"]]
        self.weights.reset(candidates)
        self.weights.show_searches(choice.get("searches") or [], candidates)
        self.weights.repaint()
        self.weights_plot.setVisible(bool(choice.get("searches")))
        scores, confirm = evidence_of(choice)
        self.scores.show(candidates, scores, confirm, choice["chosen_length"])
        self.scores_plot.setVisible(bool(scores or confirm))
        self.setVisible(True)
