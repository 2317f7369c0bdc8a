"""Entry point of the desktop application: `python main.py [--db URL]`."""

from __future__ import annotations

import argparse
import gc
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="automlp-studio", description="AutoMLP Studio desktop application")
    parser.add_argument("--db", help="SQLAlchemy URL of the store, or a SQLite file, for this session only (default: "
                                     "the last store opened, else AUTOMLP_DB, else a SQLite file in the user data "
                                     "folder)")
    args = parser.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    from app.context import AppContext
    from app.main_window import MainWindow
    from app.settings import APPLICATION, ORGANIZATION, load_settings
    from app.theme import app_icon, apply_theme
    from app.widgets import show_error, store_url_from_text
    from engine.data.store import default_store_url

    qt_app = QApplication.instance() or QApplication(sys.argv[:1])
    qt_app.setApplicationName(APPLICATION)
    qt_app.setOrganizationName(ORGANIZATION)
    qt_app.setWindowIcon(app_icon())
    settings = load_settings()
    apply_theme(qt_app, settings.theme)

    context = AppContext()
    url = store_url_from_text(args.db) if args.db else settings.store_url or default_store_url()
    try:
        context.open_store(url)
    except Exception as error:
        if args.db or url == default_store_url():
            show_error(None, "Cannot open the store", str(error), error)
            return 1
        # The remembered store is gone or broken: say so, then fall back to the default one.
        show_error(None, "Cannot open the last store", f"{error}\n\nOpening the default store instead.", error)
        context.open_store(default_store_url())
    if args.db:  # a one-off choice: the next plain start opens the remembered store again
        settings.session_store_url = context.store_url
    settings.store_url = context.store_url
    window = MainWindow(context, settings)
    window.show()
    # Everything imported so far lives as long as the app: keeping it out of the collector's scans cut
    # the longest GUI stall during training from about 300 ms to 100 ms (BENCHMARKS.md, GUI).
    gc.freeze()
    return qt_app.exec()
