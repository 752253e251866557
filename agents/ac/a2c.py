"""A2C on ``InstructEnv/Token-v0``: one on-policy gradient step per rollout."""

from __future__ import annotations

from typing import Any

import torch

from agents.ac.base import ActorCriticTrainer
from agents.ac.config import A2CConfig
from agents.common import distributed as dist
from agents.common.buffer import Segment
from agents.common.kl import kl_estimate
from agents.rl import A2C

__all__ = ["A2CTrainer"]


class A2CTrainer(ActorCriticTrainer):
    """Synchronous advantage actor-critic (Mnih et al., 2016) where every token is an action.

    Same rollouts and advantages as :class:`~agents.ac.ppo.PPOTrainer`, but each batch is
    used for exactly one gradient step with the plain policy gradient (no ratio, no
    clipping). With ``num_minibatches > 1`` the gradients of the minibatches are accumulated
    (each term divided by the rollout's token count), so the step is the full-batch one::

        pg_loss    = -mean(A * logp)
        value_loss = 0.5 * mean((V - R)^2)
        loss       = pg_loss - ent_coef * entropy + vf_coef * value_loss [+ beta * KL if kl_in == "loss"]
    """

    algo = A2C.name
    config_class = A2CConfig
    config: A2CConfig

    def optimize(self, segments: list[Segment]) -> dict[str, Any]:
        """Take one gradient step on the whole rollout (minibatch gradients accumulated); return the losses."""
        cfg, buf = self.config, self.buffer
        advantages = self.advantages_for_update()  # (n_steps * N,)
        returns, ref_logprobs = buf.returns.reshape(-1), buf.ref_logprobs.reshape(-1)
        n_tokens = float(buf.n_steps * buf.num_envs)
        totals = {"pg_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "kl_loss": 0.0}
        self.optimizer.zero_grad(set_to_none=True)
        parts = self.minibatches(segments, shuffle=False)
        for i, part in enumerate(parts):
            with dist.maybe_no_sync(self.train_module, sync=i == len(parts) - 1):  # average once, after the last
                batch = buf.pack(part)
                mask, idx = batch.token_mask.float(), batch.index  # (B, K)
                scores = self.score(batch)
                assert scores.values is not None  # scored with the policy, an ActorCritic: it has values

                # Sums divided by the rollout's token count: accumulated over minibatches, full-batch means.
                pg_loss = -(advantages[idx] * scores.logprobs * mask).sum() / n_tokens
                value_loss = 0.5 * (((scores.values - returns[idx]) ** 2) * mask).sum() / n_tokens
                entropy = (scores.entropy * mask).sum() / n_tokens
                loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * value_loss
                kl_loss = torch.zeros((), device=self.device)
                if cfg.kl_in == "loss":
                    kl = kl_estimate(cfg.kl_estimator, scores.logprobs, ref_logprobs[idx])  # (B, K)
                    kl_loss = (kl * mask).sum() / n_tokens
                    loss = loss + self.kl_ctl.value * kl_loss
                loss.backward()
                for name, value in (("pg_loss", pg_loss), ("value_loss", value_loss), ("entropy", entropy),
                                    ("kl_loss", kl_loss)):
                    totals[name] += float(value.detach())
        totals["grad_norm"] = self._clip_and_step()
        return totals
