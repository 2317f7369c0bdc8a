"""The state the pages share: the open store, the selected dataset, the experiment configuration and
the selected run. Pages take the context in their constructor and subscribe to its signals; nothing
reaches for globals.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from engine.core.config import RunConfig
from engine.core.presets import quick_demo


class AppContext(QObject):
    store_changed = Signal()  # a different store was opened: everything reloads
    datasets_changed = Signal()  # a dataset was imported or deleted
    dataset_selected = Signal(str)  # the dataset that experiments run on
    config_changed = Signal()  # the experiment configuration was edited (and is valid)
    config_invalidated = Signal(str)  # the form holds an invalid configuration: the ConfigError text
    runs_changed = Signal()  # a run started, finished, failed or was deleted
    run_selected = Signal(int)  # the run whose model the Users page browses
    resume_requested = Signal(int)  # continue this interrupted run from its checkpoint (Training page)

    def __init__(self, store_url: str | None = None) -> None:
        super().__init__()
        self.store_url: str | None = None
        self.store = None  # engine.data.store.Store
        self.sessions = None  # its sessionmaker; one Session per user action, never shared across threads
        self.dataset_name: str | None = None
        self.config: RunConfig = quick_demo()
        self.config_error: str | None = None  # set while the form is invalid: runs must not start
        self.run_id: int | None = None
        self.interrupted_runs = 0  # runs of dead processes found when the store was opened
        if store_url is not None:
            self.open_store(store_url)

    def open_store(self, url: str) -> None:
        """Opens (creating if needed) the store at `url`; raises the store's error if it cannot.

        Runs left `running` by a process that is gone (killed, crashed) are marked `interrupted`, so that
        the Runs page never shows a run as running that is not (except in a read-only store, which
        cannot be changed: `store.read_only`)."""
        from engine.data.run_records import mark_interrupted_runs
        from engine.data.store import open_store

        store = open_store(url)
        self.interrupted_runs = 0
        if not store.read_only:
            try:
                with store.session() as session:
                    self.interrupted_runs = mark_interrupted_runs(session)
            except Exception:  # e.g. a full disk: the store stays closed, the current one open
                store.close()
                raise
        if self.store is not None:
            self.store.close()
        self.store, self.sessions, self.store_url = store, store.session, url
        self.dataset_name = None
        self.run_id = None
        self.store_changed.emit()

    def select_dataset(self, name: str | None) -> None:
        self.dataset_name = name
        self.dataset_selected.emit(name or "")

    def set_config(self, config: RunConfig) -> None:
        self.config = config
        self.config_error = None
        self.config_changed.emit()

    def set_config_error(self, message: str) -> None:
        """The form was edited into an invalid configuration; `config` keeps the last valid one."""
        self.config_error = message
        self.config_invalidated.emit(message)

    def select_run(self, run_id: int) -> None:
        self.run_id = run_id
        self.run_selected.emit(run_id)
