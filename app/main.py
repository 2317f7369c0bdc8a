"""Entry point of the desktop application."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="automlp-studio", description="AutoMLP Studio desktop application")
    parser.add_argument("--db", help="SQLAlchemy URL of the store (default: a SQLite file in the user data folder)")
    args = parser.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow

    qt_app = QApplication.instance() or QApplication(sys.argv[:1])
    qt_app.setApplicationName("AutoMLP Studio")
    qt_app.setOrganizationName("AutoMLP Studio")
    window = MainWindow(db_url=args.db)
    window.show()
    return qt_app.exec()
