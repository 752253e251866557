"""The config fields every RL trainer shares (:class:`RLConfig`), importable without torch.

:mod:`agents.common.trainer` re-exports everything here; the algorithm configs
(:mod:`agents.pg.config`, :mod:`agents.ac.config`, :mod:`agents.q.config`) extend :class:`RLConfig`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from agents.common.distributed_config import DistributedConfig, as_distributed_config
from instruct_env import _validation as check
from instruct_env._validation import choices_of
from instruct_env.error import ConfigError

__all__ = ["RLConfig", "KLEstimator", "KLIn", "check_positive_int", "check_range"]

#: KL estimators of :mod:`agents.common.kl` (its ``KL_ESTIMATORS`` has one function per name).
KLEstimator = Literal["k1", "k2", "k3"]
#: Where the KL penalty goes: subtracted from the reward or added to the loss.
KLIn = Literal["reward", "loss"]


def check_positive_int(owner: str, name: str, value: Any, minimum: int = 1) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an int >= ``minimum`` (see :func:`instruct_env._validation.check_int`)."""
    check.check_int(f"{owner}.{name}", value, minimum)


def check_range(owner: str, name: str, value: Any, low: float, high: float, *, low_open: bool = False,
                high_open: bool = False, hint: str = "") -> None:
    """Raise :class:`ConfigError` unless ``low <(=) value <(=) high`` (see :func:`instruct_env._validation.check_range`)."""
    check.check_range(f"{owner}.{name}", value, low, high, low_open=low_open, high_open=high_open, hint=hint)


@dataclass
class RLConfig:
    """Fields shared by every RL trainer config (each algorithm adds its own).

    Attributes:
        lr: Adam learning rate.
        total_updates: Updates :meth:`~agents.common.trainer.RLTrainer.train` runs (one update = one
            batch of experience and the optimisation on it).
        time_budget_s: Stop :meth:`~agents.common.trainer.RLTrainer.train` before the next update once
            this many seconds have been spent in updates (``eval_fn`` calls included; ``None``: no limit).
        eval_every: Call ``eval_fn`` every this many updates (0: never).
        seed: Seeds the environment, the sampling generator and minibatch shuffling.
        device: ``None`` keeps the policy where it is; otherwise the policy is moved there
            (``"auto"``, ``"cpu"``, ``"cuda"``...).
        temperature: The policy is ``softmax(logits / temperature)`` in rollouts *and* in
            the loss, so importance ratios stay exact. Must be > 0.
        max_new_tokens: Completion budget; passed to the environment.
        kl_coef: beta, the weight of KL(policy || reference); the starting value when adaptive.
        kl_target: Target KL in nats per generated token for the adaptive controller
            (Ziegler et al., 2019); ``None`` keeps ``kl_coef`` fixed.
        kl_horizon: Horizon of the adaptive controller, in samples (tokens for actor-critic,
            completions for the policy-gradient trainers).
        kl_estimator: ``"k1"``, ``"k2"`` or ``"k3"`` (see :mod:`agents.common.kl`).
        kl_in: ``"reward"`` (subtract beta * KL from the reward, as Ziegler/InstructGPT) or
            ``"loss"`` (add beta * KL to the loss, as GRPO).
        max_grad_norm: Clip the global gradient norm (``None``: no clipping).
        adam_eps: Adam's epsilon (1e-5 as in CleanRL's PPO).
        distributed: How ranks average gradients in a data-parallel run
            (:class:`~agents.common.distributed_config.DistributedConfig`; ignored in a single process).
    """

    lr: float = 1e-4
    total_updates: int = 100
    time_budget_s: float | None = None
    eval_every: int = 0
    seed: int = 0
    device: str | None = None
    temperature: float = 1.0
    max_new_tokens: int = 32
    kl_coef: float = 0.05
    kl_target: float | None = None
    kl_horizon: float = 10_000.0
    kl_estimator: KLEstimator = "k1"
    kl_in: KLIn = "reward"
    max_grad_norm: float | None = 1.0
    adam_eps: float = 1e-5
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        owner = type(self).__name__
        self.distributed = as_distributed_config(self.distributed, owner)
        check.check_range(f"{owner}.lr", self.lr, 0.0, 1.0, low_open=True, hint=" Typical values are 1e-6 to 1e-3.")
        check.check_int(f"{owner}.total_updates", self.total_updates)
        if self.time_budget_s is not None:
            check.check_positive(f"{owner}.time_budget_s", self.time_budget_s, hint=" Use None for no time limit.")
        check.check_int_fields(self, "eval_every", "seed", minimum=0)
        if self.device is not None and not isinstance(self.device, str):
            raise ConfigError(f"{owner}.device must be None or a device string such as 'cpu' or 'cuda'; "
                              f"got {self.device!r}.")
        check.check_positive(f"{owner}.temperature", self.temperature,
                             hint=" RL needs a stochastic policy; for greedy decoding evaluate with temperature 0 "
                                  "instead.")
        check.check_int(f"{owner}.max_new_tokens", self.max_new_tokens)
        check.check_range(f"{owner}.kl_coef", self.kl_coef, 0.0, math.inf, hint=" Use 0 to disable the KL penalty.")
        if self.kl_target is not None:
            check.check_positive(f"{owner}.kl_target", self.kl_target, hint=" Use None for a fixed kl_coef.")
            if self.kl_coef == 0:
                raise ConfigError(
                    f"{owner}: kl_target={self.kl_target} with kl_coef=0 cannot work: the adaptive controller "
                    "scales beta multiplicatively, so it would stay 0. Set kl_coef to a starting value "
                    "(e.g. 0.05) or kl_target=None."
                )
        check.check_positive(f"{owner}.kl_horizon", self.kl_horizon)
        if self.kl_estimator not in choices_of(KLEstimator):  # this message lists the choices as a Python list
            raise ConfigError(f"{owner}.kl_estimator must be one of {sorted(choices_of(KLEstimator))}; "
                              f"got {self.kl_estimator!r}.")
        check.check_choice(f"{owner}.kl_in", self.kl_in, KLIn, or_words=True)
        if self.kl_in == "loss" and self.kl_estimator == "k1" and self.kl_coef > 0:
            raise ConfigError(
                f"{owner}: kl_in='loss' with kl_estimator='k1' does not penalise KL: the gradient of the "
                "sampled k1 = logp - logp_ref is zero in expectation. Use kl_estimator='k3' (as GRPO) or 'k2', "
                "or put k1 in the reward with kl_in='reward'."
            )
        if self.max_grad_norm is not None:
            check.check_positive(f"{owner}.max_grad_norm", self.max_grad_norm, hint=" Use None for no clipping.")
        check.check_range(f"{owner}.adam_eps", self.adam_eps, 0.0, 1.0, low_open=True)
