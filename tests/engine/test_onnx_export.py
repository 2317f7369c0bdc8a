"""ONNX export through the command line: a checked model.onnx, and nothing on stderr that looks like trouble."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.serving.bundle import save_bundle
from tests.engine.tiny_run import tiny_run

pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stored_run(tmp_path):
    """A store with one run whose bundle (without model.onnx) is saved: (store URL, run id)."""
    from engine.cli.model_commands import record_bundle
    from engine.data.run_records import create_run
    from engine.data.store import open_store

    result, data = tiny_run()
    bundle = save_bundle(result, data, tmp_path / "bundle")
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    store = open_store(url)
    with store.session() as session:
        run_id = create_run(session, "synthetic", result.config.to_dict(), "cpu")
        record_bundle(session, run_id, bundle)
    store.close()
    return url, run_id


def test_the_cli_onnx_export_prints_no_warnings(stored_run, tmp_path):
    # A process of its own: torch's log handler writes to the stderr it found when torch was imported, so
    # only a fresh process shows what a user's terminal shows.
    url, run_id = stored_run
    out = tmp_path / "exported"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "engine.cli", "export", str(run_id), "--out", str(out), "--onnx",
                           "--db", url], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "model.onnx").is_file()
    assert "model.onnx matches torch" in done.stderr
    assert "torchvision" not in done.stderr
    assert "warning" not in done.stderr.lower()


def test_only_the_skipped_torchvision_notices_of_the_exporters_registry_are_dropped():
    from engine.serving.onnx_export import REGISTRY_LOGGER, _quiet_exporter

    logger, shown = logging.getLogger(REGISTRY_LOGGER), []
    handler = logging.Handler()
    handler.emit = lambda record: shown.append(record.getMessage())
    logger.addHandler(handler)
    try:
        with _quiet_exporter():
            logger.warning("torchvision is not installed. Skipping %s", "torchvision::nms")
            logger.warning("some other exporter trouble")
        logger.warning("torchvision is not installed. Skipping %s", "torchvision::nms")  # after the export
    finally:
        logger.removeHandler(handler)
    assert shown == ["some other exporter trouble", "torchvision is not installed. Skipping torchvision::nms"]
