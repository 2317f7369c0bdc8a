"""Where a run computes (CPU or CUDA) and the seed its random streams start from."""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from engine.core.config import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when torch sees a GPU, else the CPU; `cuda` without a GPU is refused."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        built = "with" if torch.backends.cuda.is_built() else "without"
        raise ConfigError(f"device: cuda was asked for, but torch {torch.__version__} (built {built} CUDA) "
                          "sees no GPU; use device = \"auto\" or \"cpu\"")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device: {name!r} is not one of auto, cpu, cuda")
    return torch.device(name)


# oneDNN keeps up to 1,024 compiled products, one per shape, and a bfloat16 product on AMX keeps its buffers with
# it. Training batches have a different number of real positions each step, so that cache only grows: 0.5 GiB
# an epoch on ML-1M, 6.3 GiB peak over 30 epochs against 2.8 GiB in float32 (BENCHMARKS.md, precision). With
# 16 it grew by about 50 MiB an epoch after 8, and a bf16 step took 0.73 of fp32's against 0.66 uncapped.
# oneDNN reads this when it first computes, so it is set as the engine's training code is imported; a value
# the user has set is kept.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")


@functools.cache  # asked at every training step by loss_dtype
def native_bf16(device: torch.device) -> bool:
    """Whether the device multiplies bfloat16 natively: a CUDA GPU that supports it, or a CPU with AMX or
    AVX512-BF16 (elsewhere torch emulates it, more slowly than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def resolved_precision(precision: str, device: torch.device) -> str:
    """RunConfig.precision with "auto" resolved for the device: "bf16" where it is native, else "fp32"."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def loss_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The number format the training loss scores the items in (RunConfig.precision)."""
    return torch.bfloat16 if resolved_precision(precision, device) == "bf16" else torch.float32


@contextmanager
def subnormals_flushed(device: torch.device) -> Iterator[None]:
    """Training on the CPU flushes subnormal floats to zero, and restores IEEE behaviour afterwards.

    Once the search settles, the losing candidates' softmax weights fall to ~1e-44, and every product
    with them is subnormal, which x86 computes far more slowly: a forward and backward pass of the Sports
    model took 7.5x as long (benchmarks/subnormals.py). Nothing that small changes a score. The flag is the calling thread's
    processor state (and its worker threads'), so it is set only while a training loop runs.
    """
    if device.type != "cpu":
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
