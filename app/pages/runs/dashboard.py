"""The Runs page's dashboard, as TensorBoard's scalars: one small plot per recorded series of the selected
runs, in a grid as wide as the page allows; each run has one colour in every plot and its name in every
legend; an EMA smoothing slider (the raw curve stays faint behind) and a filter on the plots' titles.
Axes name the metric with its protocol and the phase's step or epoch. Plots and curves are created once and
fed with setData, so that a running run's curves grow in place when the page polls it."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app.plots import add_curve, ema, make_plot
from engine.experiments.run_comparison import Panel, merge_panels, panel_points, series_panels

PANEL_WIDTH = 340  # the narrowest a plot gets before the grid takes one column fewer
PANEL_HEIGHT = 230
RAW_ALPHA = 70  # of 255: the unsmoothed curve behind the smoothed one
HINT_NO_RUNS = "Select runs in the table to plot them (Ctrl or Shift for several)."
SYMBOLS_BELOW = 50  # points: fewer (e.g. one per epoch) are drawn with markers


@dataclass
class DashboardRun:
    """A run as the dashboard draws it."""
    run_id: int
    name: str  # its legend text, e.g. "run 7 · seed=1"
    colour_index: int
    frame: pd.DataFrame  # engine.data.run_records.run_series
    config: dict


@dataclass
class _RunCurves:
    raw: pg.PlotDataItem
    smoothed: pg.PlotDataItem
    name: str
    colour_index: int


class RunDashboard(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runs: list[DashboardRun] = []
        self.panels: dict[str, pg.PlotWidget] = {}  # title -> plot, in the grid's order
        self.curves: dict[tuple[str, int], _RunCurves] = {}  # (panel title, run id) -> its curves
        self._columns = 0
        self._laid_out: list[str] = []  # the titles in the grid, in its order
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("filter plots: a regular expression, e.g. NDCG|loss")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self._on_filter_changed)
        self.smoothing_slider = QSlider(Qt.Orientation.Horizontal)
        self.smoothing_slider.setRange(0, 99)  # EMA weight in hundredths, as TensorBoard's 0..0.99
        self.smoothing_slider.setValue(60)
        self.smoothing_slider.setToolTip("exponential moving average, as TensorBoard's; the raw curve stays faint")
        self.smoothing_slider.valueChanged.connect(self._on_smoothing_changed)
        self.smoothing_label = QLabel()
        self.hint = QLabel(HINT_NO_RUNS)
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Smoothing"))
        bar.addWidget(self.smoothing_slider, 1)
        bar.addWidget(self.smoothing_label)
        bar.addSpacing(16)
        bar.addWidget(self.filter_edit, 2)
        self.grid_widget = QWidget()
        self.grid = QGridLayout(self.grid_widget)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(self.grid_widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.hint)
        layout.addWidget(self.scroll, 1)
        self._on_smoothing_changed(self.smoothing_slider.value())

    # ------------------------------------------------------------------ data

    def set_runs(self, runs: list[DashboardRun]) -> None:
        """Draws `runs` (their frames may have grown since the last call: the curves follow)."""
        self.runs = runs
        self._update()

    def smoothing(self) -> float:
        return self.smoothing_slider.value() / 100

    def curve(self, title: str, run_id: int, raw: bool = False) -> pg.PlotDataItem | None:
        """The smoothed (or raw) curve of a run in the plot titled `title`; None if it has none."""
        curves = self.curves.get((title, run_id))
        return None if curves is None else (curves.raw if raw else curves.smoothed)

    def legend_names(self, title: str) -> list[str]:
        legend = self.panels[title].getPlotItem().legend
        return [label.text for _sample, label in legend.items]

    def _matches(self, title: str) -> bool:
        pattern = self.filter_edit.text().strip()
        if not pattern:
            return True
        try:
            return re.search(pattern, title, re.IGNORECASE) is not None
        except re.error:  # half-typed ("NDCG|(") : read as plain text until it is a whole expression
            return pattern.lower() in title.lower()

    def _update(self) -> None:
        run_panels = {run.run_id: series_panels(run.frame, run.config) for run in self.runs}
        wanted = {title: panel for title, panel in merge_panels(list(run_panels.values())).items()
                  if self._matches(title)}
        for title in [title for title in self.panels if title not in wanted]:
            self._remove_panel(title)
        for title, panel in wanted.items():
            if title not in self.panels:
                self.panels[title] = self._new_plot(panel)
            self._draw(title, panel, run_panels)
        self.panels = {title: self.panels[title] for title in wanted}
        self._show_hint()
        self._lay_out(force=list(self.panels) != self._laid_out)  # a poll that only adds points lays out nothing

    def _show_hint(self) -> None:
        if not self.runs:
            self.hint.setText(HINT_NO_RUNS)
        elif self.filter_edit.text().strip():
            self.hint.setText("No plot's title matches the filter.")
        else:
            self.hint.setText("The selected runs have recorded no points yet.")
        self.hint.setVisible(not self.panels)

    def _new_plot(self, panel: Panel) -> pg.PlotWidget:
        plot = make_plot(panel.title, panel.x_label, panel.y_label)  # its legend above the data, never over it
        plot.setFixedHeight(PANEL_HEIGHT)
        plot.setMinimumWidth(PANEL_WIDTH // 2)
        return plot

    def _remove_panel(self, title: str) -> None:
        plot = self.panels.pop(title)
        self.grid.removeWidget(plot)
        plot.setParent(None)  # gone from the grid now: deleteLater waits for the event loop
        plot.deleteLater()
        for key in [key for key in self.curves if key[0] == title]:
            del self.curves[key]

    def _draw(self, title: str, panel: Panel, run_panels: dict[int, dict[str, Panel]]) -> None:
        plot, weight = self.panels[title], self.smoothing()
        shown = set()
        for run in self.runs:
            if title not in run_panels[run.run_id]:
                continue
            x, y = (series.to_numpy(float) for series in panel_points(run.frame, panel))
            curves = self._curves_of(plot, title, run)
            curves.raw.setData(x, y)
            curves.raw.setVisible(weight > 0)
            curves.smoothed.setData(x, ema(y, weight))
            curves.smoothed.setSymbol("o" if len(x) < SYMBOLS_BELOW else None)
            shown.add(run.run_id)
        for key in [key for key in self.curves if key[0] == title and key[1] not in shown]:
            self._drop_curves(plot, key)

    def _curves_of(self, plot: pg.PlotWidget, title: str, run: DashboardRun) -> _RunCurves:
        """The run's curves in `plot`, made anew when its name or colour changed (another selection)."""
        key = (title, run.run_id)
        curves = self.curves.get(key)
        if curves is not None and (curves.name, curves.colour_index) != (run.name, run.colour_index):
            self._drop_curves(plot, key)
            curves = None
        if curves is None:
            raw = add_curve(plot, None, run.colour_index, width=1, alpha=RAW_ALPHA)
            smoothed = add_curve(plot, run.name, run.colour_index, symbol="o")
            curves = self.curves[key] = _RunCurves(raw, smoothed, run.name, run.colour_index)
        return curves

    def _drop_curves(self, plot: pg.PlotWidget, key: tuple[str, int]) -> None:
        curves = self.curves.pop(key)
        plot.removeItem(curves.raw)
        plot.removeItem(curves.smoothed)  # and its legend entry

    # ------------------------------------------------------------------ layout

    def _lay_out(self, force: bool = False) -> None:
        # the dashboard's width less the scroll bar: the viewport's own is resized only after this event
        width = self.width() - self.scroll.verticalScrollBar().sizeHint().width()
        columns = max(1, width // PANEL_WIDTH)
        if not force and columns == self._columns:
            return
        self._columns, self._laid_out = columns, list(self.panels)
        for plot in self.panels.values():
            self.grid.removeWidget(plot)
        for index, plot in enumerate(self.panels.values()):
            self.grid.addWidget(plot, index // columns, index % columns)
        rows = (len(self.panels) + columns - 1) // columns
        for row in range(max(self.grid.rowCount(), rows + 1)):
            self.grid.setRowStretch(row, 1 if row == rows else 0)  # plots keep their height at the top
        self.grid.activate()  # the scroll area sizes the grid now, not at its next layout pass

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._lay_out()

    @Slot(str)
    def _on_filter_changed(self, _text: str) -> None:
        self._update()

    @Slot(int)
    def _on_smoothing_changed(self, value: int) -> None:
        self.smoothing_label.setText(f"{value / 100:.2f}")
        self._update()

    # ------------------------------------------------------------------ export

    def export_png(self, path: str | Path) -> None:
        """The whole grid as one picture, the plots scrolled out of view included."""
        if not self.grid_widget.grab().save(str(path)):
            raise OSError(f"cannot write {path}")

    def export_csv(self, path: str | Path) -> int:
        """Writes the raw (unsmoothed) points of every shown plot as rows (plot, run, x, y); returns the
        number of data rows."""
        rows = 0
        run_panels = {run.run_id: series_panels(run.frame, run.config) for run in self.runs}
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["plot", "run", "x", "y"])
            for title in self.panels:
                for run in self.runs:
                    panel = run_panels[run.run_id].get(title)
                    if panel is None:
                        continue
                    for x, y in zip(*panel_points(run.frame, panel)):
                        writer.writerow([title, run.name, x, y])
                        rows += 1
        return rows
