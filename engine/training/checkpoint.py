"""Checkpoints: a run's whole training state at the end of an epoch, so that an interrupted run resumes
where it stopped and ends exactly as an uninterrupted one would (same seed, same device).

One safetensors file. Its tensors: the model's weights, the optimizers' moments, the best weights so far,
the torch RNG state and the search's histories. Its metadata: one JSON document (schema version, phase,
epochs and steps done, seconds spent, the run configuration, the dataset fingerprint, optimizer
hyper-parameters, the numpy RNG state, phase-specific state such as the early-stopping counters).

Written to a temporary sibling, flushed to disk and renamed over the old checkpoint: a kill at any moment
leaves the previous checkpoint or the new one, never half of one. Loading parses safetensors and JSON
only: nothing is ever unpickled. Every refusal is a CheckpointError naming the file and the problem.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import safetensors
import safetensors.torch
import torch

SCHEMA_VERSION = 1
PHASES = ("search", "retrain")


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the run; the message says which file and why."""


@dataclass
class Checkpoint:
    """The state of a run after `epoch` whole epochs (`step` steps) of `phase`."""

    phase: str  # "search" or "retrain"
    epoch: int
    step: int
    seconds: float  # wall seconds spent in this phase so far
    config: dict  # RunConfig.to_dict()
    fingerprint: str  # SequenceData.fingerprint() of the data it trained on
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    state: dict = field(default_factory=dict)  # JSON-ready; the phase's own counters and histories


# ---------------------------------------------------------------- file


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Writes `checkpoint` to `path` atomically (temporary sibling, fsync, rename); returns the path.
    CheckpointError naming the file (and a full disk) if it cannot be written; the previous one stays."""
    path = Path(path)
    header = {"schema": SCHEMA_VERSION, "phase": checkpoint.phase, "epoch": checkpoint.epoch,
              "step": checkpoint.step, "seconds": checkpoint.seconds, "config": checkpoint.config,
              "fingerprint": checkpoint.fingerprint, "state": checkpoint.state}
    tensors = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in checkpoint.tensors.items()}
    blob = safetensors.torch.save(tensors, metadata={"automlp_checkpoint": json.dumps(header)})
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(blob)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        full = error.errno == errno.ENOSPC
        raise CheckpointError(f"{path}: the checkpoint could not be written ("
                              + ("the disk is full" if full else error.strerror or str(error))
                              + "); the previous checkpoint is kept") from error
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    # The rename itself must reach the disk, or a power cut can bring the old name back.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows); the rename is still atomic
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Reads a checkpoint; CheckpointError if it is missing, not a checkpoint, damaged or from a newer
    release."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no checkpoint there (the run may have ended before its first "
                              "epoch finished)") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        tensors = safetensors.torch.load(blob)  # a JSON header and raw buffers: nothing is unpickled
        with safetensors.safe_open(path, "pt") as opened:
            metadata = opened.metadata() or {}
    except Exception as error:  # safetensors raises its own error types and, on some damage, others
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint, damaged or of another kind ({first})") from None
    if "automlp_checkpoint" not in metadata:
        raise CheckpointError(f"{path}: a safetensors file, but not an AutoMLP checkpoint")
    try:
        header = json.loads(metadata["automlp_checkpoint"])
        schema = int(header["schema"])
        if schema > SCHEMA_VERSION:
            raise CheckpointError(f"{path}: checkpoint schema {schema} comes from a newer release of AutoMLP "
                                  f"Studio (this one reads up to {SCHEMA_VERSION})")
        checkpoint = Checkpoint(phase=str(header["phase"]), epoch=int(header["epoch"]), step=int(header["step"]),
                                seconds=float(header["seconds"]), config=dict(header["config"]),
                                fingerprint=str(header["fingerprint"]), tensors=tensors,
                                state=dict(header["state"]))
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: damaged checkpoint header ({type(error).__name__}: {error})") from None
    if checkpoint.phase not in PHASES or checkpoint.epoch < 1 or checkpoint.step < 1:
        raise CheckpointError(f"{path}: damaged checkpoint header (phase {checkpoint.phase!r}, epoch "
                              f"{checkpoint.epoch}, step {checkpoint.step})")
    return checkpoint


# ---------------------------------------------------------------- packing state


def pack_module(module: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{name}": tensor for name, tensor in module.state_dict().items()}


def unpack_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors saved under `prefix.` with the prefix removed (a state_dict again)."""
    start = len(prefix) + 1
    return {name[start:]: tensor for name, tensor in tensors.items() if name.startswith(prefix + ".")}


def pack_optimizer(optimizer: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's per-parameter tensors (Adam's step and moments) and its JSON hyper-parameters."""
    saved = optimizer.state_dict()
    tensors = {f"{prefix}.{index}.{key}": value for index, values in saved["state"].items()
               for key, value in values.items()}
    return tensors, {"param_groups": saved["param_groups"]}


def unpack_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], state: dict,
                     prefix: str) -> None:
    per_parameter: dict[int, dict] = {}
    for name, tensor in unpack_state(tensors, prefix).items():
        index, key = name.split(".", 1)
        per_parameter.setdefault(int(index), {})[key] = tensor
    optimizer.load_state_dict({"state": per_parameter, "param_groups": state["param_groups"]})


def pack_rng(rng: np.random.Generator) -> tuple[dict[str, torch.Tensor], dict]:
    """The numpy generator's state (JSON) and torch's CPU and CUDA generator states (tensors)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = cuda_state
    return tensors, {"numpy": rng.bit_generator.state}


def unpack_rng(rng: np.random.Generator, tensors: dict[str, torch.Tensor], state: dict) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(tensors["rng.torch"])
    names = sorted((name for name in tensors if name.startswith("rng.cuda.")), key=lambda n: int(n.rsplit(".", 1)[1]))
    cuda_states = [tensors[name] for name in names]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
