"""The shared plots: legends small, semi-transparent and in the corner asked for; titles that fit."""

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


def test_the_legend_sits_in_the_asked_corner_on_a_semi_transparent_background(qtbot):
    plot = make_plot(TITLE, "step", "weight", "top-left")
    qtbot.addWidget(plot)
    for k in range(5):
        add_curve(plot, f"k={2 ** k}", k).setData(np.arange(20), np.linspace(0.2, 0.2 + k / 10, 20))
    item = shown(qtbot, plot, 400, 250)
    legend, view = item.legend, item.vb
    assert legend.opts["brush"].color().alpha() < 255
    box = legend.mapRectToItem(view, legend.boundingRect())
    assert box.left() < view.width() / 4 and box.top() < view.height() / 4
    # five names in two columns: the legend leaves most of the view box free
    assert box.width() * box.height() < 0.3 * view.width() * view.height()


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
