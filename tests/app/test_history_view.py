"""The Users page's history table keeps the newest items, and so the short-term window, in view."""

from __future__ import annotations

from types import SimpleNamespace

from PySide6.QtWidgets import QApplication

from app.pages.users.history_view import HistoryView


def history(length: int, window: int) -> SimpleNamespace:
    return SimpleNamespace(history_ids=list(range(1, length + 1)),
                           history_titles=[f"title {i}" for i in range(1, length + 1)], window=window)


def at_bottom(view: HistoryView) -> bool:
    bar = view.table.verticalScrollBar()
    return bar.maximum() > 0 and bar.value() == bar.maximum()


def test_a_history_opens_scrolled_to_its_newest_items(qtbot):
    view = HistoryView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    qtbot.waitExposed(view)
    view.show_history(history(60, 8))
    QApplication.processEvents()
    assert at_bottom(view)


def test_the_newest_items_stay_in_view_when_the_table_shrinks(qtbot):
    view = HistoryView()
    qtbot.addWidget(view)
    view.resize(400, 700)
    view.show()
    qtbot.waitExposed(view)
    view.show_history(history(34, 8))
    QApplication.processEvents()
    view.resize(400, 250)  # the splitter gives the top-N more room
    QApplication.processEvents()
    assert at_bottom(view)


def test_a_history_the_user_scrolled_up_stays_where_they_left_it(qtbot):
    view = HistoryView()
    qtbot.addWidget(view)
    view.resize(400, 700)
    view.show()
    qtbot.waitExposed(view)
    view.show_history(history(80, 8))
    QApplication.processEvents()
    view.table.verticalScrollBar().setValue(3)
    view.resize(400, 250)
    QApplication.processEvents()
    assert view.table.verticalScrollBar().value() == 3
