"""The layout is the architecture: engine stages import only the stages below them, the engine never
imports Qt or the app, and resources are data. The contracts live in pyproject.toml ([tool.importlinter])."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(cwd: Path, config: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/local/bin:/usr/bin:/bin"}
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    beside = Path(sys.executable).parent / "lint-imports"  # import-linter's command, installed beside python
    command = beside if beside.exists() else shutil.which("lint-imports")
    return subprocess.run([str(command), "--config", str(config), "--no-cache"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_every_import_contract_of_the_project_is_kept():
    result = lint_imports(ROOT, ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_between_engine_stages_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "engine", tmp_path / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    config = tmp_path / "engine" / "core" / "config.py"
    config.write_text(config.read_text() + "\nfrom engine.training import runner  # upward: core -> training\n")
    layers = (ROOT / "pyproject.toml").read_text().split("[[tool.importlinter.contracts]]")[1]
    contracts = tmp_path / "contracts.toml"
    contracts.write_text('[tool.importlinter]\nroot_packages = ["engine"]\n[[tool.importlinter.contracts]]' + layers)
    result = lint_imports(tmp_path, contracts, tmp_path)
    assert result.returncode != 0
    assert "engine.core.config -> engine.training.runner" in result.stdout


def test_the_engine_can_be_imported_without_qt():
    code = "import sys, engine.cli.main, engine.experiments.stored_run; print('PySide6' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
