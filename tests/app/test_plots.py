"""The shared plots: legends above the data, never on it; titles that fit."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QFont, QFontMetrics

from app.plots import TITLE_POINTS, add_curve, make_plot

TITLE = "Architecture weights softmax(α) of a long title"


def shown(qtbot, plot, width: int, height: int):
    plot.resize(width, height)
    plot.show()
    qtbot.waitExposed(plot)
    qtbot.wait(20)
    return plot.getPlotItem()


def legend_and_data_rects(item):
    """The legend's and the view box's (the data region's) rectangles in scene coordinates."""
    legend = item.legend
    return legend.mapRectToScene(legend.boundingRect()), item.vb.mapRectToScene(item.vb.boundingRect())


def test_the_legend_sits_above_the_data_and_never_covers_it(qtbot):
    plot = make_plot(TITLE, "step", "weight")
    qtbot.addWidget(plot)
    for k in range(5):
        add_curve(plot, f"k={2 ** k}", k).setData(np.arange(20), np.linspace(0.2, 0.2 + k / 10, 20))
    for width, height in ((400, 250), (300, 160), (900, 300)):
        item = shown(qtbot, plot, width, height)
        legend, data = legend_and_data_rects(item)
        assert item.legend.isVisible() and legend.width() > 0
        assert not legend.intersects(data), (width, height)
        assert legend.bottom() <= data.top() and legend.left() >= data.left() - 1
        assert legend.right() <= item.mapRectToScene(item.boundingRect()).right() + 1  # in the plot, not cut
        assert legend.height() <= 0.25 * height  # names side by side: a few rows at most


def test_a_wider_plot_puts_more_legend_names_side_by_side(qtbot):
    plot = make_plot(TITLE, "step", "weight")
    qtbot.addWidget(plot)
    for k in range(5):
        add_curve(plot, f"k={2 ** k}", k)
    narrow = shown(qtbot, plot, 250, 200).legend.height()
    wide = shown(qtbot, plot, 900, 200).legend.height()
    assert wide < narrow


def test_a_long_title_is_elided_to_a_narrow_plot_and_whole_in_its_tooltip(qtbot):
    plot = make_plot(TITLE, "step", "weight")
    qtbot.addWidget(plot)
    item = shown(qtbot, plot, 250, 180)
    text = item.titleLabel.text
    assert text != TITLE and text.endswith("…")
    font = QFont()
    font.setPointSize(TITLE_POINTS)
    assert QFontMetrics(font).horizontalAdvance(text) < plot.width() - item.getAxis("left").width()
    assert item.geometry().width() <= plot.width() + 1  # nothing laid out beyond the widget
    assert item.titleLabel.toolTip() == TITLE
    plot.resize(900, 300)
    qtbot.wait(20)
    assert item.titleLabel.text == TITLE


def test_a_title_set_later_also_fits(qtbot):
    plot = make_plot("short", "epoch", "metric")
    qtbot.addWidget(plot)
    item = shown(qtbot, plot, 250, 180)
    item.setTitle(TITLE + " [retrain]")
    assert item.titleLabel.text.endswith("…") and item.full_title == TITLE + " [retrain]"
