"""Rollouts in ``InstructEnv/Token-v0`` and their advantages: what PPO and A2C share.

Rollout scheme: a fixed ``n_steps`` env steps per slot (as PPO in Stable-Baselines3 and
CleanRL), not "until k episodes finished". Every batch then has exactly
``num_envs * n_steps`` actions (fixed cost and memory per update), no slot idles waiting for
long episodes, and no episode is thrown away or cut short: an episode still running at the cut
continues in the next rollout, and its advantage is bootstrapped from the value of the state
at the cut. Since the cached keys/values of those running episodes were computed by the
weights before the update, the actor re-reads them (:meth:`SlotActor.resume`) after each update.

Data parallel: each rank rolls out its own ``num_envs`` slots. Advantage whitening uses the
mean and std of all ranks' advantages, the KL the adaptive controller sees and the logged
reward/length means are global; the per-minibatch loss means are per rank and the gradients
are averaged (see :mod:`agents.common.distributed` for how), so they weight ranks equally
(exact when ranks hold equal token counts). With ``distributed.strategy="fsdp"`` the policy (LM
and value head; not the frozen reference copy) is sharded, and the actor's forward passes,
whose number differs between ranks, run on the gathered policy
(:func:`~agents.common.distributed.gathered`).

Each action is one ``env.step`` and one one-token forward of :class:`SlotActor`. The update
re-scores the batch as *segments* (one episode's actions inside one rollout, after its
context: prompt + earlier completion tokens) in one forward pass per minibatch.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from agents.ac.config import ActorCriticConfig
from agents.common import distributed as dist
from agents.common.buffer import Segment, SegmentBatch, TokenRolloutBuffer
from agents.common.device import autocast
from agents.common.generation import SlotActor
from agents.common.kl import kl_estimate
from agents.common.scoring import TokenScores, score_tokens
from agents.common.trainer import RLTrainer

__all__ = ["ActorCriticTrainer"]


class ActorCriticTrainer(RLTrainer):
    """Collects fixed-length rollouts in a token vector env; subclasses define the optimisation."""

    env_id = "InstructEnv/Token-v0"
    config: ActorCriticConfig

    def _make_env(self, env_kwargs: dict[str, Any]):
        return gym.make_vec(self.env_id, num_envs=self.config.num_envs, vectorization_mode="vector_entry_point",
                            **env_kwargs)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The LM's trainable parameters and the value head's."""
        return super().trainable_parameters() + list(self.policy.value_head.parameters())

    def _trained_module(self) -> torch.nn.Module:
        return self.policy  # the losses need the LM and the value head in one forward

    def _start(self) -> None:
        self.env_steps = 0
        self.buffer = TokenRolloutBuffer(self.config.n_steps, self.config.num_envs, self.env.setup.pad_token_id,
                                         self.device)
        self.actor = SlotActor(self.policy, self.env.setup.max_prompt_tokens)
        self._obs, _ = self.env.reset(seed=self.seed)
        self._episode_return = np.zeros(self.config.num_envs)
        with dist.gathered(self.policy), autocast(self.device):
            self.actor.start(self._obs)

    def _extra_state(self) -> dict[str, Any]:
        return {"obs": self._obs, "episode_return": self._episode_return, "env_steps": self.env_steps}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self._obs, self._episode_return = state["obs"], state["episode_return"]
        self.env_steps = state["env_steps"]
        self.actor = SlotActor(self.policy, self.env.setup.max_prompt_tokens)
        with dist.gathered(self.policy), autocast(self.device):
            self.actor.resume(self._obs)

    # ----------------------------------------------------------------- rollout
    @torch.no_grad()
    def collect_rollout(self) -> dict[str, Any]:
        """Take ``n_steps`` env steps in every slot, storing them in ``self.buffer``."""
        cfg, buf = self.config, self.buffer
        buf.reset()
        returns: list[float] = []
        lengths: list[int] = []
        with dist.gathered(self.policy):  # a sharded policy is gathered once for the whole rollout
            for _ in range(cfg.n_steps):
                logp_all = F.log_softmax(self.actor.logits.float() / cfg.temperature, dim=-1)  # (N, V)
                actions = torch.multinomial(logp_all.exp(), 1, generator=self.generator).squeeze(-1)  # (N,)
                logprobs = logp_all.gather(-1, actions[:, None]).squeeze(-1)  # (N,)
                values = self.actor.values.float()  # (N,)
                next_obs, rewards, terminated, truncated, infos = self.env.step(actions.cpu().numpy())
                self.env_steps += 1
                dones = terminated | truncated
                buf.add(self._obs, actions, logprobs, values, rewards, dones)
                self._episode_return += rewards
                finished = np.flatnonzero(dones)
                if len(finished):
                    final = infos["final_info"]
                    returns.extend(self._episode_return[finished].tolist())
                    lengths.extend(int(final["completion_tokens"][i]) for i in finished)
                    self._episode_return[finished] = 0.0
                with autocast(self.device):
                    self.actor.advance(actions, finished, next_obs)
                self._obs = next_obs
        buf.finish(self.actor.values.float())
        sums = torch.tensor([sum(returns), float(len(returns)), float(sum(lengths)), float(cfg.n_steps * cfg.num_envs)],
                            dtype=torch.float64)
        ret_sum, episodes, len_sum, tokens = dist.all_reduce_sum(sums).tolist()  # global over ranks
        return {
            "reward_mean": ret_sum / episodes if episodes else float("nan"),
            "episodes": int(episodes),
            "completion_len": len_sum / episodes if episodes else float("nan"),
            "tokens": int(tokens),
        }

    def minibatches(self, segments: list[Segment], shuffle: bool) -> list[list[Segment]]:
        """Split ``segments`` into ``num_minibatches`` groups, in a random order if ``shuffle``."""
        order = self.np_rng.permutation(len(segments)) if shuffle else np.arange(len(segments))
        n = min(self.config.num_minibatches, len(segments))
        return [[segments[i] for i in part] for part in np.array_split(order, n)]

    def score(self, batch: SegmentBatch, model=None) -> TokenScores:
        """Score a packed minibatch with the policy (or ``model``, e.g. the reference).

        With gradients on, the policy is called through ``self.train_module`` (its DDP wrapper
        in a data-parallel run), so that the backward pass averages the gradients over ranks.
        """
        if model is None:
            model = self.train_module if torch.is_grad_enabled() else self.policy
        with autocast(self.device):
            return score_tokens(model, batch.context_ids, batch.context_mask, batch.tokens, batch.token_mask,
                                self.config.temperature)

    @torch.no_grad()
    def compute_advantages(self, segments: list[Segment]) -> dict[str, Any]:
        """Reference log-probs, the per-token KL, the rewards the agent learns from, and GAE."""
        cfg, buf = self.config, self.buffer
        ref_flat = buf.ref_logprobs.view(-1)
        with self.policy.reference() as ref_lm:
            for part in self.minibatches(segments, shuffle=False):
                batch = buf.pack(part)
                real = batch.token_mask.bool()
                ref_flat[batch.index[real]] = self.score(batch, ref_lm).logprobs[real]
        kl = kl_estimate(cfg.kl_estimator, buf.logprobs, buf.ref_logprobs)  # (n_steps, N)
        beta = self.kl_ctl.value
        # Ziegler et al. (2019): the reward of every token is -beta * KL, plus the task reward at the end.
        rewards = buf.rewards - beta * kl if cfg.kl_in == "reward" else buf.rewards
        buf.compute_advantages(rewards, cfg.gamma, cfg.lam)
        return {"kl": dist.all_reduce_mean(float(kl.mean())), "kl_coef": beta}

    def advantages_for_update(self) -> torch.Tensor:
        """Flat (n_steps * N,) advantages, whitened over the rollout if configured."""
        adv = self.buffer.advantages.reshape(-1)
        if not self.config.normalize_advantage:
            return adv
        if dist.world_size() == 1:
            return (adv - adv.mean()) / (adv.std() + 1e-8)
        # Whiten with the statistics of the global batch: sums over ranks, Bessel-corrected std.
        a = adv.double()
        total, total_sq, n = dist.all_reduce_sum(torch.stack([a.sum(), (a * a).sum(),
                                                              torch.tensor(float(a.numel()), device=a.device,
                                                                           dtype=torch.float64)])).tolist()
        mean = total / n
        std = ((total_sq - n * mean * mean) / max(n - 1, 1)) ** 0.5
        return (adv - mean) / (std + 1e-8)

    def explained_variance(self) -> float:
        """1 - Var[returns - values] / Var[returns] of the rollout (1 = perfect critic)."""
        returns, values = self.buffer.returns.reshape(-1), self.buffer.values.reshape(-1)
        var = returns.var()
        return float("nan") if var == 0 else float(1 - (returns - values).var() / var)

    def _update(self) -> dict[str, Any]:
        start = time.perf_counter()
        metrics = self.collect_rollout()
        metrics["rollout_time"] = time.perf_counter() - start
        segments = self.buffer.segments()
        metrics.update(self.compute_advantages(segments))
        metrics.update(self.optimize(segments))
        metrics["explained_variance"] = self.explained_variance()
        self.kl_ctl.update(metrics["kl"], metrics["tokens"])
        with dist.gathered(self.policy), autocast(self.device):
            self.actor.resume(self._obs)  # the cached keys/values of running episodes are stale now
        return metrics

    def optimize(self, segments: list[Segment]) -> dict[str, Any]:
        """Learn from the rollout's ``segments`` (whose advantages are computed); return the loss metrics."""
        raise NotImplementedError
