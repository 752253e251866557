"""KL divergence to the reference model: per-token estimators and the KL coefficient controller.

The policy samples token ``a`` with probability ``p = pi(a|s)``; the frozen reference gives
``p_ref = pi_ref(a|s)``. With ``r = p_ref / p`` (so ``log r = logp_ref - logp``), the per-token
Monte-Carlo estimators of ``KL(pi || pi_ref)`` from Schulman's note "Approximating KL divergence"
(2020) are:

- ``k1 = log p - log p_ref = -log r``: unbiased, high variance, can be negative. This is the
  penalty Ziegler et al. (2019) and InstructGPT put in the per-token reward.
- ``k2 = (log r)^2 / 2``: biased, low variance, always >= 0.
- ``k3 = (r - 1) - log r``: unbiased, low variance, always >= 0. GRPO (Shao et al., 2024) puts
  it in the loss.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from instruct_env.error import ConfigError, unknown_name

__all__ = ["KL_ESTIMATORS", "kl_k1", "kl_k2", "kl_k3", "kl_estimate", "KLController"]


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """``log p - log p_ref`` per token (same shape as the inputs)."""
    return logp - ref_logp


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """``(log p_ref - log p)^2 / 2`` per token."""
    return 0.5 * (ref_logp - logp) ** 2


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """``(r - 1) - log r`` with ``r = p_ref / p``, per token.

    >>> import torch
    >>> float(kl_k3(torch.tensor(-1.0), torch.tensor(-1.0)))
    0.0
    """
    log_ratio = ref_logp - logp
    return torch.expm1(log_ratio) - log_ratio


#: Estimator name -> function ``(logp, ref_logp) -> per-token KL``.
KL_ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def kl_estimate(name: str, logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL with the estimator called ``name`` (``"k1"``, ``"k2"`` or ``"k3"``)."""
    if name not in KL_ESTIMATORS:
        raise unknown_name("KL estimator", name, KL_ESTIMATORS)
    return KL_ESTIMATORS[name](logp, ref_logp)


class KLController:
    """The KL coefficient beta: fixed, or adapted toward a target KL.

    With ``target=None`` beta stays at ``init_coef``. Otherwise it follows the proportional
    controller of Ziegler et al. (2019, eq. 2): after a batch with measured KL ``kl`` that
    took ``n_steps`` samples,

        error = clip(kl / target - 1, -0.2, 0.2)
        beta  = beta * (1 + error * n_steps / horizon)

    so beta grows when the policy drifts further than ``target`` from the reference and
    shrinks when it stays closer. ``target`` is in the unit the trainer measures (here:
    mean nats per generated token).

    Args:
        init_coef: Starting beta (>= 0).
        target: Target KL, or ``None`` for a fixed coefficient.
        horizon: Samples over which a sustained 20% error changes beta by a factor ~e^0.2.
    """

    def __init__(self, init_coef: float, target: float | None = None, horizon: float = 10_000) -> None:
        if not (init_coef >= 0 and math.isfinite(init_coef)):
            raise ConfigError(f"KL coefficient must be a finite number >= 0; got {init_coef!r}.")
        if target is not None and not target > 0:
            raise ConfigError(f"KL target must be > 0 (or None for a fixed coefficient); got {target!r}.")
        if not horizon > 0:
            raise ConfigError(f"KL horizon must be > 0; got {horizon!r}.")
        self.value = float(init_coef)
        self.target = target
        self.horizon = float(horizon)

    @property
    def adaptive(self) -> bool:
        """Whether beta adapts to a target KL (else it stays fixed)."""
        return self.target is not None

    def update(self, kl: float, n_steps: int) -> float:
        """Adapt beta after a batch of ``n_steps`` samples with mean KL ``kl``; return the new beta."""
        if self.target is not None and math.isfinite(kl):
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict[str, Any]:
        """The current beta and the settings, for a checkpoint."""
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self.value, self.target, self.horizon = float(state["value"]), state["target"], float(state["horizon"])
