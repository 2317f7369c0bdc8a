"""The Users page's history table keeps the newest items, and so the short-term window, in view."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from PySide6.QtWidgets import QApplication

from app.pages.users.history_view import HistoryView


def history(length: int, window: int) -> SimpleNamespace:
    return SimpleNamespace(history_ids=list(range(1, length + 1)),
                           history_titles=[f"title {i}" for i in range(1, length + 1)], window=window)


@pytest.fixture
def shown(qtbot):
    """A shown HistoryView of the given height holding a history of the given length."""
    def show(height: int, length: int) -> HistoryView:
        view = HistoryView()
        qtbot.addWidget(view)
        view.resize(400, height)
        view.show()
        qtbot.waitExposed(view)
        view.show_history(history(length, 8))
        QApplication.processEvents()
        return view
    return show


def resize(view: HistoryView, height: int) -> None:
    view.resize(400, height)  # as when the splitter gives the top-N more room
    QApplication.processEvents()


def at_bottom(view: HistoryView) -> bool:
    bar = view.table.verticalScrollBar()
    return bar.maximum() > 0 and bar.value() == bar.maximum()


def test_a_history_opens_scrolled_to_its_newest_items(shown):
    assert at_bottom(shown(300, 60))


def test_the_newest_items_stay_in_view_when_the_table_shrinks(shown):
    view = shown(700, 34)
    resize(view, 250)
    assert at_bottom(view)


def test_a_history_the_user_scrolled_up_stays_where_they_left_it(shown):
    view = shown(700, 80)
    view.table.verticalScrollBar().setValue(3)
    resize(view, 250)
    assert view.table.verticalScrollBar().value() == 3
