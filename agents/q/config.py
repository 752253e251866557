"""Configs of the Q-learning trainers: offline ILQL and online soft Q-learning on ``InstructEnv/Token-v0``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from agents.common.rl_config import RLConfig
from instruct_env._validation import (
    check_choice,
    check_int,
    check_int_fields,
    check_positive,
    check_probability,
    check_range,
)
from instruct_env.error import ConfigError

__all__ = ["ILQLConfig", "SoftQConfig", "PathConsistency"]

#: :attr:`SoftQConfig.pcl`.
PathConsistency = Literal["single", "multi", "both"]


@dataclass
class ILQLConfig(RLConfig):
    """Implicit Language Q-Learning (Snell et al., 2022), offline, from a fixed set of token-level episodes.

    Attributes:
        data: Where the episodes come from: a JSONL file (episodes or feedback export records),
            a feedback store (``sqlite:///...``, ``postgresql://...`` or a ``.db`` path), or
            ``"rollouts"``: sample ``rollout_episodes`` completions from the policy at
            construction (normally the SFT model), scored by the environment's reward.
        rollout_episodes: Episodes sampled for ``data="rollouts"``.
        rollout_group_size: Samples per prompt for ``data="rollouts"``.
        batch_size: Episodes per gradient step.
        heads_lr: Learning rate of the Q and V heads (``None``: ``lr``). The heads start at zero and
            must reach the scale of the returns, while the LM is fine-tuned gently: a higher rate
            for the heads lets a short run learn them.
        gamma: Discount per token.
        tau: Expectile of the V regression (0.5: the mean, i.e. SARSA; towards 1: the max over the
            data's actions, i.e. Q-learning within the data's support).
        cql_coef: Weight of the conservative (CQL) term.
        v_coef: Weight of the V (expectile) loss.
        awac_coef: Weight of the policy loss on the LM head (keeps the behaviour model the data's
            policy, as in the paper's implementation; 0 freezes it to what the LM learns through
            the shared backbone).
        awac_beta: The policy loss weights each data token by ``exp(awac_beta * (Q - V))``
            (AWAC, Nair et al., 2020); 0 is plain behaviour cloning.
        awac_max_weight: Clip of those weights.
        polyak: Target Q heads move ``polyak`` of the way to the trained heads after every step.
        beta: Decoding: ``logits + beta * (Q - V)`` (``beta = 0``: the behaviour model).
        monitor_every: Every this many updates, sample ``monitor_envs`` completions with the
            ILQL decoding and log their mean reward as ``reward_mean`` (0: never; each costs
            reward calls). Set ``temperature`` for that sampling.
        monitor_envs: Completions per monitoring rollout.
    """

    lr: float = 1e-4
    max_new_tokens: int = 32
    kl_coef: float = 0.0
    data: str = "rollouts"
    rollout_episodes: int = 512
    rollout_group_size: int = 4
    batch_size: int = 32
    heads_lr: float | None = None
    gamma: float = 1.0
    tau: float = 0.7
    cql_coef: float = 0.01
    v_coef: float = 1.0
    awac_coef: float = 1.0
    awac_beta: float = 0.0
    awac_max_weight: float = 20.0
    polyak: float = 0.005
    beta: float = 4.0
    monitor_every: int = 0
    monitor_envs: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        if not isinstance(self.data, str) or not self.data.strip():
            raise ConfigError(f"{owner}.data must name a JSONL file, a feedback store URL or 'rollouts'; "
                              f"got {self.data!r}.")
        check_int_fields(self, "rollout_episodes", "rollout_group_size", "batch_size")
        if self.heads_lr is not None:
            check_range(f"{owner}.heads_lr", self.heads_lr, 0.0, 1.0, low_open=True, hint=" Use None for lr.")
        check_probability(f"{owner}.gamma", self.gamma)
        check_range(f"{owner}.tau", self.tau, 0.0, 1.0, low_open=True, high_open=True,
                    hint=" The paper uses 0.7-0.9; 0.5 is plain SARSA.")
        for name in ("cql_coef", "v_coef", "awac_coef", "awac_beta", "beta"):
            check_range(f"{owner}.{name}", getattr(self, name), 0.0, math.inf)
        check_positive(f"{owner}.awac_max_weight", self.awac_max_weight)
        check_range(f"{owner}.polyak", self.polyak, 0.0, 1.0, low_open=True,
                    hint=" 1 copies the heads after every step; the paper uses 0.005.")
        check_int(f"{owner}.monitor_every", self.monitor_every, minimum=0)
        check_int(f"{owner}.monitor_envs", self.monitor_envs)
        if self.kl_target is not None or self.kl_coef:
            raise ConfigError(f"{owner}: ILQL has no KL penalty (kl_coef={self.kl_coef}, kl_target={self.kl_target}); "
                              "it stays near the data through the CQL term and the behaviour model it perturbs. "
                              "Leave kl_coef=0 and kl_target=None.")


@dataclass
class SoftQConfig(RLConfig):
    """Online soft Q-learning with the LM's logits as Q-values (Guo et al., 2022), token by token.

    Attributes:
        num_envs: Parallel token-env slots.
        n_steps: Env steps (tokens) per slot per update; finished episodes go to the replay buffer.
        buffer_episodes: Replay buffer capacity, in episodes (the oldest are dropped first).
        learning_starts: Updates collect without learning until the buffer holds this many episodes.
        batch_size: Episodes per gradient step.
        gradient_steps: Gradient steps per update.
        gamma: Discount per token.
        alpha: Entropy temperature: ``V(s) = alpha * logsumexp(Q(s, .) / alpha)`` and the policy is
            ``softmax(Q / alpha)``.
        reward_scale: The env's rewards are multiplied by this before learning. With ``alpha = 1``
            the soft-optimal policy puts ``exp(Delta Q)`` times more mass on a token whose answers
            score ``Delta Q`` more, so rewards in ``[0, 1]`` barely move it; Guo et al. likewise
            rescale rewards to a wide range.
        pcl: ``"single"`` (one-step path consistency), ``"multi"`` (to the episode's end) or
            ``"both"`` (their mean, as the paper's best setting).
        polyak: The target network moves ``polyak`` of the way to the trained one after every
            gradient step (1: a copy).
        temperature: Boltzmann exploration: actions are drawn from ``softmax(Q / temperature)``.
    """

    lr: float = 3e-5
    kl_coef: float = 0.02
    temperature: float = 1.0
    num_envs: int = 16
    n_steps: int = 16
    buffer_episodes: int = 4096
    learning_starts: int = 16
    batch_size: int = 32
    gradient_steps: int = 1
    gamma: float = 1.0
    alpha: float = 1.0
    reward_scale: float = 10.0
    pcl: PathConsistency = "both"
    polyak: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        check_int_fields(self, "num_envs", "n_steps", "buffer_episodes", "batch_size", "gradient_steps")
        check_int(f"{owner}.learning_starts", self.learning_starts, minimum=0)
        if self.learning_starts > self.buffer_episodes:
            raise ConfigError(f"{owner}: learning_starts={self.learning_starts} exceeds buffer_episodes="
                              f"{self.buffer_episodes}, so learning would never start. Lower learning_starts.")
        check_probability(f"{owner}.gamma", self.gamma)
        check_positive(f"{owner}.alpha", self.alpha)
        check_positive(f"{owner}.reward_scale", self.reward_scale)
        check_choice(f"{owner}.pcl", self.pcl, PathConsistency, or_words=True)
        check_range(f"{owner}.polyak", self.polyak, 0.0, 1.0, low_open=True)
