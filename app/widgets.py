"""Small widgets shared by the pages."""

from __future__ import annotations

import traceback
from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


def error_box(parent: QWidget | None, title: str, message: str, error: BaseException | None = None,
              details: str | None = None) -> QMessageBox:
    """A warning box with `message`, and the full traceback of `error` (or `details`) in its details
    pane, so that a user can copy it into a bug report. Returned unshown: the caller opens it."""
    box = QMessageBox(QMessageBox.Warning, title, message, QMessageBox.Ok, parent)
    if error is not None and details is None:
        details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if details:
        box.setDetailedText(details)
    return box


def show_error(parent: QWidget | None, title: str, message: str, error: BaseException | None = None,
               details: str | None = None) -> None:
    """Shows `error_box(...)` modally."""
    error_box(parent, title, message, error, details).exec()


def open_error(parent: QWidget | None, title: str, message: str, error: BaseException | None = None,
               details: str | None = None) -> QMessageBox:
    """Opens `error_box(...)` window-modal without waiting for it (no nested event loop: for slots that
    receive a worker's result) and returns it."""
    box = error_box(parent, title, message, error, details)
    box.setWindowModality(Qt.WindowModal)
    box.open()
    return box


class ElidedLabel(QLabel):
    """A one-line label that elides its text in the middle when it is narrower than the text, instead of
    widening the window to fit it (a long store path in the status bar did). `text()` is the whole text."""

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(min(super().minimumSizeHint().width(), 60), super().minimumSizeHint().height())

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        rect = self.contentsRect()
        shown = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideMiddle, rect.width())
        painter.drawText(rect, int(self.alignment()), shown)


def store_url_from_text(text: str) -> str:
    """A SQLAlchemy URL as typed (`postgresql://...`, `sqlite:///...`), or a file path made a SQLite URL."""
    text = text.strip()
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


class OpenStoreDialog(QDialog):
    """Asks for a store: a SQLite file (new or existing, with Browse…) or any SQLAlchemy URL."""

    def __init__(self, current_url: str | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open store")
        self.url_edit = QLineEdit(current_url or "")
        self.url_edit.setPlaceholderText("a SQLite file, or a URL such as postgresql://user@host/automlp")
        self.url_edit.setMinimumWidth(480)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._on_browse_clicked)
        buttons = QDialogButtonBox(QDialogButtonBox.Open | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.url_edit, 1)
        row.addWidget(browse)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Store file or SQLAlchemy URL (a new SQLite file is created):"))
        layout.addLayout(row)
        layout.addWidget(buttons)

    def url(self) -> str:
        return store_url_from_text(self.url_edit.text())

    def _on_browse_clicked(self) -> None:
        # A save dialog, so that a new file name is accepted too; nothing is overwritten.
        path, _ = QFileDialog.getSaveFileName(self, "Store file", "", "SQLite stores (*.sqlite *.db);;All files (*)",
                                              options=QFileDialog.DontConfirmOverwrite)
        if path:
            self.url_edit.setText(path)
