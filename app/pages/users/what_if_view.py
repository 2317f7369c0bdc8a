"""The Users page's "What if" view: one user's top-N under each candidate short-term length (a column per k,
headed with its softmax(alpha), the chosen k marked), beside the top-N without any short-term window. Items a
window brings in are marked; those it pushes out are listed under its column."""

from __future__ import annotations

from PySide6.QtGui import QBrush, QFont
from PySide6.QtWidgets import QLabel, QTableWidget, QVBoxLayout, QWidget

from app.pages.users.cells import MARK_ROLE, cell
from app.theme import colour

NO_WHAT_IF = ("This bundle has no what-if models (it was saved before they were kept, or its run had a single "
              "candidate length): retrain the run to see each window's top-N.")


def window_header(window, chosen_length: int) -> str:
    weight = "softmax(α) n/a" if window.weight is None else f"softmax(α) {window.weight:.3f}"
    return f"k = {window.length}" + (" (chosen)" if window.length == chosen_length else "") + f"\n{weight}"


class WhatIfView(QWidget):
    """A note and a table: column 0 the top-N without a short-term window, then one column per k."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result = None  # the engine.serving.what_if.WhatIf shown
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.note)
        column.addWidget(self.table, 1)

    def show_unavailable(self, text: str = NO_WHAT_IF) -> None:
        self.result = None
        self.note.setText(text)
        self.table.setVisible(False)
        self.table.setRowCount(0)

    def show_what_if(self, result) -> None:
        self.result = result
        self.table.setVisible(True)
        self.note.setText(f"Top {result.n} under each window alone ({result.kind} models), history excluded: "
                          "+ marks what a window brings in over no window; − lists what it pushes out.")
        windows = result.windows
        pushed_rows = max((len(w.pushed_out) for w in windows), default=0)
        rows = max([len(result.baseline.items)] + [len(w.items) for w in windows]) + pushed_rows
        self.table.clear()
        self.table.setRowCount(rows)
        self.table.setColumnCount(1 + len(windows))
        self.table.setHorizontalHeaderLabels(["no short-term\nwindow"]
                                             + [window_header(w, result.chosen_length) for w in windows])
        top_rows = rows - pushed_rows
        self.table.setVerticalHeaderLabels([str(i + 1) for i in range(top_rows)] + ["pushed out"] * pushed_rows)
        for row, item in enumerate(result.baseline.items):
            self.table.setItem(row, 0, cell(item))
        brush, bold = QBrush(colour("short_term_window")), QFont()
        bold.setBold(True)
        for index, window in enumerate(windows, start=1):
            brought = set(window.brought_in)
            for row, (item, title) in enumerate(zip(window.items, window.titles)):
                mark = item in brought
                shown = cell(f"+{item}" if mark else str(item), title)
                shown.setData(MARK_ROLE, mark)
                if mark:
                    shown.setBackground(brush)
                    shown.setFont(bold)
                self.table.setItem(row, index, shown)
            for offset, item in enumerate(window.pushed_out):
                self.table.setItem(top_rows + offset, index, cell(f"−{item}"))
        self.table.resizeColumnsToContents()

    def restyle(self) -> None:
        if self.result is not None:
            self.show_what_if(self.result)

    def clear(self) -> None:
        self.result = None
        self.note.setText("")
        self.table.setRowCount(0)
