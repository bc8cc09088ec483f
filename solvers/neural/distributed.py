"""Several processes for one neural training run: torchrun + DistributedDataParallel (DESIGN.md §2,
neural: "scales out with torch.distributed").

    torchrun --nproc_per_node=N cli.py solve SCENARIO          (or python -m torch.distributed.run)

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; with WORLD_SIZE > 1 the solver joins the process
group (gloo on CPU, nccl on CUDA with device cuda:LOCAL_RANK) and wraps the module whose forward
computes the whole generator loss, and the one whose forward computes the whole critic loss, in
``torch.nn.parallel.DistributedDataParallel``, which averages their gradients over the ranks.

The batch is split, not multiplied: ``solver.batch_size`` is the global batch B (B divisible by N,
else bad input). Every rank draws the same global batch from the same seeded generators and keeps
its rows ``[r·B/N, (r+1)·B/N)`` (:meth:`Group.shard`), so the random streams, the checkpoints and
the loss curve do not depend on N. Per-sample quantities computed on the shard are gathered back
to the global batch (:meth:`Group.gather`, a differentiable all-gather: :class:`GatherRows`)
before any batch statistic is taken, so every loss (means, but also log E[e^φ], variances, MMD,
Sinkhorn) is the one-process loss of the global batch, on every rank. Gradients: on rank r the
gather's backward sums the N ranks' (equal) losses' gradients with respect to shard r, i.e.
N·∂L/∂(shard r); DDP's average divides by N and sums over the shards: ∂L/∂θ, the one-process
gradient up to the order of the float sums. (With an adaptive integrator, ``dopri5``, each shard
picks its own steps: the runs then agree to the tolerance, not to round-off.) In float32, Adam
can magnify that round-off: it divides by sqrt(v) + ε, so a gradient component that is zero in
exact arithmetic (the linear term of U under antithetic pairs, a W1 critic's output bias) is pure
round-off, and different round-off gives different steps of up to ``lr``; float64 runs agree to
about 1e-13 there.

Rank 0 alone writes results and checkpoints, shows the progress bar and evaluates; every rank
loads a checkpoint it resumes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from mfg.scenario import ScenarioError

#: environment variables torchrun sets for each worker
RANK_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the workers (torchrun's RANK, LOCAL_RANK, WORLD_SIZE)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1


def launch_ranks() -> Ranks:
    """The ranks torchrun gave this process; one process (rank 0 of 1) when WORLD_SIZE is unset.
    Malformed variables are an error naming them (a launcher problem, not silently ignored)."""
    if "WORLD_SIZE" not in os.environ:
        return Ranks()
    values = {var: os.environ.get(var, "0") for var in RANK_VARS}
    bad = [f"{k}={v!r}" for k, v in values.items() if not v.isdigit()]
    if bad:
        raise ScenarioError(f"torchrun environment: {', '.join(bad)} is not a non-negative "
                            "integer")
    ranks = Ranks(int(values["RANK"]), int(values["LOCAL_RANK"]), int(values["WORLD_SIZE"]))
    if ranks.world_size < 1 or ranks.rank >= ranks.world_size:
        raise ScenarioError(f"torchrun environment: RANK={ranks.rank} is not below "
                            f"WORLD_SIZE={ranks.world_size}")
    return ranks


def check_batch(batch_size: int, world_size: int) -> None:
    """The global batch must split evenly over the ranks (bad input otherwise)."""
    if batch_size % world_size:
        raise ScenarioError(f"solver.batch_size: {batch_size} is not divisible by the "
                            f"{world_size} processes (WORLD_SIZE={world_size}); the batch is "
                            f"global and split evenly, use a multiple of {world_size}")


class GatherRows(torch.autograd.Function):
    """Concatenate every rank's (n, ...) tensor into (N·n, ...) in rank order. Backward: the
    rows of the sum over the ranks of the incoming gradients that belong to this rank (the
    adjoint of the gather when each rank differentiates its own loss). Written with the public
    collectives: torch.distributed.nn.functional.all_gather does the same but is deprecated."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total)
        n = total.shape[0] // dist.get_world_size()
        rank = dist.get_rank()
        return total[rank * n: (rank + 1) * n]


@dataclass(frozen=True)
class Group:
    """The processes of one run and the operations the training needs from them. With one
    process every operation is the identity (the single-process run is unchanged)."""

    ranks: Ranks
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes, prints and evaluates."""
        return self.ranks.rank == 0

    @property
    def world_size(self) -> int:
        return self.ranks.world_size

    def shard(self, a: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """This rank's rows of a global batch a (B, ...): a[r·B/N : (r+1)·B/N]."""
        if self.world_size == 1:
            return a
        n = len(a) // self.world_size
        return a[self.ranks.rank * n: (self.ranks.rank + 1) * n]

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """The global batch (B, ...) from every rank's shard t (B/N, ...), in rank order (the
        rows of the one-process batch), differentiable (module docstring)."""
        if self.world_size == 1:
            return t
        return GatherRows.apply(t)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel (one process: the module itself).
        ``static_graph``: some parameters take no part in a loss (the potential's output bias,
        which moves U by a constant; the critic's ν outside the α-divergence), always the same
        ones for a run; DDP learns them in the first iteration instead of searching the graph
        every iteration (``find_unused_parameters``, which also warns when it finds none)."""
        if self.world_size == 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids, static_graph=True)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


@contextlib.contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[Group]:
    """Join torchrun's process group for the run (gloo on CPU; nccl on CUDA with device
    cuda:LOCAL_RANK) and leave it afterwards; one process: no group, the device as given."""
    if ranks.world_size == 1:
        yield Group(ranks, device)
        return
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    own = not dist.is_initialized()  # a caller (a study, a test) may have set it up already
    if own:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
    try:
        yield Group(ranks, device)
    finally:
        if own:
            dist.destroy_process_group()
