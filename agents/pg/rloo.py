"""RLOO: REINFORCE with a leave-one-out baseline on ``InstructEnv/Completion-v0``."""

from __future__ import annotations

import torch

from agents.pg.base import PolicyGradientTrainer
from agents.pg.config import RLOOConfig
from agents.rl import RLOO

__all__ = ["RLOOTrainer"]


class RLOOTrainer(PolicyGradientTrainer):
    """REINFORCE Leave-One-Out (Kool et al., 2019; Ahmadian et al., 2024).

    Each prompt is answered ``k = group_size`` times; completion ``i``'s baseline is the mean
    reward of the other ``k - 1``::

        A_i = r_i - (sum_j r_j - r_i) / (k - 1)

    an unbiased baseline (it does not depend on ``y_i``). The KL penalty is in the reward by default.
    """

    algo = RLOO.name
    config_class = RLOOConfig
    config: RLOOConfig

    def advantages(self, rewards: torch.Tensor, tasks: list[str] | None = None) -> torch.Tensor:
        """(N,) rewards minus the mean reward of the other completions of the same prompt."""
        k = self.config.group_size
        r = rewards.view(-1, k)  # (prompts, k)
        baseline = (r.sum(1, keepdim=True) - r) / (k - 1)  # (prompts, k) leave-one-out mean
        return (r - baseline).reshape(-1)
