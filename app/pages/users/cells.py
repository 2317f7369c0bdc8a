"""What the Users page's history and top-N tables share: read-only row tables, cells that show floats to four
places, and MARK_ROLE (True on the rows a colour marks)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem

MARK_ROLE = Qt.ItemDataRole.UserRole + 2  # True on the marked rows (window, test item)


def cell(value, tooltip: str | None = None) -> QTableWidgetItem:
    item = QTableWidgetItem("" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value)))
    if tooltip:
        item.setToolTip(tooltip)
    return item


def read_only_table(columns) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.verticalHeader().setVisible(False)
    # rows one line of text high, not the style's 30 px: a small window shows twice as many
    table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 6)
    return table
