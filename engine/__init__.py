"""AutoMLP Studio engine: everything that is not Qt, in stages that each import only the stages below them.

    core -> data -> models -> evaluation -> training -> serving -> experiments -> cli

The public entry points are importable from here (`from engine import run_automlp, open_store`); each is
loaded on first use, so that `import engine` (and `automlp --help`) stays fast. Never imports PySide6,
pyqtgraph or `app` (tests/test_architecture.py checks both rules with import-linter).
"""

from __future__ import annotations

import importlib

from engine.core.version import __version__

_PUBLIC = {
    "RunConfig": "engine.core.config", "ConfigError": "engine.core.config", "PRESETS": "engine.core.presets",
    "Observer": "engine.core.events", "Cancelled": "engine.core.events",
    "open_store": "engine.data.store", "load_log": "engine.data.store", "StoreError": "engine.data.store_errors",
    "import_file": "engine.data.importers", "read_interactions": "engine.data.importers",
    "InteractionLog": "engine.data.sequences", "SequenceData": "engine.data.sequences",
    "build_sequences": "engine.data.sequences", "planted_log": "engine.data.synthetic",
    "AutoMLP": "engine.models.automlp", "SASRec": "engine.models.sasrec",
    "evaluate": "engine.evaluation.metrics",
    "run_automlp": "engine.training.runner", "RunResult": "engine.training.runner",
    "run_baseline": "engine.training.baseline",
    "recommend": "engine.serving.recommend", "recommend_all_to_csv": "engine.serving.recommend",
    "save_bundle": "engine.serving.bundle", "load_bundle": "engine.serving.bundle",
    "run_on_dataset": "engine.experiments.stored_run", "resume_run": "engine.experiments.stored_run",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value
