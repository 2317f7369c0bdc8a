"""The Users page's user table: one row per user (history length, test item and its rank, hit), found by id as
you type and sorted on raw values, so that "u3" comes before "u29" (natural_key)."""

from __future__ import annotations

import re

from PySide6.QtCore import QSortFilterProxyModel, Qt, Signal, Slot
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableView,
    QVBoxLayout,
    QWidget,
)

SORT_ROLE = Qt.ItemDataRole.UserRole + 3  # the user table sorts on raw values, not text
USER_COLUMNS = ("User", "History", "Test item", "Test rank", "Hit")


def natural_key(value):
    """A sort key that puts "u3" before "u29": numbers as they are, digit runs in text zero-padded."""
    if isinstance(value, str):
        return re.sub(r"\d+", lambda match: match.group().zfill(12), value)
    return value.item() if hasattr(value, "item") else value


class UserList(QWidget):
    """The filter line, the user table (a filter proxy over the model) and the count of users and hits."""

    current_changed = Signal()  # another row became current (the one user shown)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Find a user (id)…")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self._on_filter_changed)
        self.filter_edit.returnPressed.connect(self._on_filter_accepted)
        self.model = QStandardItemModel(0, len(USER_COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(USER_COLUMNS))
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(0)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.view = QTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.verticalHeader().setVisible(False)
        self.view.selectionModel().currentRowChanged.connect(self._on_current_changed)
        self.count_label = QLabel("")
        self.count_label.setWordWrap(True)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.filter_edit)
        column.addWidget(self.view, 1)
        column.addWidget(self.count_label)

    def show_users(self, users) -> None:
        """Fills the table from a user_table DataFrame (user, length, target, rank, hit), sorted by user."""
        self.view.setSortingEnabled(False)
        self.model.setRowCount(len(users))
        for row, (user, length, target, rank, hit) in enumerate(users.itertuples(index=False)):
            values = [(user, natural_key(user)), (length, int(length)), (target, str(target)), (int(rank) + 1, int(rank)),
                      ("hit" if hit else "miss", bool(hit))]
            for column, (shown, key) in enumerate(values):
                cell = QStandardItem(str(shown))
                cell.setData(key.item() if hasattr(key, "item") else key, SORT_ROLE)
                self.model.setItem(row, column, cell)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hits = int(users["hit"].sum())
        self.count_label.setText(f"{len(users)} users · {hits} with the test item in the top 10")

    def clear(self) -> None:
        self.model.removeRows(0, self.model.rowCount())

    def user_ids_shown(self) -> list[str]:
        """The external ids of the rows, in their shown (filtered, sorted) order."""
        return [self.proxy.index(row, 0).data() for row in range(self.proxy.rowCount())]

    def select(self, user_id) -> bool:
        """Makes the row of the user with this external id current; False when there is none."""
        matches = self.model.findItems(str(user_id), Qt.MatchFlag.MatchExactly, 0)
        if not matches:
            return False
        index = self.proxy.mapFromSource(matches[0].index())
        if not index.isValid():  # filtered out: show all again
            self.filter_edit.clear()
            index = self.proxy.mapFromSource(matches[0].index())
        self.view.setCurrentIndex(index)
        self.view.scrollTo(index)
        return True

    def current_user_id(self):
        """The external id of the current row as shown (recommend matches it as text), or None."""
        index = self.view.currentIndex()
        if not index.isValid():
            return None
        return self.proxy.index(index.row(), 0).data()

    @Slot(str)
    def _on_filter_changed(self, text: str) -> None:
        self.proxy.setFilterFixedString(text.strip())

    @Slot()
    def _on_filter_accepted(self) -> None:
        text = self.filter_edit.text().strip()
        if not self.select(text) and self.proxy.rowCount():
            self.view.setCurrentIndex(self.proxy.index(0, 0))

    @Slot()
    def _on_current_changed(self, _current=None, _previous=None) -> None:
        self.current_changed.emit()
