"""Data-parallel training over several processes (torch.distributed), as `torchrun` starts them.

Every rank builds the same global batch from the same numpy generator (the sampler's position is global,
so a checkpoint resumes under any number of processes), computes the loss of its own slice of the rows,
and the ranks sum their gradients, each weighted by its share of the batch's loss terms: every rank then
holds the gradient of the global batch's mean loss, and takes the same Adam step. That holds for W and α
alike (α's gradient is reduced the same way), so the weights stay identical on every rank without being
sent. Explicit reductions rather than DistributedDataParallel: a slice's share is not 1/N (the last batch,
and the causal mode's varying number of targets per row), and the search's α step needs gradients of
several losses with respect to chosen tensors (torch.autograd.grad), which DDP does not reduce.

Validation and test metrics are sharded by user and summed across ranks. Rank 0 alone writes the store,
checkpoints and bundles (engine.experiments.stored_run, engine.training.runner).

Outside torchrun (no WORLD_SIZE in the environment) none of this runs: `join_group` returns None and the
loops run exactly as in one process.
"""

from __future__ import annotations

import atexit
import datetime
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from engine.core.config import ConfigError
from engine.core.events import Observer
from engine.data.sequences import SequenceData
from engine.evaluation.metrics import CUTOFFS, metrics_from_ranks, target_ranks
from engine.training.batches import Batch, SampledItems


@dataclass(frozen=True)
class Group:
    """This process's place among the ranks of a distributed run."""

    rank: int
    size: int
    device: torch.device  # where this rank computes: the CPU, or its own GPU (cuda:LOCAL_RANK)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def under_torchrun() -> bool:
    """Whether this process was started by torchrun (or another launcher that sets WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ


def is_main_process() -> bool:
    """Rank 0, or a process that is not part of a distributed run: the one that prints and records."""
    if dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def join_group(device: torch.device) -> Group | None:
    """This process's Group when started by torchrun, initialising the process group on first call
    (`nccl` on CUDA, each rank on GPU LOCAL_RANK; `gloo` on the CPU), or in a process group that a
    launcher such as Ray Train set up; None otherwise."""
    if not under_torchrun() and not dist.is_initialized():
        return None
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"device: rank {local_rank} of this machine has no GPU of its own (torch sees "
                              f"{torch.cuda.device_count()}); start at most one process per GPU")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=30))
        atexit.register(_leave_group)  # torch asks for an explicit destroy before the process ends
    return Group(dist.get_rank(), dist.get_world_size(), device)


def _leave_group() -> None:
    if dist.is_initialized():
        # Every rank reaches the end before any tears its side down: a rank that destroyed the group while
        # rank 0 still wrote its bundle was once aborted by gloo ("terminate called without an active
        # exception"). A rank that failed never gets here: torchrun stops the others.
        dist.barrier()
        dist.destroy_process_group()


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Runs `python -m engine.cli ARGV` in `nproc` processes under torchrun on this machine (a free
    port, rendezvous on localhost); returns torchrun's exit status."""
    if nproc < 1:
        raise ConfigError(f"--nproc: must be 1 or more, got {nproc}")
    if under_torchrun():
        raise ConfigError("--nproc: this process was started by torchrun already; give the number of processes "
                          "to torchrun (--nproc_per_node) only")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "engine.cli", *argv]
    return subprocess.run(command).returncode


def without_nproc(argv: Sequence[str]) -> list[str]:
    """The command line without its `--nproc N` (or `--nproc=N`), for the processes torchrun starts."""
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == "--nproc":
            skip = True
        elif not word.startswith("--nproc="):
            out.append(word)
    return out


# ---------------------------------------------------------------- batches and gradients


def slice_bounds(rows: int, group: Group) -> tuple[int, int]:
    """Rows [start, stop) of a global batch of `rows` that this rank computes: near-equal contiguous slices."""
    return rows * group.rank // group.size, rows * (group.rank + 1) // group.size


def shard(batch: Batch, group: Group) -> Batch:
    """This rank's rows of the global batch. A sampled softmax keeps the global batch's items (every
    rank scores the same columns, with the same logQ correction)."""
    start, stop = slice_bounds(len(batch.inputs), group)
    sample = batch.sample
    if sample is not None:
        sample = SampledItems(sample.items, sample.log_inclusion, sample.target_columns[start:stop])
    return Batch(batch.inputs[start:stop], batch.targets[start:stop], sample)


def loss_terms(batch: Batch) -> int:
    """How many terms a batch's mean loss averages: one per row, or one per target in the causal mode."""
    if batch.targets.dim() == 2:
        return int((batch.targets > 0).sum())
    return len(batch.targets)


def shared_gradients(loss_of: Callable[[Batch], torch.Tensor], batch: Batch, inputs: Sequence[torch.Tensor],
                     group: Group) -> tuple[float, list[torch.Tensor | None]]:
    """(the global batch's mean loss, its gradients with respect to `inputs`), the same on every rank:
    each rank differentiates the loss of its slice, weighted by its share of the loss terms, and the
    ranks sum. A gradient is None where no rank's slice reached that input (as autograd says in one
    process)."""
    part = shard(batch, group)
    share = loss_terms(part) / max(loss_terms(batch), 1)
    if share > 0:
        loss = loss_of(part)
        gradients = torch.autograd.grad(loss, list(inputs), allow_unused=True)
        value = float(loss.detach()) * share
    else:  # fewer rows than ranks: this rank adds nothing
        gradients, value = [None] * len(inputs), 0.0
    flat = [torch.zeros_like(x).flatten() if g is None else g.flatten() * share for x, g in zip(inputs, gradients)]
    reached = [0.0 if g is None else 1.0 for g in gradients]
    device = inputs[0].device
    buffer = torch.cat([*flat, torch.tensor([*reached, value], dtype=flat[0].dtype, device=device)])
    dist.all_reduce(buffer)
    out, offset = [], 0
    for x in inputs:
        out.append(buffer[offset:offset + x.numel()].view_as(x))
        offset += x.numel()
    reached_any = buffer[offset:offset + len(inputs)].tolist()
    global_loss = float(buffer[-1])
    return global_loss, [g if r > 0 else None for g, r in zip(out, reached_any)]


def shared_loss(loss_of: Callable[[Batch], torch.Tensor], batch: Batch, group: Group) -> float:
    """The global batch's mean loss, without gradients, the same on every rank."""
    part = shard(batch, group)
    share = loss_terms(part) / max(loss_terms(batch), 1)
    value = float(loss_of(part)) * share if share > 0 else 0.0
    total = torch.tensor([value], dtype=torch.float64, device=group.device)
    dist.all_reduce(total)
    return float(total)


def shared_backward(loss_of: Callable[[Batch], torch.Tensor], batch: Batch,
                    parameters: Sequence[torch.Tensor], group: Group) -> float:
    """Sets each parameter's .grad to the global batch's mean-loss gradient (as `loss.backward()` on the
    whole batch in one process would) and returns that loss."""
    loss, gradients = shared_gradients(loss_of, batch, parameters, group)
    for parameter, gradient in zip(parameters, gradients):
        parameter.grad = gradient
    return loss


def optimizer_parameters(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def seed_rank_stream(seed: int, phase: str, epoch: int, group: Group) -> None:
    """Gives this rank its own torch random stream for the epoch (dropout masks, bce negatives), so that
    ranks do not draw the same masks for their slices; derived from (seed, phase, epoch, rank), so that a
    resumed run under the same number of processes draws the same ones."""
    words = [seed, 0 if phase == "search" else 1, epoch, group.rank]
    torch.manual_seed(int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0] >> 1))


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Rank 0's weights on every rank (they start equal from the seed; this makes sure)."""
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, 0)


# ---------------------------------------------------------------- evaluation


def evaluate_shared(model, data: SequenceData, split: str, protocol: str, negatives: int, seed: int,
                    group: Group, observer: Observer | None = None) -> dict[str, float]:
    """`engine.evaluation.metrics.evaluate`, each rank ranking every size-th user (by history length, so
    that the shards cost alike); the metrics' sums and counts are added across ranks."""
    users = np.argsort(data.history_lengths(split), kind="stable")[group.rank::group.size]
    ranks = target_ranks(model, data, split, protocol, negatives, seed, observer=observer, users=users)
    names = [f"{name}@{k}" for k in CUTOFFS for name in ("HR", "NDCG", "MRR")]
    sums = ([metrics_from_ranks(ranks)[name] * len(ranks) for name in names] if len(ranks)
            else [0.0] * len(names))
    device = next(model.parameters()).device
    totals = torch.tensor([*sums, len(ranks)], dtype=torch.float64, device=device)
    dist.all_reduce(totals)
    count = float(totals[-1])
    return {name: float(total) / count for name, total in zip(names, totals[:-1].tolist())}
