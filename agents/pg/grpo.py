"""GRPO: group-relative advantages and a clipped, KL-regularised loss on ``InstructEnv/Completion-v0``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from agents.common import distributed as dist
from agents.common.kl import kl_estimate
from agents.common.scoring import masked_mean
from agents.pg.base import CompletionBatch, PolicyGradientTrainer
from agents.pg.config import GRPOConfig
from agents.rl import GRPO

__all__ = ["GRPOTrainer", "overlong_penalty", "concat_batches"]


class GRPOTrainer(PolicyGradientTrainer):
    """Group Relative Policy Optimization (Shao et al., 2024), with the later variants as options.

    Each prompt is answered ``G = group_size`` times; the advantage of completion ``i``
    (shared by all its tokens) is its reward centred on its group, then scaled
    (``advantage_scale``; the paper divides by the group's std)::

        A_i = (r_i - mean_g(r)) / (std_g(r) + adv_eps)        # std with Bessel's correction

    and the loss, for ``update_epochs`` passes over shuffled minibatches, is the paper's
    (eq. 3: a per-token mean inside each completion, then the mean over completions)::

        ratio   = exp(logp - logp_old)                                    # per token
        pg_loss = mean_i mean_t max(-A_i * ratio, -A_i * clip(ratio, 1 - eps, 1 + eps))
        loss    = pg_loss + beta * mean_i mean_t k3(logp, logp_ref)       # kl_in == "loss"

    ``loss_aggregation`` changes the two means (DAPO: one mean over all tokens; Dr. GRPO: sums
    over tokens divided by ``max_new_tokens``); ``importance_ratio="sequence"`` replaces the
    per-token ratio by GSPO's ``s_i = exp(mean_t(logp - logp_old))``, clipped per completion.
    With ``update_epochs=1`` and one minibatch the ratio is 1 and this is a group-normalised
    REINFORCE step.
    """

    algo = GRPO.name
    config_class = GRPOConfig
    config: GRPOConfig

    # ----------------------------------------------------------------- experience
    def collect(self) -> CompletionBatch:
        """One round of rollouts; with ``dynamic_sampling``, more rounds until the informative groups fill it."""
        batch = super().collect()
        cfg = self.config
        if not cfg.dynamic_sampling:
            return batch
        G, wanted = cfg.group_size, len(batch.rewards) // cfg.group_size
        rounds = [batch]
        while True:
            informative = sum(int(_mixed_groups(b.rewards, G).sum()) for b in rounds)
            # Every rank samples the same number of rounds (sampling may gather sharded weights).
            short = dist.all_reduce_sum(torch.tensor([float(informative < wanted)]))
            if float(short.sum()) == 0 or len(rounds) >= cfg.max_sampling_rounds:
                break
            rounds.append(super().collect())
        everything = concat_batches(rounds, self.env.setup.pad_token_id)
        mixed = np.flatnonzero(_mixed_groups(everything.rewards, G).cpu().numpy())[:wanted]
        if len(mixed) == 0:  # nothing informative: train on the first round (all advantages are 0)
            keep = np.arange(len(batch.rewards))
        else:
            keep = (mixed[:, None] * G + np.arange(G)[None, :]).reshape(-1)
        rows = torch.as_tensor(keep, device=self.device)
        kept = CompletionBatch(
            context_ids=everything.context_ids[rows], context_mask=everything.context_mask[rows],
            tokens=everything.tokens[rows], token_mask=everything.token_mask[rows],
            rewards=everything.rewards[rows], tasks=[everything.tasks[i] for i in keep] if everything.tasks else None,
            sampled_rewards=everything.rewards, sampled_tasks=everything.tasks,
        )
        K = max(1, int(kept.token_mask.sum(1).max()))
        kept.tokens, kept.token_mask = kept.tokens[:, :K], kept.token_mask[:, :K]
        self._sampling_rounds = len(rounds)
        return kept

    def shaped_rewards(self, batch: CompletionBatch) -> torch.Tensor:
        """The task rewards minus DAPO's soft overlong penalty (when ``overlong_buffer > 0``)."""
        cfg = self.config
        if cfg.overlong_buffer == 0:
            return batch.rewards
        lengths = batch.token_mask.sum(1)
        return batch.rewards + overlong_penalty(lengths, cfg.max_new_tokens, cfg.overlong_buffer,
                                                cfg.overlong_penalty).to(batch.rewards.dtype)

    # ----------------------------------------------------------------- advantages and loss
    def advantages(self, rewards: torch.Tensor, tasks: list[str] | None = None) -> torch.Tensor:
        """(N,) rewards centred on their group's mean and divided by the ``advantage_scale`` std."""
        cfg = self.config
        r = rewards.view(-1, cfg.group_size)  # (prompts, G)
        centred = r - r.mean(1, keepdim=True)
        if cfg.advantage_scale == "group":
            scale = r.std(1, keepdim=True)
        elif cfg.advantage_scale == "batch":
            scale = rewards.std().expand_as(r[:, :1])
        elif cfg.advantage_scale == "family":
            scale = _family_std(rewards, tasks, cfg.group_size).view(-1, 1)
        else:
            return centred.reshape(-1)
        return (centred / (scale + cfg.adv_eps)).reshape(-1)

    def optimize(self, batch: CompletionBatch, advantages: torch.Tensor) -> dict[str, Any]:
        """``update_epochs`` passes of the clipped loss over shuffled minibatches; return the mean losses."""
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
                if cfg.importance_ratio == "sequence":  # GSPO: one length-normalised ratio per completion
                    log_ratio = masked_mean(log_ratio, mask, dim=1)[:, None].expand_as(log_ratio)
                ratio = log_ratio.exp()
                with torch.no_grad():
                    approx_kl = masked_mean((ratio - 1) - log_ratio, mask)
                    clip_fraction = masked_mean(((ratio - 1).abs() > cfg.clip_range).float(), mask)
                pg_loss1 = -adv * ratio
                pg_loss2 = -adv * torch.clamp(ratio, 1 - cfg.clip_range, 1 + cfg.clip_range)
                per_token = torch.max(pg_loss1, pg_loss2)  # (b, K)
                pg_loss = self.aggregate(per_token, mask)
                loss = pg_loss
                kl_loss = torch.zeros((), device=self.device)
                if cfg.kl_in == "loss" and batch.ref_logprobs is not None:
                    kl = kl_estimate(cfg.kl_estimator, scores.logprobs, batch.ref_logprobs[rows])  # (b, K)
                    kl_loss = self.aggregate(kl, mask)
                    loss = loss + self.kl_ctl.value * kl_loss

                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = self._clip_and_step()
                for name, value in (("pg_loss", pg_loss), ("kl_loss", kl_loss), ("approx_kl", approx_kl),
                                    ("clip_fraction", clip_fraction), ("grad_norm", grad_norm)):
                    stats[name].append(float(value.detach()) if torch.is_tensor(value) else float(value))
        out = {k: float(np.mean(v)) for k, v in stats.items()}
        if cfg.dynamic_sampling:
            out["sampling_rounds"] = float(getattr(self, "_sampling_rounds", 1))
        return out

    def aggregate(self, per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(b, K) per-token terms -> the scalar loss term, per ``loss_aggregation``."""
        how = self.config.loss_aggregation
        if how == "grpo":
            return masked_mean(per_token, mask, dim=1).mean()
        if how == "dapo":
            return masked_mean(per_token, mask)
        return ((per_token * mask).sum(1) / self.config.max_new_tokens).mean()  # dr_grpo


def _mixed_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(prompts,) bool: the groups whose rewards are not all equal."""
    groups = rewards.view(-1, group_size)
    return groups.max(1).values > groups.min(1).values


def _family_std(rewards: torch.Tensor, tasks: list[str] | None, group_size: int) -> torch.Tensor:
    """(prompts,) std of the rewards of each group's task family in this batch (the batch's without tasks)."""
    groups = len(rewards) // group_size
    if tasks is None:
        return rewards.std().expand(groups)
    families = [tasks[g * group_size] for g in range(groups)]
    std = {}
    for family in set(families):
        rows = torch.tensor([i for i, t in enumerate(tasks) if t == family], device=rewards.device)
        std[family] = rewards[rows].std() if len(rows) > 1 else rewards.new_zeros(())
    return torch.stack([std[f] for f in families])


def overlong_penalty(lengths: torch.Tensor, max_tokens: int, buffer: int, penalty: float = 1.0) -> torch.Tensor:
    """DAPO's soft overlong punishment (Yu et al., 2025, eq. 13), scaled by ``penalty``.

    0 up to ``max_tokens - buffer`` tokens, then falling linearly to ``-penalty`` at ``max_tokens``.

    >>> overlong_penalty(torch.tensor([10, 24, 28, 32]), max_tokens=32, buffer=8).tolist()
    [0.0, 0.0, -0.5, -1.0]
    """
    if buffer == 0:
        return torch.zeros(lengths.shape, dtype=torch.float32, device=lengths.device)
    excess = (lengths.float() - (max_tokens - buffer)).clamp(min=0.0)
    return 0.0 - penalty * (excess / buffer).clamp(max=1.0)  # 0.0 - x: no -0.0 for in-budget answers


def concat_batches(batches: list[CompletionBatch], pad_id: int) -> CompletionBatch:
    """Stack the rows of several rounds of rollouts (completions right-padded to one length)."""
    if len(batches) == 1:
        return batches[0]
    K = max(b.tokens.shape[1] for b in batches)

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, K - t.shape[1]), value=value)

    task_lists = [b.tasks for b in batches]
    tasks = ([t for ts in task_lists if ts is not None for t in ts]
             if all(ts is not None for ts in task_lists) else None)
    return CompletionBatch(
        context_ids=torch.cat([b.context_ids for b in batches]), context_mask=torch.cat([b.context_mask for b in batches]),
        tokens=torch.cat([pad(b.tokens, pad_id) for b in batches]),
        token_mask=torch.cat([pad(b.token_mask, 0) for b in batches]),
        rewards=torch.cat([b.rewards for b in batches]), tasks=tasks,
    )
