"""Gymnasium wrappers for the instruct-env environments.

- :class:`TextObservation`: text observations (and text answers on the Completion env) for
  agents that call an LLM API.
- :class:`ScaleReward`: multiply rewards by a constant. For running normalisation use
  Gymnasium's :class:`~gymnasium.wrappers.NormalizeReward`, re-exported here (see
  :mod:`instruct_env.wrappers.reward` for what it does and the SB3 equivalent).
- :class:`KLPenalty`: per-token KL penalty to a reference model on the Token env (imports
  torch only when created).
- :class:`Curriculum`: raise the built-in tasks' difficulty as the running mean reward rises.
- :class:`CompactTokens`: token observations as ``int16``/``uint8`` instead of ``int64``, for
  memory-bound rollout buffers (Stable-Baselines3's; see ``docs/sb3.md``).

Order when combining: ``Curriculum`` innermost (it should see the task reward), then
``KLPenalty``, then reward scaling, then ``CompactTokens`` or ``TextObservation``.
"""

from __future__ import annotations

from gymnasium.wrappers import NormalizeReward

from instruct_env.wrappers.compact import CompactTokens
from instruct_env.wrappers.curriculum import Curriculum
from instruct_env.wrappers.kl import KLPenalty
from instruct_env.wrappers.reward import ScaleReward
from instruct_env.wrappers.text import AnyText, TextObservation

__all__ = ["TextObservation", "AnyText", "ScaleReward", "NormalizeReward", "KLPenalty", "Curriculum", "CompactTokens"]
