"""An import on a background thread: `engine.data.importers.import_file` as an `EngineJob`."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject

from app.engine_job import EngineJob
from engine.data.importers import ImportFailed, import_file
from engine.data.store_errors import StoreError, store_errors


class ImportJob(EngineJob):
    """Imports `path` with `import_file`'s keyword `options` (name, format, mapping, separator,
    metadata_files, times_file, min_user_interactions, min_item_interactions) in a Session of its own;
    `succeeded` carries the ImportReport, `failed` the importer's message (file, line, column) or the
    store's (read-only, full)."""

    def __init__(self, sessions, path: str | Path, options: dict, parent: QObject | None = None) -> None:
        def task(observer):
            with sessions() as session, store_errors(session.get_bind()):
                return import_file(session, Path(path), observer=observer, **options)

        super().__init__(task, (ImportFailed, StoreError), parent)
