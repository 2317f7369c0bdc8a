"""The Users page's history table: one user's items, newest last, with the short-term window (the last k
items, which the short-term module sees) marked."""

from __future__ import annotations

from PySide6.QtGui import QBrush
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from app.pages.users.cells import MARK_ROLE, cell, read_only_table
from app.theme import colour

HISTORY_COLUMNS = ("#", "Item", "Title", "Window")


class HistoryView(QWidget):
    """A title, a label naming the window, and the history table."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rec = None  # the Recommendations shown
        self.window_label = QLabel("")
        self.window_label.setWordWrap(True)  # in a narrow window it wraps instead of widening the page
        self.window_label.setObjectName("shortTermBanner")  # its colours are the theme's (light.qss, dark.qss)
        self.table = read_only_table(HISTORY_COLUMNS)
        # The newest items (the window) stay in view while the table is resized, until the user scrolls up.
        self.follow_newest = True
        bar = self.table.verticalScrollBar()
        bar.valueChanged.connect(lambda value: setattr(self, "follow_newest", value == bar.maximum()))
        bar.rangeChanged.connect(lambda _low, high: bar.setValue(high) if self.follow_newest else None)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(QLabel("History (newest last)"))
        column.addWidget(self.window_label)
        column.addWidget(self.table, 1)

    def show_history(self, rec) -> None:
        """Shows the history of a Recommendations, its last `rec.window` items marked."""
        self.rec = rec
        self.table.setRowCount(0)
        h, k = len(rec.history_ids), rec.window
        self.window_label.setText(f"short-term window (k = {k}): the last {min(k, h)} of {h} items, marked")
        self.table.setRowCount(h)
        brush = QBrush(colour("short_term_window"))
        for row, (item_id, title) in enumerate(zip(rec.history_ids, rec.history_titles)):
            in_window = row >= h - k
            cells = [cell(row + 1), cell(item_id), cell(title), cell("short-term" if in_window else "")]
            for column, item in enumerate(cells):
                item.setData(MARK_ROLE, in_window)
                if in_window:
                    item.setBackground(brush)
                self.table.setItem(row, column, item)
        self.table.resizeColumnsToContents()
        self.follow_newest = True
        self.table.scrollToBottom()

    def restyle(self) -> None:
        """Marks the window again in the current theme's colour (the theme was switched)."""
        if self.rec is not None:
            self.show_history(self.rec)

    def clear(self) -> None:
        self.rec = None
        self.table.setRowCount(0)
        self.window_label.setText("")
