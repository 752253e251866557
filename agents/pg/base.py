"""Whole-completion policy gradient on ``InstructEnv/Completion-v0``: what REINFORCE, GRPO and RLOO share.

One update: take the prompts of the current observation (``num_envs // group_size`` prompts,
each repeated in ``group_size`` consecutive slots), sample one completion per slot with
:func:`~agents.common.generation.generate`, get the rewards from ``env.step(tokens)`` (which
also returns the next prompts), re-score the completions with the policy and the frozen
reference (no gradient), turn rewards into advantages (the only thing the three algorithms
disagree on, with GRPO's clipped loss), and optimise. Each minibatch is scored with one
forward pass over ``prompt + completion``.

Sequence log-probability: REINFORCE and RLOO use ``log pi(y|x) = sum_t log pi(y_t | x, y_<t)``,
the exact log-likelihood of the completion the estimator differentiates; GRPO averages its
per-token terms over each completion's tokens and then over completions, as in the paper.

Data parallel: each rank samples its own ``num_envs`` completions; every group of
``group_size`` answers to one prompt lives on one rank, so GRPO's and RLOO's group baselines
need no communication. REINFORCE's batch-mean baseline, the KL the adaptive controller sees and
the logged statistics are global (reduced over ranks); gradients are averaged over ranks.
With ``distributed.strategy="fsdp"`` the LM is sharded; sampling, whose number of forward passes
differs between ranks, runs on the gathered LM (:func:`~agents.common.distributed.gathered`),
and the scoring passes (the same number on every rank) run sharded.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.common import distributed as dist
from agents.common.device import autocast
from agents.common.generation import SamplingConfig, generate
from agents.common.kl import kl_estimate
from agents.common.scoring import TokenScores, score_tokens
from agents.common.trainer import RLTrainer
from agents.pg.config import PolicyGradientConfig

__all__ = ["PolicyGradientTrainer", "CompletionBatch", "family_means"]


@dataclass
class CompletionBatch:
    """One update's prompts, sampled completions and what the trainer computed about them.

    Attributes:
        context_ids: (N, P) left-padded prompts.
        context_mask: (N, P)
        tokens: (N, K) completions (EOS included), right-padded; K = the longest completion.
        token_mask: (N, K) 1 on completion tokens.
        rewards: (N,) task rewards from the environment.
        old_logprobs: (N, K) log-probs under the policy that sampled (no gradient).
        ref_logprobs: (N, K) log-probs under the frozen reference.
        entropy: (N, K) policy entropy at each position.
        tasks: The task family of each completion's prompt.
        sampled_rewards: Rewards of every completion sampled for this update, when the batch
            keeps only some of them (dynamic sampling); ``None``: they are ``rewards``.
        sampled_tasks: Their task families.
    """

    context_ids: torch.Tensor
    context_mask: torch.Tensor
    tokens: torch.Tensor
    token_mask: torch.Tensor
    rewards: torch.Tensor
    old_logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    tasks: list[str] | None = None
    sampled_rewards: torch.Tensor | None = None
    sampled_tasks: list[str] | None = None


class PolicyGradientTrainer(RLTrainer):
    """Samples whole completions and learns from their rewards; subclasses give the advantages."""

    env_id = "InstructEnv/Completion-v0"
    config: PolicyGradientConfig
    #: (answers that used the whole max_new_tokens budget, answers) over the current update's rollouts
    _length_limited: tuple[int, int] = (0, 0)

    def _make_env(self, env_kwargs: dict[str, Any]):
        return gym.make_vec(self.env_id, num_envs=self.config.num_envs, vectorization_mode="vector_entry_point",
                            group_size=self.config.group_size, **env_kwargs)

    def _start(self) -> None:
        self._obs, _ = self.env.reset(seed=self.seed)

    def _extra_state(self) -> dict[str, Any]:
        return {"obs": self._obs}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self._obs = state["obs"]

    # ----------------------------------------------------------------- experience
    @torch.no_grad()
    def collect(self) -> CompletionBatch:
        """Sample a completion in every slot and step the environment with them."""
        cfg = self.config
        ids = torch.as_tensor(self._obs["input_ids"], device=self.device)  # (N, P)
        mask = torch.as_tensor(self._obs["attention_mask"], device=self.device)
        # A sharded LM is gathered once: each rank stops sampling when its own completions end.
        with dist.gathered(self.policy.lm) as lm, autocast(self.device):
            gen = generate(lm, ids, mask, cfg.max_new_tokens, self.env.setup.eos_token_id,
                           self.env.setup.pad_token_id, SamplingConfig(temperature=cfg.temperature), self.generator)
        tasks = [sample.task for sample in self.env.samples]
        self._obs, rewards, _, _, infos = self.env.step(gen.tokens.cpu().numpy())
        limited = infos["final_info"]["length_limited"]  # answers that used the whole token budget
        self._length_limited = (self._length_limited[0] + int(limited.sum()), self._length_limited[1] + len(limited))
        K = int(gen.lengths.max())
        return CompletionBatch(context_ids=ids, context_mask=mask, tokens=gen.tokens[:, :K],
                               token_mask=gen.mask[:, :K],
                               rewards=torch.as_tensor(rewards, dtype=torch.float32, device=self.device),
                               tasks=tasks)

    def minibatches(self, n: int, shuffle: bool) -> list[np.ndarray]:
        """Split row indices ``0..n-1`` into ``num_minibatches`` groups, in a random order if ``shuffle``."""
        order = self.np_rng.permutation(n) if shuffle else np.arange(n)
        return np.array_split(order, min(self.config.num_minibatches, n))

    def score(self, batch: CompletionBatch, rows: np.ndarray | slice, model=None) -> TokenScores:
        """Score the completions in ``rows`` with the policy's LM (or ``model``).

        With gradients on, the LM is called through ``self.train_module`` (its DDP wrapper in a
        data-parallel run), so that the backward pass averages the gradients over ranks.
        """
        if model is None:
            model = self.train_module if torch.is_grad_enabled() else self.policy.lm
        with autocast(self.device):
            return score_tokens(model, batch.context_ids[rows],
                                batch.context_mask[rows], batch.tokens[rows], batch.token_mask[rows],
                                self.config.temperature)

    @torch.no_grad()
    def score_old_and_reference(self, batch: CompletionBatch, old: bool = True, reference: bool = True) -> None:
        """Fill ``ref_logprobs`` (with ``reference``) and ``old_logprobs``/``entropy`` (with ``old``)."""
        if reference:
            refs = []
            with self.policy.reference() as ref_lm:
                for rows in self.minibatches(len(batch.rewards), shuffle=False):
                    refs.append(self.score(batch, rows, ref_lm).logprobs)
            batch.ref_logprobs = torch.cat(refs)
        if not old:
            return
        olds, ents = [], []
        for rows in self.minibatches(len(batch.rewards), shuffle=False):
            scores = self.score(batch, rows)
            olds.append(scores.logprobs)
            ents.append(scores.entropy)
        batch.old_logprobs, batch.entropy = torch.cat(olds), torch.cat(ents)

    def fused_old_scores(self) -> bool:
        """Whether the update's own (single) forward pass can provide the old log-probs.

        True when the batch is optimised in one pass of one minibatch and the KL is not in the
        reward (which would need the old log-probs before the advantages): the old log-probs
        are then those of the policy in that very forward, detached (the ratio is exactly 1),
        and a separate no-gradient scoring pass would only repeat it.
        """
        cfg = self.config
        return cfg.kl_in == "loss" and cfg.num_minibatches == 1 and getattr(cfg, "update_epochs", 1) == 1

    @staticmethod
    def take_old_scores(batch: CompletionBatch, rows: np.ndarray, scores: TokenScores) -> torch.Tensor:
        """The old log-probs of ``rows``, filled from ``scores`` (detached) when not yet known."""
        if batch.old_logprobs is None:
            n, K = batch.tokens.shape
            batch.old_logprobs = scores.logprobs.new_zeros(n, K)
            batch.entropy = scores.entropy.new_zeros(n, K)
            batch.old_logprobs[rows] = scores.logprobs.detach()
            batch.entropy[rows] = scores.entropy.detach()
        return batch.old_logprobs[rows]

    # ----------------------------------------------------------------- algorithm hooks
    def advantages(self, rewards: torch.Tensor, tasks: list[str] | None = None) -> torch.Tensor:
        """(N,) advantages of the completions from their (N,) rewards (and prompts' task families)."""
        raise NotImplementedError

    def shaped_rewards(self, batch: CompletionBatch) -> torch.Tensor:
        """(N,) rewards the advantages are computed from (the task rewards; GRPO may add a length penalty)."""
        return batch.rewards

    def optimize(self, batch: CompletionBatch, advantages: torch.Tensor) -> dict[str, Any]:
        """One on-policy gradient step: ``-mean_i(A_i * sum_t logp_it)``, accumulated over minibatches."""
        N = float(len(advantages))
        totals = {"pg_loss": 0.0, "kl_loss": 0.0}
        self.optimizer.zero_grad(set_to_none=True)
        parts = self.minibatches(len(advantages), shuffle=False)
        for i, rows in enumerate(parts):
            with dist.maybe_no_sync(self.train_module, sync=i == len(parts) - 1):  # average once, after the last
                losses = self._minibatch_loss(batch, advantages, rows, N)
            for name in totals:
                totals[name] += losses[name]
        totals["grad_norm"] = self._clip_and_step()
        return totals

    def _minibatch_loss(self, batch: CompletionBatch, advantages: torch.Tensor, rows: np.ndarray,
                        N: float) -> dict[str, float]:
        """Back-propagate the minibatch ``rows``'s share of :meth:`optimize`'s loss; return its terms."""
        cfg = self.config
        scores = self.score(batch, rows)
        self.take_old_scores(batch, rows, scores)  # fills them in the fused single-pass case
        mask = batch.token_mask[rows].float()  # (b, K)
        seq_logprob = (scores.logprobs * mask).sum(1)  # (b,) log pi(y | x)
        # Sums divided by the batch size: accumulated over minibatches they are full-batch means.
        pg_loss = -(advantages[rows] * seq_logprob).sum() / N
        loss = pg_loss
        kl_loss = torch.zeros((), device=self.device)
        if cfg.kl_in == "loss" and batch.ref_logprobs is not None:
            kl = kl_estimate(cfg.kl_estimator, scores.logprobs, batch.ref_logprobs[rows])  # (b, K)
            kl_loss = (kl * mask).sum() / N  # per-completion KL (summed over tokens), averaged
            loss = loss + self.kl_ctl.value * kl_loss
        loss.backward()
        return {"pg_loss": float(pg_loss.detach()), "kl_loss": float(kl_loss.detach())}

    # ----------------------------------------------------------------- one update
    def _update(self) -> dict[str, Any]:
        cfg = self.config
        start = time.perf_counter()
        self._length_limited = (0, 0)
        batch = self.collect()
        rollout_time = time.perf_counter() - start
        fused = self.fused_old_scores()
        # A fixed KL weight of 0 leaves the update untouched: skip the reference pass (KL logged as nan).
        use_reference = self.kl_ctl.value != 0 or self.kl_ctl.target is not None
        self.score_old_and_reference(batch, old=not fused, reference=use_reference)
        beta = self.kl_ctl.value
        rewards = self.shaped_rewards(batch)
        if cfg.kl_in == "reward" and use_reference:  # Ahmadian et al. (2024): r(x, y) - beta * KL summed over y's tokens
            # kl_in == "reward" is never fused: both were scored above.
            assert batch.old_logprobs is not None and batch.ref_logprobs is not None
            kl = kl_estimate(cfg.kl_estimator, batch.old_logprobs, batch.ref_logprobs)  # (N, K)
            rewards = rewards - beta * (kl * batch.token_mask.float()).sum(1)
        advantages = self.advantages(rewards, batch.tasks)
        losses = self.optimize(batch, advantages)  # in the fused case this also fills old_logprobs/entropy
        mask = batch.token_mask.float()
        assert batch.entropy is not None  # filled with the old log-probs, by the scoring pass or by optimize
        if use_reference:
            assert batch.old_logprobs is not None and batch.ref_logprobs is not None
            kl = kl_estimate(cfg.kl_estimator, batch.old_logprobs, batch.ref_logprobs)  # (N, K), before the step
        else:
            kl = torch.full_like(mask, math.nan)
        # Global statistics from per-rank sums (one all-reduce; plain values in a single process).
        # Rewards are those of every sampled completion (dynamic sampling may train on fewer).
        r = batch.rewards if batch.sampled_rewards is None else batch.sampled_rewards
        sums = torch.stack([r.sum(), (r * r).sum(), torch.tensor(float(len(r)), device=r.device),
                            (kl * mask).sum(), (batch.entropy * mask).sum(), mask.sum(),
                            torch.tensor(float(len(batch.rewards)), device=r.device)]).double()
        r_sum, r_sq, n, kl_sum, ent_sum, tokens, n_trained = dist.all_reduce_sum(sums).tolist()
        r_mean = r_sum / n
        metrics: dict[str, Any] = {
            "reward_mean": r_mean,
            "reward_std": math.sqrt(max(r_sq - n * r_mean ** 2, 0.0) / (n - 1)) if n > 1 else 0.0,
            "kl": kl_sum / tokens,
            "kl_coef": beta,
            "entropy": ent_sum / tokens,
            "completion_len": tokens / n_trained,
            "tokens": int(tokens),
            "rollout_time": rollout_time,
            "length_limited_frac": dist.all_reduce_mean(self._length_limited[0] / max(self._length_limited[1], 1)),
        }
        G = cfg.group_size
        if G > 1:
            groups = r.view(-1, G)
            metrics["frac_groups_mixed"] = dist.all_reduce_mean(
                float((groups.max(1).values > groups.min(1).values).float().mean()))
            metrics["group_reward_std"] = dist.all_reduce_mean(float(groups.std(1).mean()))
        tasks = batch.tasks if batch.sampled_rewards is None else batch.sampled_tasks
        if tasks is not None and dist.world_size() == 1:  # per-family rewards (single process)
            metrics.update(family_means(r, tasks, prefix="reward/"))
        if not torch.equal(rewards, batch.rewards):
            metrics["shaped_reward_mean"] = dist.all_reduce_mean(float(rewards.mean()))
        metrics.update({k: dist.all_reduce_mean(v) for k, v in losses.items()})
        self.kl_ctl.update(metrics["kl"], int(n_trained))
        return metrics


def family_means(values: torch.Tensor, tasks: list[str], prefix: str = "") -> dict[str, float]:
    """Mean of ``values`` per task family: ``{prefix + family: mean}``.

    >>> family_means(torch.tensor([1.0, 0.0, 0.5]), ["copy", "copy", "dedup"], prefix="reward/")
    {'reward/copy': 0.5, 'reward/dedup': 0.5}
    """
    out: dict[str, list[float]] = {}
    for value, task in zip(values.tolist(), tasks):
        out.setdefault(task, []).append(value)
    return {prefix + task: float(np.mean(v)) for task, v in sorted(out.items())}
