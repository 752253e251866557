"""Data-parallel helpers on top of :mod:`torch.distributed` (no-ops in a single process).

Launch with torchrun (or ``instruct-env <cmd> --nproc N``, which re-launches itself through
:mod:`torch.distributed.run`); :func:`init_distributed` reads the variables torchrun sets
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and joins the
process group: ``nccl`` when CUDA is available (one GPU per local rank), ``gloo`` otherwise.

How the trainers use it (data parallelism):

* every rank holds a full copy of the model; rank 0's weights are broadcast at start;
* every rank collects its own experience (its own vector env, seeded ``seed + rank``, on its
  own shard of the instructions) and computes its own gradient;
* gradients are averaged with :func:`all_reduce_gradients` (``torch.distributed.all_reduce``
  on one flat buffer) between ``backward()`` and the optimizer step, so every rank takes the
  same step and the weights stay identical. We do this rather than wrap the policy in
  :class:`~torch.nn.parallel.DistributedDataParallel` because the trainers run several
  different forward calls per update (the LM alone, the LM with the value head, the frozen
  reference swapped in by a context manager) that DDP's forward-hook bookkeeping does not
  fit; the gradient all-reduce is the same collective DDP runs, without bucketing/overlap;
* statistics that must be global (advantage whitening, the KL the adaptive controller sees,
  logged reward means) are reduced with :func:`all_reduce_mean` / :func:`all_reduce_sum`.

In a single process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) every helper returns its input.

>>> world_size(), rank(), is_main()
(1, 0, True)
>>> all_reduce_mean(2.5)
2.5
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = ["init_distributed", "destroy_distributed", "is_distributed", "rank", "local_rank", "world_size",
           "is_main", "barrier", "all_reduce_mean", "all_reduce_sum", "all_gather", "all_reduce_gradients",
           "broadcast_module", "broadcast_object", "shard", "rank_seed", "any_rank"]

T = TypeVar("T")


def is_distributed() -> bool:
    """True when a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 in a single process)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def local_rank() -> int:
    """This process's rank on its node (``LOCAL_RANK``; 0 in a single process)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def world_size() -> int:
    """Number of processes (1 in a single process)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, the only rank that writes logs, checkpoints, plots and reports."""
    return rank() == 0


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> torch.device:
    """Join the process group torchrun describes in the environment; return this rank's device.

    Does nothing (and returns ``cuda:0``/``cpu``... as :func:`torch.device` defaults) when
    ``WORLD_SIZE`` is unset or 1, or when the group is already initialised.

    Args:
        backend: ``None`` picks ``nccl`` when CUDA is available, else ``gloo``.
        timeout_s: Collective timeout.

    Returns:
        ``cuda:<LOCAL_RANK>`` (also made the current CUDA device) when CUDA is available, else ``cpu``.
    """
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank()}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or dist.is_initialized():
        return device
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} is not set: launch with "
                           "torchrun (e.g. torchrun --nproc_per_node=2 -m agents.cli rl ...) or --nproc N.")
    dist.init_process_group(backend or ("nccl" if cuda else "gloo"),
                            timeout=datetime.timedelta(seconds=timeout_s))
    return device


def destroy_distributed() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(value: float | torch.Tensor) -> Any:
    """Sum of ``value`` over ranks (same type back: float or tensor)."""
    if not is_distributed():
        return value
    if torch.is_tensor(value):
        out = value.detach().clone().to(_device())
        dist.all_reduce(out)
        return out.to(value.device)
    out = torch.tensor(float(value), dtype=torch.float64, device=_device())
    dist.all_reduce(out)
    return float(out)


def all_reduce_mean(value: float | torch.Tensor) -> Any:
    """Mean of ``value`` over ranks (same type back: float or tensor)."""
    if not is_distributed():
        return value
    total = all_reduce_sum(value)
    return total / world_size()


def any_rank(flag: bool) -> bool:
    """True when ``flag`` is true on at least one rank (keeps loops that may stop early in step)."""
    if not is_distributed():
        return bool(flag)
    return all_reduce_sum(1.0 if flag else 0.0) > 0


def all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (same shape on every rank) along dim 0, in rank order."""
    if not is_distributed():
        return tensor
    local = tensor.detach().contiguous().to(_device())
    parts = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(parts, local)
    return torch.cat(parts).to(tensor.device)


def all_reduce_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over ranks in place with one ``all_reduce`` on a flat buffer.

    Every rank must pass the same parameters in the same order. A parameter without a gradient
    on this rank contributes zeros (and gets the average), so ranks never disagree on shapes.
    """
    if not is_distributed():
        return
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params]).to(_device())
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers (its whole state dict) to every rank, in place."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in module.state_dict(keep_vars=False).values():
            if not torch.is_tensor(tensor):
                continue
            buf = tensor.to(_device())
            dist.broadcast(buf, src)
            if buf.data_ptr() != tensor.data_ptr():
                tensor.copy_(buf)


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s (picklable) ``obj`` on every rank, e.g. a run folder only rank 0 chose."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_device())
    return box[0]


def rank_seed(seed: int) -> int:
    """The seed of this rank's environment and sampling: ``seed + rank`` (``seed`` on rank 0)."""
    return seed + rank()


def shard(items: Sequence[T]) -> Sequence[T]:
    """This rank's share ``items[rank::world_size]`` (all of them in a single process).

    The share is a lazy view, so a large or procedurally generated dataset is not
    materialised. A sequence shorter than the world size is not split (every rank would
    not get one).
    """
    n = world_size()
    if n <= 1 or len(items) < n:
        return items
    return _Strided(items, rank(), n)


class _Strided(Sequence):
    """Read-only view ``items[start::step]`` of any indexable collection."""

    def __init__(self, items: Sequence[T], start: int, step: int) -> None:
        self.items, self.start, self.step = items, start, step

    def __len__(self) -> int:
        return max(0, (len(self.items) - self.start + self.step - 1) // self.step)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"shard index {index} out of range for a shard of {len(self)}")
        return self.items[self.start + index * self.step]
