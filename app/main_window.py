"""The main window."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QMainWindow

import engine


class MainWindow(QMainWindow):
    def __init__(self, db_url: str | None = None) -> None:
        super().__init__()
        self.setWindowTitle(f"AutoMLP Studio {engine.__version__}")
        self.resize(1200, 800)
        self.setCentralWidget(QLabel("AutoMLP Studio: run `automlp run --synthetic` from a terminal meanwhile."))
