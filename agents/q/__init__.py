"""Q-learning agents: offline ILQL from token-level episodes, online soft Q-learning on ``InstructEnv/Token-v0``.

The configs import without torch; the trainers and data classes are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agents.q.config import ILQLConfig, SoftQConfig

if TYPE_CHECKING:  # pragma: no cover
    from agents.q.data import Episode, TransitionDataset
    from agents.q.ilql import ILQLDecoder, ILQLTrainer
    from agents.q.soft_q import SoftQTrainer

__all__ = ["ILQLTrainer", "ILQLConfig", "ILQLDecoder", "SoftQConfig", "SoftQTrainer", "Episode", "TransitionDataset"]

_LAZY = {"Episode": "agents.q.data", "TransitionDataset": "agents.q.data", "ILQLDecoder": "agents.q.ilql",
         "ILQLTrainer": "agents.q.ilql", "SoftQTrainer": "agents.q.soft_q"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
