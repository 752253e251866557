"""Configs of the actor-critic trainers (PPO, A2C) on ``InstructEnv/Token-v0``."""

from __future__ import annotations

import math
from dataclasses import dataclass

from agents.common.rl_config import RLConfig
from instruct_env._validation import (
    check_int,
    check_int_fields,
    check_positive,
    check_probability,
    check_range,
)
from instruct_env.error import ConfigError

__all__ = ["ActorCriticConfig", "PPOConfig", "A2CConfig"]


@dataclass
class ActorCriticConfig(RLConfig):
    """Fields shared by :class:`PPOConfig` and :class:`A2CConfig` (see :class:`RLConfig` for the rest).

    Attributes:
        num_envs: Parallel token-env slots (episodes in flight).
        n_steps: Env steps (tokens) per slot per rollout; a rollout holds ``num_envs * n_steps`` actions.
        num_minibatches: The rollout's episode segments are split into this many minibatches
            (PPO: one optimizer step each; A2C: gradients accumulated into one step).
        gamma: Discount per token (1.0: the answer's reward counts fully for every token).
        lam: GAE lambda.
        vf_coef: Weight of the value loss.
        ent_coef: Weight of the entropy bonus.
        normalize_advantage: Whiten advantages over the whole rollout.
    """

    lr: float = 3e-5
    num_envs: int = 16
    n_steps: int = 32
    num_minibatches: int = 4
    gamma: float = 1.0
    lam: float = 0.95
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    normalize_advantage: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        check_int_fields(self, "num_envs", "n_steps", "num_minibatches")
        if self.num_minibatches > self.num_envs:
            raise ConfigError(
                f"{owner}: num_minibatches={self.num_minibatches} is more than num_envs={self.num_envs}; a rollout "
                f"may hold only num_envs episode segments, one per slot. Lower num_minibatches to at most "
                f"{self.num_envs} or raise num_envs."
            )
        check_probability(f"{owner}.gamma", self.gamma)
        check_probability(f"{owner}.lam", self.lam)
        check_range(f"{owner}.vf_coef", self.vf_coef, 0.0, math.inf)
        check_range(f"{owner}.ent_coef", self.ent_coef, 0.0, math.inf)


@dataclass
class PPOConfig(ActorCriticConfig):
    """Proximal Policy Optimization (Schulman et al., 2017) with a value head, token by token.

    Attributes:
        update_epochs: Passes over each rollout.
        clip_range: Clip of the probability ratio, ``[1 - clip_range, 1 + clip_range]``.
        clip_range_vf: Clip of the value change around the rollout's values (``None``: unclipped
            value loss).
        target_kl: Stop the update early when a minibatch's approximate KL to the rollout policy
            exceeds ``1.5 * target_kl`` (as Stable-Baselines3; ``None``: never).
    """

    update_epochs: int = 4
    clip_range: float = 0.2
    clip_range_vf: float | None = None
    target_kl: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        check_int(f"{owner}.update_epochs", self.update_epochs)
        check_range(f"{owner}.clip_range", self.clip_range, 0.0, 1.0, low_open=True, high_open=True,
                    hint=" Typical values are 0.1-0.3.")
        if self.clip_range_vf is not None:
            check_positive(f"{owner}.clip_range_vf", self.clip_range_vf, hint=" Use None for an unclipped value loss.")
        if self.target_kl is not None:
            check_positive(f"{owner}.target_kl", self.target_kl, hint=" Use None to never stop early.")


@dataclass
class A2CConfig(ActorCriticConfig):
    """Advantage actor-critic (Mnih et al., 2016, synchronous): one gradient step per rollout.

    Shorter rollouts than PPO by default since every batch is used once. Advantages are not
    whitened by default (as in Stable-Baselines3's A2C).
    """

    lr: float = 1e-4
    n_steps: int = 8
    num_minibatches: int = 1
    normalize_advantage: bool = False
