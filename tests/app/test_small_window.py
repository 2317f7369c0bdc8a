"""The main window at its smallest, 800x500 (app.main_window.MINIMUM_SIZE): it fits, plots keep their legends
off the data, and the Users page's top-N shows at least five rows."""

from __future__ import annotations

import numpy as np
import pytest

from app.main_window import MINIMUM_SIZE
from engine.serving.bundle import save_bundle
from tests.engine.tiny_run import tiny_run

SMALL = (800, 500)


@pytest.fixture
def small_window(qtbot, window):
    window.resize(*SMALL)
    qtbot.waitExposed(window)
    qtbot.wait(50)
    return window


def test_the_window_can_be_made_as_small_as_800_by_500(small_window):
    hint = small_window.minimumSizeHint()
    assert hint.width() <= SMALL[0] and hint.height() <= SMALL[1]
    assert (MINIMUM_SIZE.width(), MINIMUM_SIZE.height()) == SMALL
    assert (small_window.width(), small_window.height()) == SMALL


def test_at_800_by_500_no_legend_of_the_training_page_covers_its_data(qtbot, small_window):
    small_window.show_page("Training")
    page = small_window.pages["Training"]
    for key, curve in page.loss_curves.items():
        curve.setData(np.arange(50), np.linspace(5, 2, 50))
    for curve in page.metric_curves.values():
        curve.setData(np.arange(1, 11), np.linspace(0.1, 0.8, 10))
    qtbot.wait(50)
    for plot in (page.loss_plot, page.metrics_plot, page.weights_plot):
        item = plot.getPlotItem()
        legend = item.legend
        if not legend.items or not legend.isVisible():
            continue
        box = legend.mapRectToScene(legend.boundingRect())
        data = item.vb.mapRectToScene(item.vb.boundingRect())
        assert not box.intersects(data), item.full_title
        assert data.height() > 40 and data.width() > 150, item.full_title


def test_at_800_by_500_the_users_top_n_shows_at_least_five_rows(qtbot, small_window, tmp_path):
    result, data = tiny_run()
    users = small_window.pages["Users"]
    small_window.show_page("Users")
    users.open_bundle(save_bundle(result, data, tmp_path / "bundle"))
    qtbot.waitUntil(lambda: not users.is_busy() and bool(users.user_ids_shown()), timeout=60000)
    users.select_user(users.user_ids_shown()[0])
    qtbot.wait(50)
    table = users.top_n.table
    assert table.rowCount() >= 5
    assert table.viewport().height() >= 5 * table.rowHeight(0)
