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
  fit on one device) shards the trained module in place with FSDP2's
  :func:`~torch.distributed.fsdp.fully_shard` (each transformer block, then the root): every
  rank keeps ``1 / world_size`` of each parameter, gradient and Adam moment, forward passes
  all-gather a block's parameters just before it runs, and the backward pass reduce-scatters
  (averages) its gradients. Every forward pass through a sharded module is a collective, so
  every rank must make the same number of them: rollouts, whose length depends on what each
  rank sampled, run inside :func:`gathered` (parameters all-gathered once, no collective per
  token). Checkpoints hold the gathered (full) weights and optimizer state
  (:func:`full_state_dict`, :func:`full_optimizer_state_dict`), so they load in any number of
  processes with any strategy;
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
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

if TYPE_CHECKING:
    from torch.distributed.fsdp import FSDPModule

from agents.common.distributed_config import STRATEGIES, DistributedConfig, as_distributed_config
from instruct_env.error import ConfigError, suggest

__all__ = ["STRATEGIES", "DistributedConfig", "as_distributed_config", "check_strategy", "wrap_module", "unwrap",
           "sync_gradients", "maybe_no_sync", "init_distributed", "destroy_distributed", "is_distributed", "rank",
           "local_rank", "world_size", "is_main", "barrier", "all_reduce_mean", "all_reduce_sum", "all_gather",
           "all_reduce_gradients", "broadcast_module", "broadcast_object", "shard", "rank_seed", "any_rank",
           "is_sharded", "gathered", "clip_grad_norm", "full_state_dict", "load_full_state_dict",
           "full_optimizer_state_dict", "load_full_optimizer_state_dict", "unsharded_copy"]

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
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    flat = torch.cat([g.reshape(-1) for g in grads]).to(_device())
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers (its whole state dict) to every rank, in place."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in module.state_dict(keep_vars=False).values():
            # Sharded (FSDP) parameters were sharded from already-broadcast weights: each rank holds its own part.
            if not torch.is_tensor(tensor) or isinstance(tensor, DTensor):
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
    """Raise :class:`ConfigError` unless ``strategy`` is one of :data:`STRATEGIES`.

    Every strategy runs on both back-ends (NCCL on GPUs, gloo on CPU); in a single process there
    is nothing to shard or average and the strategy is ignored.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"distributed.strategy must be one of {', '.join(map(repr, STRATEGIES))}; "
                          f"got {strategy!r}.{suggest(str(strategy), STRATEGIES)}")


def _frozen_children(module: nn.Module) -> list[nn.Module]:
    """The direct submodules of ``module`` without a trainable parameter (e.g. ActorCritic's frozen reference)."""
    return [child for child in module.children()
            if any(True for _ in child.parameters()) and not any(p.requires_grad for p in child.parameters())]


def _blocks(module: nn.Module, skip: Sequence[nn.Module] = ()) -> list[nn.Module]:
    """The repeated blocks of ``module``: the items of every ``ModuleList`` of one block type (outermost only).

    GPT-2's ``transformer.h``, Llama's ``model.layers``, T5's encoder and decoder ``block``...
    Lists inside the modules in ``skip`` are left out.
    """
    skipped = {id(p) for m in skip for p in m.parameters()}
    found: list[str] = []
    blocks: list[nn.Module] = []
    for name, sub in module.named_modules():
        if not isinstance(sub, nn.ModuleList) or len(sub) == 0 or len({type(b) for b in sub}) != 1:
            continue
        params = list(sub.parameters())
        if any(name.startswith(f"{outer}.") for outer in found) or not params or id(params[0]) in skipped:
            continue
        found.append(name)
        blocks.extend(sub)
    return blocks


def _fsdp_modules(module: nn.Module) -> list[FSDPModule]:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in module.modules() if isinstance(m, FSDPModule)]


def is_sharded(module: nn.Module) -> bool:
    """True when ``module`` or one of its submodules is sharded with FSDP (``strategy="fsdp"``)."""
    return bool(_fsdp_modules(module))


def wrap_module(module: torch.nn.Module, strategy: str, units: Sequence[nn.Module] = ()) -> torch.nn.Module:
    """The module whose forward passes are back-propagated, wrapped for ``strategy``.

    With ``"ddp"`` in a multi-process run: ``module`` (already on this rank's device) inside
    :class:`~torch.nn.parallel.DistributedDataParallel` (its buffers are not re-broadcast at
    every forward: the trainers' buffers are constants). Otherwise ``module`` itself. The
    wrapper shares ``module``'s parameters, so optimizers and checkpoints use ``module``.

    With ``"fsdp"`` in a multi-process run, ``module`` itself is sharded *in place* (FSDP2's
    ``fully_shard``: every repeated block; then each of ``units``, submodules that are also called
    on their own rather than through ``module`` (an ActorCritic's LM, which its PEFT reference
    calls without the value head); then ``module``, whose remaining parameters -- embeddings,
    final norm, heads -- form one more group) and returned; its parameters become
    :class:`~torch.distributed.tensor.DTensor` shards, so build the optimizer afterwards. A
    module that is already sharded, or holds a sharded module (an ActorCritic around an LM that
    SFT sharded), is returned as it is: FSDP cannot re-root a sharded module, so the parameters
    outside it (the value head) stay whole and :func:`sync_gradients` averages them. Direct
    submodules without a trainable parameter (the frozen KL reference copy inside an
    :class:`~agents.common.model.ActorCritic`) stay whole, as do modules outside ``module``.
    """
    check_strategy(strategy)
    if strategy == "fsdp" and is_distributed():
        from torch.distributed.fsdp import fully_shard

        if is_sharded(module):
            return module
        frozen = _frozen_children(module)
        blocks = _blocks(module, skip=frozen)
        for block in blocks:
            fully_shard(block, reshard_after_forward=True)  # gathered only while it runs
        for unit in units:
            fully_shard(unit, reshard_after_forward=True)
        # The root's parameters are needed again first in backward; the frozen submodules are not sharded.
        fully_shard(module, reshard_after_forward=False,
                    ignored_params={p for m in frozen for p in m.parameters()} or None)
        return module
    if strategy != "ddp" or not is_distributed():
        return module
    from torch.nn.parallel import DistributedDataParallel

    device = next(module.parameters()).device
    kwargs: dict[str, Any] = {"device_ids": [device.index] if device.type == "cuda" else None}
    # Newer torch renamed broadcast_buffers (the per-forward buffer sync) to forward_sync_buffers.
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    kwargs["forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"] = False
    return DistributedDataParallel(module, **kwargs)


def unwrap(module: torch.nn.Module, *, lm: bool = False) -> torch.nn.Module:
    """The module inside a :func:`wrap_module` wrapper (``module`` itself when not wrapped).

    With ``lm=True``, also the language model inside an :class:`~agents.common.model.ActorCritic`
    (anything with a ``value_head`` and an ``lm``; an ILQL decoder, whose V head is ``v_head``, stays
    whole): what generation, evaluation and SFT run on.
    """
    from torch.nn.parallel import DistributedDataParallel

    inner: torch.nn.Module = module.module if isinstance(module, DistributedDataParallel) else module
    if lm and hasattr(inner, "value_head"):
        inner = getattr(inner, "lm", inner)
    return inner


def sync_gradients(module: torch.nn.Module, parameters: Iterable[torch.nn.Parameter]) -> None:
    """Average the gradients of ``parameters`` over ranks unless ``module``'s wrapper already did.

    Call between the (last) ``backward()`` and the optimizer step; ``module`` is what
    :func:`wrap_module` returned. DDP's hooks and FSDP's reduce-scatter have averaged them already;
    in a sharded module, the parameters that no FSDP unit manages (kept whole on every rank, e.g.
    a value head added to an LM that an earlier stage sharded) are averaged here.
    """
    if is_sharded(module):
        all_reduce_gradients(p for p in parameters if not isinstance(p, DTensor))
    elif unwrap(module) is module:
        all_reduce_gradients(parameters)


@contextlib.contextmanager
def maybe_no_sync(module: torch.nn.Module, sync: bool) -> Iterator[None]:
    """Context for one backward of several accumulated into one step: skip DDP's all-reduce unless ``sync``.

    Gradients accumulate locally in the skipped backwards and the one with ``sync=True`` (the
    last before the step) averages the sums, as one all-reduce after all of them would. A
    sharded (FSDP) module keeps the unsharded gradients of the skipped backwards and
    reduce-scatters their sum in the last.
    """
    parts = _fsdp_modules(module)
    if not sync and parts:
        for part in parts:
            part.set_requires_gradient_sync(False, recurse=False)
        try:
            yield
        finally:
            for part in parts:
                part.set_requires_gradient_sync(True, recurse=False)
        return
    from torch.nn.parallel import DistributedDataParallel

    if sync or not isinstance(module, DistributedDataParallel):  # only a DDP wrapper all-reduces in backward
        yield
        return
    with module.no_sync():
        yield


@contextlib.contextmanager
def gathered(module: nn.Module) -> Iterator[nn.Module]:
    """Context in which a sharded ``module`` holds its full parameters, so forward passes need no collective.

    A forward pass through an FSDP-sharded module all-gathers each block's parameters, so every
    rank must make the same number of forward passes. Autoregressive sampling does not (each
    rank stops when its own completions have ended), so rollouts run inside this context: all
    blocks are all-gathered once on entry (every rank must enter), stay gathered for any number
    of (no-gradient) forward passes, and are sharded again on exit. It costs the memory of one
    full copy of the parameters while it lasts. Yields ``module``; does nothing for a module
    that is not sharded.
    """
    parts = _fsdp_modules(module)
    if not parts:
        yield module
        return
    # Every FSDP module is also the nn.Module it was made from (fully_shard changes its class in place).
    inner = {id(m) for part in parts for m in cast(nn.Module, part).modules() if m is not part}
    for part in parts:
        part.set_reshard_after_forward(False, recurse=False)
        part.unshard()
    try:
        yield module
    finally:
        for part in parts:  # as wrap_module set them: blocks and units reshard after forward, roots do not
            part.set_reshard_after_forward(id(part) in inner, recurse=False)
            part.reshard()


def clip_grad_norm(parameters: Iterable[torch.nn.Parameter], max_norm: float | None) -> float:
    """Clip the global norm of the gradients of ``parameters`` to ``max_norm``; return the norm before clipping.

    As :func:`torch.nn.utils.clip_grad_norm_` (scale factor ``max_norm / (norm + 1e-6)``, at most
    1), for sharded (FSDP) gradients too, whose norm is reduced over the ranks, and for a mix of
    sharded and whole ones. The result is a plain float, the same on every rank.
    ``max_norm=None`` only measures. Parameters without a gradient are skipped.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    groups: list[list[torch.Tensor]] = [[g for g in grads if isinstance(g, DTensor)], [g for g in grads if not isinstance(g, DTensor)]]
    squares = 0.0
    for group in groups:
        if group:
            norm = torch.nn.utils.get_total_norm(group)
            squares += float(norm.full_tensor() if isinstance(norm, DTensor) else norm) ** 2
    total = math.sqrt(squares)
    if max_norm is not None:
        scale = min(max_norm / (total + 1e-6), 1.0)
        for g in grads:
            g.mul_(scale)
    return total


# --------------------------------------------------------------------------- checkpoints of sharded modules
def full_state_dict(module: nn.Module) -> dict[str, Any]:
    """``module``'s state dict with whole tensors, for a checkpoint any strategy and process count can load.

    For a sharded module every rank must call it (it gathers); rank 0 gets the full tensors (on
    the CPU) and the other ranks an empty dict. Otherwise ``module.state_dict()``.
    """
    if not is_sharded(module):
        return module.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state_dict(module: nn.Module, state: Mapping[str, Any]) -> None:
    """Load a state dict of whole tensors (e.g. from :func:`full_state_dict`) into ``module``, sharded or not.

    For a sharded module every rank must call it with the same ``state``; each keeps its shard.
    """
    if not is_sharded(module):
        module.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(module, dict(state), options=StateDictOptions(full_state_dict=True))


def unsharded_copy(module: nn.Module) -> nn.Module:
    """A whole (unsharded, hook-free) copy of a sharded Hugging Face model, e.g. for a frozen KL reference.

    FSDP modules cannot be deep-copied; this builds a fresh model of the same class from
    ``module.config`` and loads the gathered weights into it (every rank must call it; each gets
    the whole copy, on the device and in the dtype of the shards).
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import FSDPModule

    # The class before sharding (fully_shard puts FSDPModule in front of it in the MRO).
    base = next(c for c in type(module).__mro__ if issubclass(c, nn.Module) and not issubclass(c, FSDPModule))
    config = getattr(module, "config", None)
    if config is None:
        raise ConfigError(f"Cannot copy the sharded {base.__name__}: only models built from a config (Hugging Face "
                          "models) can be rebuilt whole. Take the copy before sharding it (e.g. call "
                          "freeze_reference() before training with distributed.strategy='fsdp').")
    state = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True))
    copy_ = base(config.__class__.from_dict(config.to_dict()))
    copy_.load_state_dict(state, assign=True)  # the gathered tensors, with their device and dtype
    tie_weights = getattr(copy_, "tie_weights", None)  # Hugging Face models share input and output embeddings
    if tie_weights is not None:
        tie_weights()
    return copy_


def full_optimizer_state_dict(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` with every sharded (FSDP) state tensor gathered whole, on the CPU.

    The result has the format of an unsharded optimizer's state dict (states keyed by the
    parameter's position), so it loads with any strategy. When the parameters are sharded every
    rank must call it (it gathers one tensor at a time); rank 0 gets the state dict and the other
    ranks an empty dict.
    """
    state = optimizer.state_dict()
    if not any(isinstance(v, DTensor) for s in state["state"].values() for v in s.values()):
        return state
    keep = is_main()
    gathered_state: dict[Any, dict[str, Any]] = {}
    for index, values in state["state"].items():
        whole = {}
        for key, value in values.items():
            if isinstance(value, DTensor):
                value = value.full_tensor()  # a collective: every rank, in the same order
                value = value.cpu() if keep else None
            whole[key] = value
        gathered_state[index] = whole
    return {"state": gathered_state, "param_groups": state["param_groups"]} if keep else {}


def load_full_optimizer_state_dict(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """Load a state dict of whole tensors (any strategy's) into ``optimizer``, sharding it like its parameters.

    Every rank must call it with the same ``state`` when the parameters are sharded.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if not any(isinstance(p, DTensor) for p in params):
        optimizer.load_state_dict(dict(state))
        return
    sharded: dict[Any, dict[str, Any]] = {}
    for index, values in state["state"].items():
        p = params[int(index)]
        sharded[index] = {
            k: distribute_tensor(v.to(p.device_mesh.device_type), p.device_mesh, p.placements)
            if isinstance(p, DTensor) and torch.is_tensor(v) and v.shape == p.shape else v
            for k, v in values.items()}
    optimizer.load_state_dict({"state": sharded, "param_groups": state["param_groups"]})
