"""GRPO: group-relative advantages and a clipped, KL-regularised loss on ``InstructEnv/Completion-v0``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from agents.common.kl import kl_estimate
from agents.common.scoring import masked_mean
from agents.pg.base import CompletionBatch, PolicyGradientTrainer
from agents.pg.config import GRPOConfig

__all__ = ["GRPOTrainer"]


class GRPOTrainer(PolicyGradientTrainer):
    """Group Relative Policy Optimization (Shao et al., 2024).

    Each prompt is answered ``G = group_size`` times; the advantage of completion ``i``
    (shared by all its tokens) is its reward standardised within the group::

        A_i = (r_i - mean_g(r)) / (std_g(r) + adv_eps)        # std with Bessel's correction

    and the loss, for ``update_epochs`` passes over shuffled minibatches, is the paper's
    (eq. 3: a per-token mean inside each completion, then the mean over completions)::

        ratio   = exp(logp - logp_old)                                    # per token
        pg_loss = mean_i mean_t max(-A_i * ratio, -A_i * clip(ratio, 1 - eps, 1 + eps))
        loss    = pg_loss + beta * mean_i mean_t k3(logp, logp_ref)       # kl_in == "loss"

    With ``update_epochs=1`` and one minibatch the ratio is 1 and this is a group-normalised
    REINFORCE step.
    """

    algo = "grpo"
    config_class = GRPOConfig

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        r = rewards.view(-1, self.config.group_size)  # (prompts, G)
        advantages = (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + self.config.adv_eps)
        return advantages.reshape(-1)

    def optimize(self, batch: CompletionBatch, advantages: torch.Tensor) -> dict[str, Any]:
        cfg = self.config
        stats: dict[str, list[float]] = {k: [] for k in ("pg_loss", "kl_loss", "approx_kl", "clip_fraction",
                                                         "grad_norm")}
        for _ in range(cfg.update_epochs):
            for rows in self.minibatches(len(advantages), shuffle=True):
                scores = self.score(batch, rows)
                old_logprobs = self.take_old_scores(batch, rows, scores)  # (b, K)
                mask = batch.token_mask[rows]  # (b, K)
                adv = advantages[rows][:, None]  # (b, 1)

                log_ratio = scores.logprobs - old_logprobs  # (b, K)
                ratio = log_ratio.exp()
                with torch.no_grad():
                    approx_kl = masked_mean((ratio - 1) - log_ratio, mask)
                    clip_fraction = masked_mean(((ratio - 1).abs() > cfg.clip_range).float(), mask)
                pg_loss1 = -adv * ratio
                pg_loss2 = -adv * torch.clamp(ratio, 1 - cfg.clip_range, 1 + cfg.clip_range)
                per_token = torch.max(pg_loss1, pg_loss2)  # (b, K)
                pg_loss = masked_mean(per_token, mask, dim=1).mean()
                loss = pg_loss
                kl_loss = torch.zeros((), device=self.device)
                if cfg.kl_in == "loss" and batch.ref_logprobs is not None:
                    kl = kl_estimate(cfg.kl_estimator, scores.logprobs, batch.ref_logprobs[rows])  # (b, K)
                    kl_loss = masked_mean(kl, mask, dim=1).mean()
                    loss = loss + self.kl_ctl.value * kl_loss

                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = self._clip_and_step()
                for name, value in (("pg_loss", pg_loss), ("kl_loss", kl_loss), ("approx_kl", approx_kl),
                                    ("clip_fraction", clip_fraction), ("grad_norm", grad_norm)):
                    stats[name].append(float(value.detach()) if torch.is_tensor(value) else float(value))
        return {k: float(np.mean(v)) for k, v in stats.items()}
