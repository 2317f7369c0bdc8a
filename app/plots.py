"""Curve helpers shared by the Training and Runs pages: growing numpy buffers, TensorBoard-style EMA
smoothing, plot construction and PNG/CSV export. Curves are created once and fed with setData."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetrics

from app.theme import style_plot

# Distinct colours for candidates and runs (Tableau 10), cycled.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


class GrowingSeries:
    """An (x, y) series whose numpy buffers double when full, so that appending is amortised O(1) and
    `x`, `y` are views without copies."""

    def __init__(self, capacity: int = 256) -> None:
        self._x = np.empty(capacity, dtype=np.float64)
        self._y = np.empty(capacity, dtype=np.float64)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, x: float, y: float) -> None:
        if self._size == len(self._x):
            self._x = np.concatenate([self._x, np.empty_like(self._x)])
            self._y = np.concatenate([self._y, np.empty_like(self._y)])
        self._x[self._size] = x
        self._y[self._size] = y
        self._size += 1

    def replace(self, x: np.ndarray, y: np.ndarray) -> None:
        """Sets the whole series (e.g. the exact history known at the end of a phase)."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        capacity = max(len(self._x), 1)
        while capacity < len(x):
            capacity *= 2
        self._x, self._y = np.empty(capacity), np.empty(capacity)
        self._x[:len(x)], self._y[:len(y)] = x, y
        self._size = len(x)

    def drop_from(self, x: float) -> bool:
        """Drops the points at `x` and after (x ascending); whether any were. A resumed phase records again
        the steps after its checkpoint, which the stored series may still hold."""
        size = int(np.searchsorted(self.x, x, side="left"))
        dropped, self._size = size < self._size, size
        return dropped

    def clear(self) -> None:
        self._size = 0

    @property
    def x(self) -> np.ndarray:
        return self._x[:self._size]

    @property
    def y(self) -> np.ndarray:
        return self._y[:self._size]


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average debiased for its zero start, so that the
    first points are not pulled towards 0. `weight` in [0, 1): 0 leaves the values as they are."""
    values = np.asarray(values, dtype=np.float64)
    if weight <= 0 or len(values) == 0:
        return values
    out = np.empty_like(values)
    last, debias = 0.0, 1.0
    for i, value in enumerate(values):
        last = last * weight + (1.0 - weight) * value
        debias *= weight
        out[i] = last / (1.0 - debias)
    return out


class EmaSmoother:
    """`ema(values, weight)` kept up to date incrementally: a repaint smooths only the points added since
    the last one, so that long runs cost the GUI thread nothing extra. A new weight, or a series that was
    replaced (`reset()`), smooths everything again once."""

    def __init__(self) -> None:
        self._out = GrowingSeries()
        self._weight: float | None = None
        self._last, self._debias = 0.0, 1.0

    def reset(self) -> None:
        self._out.clear()
        self._weight = None

    def smooth(self, values: np.ndarray, weight: float) -> np.ndarray:
        if weight != self._weight or len(values) < len(self._out):
            self._out.clear()
            self._weight, self._last, self._debias = weight, 0.0, 1.0
        if weight <= 0:
            return np.asarray(values, dtype=np.float64)
        for value in values[len(self._out):]:
            self._last = self._last * weight + (1.0 - weight) * float(value)
            self._debias *= weight
            self._out.append(len(self._out), self._last / (1.0 - self._debias))
        return self._out.y


TITLE_POINTS = 9  # pyqtgraph's default title is larger than the window's text: cut first at small sizes
LEGEND_TEXT = "8pt"
LEGEND_GAP = 2  # pixels between the legend and the view box under it
TOP_AXIS_ROW = 1  # the PlotItem's layout row between the title and the view box (its top axis is hidden)


class FittingTitlePlotItem(pg.PlotItem):
    """A PlotItem whose title is elided to the widget's width (the whole title is its tooltip), so that a
    narrow plot shows "Validation metr…" instead of a title cut off at both ends. The label's minimum width
    is its text's: a whole long title would widen the layout past the widget and cut off the axes too."""

    def __init__(self, *args, **kwargs) -> None:
        self.full_title: str | None = None
        self.fit_width = 0  # the widget's width, set by FittingPlotWidget; 0 until it is laid out
        super().__init__(*args, **kwargs)

    def setTitle(self, title=None, **args) -> None:  # noqa: N802 (pyqtgraph's name)
        self.full_title = title
        if title is not None:
            args.setdefault("size", f"{TITLE_POINTS}pt")
        super().setTitle(self.elided_title(), **args)
        self.titleLabel.setToolTip(title or "")

    def fit_title(self, width: int) -> None:
        self.fit_width = width
        if self.full_title is not None:
            self.titleLabel.setText(self.elided_title())

    def elided_title(self) -> str | None:
        if self.full_title is None or self.fit_width <= 0:
            return self.full_title
        font = QFont()
        font.setPointSize(TITLE_POINTS)
        # the title spans the view box's column: the widget less the left axis and a margin
        available = self.fit_width - int(self.getAxis("left").width()) - 32
        return QFontMetrics(font).elidedText(self.full_title, Qt.TextElideMode.ElideRight, max(available, 20))


class FittingPlotWidget(pg.PlotWidget):
    """A PlotWidget on a FittingTitlePlotItem that tells it its width."""

    def __init__(self, title: str) -> None:
        super().__init__(plotItem=FittingTitlePlotItem(title=title))

    def resizeEvent(self, ev) -> None:  # noqa: N802 (Qt's name)
        item = self.getPlotItem()
        if item is not None:  # None while pyqtgraph's constructor runs
            item.fit_title(self.width())
            fit_legend(item, self.width())
        super().resizeEvent(ev)


def fit_legend(item: pg.PlotItem, width: int) -> None:
    """Lays the legend out in as many columns as the plot's `width` holds and gives the row between the title
    and the view box the legend's height: the legend sits above the data, never on it. A hidden legend (or
    one without names) takes no room."""
    legend = item.legend
    if legend is None:
        return
    # the names' own widths: the legend's layout stretches its cells, so label.width() grows with the column
    entries = [int(sample.boundingRect().width() + label.item.boundingRect().width()) + 4
               for sample, label in legend.items]
    if not entries or not legend.isVisible():
        item.layout.setRowFixedHeight(TOP_AXIS_ROW, 0)
        return
    for _sample, label in legend.items:  # else the legend's layout stretches the names to twice their height
        label.setMaximumHeight(label.minimumHeight())
    legend.updateSize()
    available = width - int(item.getAxis("left").width()) - 8
    legend.setColumnCount(max(1, min(len(entries), available // max(entries))))  # an int: a float crashes Qt
    item.layout.setRowFixedHeight(TOP_AXIS_ROW, legend.height() + LEGEND_GAP)
    _place_legend(item)


def _place_legend(item: pg.PlotItem) -> None:
    # the legend's bottom-left corner on the view box's top-left one (in the PlotItem's coordinates)
    view = item.vb.geometry()
    item.legend.setPos(view.left(), view.top() - item.legend.height() - LEGEND_GAP)


def make_plot(title: str, x_label: str, y_label: str) -> pg.PlotWidget:
    """A PlotWidget with a small legend above the view box (fit_legend: in a corner it covered the curves of
    small plots), a title that fits, clip-to-view and downsampling for long series."""
    plot = FittingPlotWidget(title)
    item = plot.getPlotItem()
    item.setLabel("bottom", x_label)
    item.setLabel("left", y_label)
    # No grid: pyqtgraph's grid lines made each repaint 3-4x dearer (measured 25 vs 8 ms per update of a
    # 650x350 plot), and repaints compete with training for the CPU (benchmarks/gui_latency.py).
    item.getAxis("left").enableAutoSIPrefix(False)  # "(x0.001)" next to a metric reads as a unit
    # Not item.addLegend(): that anchors the legend inside the view box, which clips its children.
    # offset=None: placed by _place_legend whenever the view box moves, not anchored.
    item.legend = pg.LegendItem(offset=None, labelTextSize=LEGEND_TEXT, verSpacing=-8, frame=False)
    item.legend.layout.setContentsMargins(0, 0, 0, 0)
    item.legend.setParentItem(item)
    item.vb.geometryChanged.connect(lambda: _place_legend(item))  # item.legend: the current one
    item.setClipToView(True)
    item.setDownsampling(auto=True, mode="peak")
    style_plot(plot)  # after the labels and legend: it colours them (and the legend's background) too
    return plot


def add_curve(plot: pg.PlotWidget, name: str | None, index: int, width: float = 2.0,
              alpha: int = 255, symbol: str | None = None) -> pg.PlotDataItem:
    color = pg.mkColor(colour(index))
    color.setAlpha(alpha)
    pen = pg.mkPen(color, width=width)
    kwargs = {"symbol": symbol, "symbolSize": 6, "symbolBrush": color, "symbolPen": None} if symbol else {}
    curve = plot.plot([], [], pen=pen, name=name, **kwargs)
    if name:
        fit_legend(plot.getPlotItem(), plot.width())
    return curve


def export_png(plot: pg.PlotWidget, path: str | Path, width: int = 1200) -> None:
    """Renders the plot to a PNG file `width` pixels wide."""
    from pyqtgraph.exporters import ImageExporter

    exporter = ImageExporter(plot.getPlotItem())
    exporter.parameters()["width"] = width
    exporter.export(str(path))


def export_csv(plot: pg.PlotWidget, path: str | Path) -> int:
    """Writes every named curve of the plot as rows (curve, x, y); returns the number of data rows."""
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["curve", "x", "y"])
        for item in plot.getPlotItem().listDataItems():
            name = item.name()
            if not name:
                continue
            x, y = item.getOriginalDataset()  # not getData(): that is the downsampled, clipped view
            for xi, yi in zip(x if x is not None else [], y if y is not None else []):
                writer.writerow([name, xi, yi])
                rows += 1
    return rows
