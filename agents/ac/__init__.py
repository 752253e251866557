"""Actor-critic agents (PPO, A2C) acting token by token in ``InstructEnv/Token-v0``.

The configs import without torch; the trainers are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agents.ac.config import A2CConfig, ActorCriticConfig, PPOConfig

if TYPE_CHECKING:  # pragma: no cover
    from agents.ac.a2c import A2CTrainer
    from agents.ac.ppo import PPOTrainer

__all__ = ["PPOTrainer", "A2CTrainer", "PPOConfig", "A2CConfig", "ActorCriticConfig"]

_TRAINERS = {"PPOTrainer": "agents.ac.ppo", "A2CTrainer": "agents.ac.a2c"}


def __getattr__(name: str) -> Any:
    if name in _TRAINERS:
        return getattr(importlib.import_module(_TRAINERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
