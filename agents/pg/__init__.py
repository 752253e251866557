"""Policy-gradient agents (REINFORCE, GRPO, RLOO) answering in ``InstructEnv/Completion-v0``.

The configs import without torch; the trainers are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agents.pg.config import GRPOConfig, PolicyGradientConfig, ReinforceConfig, RLOOConfig

if TYPE_CHECKING:  # pragma: no cover
    from agents.pg.grpo import GRPOTrainer
    from agents.pg.reinforce import ReinforceTrainer
    from agents.pg.rloo import RLOOTrainer

__all__ = [
    "ReinforceTrainer",
    "GRPOTrainer",
    "RLOOTrainer",
    "ReinforceConfig",
    "GRPOConfig",
    "RLOOConfig",
    "PolicyGradientConfig",
]

_TRAINERS = {"GRPOTrainer": "agents.pg.grpo", "ReinforceTrainer": "agents.pg.reinforce",
             "RLOOTrainer": "agents.pg.rloo"}


def __getattr__(name: str) -> Any:
    if name in _TRAINERS:
        return getattr(importlib.import_module(_TRAINERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
