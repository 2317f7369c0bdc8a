"""Model bundles: a trained run in a folder (or .zip) that recommends on its own, and never unpickles.

Layout (SCHEMA_VERSION 1):
    config.json        schema version, RunConfig, ModelShape, chosen length, item and user vocabulary,
                       titles, feature vocabularies, dataset fingerprint, metrics, library versions, and
                       the size and sha256 of every other file
    model.safetensors  the model's state_dict (float tensors)
    data.safetensors   the sequences (CSR offsets and items) and the item feature value tables
    model.onnx         optional: scores (B, T) int64 sequences -> (B, N + 1) float32, dynamic batch
    what_if.*.safetensors  optional: the models of the what-if view (engine/serving/what_if.py), listed
                       in config.json's "what_if": the search's supernet, or each candidate's own model of
                       an exhaustive run. A bundle without them loads with `what_if` None.

Loading reads JSON and safetensors only. Every refusal is a BundleError whose message starts with what is
wrong: "corrupt", "truncated", "tampered", "newer schema" or "mismatched".
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import hashlib
import json
import os
import platform
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import safetensors
import safetensors.torch
import torch

from engine.core.config import ConfigError, RunConfig
from engine.core.events import Observer, PhaseFinished, PhaseStarted, StepFinished
from engine.core.files import MiB, FileRefused, kind_of, read_bounded, regular_file
from engine.core.version import __version__
from engine.data.run_records import process_alive
from engine.data.sequences import ItemFeatureTable, SequenceData
from engine.models.automlp import AutoMLP, ModelShape, build_model
from engine.serving.onnx_export import OnnxMismatch, export_onnx
from engine.serving.what_if import WhatIfModels

SCHEMA_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
DATA = "data.safetensors"
ONNX = "model.onnx"
# config.json holds the whole user and item vocabulary: about 40 MB for a million users; a larger one is
# refused before it is read
MAX_CONFIG_BYTES = 512 * MiB


class BundleError(ValueError):
    """A bundle cannot be written or read; the message says which file and what is wrong."""


@dataclass
class Bundle:
    """A loaded bundle: everything `engine.recommend` needs, without the store or retraining."""

    model: AutoMLP  # in eval mode, on the device asked for
    data: SequenceData  # rebuilt from the stored vocabulary and sequences; same fingerprint
    config: RunConfig
    chosen_length: int
    metrics: dict = field(default_factory=dict)  # {"test": {protocol: {...}}, "valid": {...}}
    info: dict = field(default_factory=dict)  # the whole config.json
    path: Path | None = None
    what_if: WhatIfModels | None = None  # None: the bundle kept no what-if models

    @property
    def test_metrics(self) -> dict:
        return self.metrics.get("test", {})


# ---------------------------------------------------------------- saving


def save_bundle(result_or_parts, data: SequenceData, path: str | Path, onnx: bool = False, zip: bool = False,
                observer: Observer | None = None, overwrite: bool = False) -> Path:
    """Writes a bundle of a trained model to the folder `path` (or the file `path`, a .zip, with zip=True).

    `result_or_parts` is a `RunResult` (engine.runner) or a `Bundle` (to re-export one): anything with
    `model`, `config` and `chosen_length`, and optionally `test_metrics` / `retrain.best_valid` or
    `metrics`. `data` is the SequenceData the model was trained on. With onnx=True, also writes
    `model.onnx` and checks it against onnxruntime (max abs difference < 1e-5, else BundleError).

    Everything is written into a temporary sibling and renamed into place at the end, so a failure or a
    cancel (`Cancelled` from the observer) leaves nothing at `path` (or the bundle that was there). A
    write that fails (disk full, no permission) raises BundleError naming `path` and the cause. Returns
    the final path.
    """
    observer = observer or Observer()
    path = Path(path)
    if path.exists() and not overwrite:
        raise BundleError(f"{path} already exists; choose another place or allow overwriting")
    model, config = result_or_parts.model, result_or_parts.config
    if model.shape.n_items != data.n_items:
        raise BundleError(f"mismatched: the model scores {model.shape.n_items} items but {data.name} has "
                          f"{data.n_items}")
    started = time.monotonic()
    observer.emit(PhaseStarted("export", 3 if onnx else 2, str(path)))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_parts(path)
        work = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".part"))
    except OSError as error:
        raise _write_error(path, error) from error
    try:
        folder = work / "bundle"
        folder.mkdir()
        files = {WEIGHTS: _weights_bytes(model), DATA: _data_bytes(data)}
        what_if = what_if_models_of(result_or_parts)
        what_if_info = None
        if what_if is not None:
            what_if_info, what_if_files = _what_if_parts(what_if)
            files.update(what_if_files)
        for name, blob in files.items():
            (folder / name).write_bytes(blob)
        observer.emit(StepFinished("export", 1, 3 if onnx else 2))
        observer.check()
        if onnx:
            try:
                export_onnx(model, data, folder / ONNX, observer)
            except OnnxMismatch as error:
                raise BundleError(str(error)) from None
            files[ONNX] = (folder / ONNX).read_bytes()
            observer.emit(StepFinished("export", 2, 3))
            observer.check()
        info = _describe(result_or_parts, model, config, data, files)
        if what_if_info is not None:
            info["what_if"] = what_if_info
        (folder / CONFIG).write_text(json.dumps(info, indent=1, ensure_ascii=False), encoding="utf-8")
        if zip:
            built = work / "bundle.zip"
            with zipfile.ZipFile(built, "w", zipfile.ZIP_DEFLATED) as archive:
                for name in [CONFIG, *files]:
                    archive.write(folder / name, name)
        else:
            built = folder
        observer.check()
        _move_into_place(built, path, work)
    except OSError as error:
        raise _write_error(path, error) from error
    finally:
        shutil.rmtree(work, ignore_errors=True)
    observer.emit(StepFinished("export", 3 if onnx else 2, 3 if onnx else 2))
    observer.emit(PhaseFinished("export", time.monotonic() - started))
    return path


def _move_into_place(built: Path, path: Path, work: Path) -> None:
    """Renames the complete bundle `built` to `path`. An old bundle there goes only once the new one is
    complete, and is first renamed aside (into `work`, removed afterwards): a process killed at any moment
    leaves the old bundle, the new one, or none at `path`, never a partly deleted one."""
    if not (path.exists() and (path.is_dir() or built.is_dir())):
        os.replace(built, path)  # nothing there, or a file over a file: one atomic rename
        return
    os.replace(path, work / "replaced")
    try:
        os.replace(built, path)
    except OSError:
        os.replace(work / "replaced", path)  # the old bundle back, before `work` is removed
        raise


def _remove_stale_parts(path: Path) -> None:
    """Removes what saves to `path` by processes that were killed left beside it (`.NAME.PID.*.part`)."""
    for part in path.parent.glob(f".{glob.escape(path.name)}.*.part"):
        pid = part.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(part, ignore_errors=True)


def _write_error(path: Path, error: OSError) -> BundleError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return BundleError(f"the disk is full: the bundle {path} could not be written ({error.strerror}); "
                           "nothing was changed there; free some space and try again")
    return BundleError(f"the bundle {path} could not be written: {error.strerror or error}"
                       f"{f' ({error.filename})' if error.filename else ''}; nothing was changed there")


def _weights_bytes(model: AutoMLP) -> bytes:
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    return safetensors.torch.save(state, metadata={"format": "pt", "schema": str(SCHEMA_VERSION)})


def what_if_models_of(source) -> WhatIfModels | None:
    """The what-if models a RunResult kept (its search's supernet, or an exhaustive run's candidate
    models), or a Bundle's; None when there are none."""
    if hasattr(source, "what_if"):
        return source.what_if
    search = getattr(source, "search", None)
    candidates = getattr(source, "candidate_models", None) or {}
    weights = search.final_weights if search is not None else {}
    lengths = tuple(int(k) for k in source.config.candidate_lengths)
    if search is not None and getattr(search, "supernet", None) is not None:
        return WhatIfModels(lengths, weights, int(source.chosen_length), supernet=search.supernet)
    if candidates:
        return WhatIfModels(tuple(candidates), weights, int(source.chosen_length), per_length=dict(candidates),
                            baseline=source.model)
    return None


def _what_if_parts(what_if: WhatIfModels) -> tuple[dict, dict[str, bytes]]:
    """config.json's "what_if" entry and the weight files it lists."""
    if what_if.supernet is not None:
        models = {"supernet": what_if.supernet}
    else:
        models = {f"k{k}": what_if.per_length[k] for k in what_if.candidate_lengths}
    entries = {label: {"file": f"what_if.{label}.safetensors", "shape": _json_ready(dataclasses.asdict(m.shape))}
               for label, m in models.items()}
    info = {"kind": what_if.kind, "candidate_lengths": list(what_if.candidate_lengths),
            "chosen_length": int(what_if.chosen_length),
            "weights": {str(k): float(w) for k, w in what_if.weights.items()}, "models": entries}
    return info, {entries[label]["file"]: _weights_bytes(m) for label, m in models.items()}


def _data_bytes(data: SequenceData) -> bytes:
    # int32 halves the size; ids and offsets of any dataset a desktop trains on fit easily
    small = data.n_interactions < 2**31 and data.n_items < 2**31
    dtype = torch.int32 if small else torch.int64
    tensors = {"offsets": torch.from_numpy(np.asarray(data.offsets, dtype=np.int64)).to(dtype),
               "items": torch.from_numpy(np.asarray(data.items, dtype=np.int64)).to(dtype)}
    for i, feature in enumerate(data.features):
        tensors[f"feature.{i}.values"] = torch.from_numpy(np.asarray(feature.values, dtype=np.int64)).to(dtype)
    return safetensors.torch.save(tensors)


def _describe(source, model: AutoMLP, config: RunConfig, data: SequenceData, files: dict[str, bytes]) -> dict:
    """The config.json of a bundle: plain JSON values only."""
    metrics = getattr(source, "metrics", None)
    if metrics is None:  # a RunResult
        retrained = getattr(source, "retrain", None)
        metrics = {"test": getattr(source, "test_metrics", {}),
                   "valid": getattr(retrained, "best_valid", {}) if retrained else {}}
    titles = data.item_titles
    return {
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_config": config.to_dict(),
        "shape": _json_ready(dataclasses.asdict(model.shape)),
        "chosen_length": int(source.chosen_length),
        "dataset": {"name": data.name, "fingerprint": data.fingerprint(), "n_users": data.n_users,
                    "n_items": data.n_items, "n_interactions": data.n_interactions},
        "vocabulary": {
            "item_ids": _json_ready(list(data.item_ids)),
            "item_titles": [titles.get(item) for item in data.item_ids] if titles else None,
            "user_ids": _json_ready(list(data.user_ids)),
            "features": [{"name": f.name, "vocabulary": _json_ready(list(f.vocabulary))} for f in data.features],
        },
        "metrics": _json_ready(metrics),
        "libraries": {"engine": __version__, "torch": torch.__version__, "numpy": np.__version__,
                      "safetensors": safetensors.__version__, "python": platform.python_version()},
        "files": {name: {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
                  for name, blob in files.items()},
    }


def _json_ready(value):
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def bundle_digest(path: str | Path) -> str:
    """The sha256 that identifies a bundle (folder or zip): that of its config.json, which records the
    sha256 of every other file. What a run stores with its "bundle" artifact."""
    path = Path(path)
    with _Entries(path) as entries:
        return hashlib.sha256(_config_bytes(path, entries)).hexdigest()


# ---------------------------------------------------------------- loading


def load_bundle(path: str | Path, device: torch.device | str = "cpu") -> Bundle:
    """Reads a bundle folder or .zip; returns the model (eval mode, on `device`) and its SequenceData.

    Checks, in order: config.json readable and of a schema this release knows ("corrupt", "newer
    schema"), every listed file present with its recorded size and sha256 ("truncated", "tampered"),
    the safetensors files parse ("corrupt"), the weights fit the recorded shape ("mismatched"), and the
    rebuilt sequences have the recorded fingerprint ("tampered"). Raises BundleError naming the problem.
    Only config.json and the files it lists are read, each after its size is checked; nothing else in
    the folder or zip is opened.
    """
    path = Path(path)
    with _Entries(path) as entries:
        info = _read_config(path, _config_bytes(path, entries))
        files = _read_listed_files(path, info, entries)
    try:
        shape_values = dict(info["shape"])
        for key in ("candidate_lengths", "feature_sizes", "feature_widths"):
            shape_values[key] = tuple(shape_values[key])
        shape = ModelShape(**shape_values)
        config = RunConfig.from_dict(info["run_config"])
        chosen = int(info["chosen_length"])
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise BundleError(f"corrupt: {path.name}/{CONFIG} does not describe a model: {exc}") from exc
    data = _rebuild_data(path, info, _load_tensors(path, DATA, files[DATA]))
    if shape.n_items != data.n_items:
        raise BundleError(f"mismatched: the model in {path.name} scores {shape.n_items} items but its vocabulary "
                          f"has {data.n_items}")
    model = build_model(shape, data.features, device)
    weights = _load_tensors(path, WEIGHTS, files[WEIGHTS])
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise BundleError(f"mismatched: the weights in {path.name}/{WEIGHTS} do not fit the recorded shape: "
                          f"{_first_line(exc)}") from exc
    model.eval()
    what_if = _load_what_if(path, info, files, data, model, device) if "what_if" in info else None
    return Bundle(model, data, config, chosen, info.get("metrics", {}), info, path, what_if)


def _shape_of(values: dict) -> ModelShape:
    values = dict(values)
    for key in ("candidate_lengths", "feature_sizes", "feature_widths"):
        values[key] = tuple(values[key])
    return ModelShape(**values)


def _load_what_if(path: Path, info: dict, files: dict[str, bytes], data: SequenceData, model: AutoMLP,
                  device) -> WhatIfModels:
    """The what-if models config.json lists; each file was size- and sha256-checked with the others."""
    try:
        entry = info["what_if"]
        lengths = tuple(int(k) for k in entry["candidate_lengths"])
        weights = {int(k): float(w) for k, w in entry["weights"].items()}
        chosen = int(entry["chosen_length"])
        listed = {label: (str(value["file"]), _shape_of(value["shape"])) for label, value in entry["models"].items()}
        kind = entry["kind"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"corrupt: {path.name}/{CONFIG} does not describe its what-if models: {exc}") from exc
    models = {}
    for label, (name, shape) in listed.items():
        if name not in files:
            raise BundleError(f"corrupt: {path.name}/{CONFIG} names the what-if file {name!r} without listing "
                              "its size and sha256")
        if shape.n_items != data.n_items:
            raise BundleError(f"mismatched: the what-if model {name} scores {shape.n_items} items but the "
                              f"vocabulary has {data.n_items}")
        built = build_model(shape, data.features, device)
        try:
            built.load_state_dict(_load_tensors(path, name, files[name]), strict=True)
        except RuntimeError as exc:
            raise BundleError(f"mismatched: the weights in {path.name}/{name} do not fit their recorded shape: "
                              f"{_first_line(exc)}") from exc
        models[label] = built.eval()
    if kind == "supernet" and "supernet" in models:
        return WhatIfModels(lengths, weights, chosen, supernet=models["supernet"])
    if kind == "exhaustive" and all(f"k{k}" in models for k in lengths):
        return WhatIfModels(lengths, weights, chosen, per_length={k: models[f"k{k}"] for k in lengths},
                            baseline=model)
    raise BundleError(f"corrupt: {path.name}/{CONFIG} lists what-if models of kind {kind!r} that do not cover "
                      f"every candidate length")


class _Entries:
    """The files of a bundle folder or zip, each read only when asked for and only after its size (the
    file's, or the zip entry's `file_size`) is checked against a limit. A FIFO, a device or any other
    non-regular file, given as the bundle or found under a listed name, is refused without opening it."""

    def __init__(self, path: Path) -> None:
        self.path, self.archive = path, None
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise BundleError(f"{path} does not exist") from None
        except OSError as error:
            raise BundleError(f"{path} cannot be read ({error.strerror or error})") from None
        if stat.S_ISDIR(mode):
            return
        if not stat.S_ISREG(mode):
            raise BundleError(f"{path}: not a regular file ({kind_of(mode)}); a bundle is a folder or a .zip")
        try:
            self.archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise BundleError(f"corrupt: {path.name} is neither a bundle folder nor a readable zip ({exc})") from exc

    def __enter__(self) -> "_Entries":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.archive is not None:
            self.archive.close()

    def size(self, name: str) -> int | None:
        """The size in bytes of the entry `name`, None if there is none."""
        if self.archive is not None:
            try:
                return self.archive.getinfo(name).file_size
            except KeyError:
                return None
        file = self.path / name
        if not os.path.lexists(file):
            return None
        try:
            return regular_file(file).st_size
        except FileRefused as error:
            raise BundleError(f"corrupt: {self.path.name}/{name}: {_after_path(error)}") from None

    def read(self, name: str, limit: int) -> bytes:
        """The bytes of the entry `name`, refused if it holds more than `limit`."""
        if self.archive is None:
            try:
                return read_bounded(self.path / name, limit)
            except FileRefused as error:
                raise BundleError(f"corrupt: {self.path.name}/{name}: {_after_path(error)}") from None
        entry = self.archive.getinfo(name)
        if entry.file_size > limit:
            raise BundleError(f"corrupt: {self.path.name}/{name} holds {entry.file_size:,} bytes, more than "
                              f"the {limit:,} expected")
        try:
            with self.archive.open(entry) as handle:
                return handle.read(limit)
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error, NotImplementedError, RuntimeError) as exc:
            raise BundleError(f"corrupt: {self.path.name}/{name} cannot be unpacked ({exc})") from exc


def _after_path(error: FileRefused) -> str:
    """A FileRefused message without the path it starts with ("not a regular file (a FIFO)")."""
    return str(error).split(": ", 1)[-1]


def _config_bytes(path: Path, entries: _Entries) -> bytes:
    size = entries.size(CONFIG)
    if size is None:
        raise BundleError(f"corrupt: {path.name} has no {CONFIG}; it is not a model bundle")
    if size > MAX_CONFIG_BYTES:
        raise BundleError(f"corrupt: {path.name}/{CONFIG} holds {size:,} bytes, more than the "
                          f"{MAX_CONFIG_BYTES:,} a bundle's description may")
    return entries.read(CONFIG, MAX_CONFIG_BYTES)


def _read_config(path: Path, blob: bytes) -> dict:
    try:
        info = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"corrupt: {path.name}/{CONFIG} is not valid JSON ({exc})") from exc
    except RecursionError:
        raise BundleError(f"corrupt: {path.name}/{CONFIG} is not a bundle description (nested too deeply)") from None
    if not isinstance(info, dict) or not isinstance(info.get("schema_version"), int):
        raise BundleError(f"corrupt: {path.name}/{CONFIG} has no schema_version")
    if info["schema_version"] > SCHEMA_VERSION:
        raise BundleError(f"newer schema: {path.name} has bundle schema {info['schema_version']}, this release "
                          f"reads up to {SCHEMA_VERSION}; update AutoMLP Studio to open it")
    if not isinstance(info.get("files"), dict) or WEIGHTS not in info["files"] or DATA not in info["files"]:
        raise BundleError(f"corrupt: {path.name}/{CONFIG} does not list {WEIGHTS} and {DATA}")
    return info


def _read_listed_files(path: Path, info: dict, entries: _Entries) -> dict[str, bytes]:
    """The files config.json lists, each checked for its recorded size before it is read and for its
    sha256 after."""
    files = {}
    for name, expected in info["files"].items():
        if not (isinstance(expected, dict) and isinstance(expected.get("bytes"), int)
                and isinstance(expected.get("sha256"), str)):
            raise BundleError(f"corrupt: {path.name}/{CONFIG} gives no size and sha256 for {name!r}")
        if name in ("", ".", "..", CONFIG) or "/" in name or "\\" in name:
            raise BundleError(f"corrupt: {path.name}/{CONFIG} lists {name!r}, which is not a file of a bundle")
        size = entries.size(name)
        if size is None:
            raise BundleError(f"truncated: {path.name} lacks {name}, which its {CONFIG} lists")
        if size < expected["bytes"]:
            raise BundleError(f"truncated: {path.name}/{name} has {size} of its {expected['bytes']} bytes")
        if size > expected["bytes"]:
            raise BundleError(f"tampered: {path.name}/{name} has {size} bytes, not the {expected['bytes']} "
                              f"its {CONFIG} records")
        blob = entries.read(name, expected["bytes"])
        if len(blob) < expected["bytes"]:  # shrank while being read
            raise BundleError(f"truncated: {path.name}/{name} has {len(blob)} of its {expected['bytes']} bytes")
        if hashlib.sha256(blob).hexdigest() != expected["sha256"]:
            raise BundleError(f"tampered: {path.name}/{name} does not match the sha256 in {CONFIG}")
        files[name] = blob
    return files


def _load_tensors(path: Path, name: str, blob: bytes) -> dict[str, torch.Tensor]:
    # safetensors parses a JSON header and raw buffers: nothing is ever unpickled
    try:
        return safetensors.torch.load(blob)
    except Exception as exc:  # SafetensorError and header errors have no common base class
        raise BundleError(f"corrupt: {path.name}/{name} is not a safetensors file ({_first_line(exc)})") from exc


def _rebuild_data(path: Path, info: dict, tensors: dict[str, torch.Tensor]) -> SequenceData:
    try:
        vocabulary = info["vocabulary"]
        item_ids = np.asarray(vocabulary["item_ids"], dtype=object)
        user_ids = np.asarray(vocabulary["user_ids"], dtype=object)
        titles = vocabulary.get("item_titles") or []
        offsets = tensors["offsets"].to(torch.int64).numpy()
        items = tensors["items"].to(torch.int64).numpy()
        features = [ItemFeatureTable(f["name"], np.asarray(f["vocabulary"], dtype=object),
                                     tensors[f"feature.{i}.values"].to(torch.int64).numpy())
                    for i, f in enumerate(vocabulary["features"])]
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"corrupt: {path.name} lacks part of its vocabulary or sequences ({exc})") from exc
    data = SequenceData(user_ids=_uniform(user_ids), item_ids=_uniform(item_ids), offsets=offsets, items=items,
                        item_titles={item: title for item, title in zip(item_ids, titles) if title is not None},
                        features=features, name=info.get("dataset", {}).get("name", path.stem))
    if data.fingerprint() != info.get("dataset", {}).get("fingerprint"):
        raise BundleError(f"tampered: the sequences and ids in {path.name} do not have the recorded dataset "
                          "fingerprint")
    return data


def _uniform(ids: np.ndarray) -> np.ndarray:
    """Ids that were all numbers come back as an int64 array, as build_sequences gives them."""
    if len(ids) and all(isinstance(v, int) and not isinstance(v, bool) for v in ids):
        return ids.astype(np.int64)
    return ids


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
