"""Data-parallel helpers on top of :mod:`torch.distributed` (no-ops in a single process).

Launch with torchrun (or ``instruct-env <cmd> --nproc N``, which re-launches itself through
:mod:`torch.distributed.run`); :func:`init_distributed` reads the variables torchrun sets
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and joins the
process group: ``nccl`` when CUDA is available (one GPU per local rank), ``gloo`` otherwise.

How the trainers use it (data parallelism):

* every rank holds a full copy of the model; rank 0's weights are broadcast at start;
* every rank collects its own experience (its own vector env, seeded ``seed + rank``, on its
  own shard of the instructions) and computes its own gradient;
* gradients are averaged over ranks in one of two ways, chosen by
  :attr:`DistributedConfig.strategy` (the ``distributed`` section of every trainer config):
  ``"ddp"`` (the default) wraps the module the loss is computed with in
  :class:`~torch.nn.parallel.DistributedDataParallel` (:func:`wrap_module`), whose backward
  hooks all-reduce bucketed gradients while the backward pass still runs; ``"allreduce"``
  averages them after ``backward()`` with :func:`all_reduce_gradients` (one
  ``torch.distributed.all_reduce`` on a flat buffer). Both leave every rank with the same
  averaged gradient, so every rank takes the same step and the weights stay identical. Only the
  forward passes that are back-propagated go through the wrapper; rollouts, the frozen reference
  and other no-gradient passes call the plain module, and checkpoints save the plain module, so
  they load in a single process. ``"fsdp"`` (fully sharded data parallel, for models that do not
  fit on one device) is reserved: :func:`check_strategy` rejects it with a
  :class:`~instruct_env.error.ConfigError` (it needs CUDA and NCCL, and the trainers do not
  yet gather sharded parameters for checkpoints and rollouts);
* statistics that must be global (advantage whitening, the KL the adaptive controller sees,
  logged reward means) are reduced with :func:`all_reduce_mean` / :func:`all_reduce_sum`.

In a single process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) every helper returns its input.

>>> world_size(), rank(), is_main()
(1, 0, True)
>>> all_reduce_mean(2.5)
2.5
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from instruct_env.error import ConfigError, suggest

__all__ = ["STRATEGIES", "DistributedConfig", "as_distributed_config", "check_strategy", "wrap_module", "unwrap",
           "sync_gradients", "maybe_no_sync", "init_distributed", "destroy_distributed", "is_distributed", "rank",
           "local_rank", "world_size", "is_main", "barrier", "all_reduce_mean", "all_reduce_sum", "all_gather",
           "all_reduce_gradients", "broadcast_module", "broadcast_object", "shard", "rank_seed", "any_rank"]

T = TypeVar("T")

#: How data-parallel ranks average gradients (see :class:`DistributedConfig`).
STRATEGIES = ("ddp", "allreduce", "fsdp")


@dataclass
class DistributedConfig:
    """How the ranks of a data-parallel run average their gradients (ignored in a single process).

    Set it with e.g. ``--set sft.distributed.strategy=allreduce`` or
    ``--set rl.grpo.distributed.strategy=ddp``.

    Attributes:
        strategy: ``"ddp"``: the trained module is wrapped in
            :class:`~torch.nn.parallel.DistributedDataParallel`, which all-reduces gradient
            buckets during the backward pass (overlapping communication with computation).
            ``"allreduce"``: one all-reduce of all gradients after the backward pass (no wrapper).
            ``"fsdp"``: fully sharded data parallel for models that do not fit on one GPU;
            needs CUDA and the NCCL backend, and is not available yet (a multi-process run
            with it stops with a :class:`~instruct_env.error.ConfigError` naming the fix).

    >>> DistributedConfig().strategy
    'ddp'
    >>> DistributedConfig(strategy="dpp")
    Traceback (most recent call last):
    ...
    instruct_env.error.ConfigError: DistributedConfig.strategy must be one of 'ddp', 'allreduce', 'fsdp'; got 'dpp'. Did you mean 'ddp' or 'fsdp'?
    """

    strategy: str = "ddp"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"DistributedConfig.strategy must be one of {', '.join(map(repr, STRATEGIES))}; "
                              f"got {self.strategy!r}.{suggest(str(self.strategy), STRATEGIES)}")


def as_distributed_config(value: DistributedConfig | Mapping[str, Any], owner: str) -> DistributedConfig:
    """``value`` as a :class:`DistributedConfig` (a mapping, e.g. from a saved checkpoint, is converted)."""
    if isinstance(value, DistributedConfig):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"strategy"})
        if unknown:
            raise ConfigError(f"{owner}.distributed has no field(s) {', '.join(map(repr, unknown))}; "
                              "its only field is 'strategy'.")
        return DistributedConfig(**value)
    raise ConfigError(f"{owner}.distributed must be a DistributedConfig (e.g. DistributedConfig(strategy='ddp')); "
                      f"got {value!r}.")


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


# --------------------------------------------------------------------------- gradient averaging strategies
def check_strategy(strategy: str) -> None:
    """Raise :class:`ConfigError` when ``strategy`` cannot run in this process group.

    ``"fsdp"`` would shard parameters over GPUs and needs CUDA with the NCCL backend; it is
    rejected on CPU/gloo with that reason, and on GPUs because the trainers do not support it
    yet. In a single process there is nothing to shard or average, so every strategy is accepted.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"distributed.strategy must be one of {', '.join(map(repr, STRATEGIES))}; "
                          f"got {strategy!r}.{suggest(str(strategy), STRATEGIES)}")
    if strategy != "fsdp" or not is_distributed():
        return
    backend = dist.get_backend()
    if not torch.cuda.is_available() or backend != "nccl":
        raise ConfigError(
            f"distributed.strategy='fsdp' needs CUDA GPUs and the NCCL backend; this run has "
            f"{'CUDA' if torch.cuda.is_available() else 'no CUDA'} and the {backend!r} backend. Use "
            "distributed.strategy='ddp' (or 'allreduce') on CPU, or launch on GPUs.")
    raise ConfigError(
        "distributed.strategy='fsdp' is not available yet: the trainers' checkpoints and rollouts expect whole "
        "(unsharded) parameters. Use distributed.strategy='ddp' for models that fit on one GPU.")


def wrap_module(module: torch.nn.Module, strategy: str) -> torch.nn.Module:
    """The module whose forward passes are back-propagated, wrapped for ``strategy``.

    With ``"ddp"`` in a multi-process run: ``module`` (already on this rank's device) inside
    :class:`~torch.nn.parallel.DistributedDataParallel` (its buffers are not re-broadcast at
    every forward: the trainers' buffers are constants). Otherwise ``module`` itself. The
    wrapper shares ``module``'s parameters, so optimizers and checkpoints use ``module``.
    """
    check_strategy(strategy)
    if strategy != "ddp" or not is_distributed():
        return module
    from torch.nn.parallel import DistributedDataParallel

    device = next(module.parameters()).device
    kwargs: dict[str, Any] = {"device_ids": [device.index] if device.type == "cuda" else None}
    # Newer torch renamed broadcast_buffers (the per-forward buffer sync) to forward_sync_buffers.
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    kwargs["forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"] = False
    return DistributedDataParallel(module, **kwargs)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a :func:`wrap_module` wrapper (``module`` itself when not wrapped)."""
    from torch.nn.parallel import DistributedDataParallel

    return module.module if isinstance(module, DistributedDataParallel) else module


def sync_gradients(module: torch.nn.Module, parameters: Iterable[torch.nn.Parameter]) -> None:
    """Average the gradients of ``parameters`` over ranks unless ``module``'s wrapper already did.

    Call between the (last) ``backward()`` and the optimizer step; ``module`` is what
    :func:`wrap_module` returned.
    """
    if unwrap(module) is module:
        all_reduce_gradients(parameters)


@contextlib.contextmanager
def maybe_no_sync(module: torch.nn.Module, sync: bool) -> Iterator[None]:
    """Context for one backward of several accumulated into one step: skip DDP's all-reduce unless ``sync``.

    Gradients accumulate locally in the skipped backwards and the one with ``sync=True`` (the
    last before the step) averages the sums, as one all-reduce after all of them would.
    """
    if sync or unwrap(module) is module:
        yield
        return
    with module.no_sync():
        yield
