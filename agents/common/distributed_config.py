"""How ranks of a data-parallel run average gradients: the ``distributed`` section of every trainer config.

Kept apart from :mod:`agents.common.distributed` (which needs torch) so that configs import without torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from instruct_env._validation import check_choice, choices_of
from instruct_env.error import ConfigError

__all__ = ["Strategy", "STRATEGIES", "DistributedConfig", "as_distributed_config"]

#: How data-parallel ranks average gradients (see :class:`DistributedConfig`).
Strategy = Literal["ddp", "allreduce", "fsdp"]
STRATEGIES: tuple[str, ...] = choices_of(Strategy)


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
            ``"fsdp"``: fully sharded data parallel (FSDP2) for models that do not fit on one
            device: parameters, gradients and optimizer state are sharded over the ranks (the
            frozen KL reference copy stays whole). Works on NCCL (GPUs) and gloo (CPU).

    >>> DistributedConfig().strategy
    'ddp'
    >>> DistributedConfig(strategy="dpp")
    Traceback (most recent call last):
    ...
    instruct_env.error.ConfigError: DistributedConfig.strategy must be one of 'ddp', 'allreduce', 'fsdp'; got 'dpp'. Did you mean 'ddp' or 'fsdp'?
    """

    strategy: Strategy = "ddp"

    def __post_init__(self) -> None:
        check_choice("DistributedConfig.strategy", self.strategy, Strategy)


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
