"""PPO on ``InstructEnv/Token-v0``: clipped surrogate, clipped value loss, entropy bonus, GAE."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from agents.ac.base import ActorCriticTrainer
from agents.ac.config import PPOConfig
from agents.common import distributed as dist
from agents.common.buffer import Segment
from agents.common.kl import kl_estimate
from agents.common.scoring import masked_mean
from agents.rl import PPO

__all__ = ["PPOTrainer"]


class PPOTrainer(ActorCriticTrainer):
    """Proximal Policy Optimization (Schulman et al., 2017) where every token is an action.

    Each update: a rollout of ``n_steps`` tokens in each of ``num_envs`` slots (see
    :mod:`agents.ac.base`), the reference log-probs and per-token KL, GAE, then
    ``update_epochs`` passes over shuffled minibatches of episode segments. The loss per
    minibatch (means over its action tokens)::

        ratio      = exp(logp - logp_old)
        pg_loss    = mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)))
        value_loss = 0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -eps_v, eps_v) - R)^2))
        loss       = pg_loss - ent_coef * entropy + vf_coef * value_loss [+ beta * KL if kl_in == "loss"]
    """

    algo = PPO.name
    config_class = PPOConfig
    config: PPOConfig

    def optimize(self, segments: list[Segment]) -> dict[str, Any]:
        """Run ``update_epochs`` clipped-objective passes over minibatches of ``segments``; return the mean losses."""
        cfg, buf = self.config, self.buffer
        advantages = self.advantages_for_update()  # (n_steps * N,)
        returns, old_values = buf.returns.reshape(-1), buf.values.reshape(-1)
        old_logprobs, ref_logprobs = buf.logprobs.reshape(-1), buf.ref_logprobs.reshape(-1)
        stats: dict[str, list[float]] = {k: [] for k in ("pg_loss", "value_loss", "entropy", "approx_kl",
                                                         "clip_fraction", "kl_loss", "grad_norm")}
        stopped_at = None
        for epoch in range(cfg.update_epochs):
            for part in self.minibatches(segments, shuffle=True):
                batch = buf.pack(part)
                mask, idx = batch.token_mask, batch.index  # (B, K)
                scores = self.score(batch)
                adv, ret, v_old = advantages[idx], returns[idx], old_values[idx]  # (B, K)

                log_ratio = scores.logprobs - old_logprobs[idx]  # (B, K)
                ratio = log_ratio.exp()
                with torch.no_grad():
                    # k3 estimate of KL(old || new) (Schulman's "Approximating KL divergence"), as CleanRL.
                    approx_kl = masked_mean((ratio - 1) - log_ratio, mask)
                    clip_fraction = masked_mean(((ratio - 1).abs() > cfg.clip_range).float(), mask)
                    if cfg.target_kl is not None:  # every rank must take the same decision
                        approx_kl = dist.all_reduce_mean(approx_kl)
                if cfg.target_kl is not None and approx_kl > 1.5 * cfg.target_kl:
                    stopped_at = epoch  # as Stable-Baselines3: stop before a step that would go too far
                    break

                pg_loss1 = -adv * ratio
                pg_loss2 = -adv * torch.clamp(ratio, 1 - cfg.clip_range, 1 + cfg.clip_range)
                pg_loss = masked_mean(torch.max(pg_loss1, pg_loss2), mask)

                values = scores.values  # (B, K)
                assert values is not None  # scored with the policy, an ActorCritic: it has values
                if cfg.clip_range_vf is None:
                    value_loss = 0.5 * masked_mean((values - ret) ** 2, mask)
                else:
                    values_clipped = v_old + torch.clamp(values - v_old, -cfg.clip_range_vf, cfg.clip_range_vf)
                    value_loss = 0.5 * masked_mean(torch.max((values - ret) ** 2, (values_clipped - ret) ** 2), mask)

                entropy = masked_mean(scores.entropy, mask)
                loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * value_loss
                kl_loss = torch.zeros((), device=self.device)
                if cfg.kl_in == "loss":
                    kl_loss = masked_mean(kl_estimate(cfg.kl_estimator, scores.logprobs, ref_logprobs[idx]), mask)
                    loss = loss + self.kl_ctl.value * kl_loss

                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = self._clip_and_step()
                for name, value in (("pg_loss", pg_loss), ("value_loss", value_loss), ("entropy", entropy),
                                    ("approx_kl", approx_kl), ("clip_fraction", clip_fraction),
                                    ("kl_loss", kl_loss), ("grad_norm", grad_norm)):
                    stats[name].append(float(value.detach()) if torch.is_tensor(value) else float(value))
            if stopped_at is not None:
                break
        out: dict[str, Any] = {k: float(np.mean(v)) if v else float("nan") for k, v in stats.items()}
        out["early_stop_epoch"] = -1 if stopped_at is None else stopped_at
        return out
