"""Fixtures of the app tests: settings kept in a temporary folder, a temporary store, a generated CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from engine.data.synthetic import planted_log


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory):
    """QSettings read and write INI files in a temporary folder: never the real user's settings."""
    from PySide6.QtCore import QSettings

    folder = tmp_path_factory.mktemp("settings")
    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(folder))
    yield folder


@pytest.fixture
def app_context(tmp_path):
    """An AppContext on an empty SQLite store in the test's temporary folder."""
    from app.context import AppContext

    context = AppContext(store_url=f"sqlite:///{tmp_path}/s.sqlite")
    yield context
    context.store.close()


@pytest.fixture
def window(qtbot, app_context):
    """The main window on `app_context`, shown; closed after the test."""
    from app.main_window import MainWindow
    from app.settings import AppSettings

    window = MainWindow(app_context, AppSettings())
    qtbot.addWidget(window)
    window.show()
    yield window
    window.close()


@pytest.fixture
def planted_csv(tmp_path) -> Path:
    """A small generated log (60 users, 20-40 interactions each) as a CSV with a header."""
    log = planted_log(n_users=60, n_items=80)
    path = tmp_path / "planted.csv"
    pd.DataFrame({"user": log.users, "item": log.items, "timestamp": log.timestamps}).to_csv(path, index=False)
    return path
