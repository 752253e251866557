"""Online soft Q-learning on ``InstructEnv/Token-v0`` with the LM's logits as Q-values (Guo et al., 2022).

Guo et al., "Efficient (Soft) Q-Learning for Text Generation with Limited Good Data", read the
LM's logits as soft Q-values, so the LM *is* the Q-function and its softmax the policy::

    Q_theta(s, a) = logits(s)[a]
    V_theta(s)    = alpha * logsumexp_a Q_theta(s, a) / alpha
    A_theta(s, a) = Q_theta(s, a) - V_theta(s) = alpha * log pi_theta(a | s)

and learn it with path consistency (PCL; Nachum et al., 2017) against a target network
``theta_bar`` (Polyak-averaged copy of the LM). With ``d`` = 1 after the answer's last token::

    single-step:  delta_t = r_t + gamma * (1 - d_t) * V_bar(s_{t+1}) - V_theta(s_t) - A_theta(s_t, a_t)
    multi-step:   Delta_t = sum_{l >= t} gamma^(l - t) * (r_l - A_theta(s_l, a_l))
                            + gamma^(K - t) * (1 - d) * V_bar(s_K) - V_theta(s_t)
    L_PCL = mean_t delta_t^2 / 2   (single),   mean_t Delta_t^2 / 2   (multi),   their mean (both)

The single-step form is the soft Bellman equation (``V_theta + A_theta = Q_theta``); the
multi-step form carries the (sparse, final) reward to every token of the answer in one
update. ``V_theta(s_t)`` carries gradient: ``A_theta`` alone does not change when every logit
moves by the same amount, so without it the level of the values -- and with it the credit
flowing back through ``V_bar`` -- would never be learned.

Anchor to the SFT model: with ``kl_in="reward"`` every token's reward is shaped by
``-kl_coef * (log pi_theta(a_t) - log pi_ref(a_t))`` (the log-ratio at the current weights,
detached); with ``kl_in="loss"``, ``kl_coef * KL`` (``kl_estimator``) is added to the loss.

Experience: ``num_envs`` slots act for ``n_steps`` tokens per update with Boltzmann exploration
(``softmax(Q / temperature)``), one one-token forward per step (:class:`~agents.common.generation.SlotActor`,
as PPO); every episode that ends goes whole into the replay buffer (the ``buffer_episodes`` most
recent). Then ``gradient_steps`` times: ``batch_size`` episodes drawn uniformly, one forward of
the LM and one of the target network over them, the PCL loss, an Adam step, the Polyak step.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, TypedDict

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from agents.common.device import autocast
from agents.common.generation import SlotActor
from agents.common.kl import kl_estimate
from agents.common.scoring import masked_mean
from agents.common.trainer import RLTrainer
from agents.q.config import SoftQConfig
from agents.q.data import Episode, EpisodeBatch, EpisodeReplayBuffer, pack_episodes
from agents.q.ilql import _single_process, states_forward
from agents.rl import SOFT_Q

__all__ = ["SoftQTrainer", "SoftQLoss", "soft_q_loss", "soft_values", "discounted_suffix_sums"]


def soft_values(q: torch.Tensor, alpha: float) -> torch.Tensor:
    """``V(s) = alpha * logsumexp(Q(s, .) / alpha)``: (..., V) -> (...)."""
    return alpha * torch.logsumexp(q / alpha, dim=-1)


def discounted_suffix_sums(x: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """``out[:, t] = sum_{l >= t} gamma^(l - t) * x[:, l] * mask[:, l]`` over (B, K)."""
    out = torch.zeros_like(x)
    running = torch.zeros_like(x[:, 0])
    for t in reversed(range(x.shape[1])):
        running = x[:, t] * mask[:, t] + gamma * running
        out[:, t] = running
    return out


@dataclass
class SoftQLoss:
    """The terms of :func:`soft_q_loss` (scalars)."""

    loss: torch.Tensor
    single_loss: torch.Tensor
    multi_loss: torch.Tensor
    q_mean: torch.Tensor
    v_mean: torch.Tensor


def soft_q_loss(q_all: torch.Tensor, target_q_all: torch.Tensor, batch: EpisodeBatch, rewards: torch.Tensor,
                gamma: float, alpha: float, pcl: str) -> SoftQLoss:
    """Path-consistency loss of one batch (module docstring).

    Args:
        q_all: The LM's logits at states ``s_0 .. s_K``, (B, K + 1, V), with gradient.
        target_q_all: The target network's, (B, K + 1, V).
        batch: Actions, mask and dones, (B, K).
        rewards: (B, K) rewards (the env's, possibly KL-shaped).
        gamma: The discount.
        alpha: The entropy temperature.
        pcl: ``"single"``, ``"multi"`` or ``"both"``.
    """
    actions, mask, dones = batch.tokens, batch.token_mask.float(), batch.dones  # (B, K)
    B, K = actions.shape
    q = q_all[:, :K]  # (B, K, V)
    q_taken = q.gather(-1, actions[..., None]).squeeze(-1)  # (B, K) Q(s_t, a_t)
    v = soft_values(q, alpha)  # (B, K) V_theta(s_t)
    advantage = q_taken - v  # (B, K) A_theta = alpha * log pi_theta(a_t | s_t)
    with torch.no_grad():
        v_bar = soft_values(target_q_all, alpha)  # (B, K + 1) V_bar(s_0 .. s_K)
        length = mask.sum(1).long()  # (B,)
        last = torch.arange(K, device=mask.device)[None, :] == (length - 1)[:, None]  # (B, K) the final token
        v_next = v_bar[:, 1:] * (1.0 - dones)  # V_bar(s_{t+1}): zero after a token that ended its answer
        ended = (dones * last.float()).sum(1)  # (B,) 1 if the episode is done
        v_end = v_bar.gather(1, length[:, None]).squeeze(1) * (1.0 - ended)  # (B,) V_bar(s_K), 0 if done
    delta = rewards + gamma * v_next - v - advantage  # (B, K)
    single_loss = masked_mean(0.5 * delta ** 2, mask)
    steps_to_end = (length[:, None] - torch.arange(K, device=mask.device)[None, :]).clamp(min=0)  # (B, K): K_b - t
    path = discounted_suffix_sums(rewards - advantage, mask, gamma)  # (B, K)
    Delta = path + gamma ** steps_to_end.float() * v_end[:, None] - v  # (B, K)
    multi_loss = masked_mean(0.5 * Delta ** 2, mask)
    loss = {"single": single_loss, "multi": multi_loss, "both": 0.5 * (single_loss + multi_loss)}[pcl]
    return SoftQLoss(loss=loss, single_loss=single_loss.detach(), multi_loss=multi_loss.detach(),
                     q_mean=masked_mean(q_taken.detach(), mask), v_mean=masked_mean(v.detach(), mask))


class _RunningEpisodes(TypedDict):
    """The episodes in flight, one row per slot (an answer has at most ``max_new_tokens`` = T tokens)."""

    prompts: list[np.ndarray]  # N prompts' token ids
    tokens: np.ndarray  # (N, T) the answer's tokens so far
    rewards: np.ndarray  # (N, T) their rewards
    lengths: np.ndarray  # (N,) tokens so far


class SoftQTrainer(RLTrainer):
    """Soft Q-learning (Guo et al., 2022) of the policy's LM, token by token, from a replay buffer."""

    algo = SOFT_Q.name
    config_class = SoftQConfig
    config: SoftQConfig
    env_id = "InstructEnv/Token-v0"

    def __init__(self, config: SoftQConfig, policy, tokenizer, env_kwargs=None, log_fn=None, eval_fn=None) -> None:
        _single_process("Soft Q-learning")
        super().__init__(config, policy, tokenizer, env_kwargs, log_fn=log_fn, eval_fn=eval_fn)

    def _make_env(self, env_kwargs: dict[str, Any]):
        return gym.make_vec(self.env_id, num_envs=self.config.num_envs, vectorization_mode="vector_entry_point",
                            **env_kwargs)

    def _start(self) -> None:
        self.env_steps = 0
        self.target_lm = copy.deepcopy(self.policy.lm).requires_grad_(False).eval()
        self.replay = EpisodeReplayBuffer(self.config.buffer_episodes)
        self._obs, _ = self.env.reset(seed=self.seed)
        N, T = self.config.num_envs, self.config.max_new_tokens
        # The episodes in flight, one row per slot: prompt, tokens and rewards so far (an answer has <= T tokens).
        self._running: _RunningEpisodes = {
            "prompts": [self._prompt(n) for n in range(N)], "tokens": np.zeros((N, T), dtype=np.int64),
            "rewards": np.zeros((N, T), dtype=np.float32), "lengths": np.zeros(N, dtype=np.int64)}
        self.actor = SlotActor(self.policy, self.env.setup.max_prompt_tokens)
        with autocast(self.device):
            self.actor.start(self._obs)

    def _prompt(self, slot: int) -> np.ndarray:
        P = self.env.setup.max_prompt_tokens
        return self._obs["input_ids"][slot, :P][self._obs["attention_mask"][slot, :P].astype(bool)].copy()

    def _extra_state(self) -> dict[str, Any]:
        return {"obs": self._obs, "running": self._running, "replay": self.replay.state(),
                "target": self.target_lm.state_dict(), "env_steps": self.env_steps}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self._obs, self._running, self.env_steps = state["obs"], state["running"], state["env_steps"]
        self.replay.load(state["replay"])
        self.target_lm.load_state_dict(state["target"])
        self.actor = SlotActor(self.policy, self.env.setup.max_prompt_tokens)
        with autocast(self.device):
            self.actor.resume(self._obs)

    # ----------------------------------------------------------------- experience
    @torch.no_grad()
    def collect(self) -> dict[str, Any]:
        """``n_steps`` Boltzmann-exploring env steps in every slot; finished episodes go to the replay buffer."""
        cfg, run = self.config, self._running
        slots = np.arange(cfg.num_envs)
        returns: list[float] = []
        lengths: list[int] = []
        for _ in range(cfg.n_steps):
            probs = F.softmax(self.actor.logits.float() / cfg.temperature, dim=-1)  # (N, V)
            actions = torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)  # (N,)
            actions_np = actions.cpu().numpy()
            next_obs, rewards, terminated, truncated, _ = self.env.step(actions_np)
            self.env_steps += 1
            finished = np.flatnonzero(terminated | truncated)
            run["tokens"][slots, run["lengths"]] = actions_np
            run["rewards"][slots, run["lengths"]] = rewards
            run["lengths"] += 1
            self._obs = next_obs
            for n in finished:
                k = int(run["lengths"][n])
                episode = Episode(run["prompts"][n], run["tokens"][n, :k].copy(), run["rewards"][n, :k].copy(), True)
                self.replay.add(episode)
                returns.append(episode.total_reward)
                lengths.append(k)
                run["prompts"][n], run["lengths"][n] = self._prompt(int(n)), 0
            with autocast(self.device):
                self.actor.advance(actions, finished, next_obs)
        return {"reward_mean": float(np.mean(returns)) if returns else float("nan"), "episodes": len(returns),
                "completion_len": float(np.mean(lengths)) if lengths else float("nan"),
                "tokens": cfg.n_steps * cfg.num_envs, "replay_episodes": len(self.replay)}

    # ----------------------------------------------------------------- learning
    def losses(self, batch: EpisodeBatch) -> tuple[SoftQLoss, torch.Tensor]:
        """The PCL loss of ``batch`` (with the KL anchor applied) and the per-token KL estimate (B, K)."""
        cfg = self.config
        K = batch.tokens.shape[1]
        with autocast(self.device):
            q_all, _ = states_forward(self.train_module, batch)  # (B, K + 1, V)
            with torch.no_grad():
                target_q_all, _ = states_forward(self.target_lm, batch)
        logp = F.log_softmax(q_all[:, :K] / cfg.alpha, dim=-1).gather(-1, batch.tokens[..., None]).squeeze(-1)
        rewards = cfg.reward_scale * batch.rewards
        kl = torch.zeros_like(rewards)
        beta = self.kl_ctl.value
        if beta or self.kl_ctl.target is not None:
            with torch.no_grad(), self.policy.reference() as ref_lm, autocast(self.device):
                ref_logits, _ = states_forward(ref_lm, batch)
            ref_logp = F.log_softmax(ref_logits[:, :K], dim=-1).gather(-1, batch.tokens[..., None]).squeeze(-1)
            kl = kl_estimate(cfg.kl_estimator, logp if cfg.kl_in == "loss" else logp.detach(), ref_logp)  # (B, K)
            if cfg.kl_in == "reward":
                rewards = rewards - beta * kl.detach() * batch.token_mask
        terms = soft_q_loss(q_all, target_q_all, batch, rewards, cfg.gamma, cfg.alpha, cfg.pcl)
        if cfg.kl_in == "loss" and beta:
            terms.loss = terms.loss + beta * masked_mean(kl, batch.token_mask)
        return terms, kl.detach()

    @torch.no_grad()
    def update_target(self) -> None:
        """``theta_bar <- (1 - polyak) theta_bar + polyak theta``."""
        for target, online in zip(self.target_lm.parameters(), self.policy.lm.parameters()):
            target.lerp_(online, self.config.polyak)

    def _update(self) -> dict[str, Any]:
        cfg = self.config
        start = time.perf_counter()
        metrics = self.collect()
        metrics["rollout_time"] = time.perf_counter() - start
        if len(self.replay) < max(cfg.learning_starts, 1):
            return metrics
        stats: dict[str, list[float]] = {k: [] for k in ("loss", "single_loss", "multi_loss", "q_mean", "v_mean",
                                                         "kl", "grad_norm")}
        for _ in range(cfg.gradient_steps):
            batch = pack_episodes(self.replay.sample(self.np_rng, cfg.batch_size), self.env.setup.pad_token_id,
                                  self.device)
            terms, kl = self.losses(batch)
            self.optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            stats["grad_norm"].append(self._clip_and_step())
            self.update_target()
            stats["kl"].append(float(masked_mean(kl, batch.token_mask)))
            for name in ("loss", "single_loss", "multi_loss", "q_mean", "v_mean"):
                stats[name].append(float(getattr(terms, name).detach()))
        metrics.update({k: float(np.mean(v)) for k, v in stats.items()})
        metrics["kl_coef"] = self.kl_ctl.value
        self.kl_ctl.update(metrics["kl"], cfg.gradient_steps * cfg.batch_size)
        with autocast(self.device):
            self.actor.resume(self._obs)  # the cached keys/values of running episodes are stale now
        return metrics
