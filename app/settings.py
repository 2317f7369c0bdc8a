"""The application's remembered settings: one typed object with a version, read from and written to
QSettings, so that a later release can migrate them and tests can point QSettings at a temporary folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from PySide6.QtCore import QByteArray, QSettings

from engine.core.config import ConfigError, RunConfig

ORGANIZATION = "AutoMLP Studio"
APPLICATION = "AutoMLP Studio"
SETTINGS_VERSION = 1
THEMES = ("light", "dark")


@dataclass
class AppSettings:
    geometry: QByteArray | None = None  # QMainWindow.saveGeometry()
    window_state: QByteArray | None = None  # QMainWindow.saveState()
    store_url: str | None = None  # the last store opened
    session_store_url: str | None = None  # given by --db: used for this session only, never remembered
    theme: str = "light"
    version: int = SETTINGS_VERSION


def _qsettings() -> QSettings:
    # Explicit names (not the QApplication's) so that scripts and tests read the same place.
    return QSettings(QSettings.defaultFormat(), QSettings.UserScope, ORGANIZATION, APPLICATION)


def load_settings() -> AppSettings:
    """The stored settings; defaults for anything missing or unreadable (e.g. a newer version's values)."""
    stored = _qsettings()
    settings = AppSettings()
    if int(stored.value("version", SETTINGS_VERSION) or SETTINGS_VERSION) > SETTINGS_VERSION:
        return settings  # written by a newer release: do not guess at its meaning
    geometry = stored.value("window/geometry")
    settings.geometry = geometry if isinstance(geometry, QByteArray) else None
    state = stored.value("window/state")
    settings.window_state = state if isinstance(state, QByteArray) else None
    url = stored.value("store/url")
    settings.store_url = str(url) if url else None
    theme = stored.value("view/theme", "light")
    settings.theme = theme if theme in THEMES else "light"
    return settings


def save_settings(settings: AppSettings) -> None:
    stored = _qsettings()
    stored.setValue("version", SETTINGS_VERSION)
    if settings.geometry is not None:
        stored.setValue("window/geometry", settings.geometry)
    if settings.window_state is not None:
        stored.setValue("window/state", settings.window_state)
    if settings.store_url and settings.store_url != settings.session_store_url:
        stored.setValue("store/url", settings.store_url)
    stored.setValue("view/theme", settings.theme)
    stored.sync()


def load_run_config() -> RunConfig | None:
    """The Experiment form's configuration as last saved, or None if none was saved or it no longer reads
    (e.g. a key a later release dropped): the form then starts from its preset."""
    text = _qsettings().value("experiment/config")
    if not text:
        return None
    try:
        return RunConfig.from_dict(json.loads(str(text)))
    except (ConfigError, ValueError, TypeError):
        return None


def save_run_config(config: RunConfig) -> None:
    """Saved on every valid edit, not at exit, so that a crash or a killed process keeps the form."""
    stored = _qsettings()
    stored.setValue("experiment/config", json.dumps(config.to_dict()))
    stored.sync()
