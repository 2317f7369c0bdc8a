"""Named starting configurations, offered by the GUI's Experiment page and `automlp run --preset`.

Each preset is a TOML file in `resources/presets/` (`default.toml` holds every key with its default), read
here through importlib.resources, so that a user can copy one and load it with `--config`.
"""

from __future__ import annotations

import tomllib
from importlib import resources

from engine.core.config import RunConfig


def _preset_files() -> dict:
    folder = resources.files("resources") / "presets"
    files = {entry.name.removesuffix(".toml"): entry for entry in folder.iterdir() if entry.name.endswith(".toml")}
    return {name: files[name] for name in ["default", *sorted(set(files) - {"default"})]}


def _read(name: str) -> dict:
    return tomllib.loads(PRESET_FILES[name].read_text(encoding="utf-8"))


PRESET_FILES = _preset_files()
PRESETS: dict[str, str] = {name: _read(name).get("description", "") for name in PRESET_FILES}  # name -> description


def load_preset(name: str) -> RunConfig:
    """The configuration of preset `name` (one of PRESETS); keys a preset leaves out take the defaults."""
    return RunConfig.from_dict(_read(name))


def quick_demo() -> RunConfig:
    """The preset the demo dataset and the GUI start from."""
    return load_preset("quick-demo")
