"""Configs of the policy-gradient trainers (REINFORCE, GRPO, RLOO) on ``InstructEnv/Completion-v0``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from agents.common.rl_config import KLEstimator, KLIn, RLConfig
from instruct_env._validation import check_choice, check_int, check_int_fields, check_range
from instruct_env.error import ConfigError

__all__ = ["PolicyGradientConfig", "ReinforceConfig", "GRPOConfig", "RLOOConfig", "Baseline", "AdvantageScale",
           "LossAggregation", "ImportanceRatio"]

#: :attr:`ReinforceConfig.baseline`.
Baseline = Literal["moving_average", "batch_mean", "none"]
#: :attr:`GRPOConfig.advantage_scale`.
AdvantageScale = Literal["group", "batch", "family", "none"]
#: :attr:`GRPOConfig.loss_aggregation`.
LossAggregation = Literal["grpo", "dapo", "dr_grpo"]
#: :attr:`GRPOConfig.importance_ratio`.
ImportanceRatio = Literal["token", "sequence"]


@dataclass
class PolicyGradientConfig(RLConfig):
    """Fields shared by the whole-completion trainers (see :class:`RLConfig` for the rest).

    Attributes:
        num_envs: Completions per update: ``num_envs // group_size`` prompts, each answered
            ``group_size`` times.
        group_size: Completions sampled per prompt.
        num_minibatches: Completions per update are scored in this many forward passes.
    """

    lr: float = 3e-5
    num_envs: int = 64
    group_size: int = 1
    num_minibatches: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        check_int_fields(self, "num_envs", "group_size", "num_minibatches")
        if self.num_envs % self.group_size:
            fix = max(self.group_size, self.num_envs // self.group_size * self.group_size)
            raise ConfigError(
                f"{owner}: num_envs={self.num_envs} is not a multiple of group_size={self.group_size} (each prompt "
                f"is answered group_size times). Use num_envs={fix} or another multiple of {self.group_size}."
            )
        if self.num_minibatches > self.num_envs:
            raise ConfigError(
                f"{owner}: num_minibatches={self.num_minibatches} is more than num_envs={self.num_envs} completions "
                f"per update. Lower num_minibatches to at most {self.num_envs}."
            )


def _check_groups(config: PolicyGradientConfig, why: str) -> None:
    if config.group_size < 2:
        raise ConfigError(
            f"{type(config).__name__}.group_size must be >= 2 ({why}); got {config.group_size}. "
            "Typical values are 4-16."
        )


@dataclass
class ReinforceConfig(PolicyGradientConfig):
    """REINFORCE (Williams, 1992) with a baseline.

    Attributes:
        baseline: ``"moving_average"`` (an exponential moving average of past batches' mean
            reward, so a completion's own reward never enters its baseline), ``"batch_mean"``
            (the current batch's mean) or ``"none"``.
        baseline_decay: Decay of the moving average (its weight on the past).
    """

    baseline: Baseline = "moving_average"
    baseline_decay: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("ReinforceConfig.baseline", self.baseline, Baseline, or_words=True)
        check_range("ReinforceConfig.baseline_decay", self.baseline_decay, 0.0, 1.0, high_open=True)


@dataclass
class GRPOConfig(PolicyGradientConfig):
    """Group Relative Policy Optimization (Shao et al., 2024, DeepSeekMath).

    The KL penalty is the k3 estimator in the loss, with beta = ``kl_coef``, as in the paper.

    The variants of later papers are options (the defaults are the paper's GRPO):

    - Dr. GRPO (Liu et al., 2025, "Understanding R1-Zero-Like Training"):
      ``loss_aggregation="dr_grpo", advantage_scale="none"``;
    - DAPO (Yu et al., 2025): ``loss_aggregation="dapo"``, ``dynamic_sampling=True`` and the
      soft overlong penalty (``overlong_buffer > 0``);
    - GSPO (Zheng et al., 2025, "Group Sequence Policy Optimization"): ``importance_ratio="sequence"``.

    Attributes:
        update_epochs: Passes over each batch (the paper's mu); above 1 the clipped ratio matters.
        clip_range: Clip of the probability ratio (per token, or per sequence with GSPO).
        adv_eps: Added to the reward standard deviation that scales the advantages.
        advantage_scale: What the group-centred reward ``r_i - mean_g(r)`` is divided by:
            ``"group"`` its group's reward std (GRPO), ``"batch"`` the std of all rewards in the
            update, ``"family"`` the std of the rewards of the prompt's task family in the update
            (families with small reward differences are not inflated to unit scale, and every
            family's advantages have one scale), ``"none"`` nothing (Dr. GRPO).
        loss_aggregation: How per-token losses become the loss: ``"grpo"`` mean over each
            completion's tokens, then over completions; ``"dapo"`` one mean over all tokens of the
            update (longer answers weigh more); ``"dr_grpo"`` each completion's sum divided by the
            constant ``max_new_tokens`` (no length normalisation), then the mean over completions.
        importance_ratio: ``"token"`` (GRPO, PPO) or ``"sequence"``: GSPO's
            ``s_i = exp(mean_t(logp - logp_old))`` of each completion, clipped as one.
        dynamic_sampling: Drop groups whose rewards are all equal (they carry no advantage) and
            sample more prompts to refill the update, for at most ``max_sampling_rounds`` rounds
            of rollouts (DAPO). The logged ``reward_mean`` covers every sampled completion;
            ``frac_groups_mixed`` is the share of informative groups among them.
        max_sampling_rounds: Rollout rounds per update with dynamic sampling.
        overlong_buffer: DAPO's soft overlong punishment: a completion longer than
            ``max_new_tokens - overlong_buffer`` tokens loses up to ``overlong_penalty`` of reward,
            linearly, reaching it at ``max_new_tokens`` (0: off). Shapes the advantages only; the
            logged rewards stay the task's.
        overlong_penalty: The largest penalty.
    """

    group_size: int = 8
    kl_coef: float = 0.04
    kl_estimator: KLEstimator = "k3"
    kl_in: KLIn = "loss"
    update_epochs: int = 1
    clip_range: float = 0.2
    adv_eps: float = 1e-4
    advantage_scale: AdvantageScale = "group"
    loss_aggregation: LossAggregation = "grpo"
    importance_ratio: ImportanceRatio = "token"
    dynamic_sampling: bool = False
    max_sampling_rounds: int = 3
    overlong_buffer: int = 0
    overlong_penalty: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_groups(self, "advantages are relative to the other completions of the same prompt")
        check_int("GRPOConfig.update_epochs", self.update_epochs)
        check_range("GRPOConfig.clip_range", self.clip_range, 0.0, 1.0, low_open=True, high_open=True,
                    hint=" Typical values are 0.1-0.3.")
        check_range("GRPOConfig.adv_eps", self.adv_eps, 0.0, 1.0, low_open=True)
        check_choice("GRPOConfig.advantage_scale", self.advantage_scale, AdvantageScale)
        check_choice("GRPOConfig.loss_aggregation", self.loss_aggregation, LossAggregation)
        check_choice("GRPOConfig.importance_ratio", self.importance_ratio, ImportanceRatio)
        check_int("GRPOConfig.max_sampling_rounds", self.max_sampling_rounds)
        check_int("GRPOConfig.overlong_buffer", self.overlong_buffer, minimum=0)
        if self.overlong_buffer > self.max_new_tokens:
            raise ConfigError(
                f"GRPOConfig.overlong_buffer={self.overlong_buffer} is longer than max_new_tokens="
                f"{self.max_new_tokens}; use at most max_new_tokens (typically a quarter of it)."
            )
        check_range("GRPOConfig.overlong_penalty", self.overlong_penalty, 0.0, math.inf)


@dataclass
class RLOOConfig(PolicyGradientConfig):
    """REINFORCE Leave-One-Out (Kool et al., 2019; Ahmadian et al., 2024).

    The KL penalty is subtracted from each completion's reward (summed over its tokens), as
    in Ahmadian et al.
    """

    group_size: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_groups(self, "the baseline of a completion is the mean reward of the others for its prompt")
