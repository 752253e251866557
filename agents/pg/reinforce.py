"""REINFORCE with a baseline on ``InstructEnv/Completion-v0``."""

from __future__ import annotations

from typing import Any

import torch

from agents.common import distributed as dist
from agents.pg.base import PolicyGradientTrainer
from agents.pg.config import ReinforceConfig
from agents.rl import REINFORCE

__all__ = ["ReinforceTrainer"]


class ReinforceTrainer(PolicyGradientTrainer):
    """REINFORCE (Williams, 1992): ``grad = mean_i((r_i - b) * grad log pi(y_i | x_i))``.

    The baseline ``b`` is, by ``config.baseline``: an exponential moving average of earlier
    batches' mean reward (initialised with the first batch's mean), the current batch's mean,
    or 0. Rewards include ``-beta * KL`` when ``kl_in == "reward"``.
    """

    algo = REINFORCE.name
    config_class = ReinforceConfig
    config: ReinforceConfig

    def _start(self) -> None:
        super()._start()
        self.baseline: float | None = None

    def advantages(self, rewards: torch.Tensor, tasks: list[str] | None = None) -> torch.Tensor:
        """(N,) rewards minus the configured baseline (and update the moving average)."""
        cfg = self.config
        batch_mean = dist.all_reduce_mean(float(rewards.mean()))  # the global batch's mean (equal shards)
        if cfg.baseline == "none":
            b = 0.0
        elif cfg.baseline == "batch_mean" or self.baseline is None:
            b = batch_mean
        else:
            b = self.baseline
        if cfg.baseline == "moving_average":
            decay = cfg.baseline_decay
            self.baseline = batch_mean if self.baseline is None else decay * self.baseline + (1 - decay) * batch_mean
        return rewards - b

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "baseline": self.baseline}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        super()._load_extra_state(state)
        self.baseline = state["baseline"]
