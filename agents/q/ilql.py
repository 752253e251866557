"""Implicit Language Q-Learning (Snell et al., 2022): offline RL from token-level episodes.

The LM's last hidden state ``h(s)`` of every state feeds two Q heads (``Q_i(s, .) = W_i h(s) + b_i``,
one value per token), their Polyak-averaged targets ``Q̂_i`` and a V head (the policy's
``value_head``). For a data transition ``(s_t, a_t, r_t, s_{t+1})`` (``d_t = 1`` if ``a_t`` ended
the answer)::

    y_t       = r_t + gamma * (1 - d_t) * V(s_{t+1})            (V held fixed: no gradient)
    L_Q       = sum_i mean_t (Q_i(s_t, a_t) - y_t)^2
    q̂_t       = min_i Q̂_i(s_t, a_t)
    L_V       = mean_t |tau - 1[q̂_t < V(s_t)]| * (q̂_t - V(s_t))^2     (expectile regression)
    L_CQL     = sum_i mean_t [ logsumexp_a Q_i(s_t, a) - Q_i(s_t, a_t) ]
    w_t       = min(exp(awac_beta * (q̂_t - V(s_t))), awac_max_weight)   (1 when awac_beta = 0)
    L_AWAC    = -mean_t w_t * log pi(a_t | s_t)                   (the LM head: the behaviour model)
    loss      = L_Q + v_coef * L_V + cql_coef * L_CQL + awac_coef * L_AWAC

and after each step ``Q̂_i <- (1 - polyak) Q̂_i + polyak Q_i``. The expectile ``tau > 0.5`` makes
V approach the best action *within the data's support*, which is what lets ILQL improve on the
data without querying actions it never saw; CQL pushes down Q-values of unseen tokens.

Decoding perturbs the behaviour model (the LM head, trained by ``L_AWAC`` on the data) by the
learned advantage::

    logits'(s, .) = logits(s, .) + beta * (min_i Q̂_i(s, .) - V(s))

so ``beta = 0`` is exactly the behaviour model (:class:`ILQLDecoder`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.common.device import autocast, select_device
from agents.common.generation import SamplingConfig, generate, trim_left_padding
from agents.common.model import lm_forward, output_cache, position_ids_from_mask
from agents.common.scoring import masked_mean
from agents.common.trainer import RLTrainer
from agents.q.config import ILQLConfig
from agents.q.data import EpisodeBatch, TransitionDataset, load_offline_data, pack_episodes, sample_episodes
from agents.rl import ILQL
from instruct_env.error import ConfigError, DataFormatError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["ILQLTrainer", "ILQLHeads", "ILQLDecoder", "ILQLLoss", "ilql_loss", "expectile_loss", "cql_term",
           "bellman_targets", "states_forward", "load_ilql_decoder"]


# ----------------------------------------------------------------- the loss, term by term
def bellman_targets(rewards: torch.Tensor, next_values: torch.Tensor, dones: torch.Tensor,
                    gamma: float) -> torch.Tensor:
    """``y_t = r_t + gamma * (1 - d_t) * V(s_{t+1})``, all (B, K); no gradient flows into ``next_values``."""
    return rewards + gamma * (1.0 - dones) * next_values.detach()


def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """``|tau - 1[diff < 0]| * diff^2`` elementwise, with ``diff = target - prediction``.

    >>> expectile_loss(torch.tensor([2.0, -2.0]), 0.7).tolist()
    [2.799999952316284, 1.2000000476837158]
    """
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    return weight * diff ** 2


def cql_term(q_all: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``logsumexp_a Q(s, a) - Q(s, a_data)`` per position: (B, K, V), (B, K) -> (B, K)."""
    return torch.logsumexp(q_all, dim=-1) - q_all.gather(-1, actions[..., None]).squeeze(-1)


@dataclass
class ILQLLoss:
    """The terms of :func:`ilql_loss` (scalars) and the total."""

    loss: torch.Tensor
    q_loss: torch.Tensor
    v_loss: torch.Tensor
    cql_loss: torch.Tensor
    awac_loss: torch.Tensor
    q_mean: torch.Tensor
    v_mean: torch.Tensor
    advantage_mean: torch.Tensor


def ilql_loss(q_all: tuple[torch.Tensor, ...], target_q_all: tuple[torch.Tensor, ...], values: torch.Tensor,
              logits: torch.Tensor, batch: EpisodeBatch, config: ILQLConfig) -> ILQLLoss:
    """The ILQL objective (module docstring) of one batch.

    Args:
        q_all: Each Q head's values at the states before each token, (B, K, V).
        target_q_all: The target heads' values, (B, K, V) (no gradient).
        values: V at every state ``s_0 .. s_K``, (B, K + 1).
        logits: The LM's next-token logits at ``s_0 .. s_{K-1}``, (B, K, V).
        batch: Actions (``tokens``), rewards, dones and mask, (B, K).
        config: ``gamma``, ``tau``, the coefficients.
    """
    cfg = config
    actions, mask = batch.tokens, batch.token_mask  # (B, K)
    v, v_next = values[:, :-1], values[:, 1:]  # (B, K): V(s_t), V(s_{t+1})
    y = bellman_targets(batch.rewards, v_next, batch.dones, cfg.gamma)  # (B, K)
    q_taken = [q.gather(-1, actions[..., None]).squeeze(-1) for q in q_all]  # each (B, K)
    q_terms = [masked_mean((q - y) ** 2, mask) for q in q_taken]
    q_loss = sum(q_terms[1:], q_terms[0])
    with torch.no_grad():
        q_hat = torch.minimum(*[q.gather(-1, actions[..., None]).squeeze(-1) for q in target_q_all])  # (B, K)
    v_loss = masked_mean(expectile_loss(q_hat - v, cfg.tau), mask)
    cql_terms = [masked_mean(cql_term(q, actions), mask) for q in q_all]
    cql_loss = sum(cql_terms[1:], cql_terms[0])
    logp = F.log_softmax(logits, dim=-1).gather(-1, actions[..., None]).squeeze(-1)  # (B, K) log pi(a_t | s_t)
    with torch.no_grad():
        advantage = q_hat - v
        weights = torch.ones_like(advantage) if cfg.awac_beta == 0 else \
            torch.exp(cfg.awac_beta * advantage).clamp(max=cfg.awac_max_weight)
    awac_loss = -masked_mean(weights * logp, mask)
    loss = q_loss + cfg.v_coef * v_loss + cfg.cql_coef * cql_loss + cfg.awac_coef * awac_loss
    return ILQLLoss(loss=loss, q_loss=q_loss, v_loss=v_loss, cql_loss=cql_loss, awac_loss=awac_loss,
                    q_mean=masked_mean(q_taken[0].detach(), mask), v_mean=masked_mean(v.detach(), mask),
                    advantage_mean=masked_mean(advantage, mask))


# ----------------------------------------------------------------- the model side
def states_forward(lm: nn.Module, batch: EpisodeBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward over ``[prompt | completion]``: logits (B, K + 1, V) and last hidden states (B, K + 1, H).

    Position ``t`` is state ``s_t`` (before token ``t``); position ``K`` the state after the last token.
    """
    context_ids, context_mask = trim_left_padding(batch.context_ids, batch.context_mask)
    C = context_ids.shape[1]
    input_ids = torch.cat([context_ids, batch.tokens], dim=1)  # (B, C + K)
    mask = torch.cat([context_mask, batch.token_mask.to(context_mask.dtype)], dim=1)
    out = lm_forward(lm, input_ids, mask, position_ids_from_mask(mask), output_hidden_states=True)
    return out.logits[:, C - 1:].float(), out.hidden_states[-1][:, C - 1:]


class ILQLHeads(nn.Module):
    """Two Q heads and their Polyak-averaged targets, each ``Linear(hidden, vocab)``.

    The heads start near zero (weights ``N(0, init_std^2)``, zero bias), so the decoding starts
    close to the behaviour model, but not *at* zero: two heads started equal would get equal
    gradients and stay equal, and their minimum would be no more pessimistic than either.
    """

    def __init__(self, hidden: int, vocab: int, init_std: float = 1e-3) -> None:
        super().__init__()
        self.vocab = vocab
        heads = [nn.Linear(hidden, vocab) for _ in range(2)]
        for head in heads:
            nn.init.normal_(head.weight, std=init_std)
            nn.init.zeros_(head.bias)
        self.q = nn.ModuleList(heads)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)

    def _dtype(self) -> torch.dtype:
        return next(self.q.parameters()).dtype  # the first head's weight

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The Q values of the two online heads, each (..., V), from hidden states (..., H)."""
        h = hidden.to(self._dtype())
        return tuple(head(h) for head in self.q)

    @torch.no_grad()
    def target(self, hidden: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The Q values of the two target heads, each (..., V), from hidden states (..., H)."""
        h = hidden.to(self._dtype())
        return tuple(head(h) for head in self.q_target)

    @torch.no_grad()
    def update_targets(self, polyak: float) -> None:
        """``Q̂ <- (1 - polyak) Q̂ + polyak Q``."""
        for target, online in zip(self.q_target.parameters(), self.q.parameters()):
            target.lerp_(online, polyak)


class ILQLDecoder(nn.Module):
    """A causal LM whose next-token logits are ``logits + beta * (min_i Q̂_i - V)``: the ILQL policy.

    It has the LM's calling convention (``input_ids``, ``attention_mask``, ``position_ids``, the
    KV cache, ``use_cache``), so :func:`~agents.common.generation.generate`, the held-out evaluation
    and the pipeline decode with it as with any LM. ``beta = 0`` gives the LM's own logits unchanged.
    (The V head is ``v_head``, not ``value_head``: code that takes ``.lm`` out of anything with a
    ``value_head``, as it does for an :class:`~agents.common.model.ActorCritic`, must not strip the
    perturbation off.)
    :meth:`save_pretrained` writes the LM (a plain Hugging Face folder) plus ``ilql_heads.pt``.
    """

    def __init__(self, lm: PreTrainedModel, heads: ILQLHeads, value_head: nn.Linear, beta: float) -> None:
        super().__init__()
        self.lm, self.heads, self.v_head, self.beta = lm, heads, value_head, float(beta)

    @property
    def config(self):
        """The LM's Hugging Face config."""
        return self.lm.config

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, past_key_values=None,
                use_cache=False, output_hidden_states=False, **kwargs):
        """The LM's output for ``input_ids`` with the ILQL-perturbed ``logits`` (hidden states always included)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = lm_forward(self.lm, input_ids, attention_mask, position_ids,
                         cache if cache is not None else past_key_values, use_cache, output_hidden_states=True)
        if self.beta:
            hidden = out.hidden_states[-1]  # (B, T, H)
            q = torch.minimum(*self.heads.target(hidden))  # (B, T, V)
            v = self.v_head(hidden.to(self.v_head.weight.dtype))  # (B, T, 1)
            out.logits = out.logits + self.beta * (q - v).to(out.logits.dtype)
        if use_cache and output_cache(out) is None:  # pragma: no cover - every causal LM returns one
            raise ConfigError("The LM returned no KV cache; ILQL decoding needs a causal LM with use_cache.")
        return out

    def save_pretrained(self, directory, state_dict=None, **kwargs) -> None:
        """The LM as a Hugging Face folder, plus ``ilql_heads.pt`` (Q heads, V head, beta)."""
        self.lm.save_pretrained(directory, state_dict=state_dict, **kwargs)
        torch.save({"heads": self.heads.state_dict(), "value_head": self.v_head.state_dict(), "beta": self.beta},
                   Path(directory) / "ilql_heads.pt")


# ----------------------------------------------------------------- the trainer
def _single_process(name: str) -> None:
    """The Q-learners train in one process: their heads and target networks are not averaged across ranks."""
    from agents.common import distributed as dist

    if dist.world_size() > 1:
        raise ConfigError(f"{name} runs in a single process; this run has {dist.world_size()} ranks. Launch it "
                          "without torchrun/--nproc (data-parallel training covers ppo, a2c, grpo, rloo, reinforce).")


class ILQLTrainer(RLTrainer):
    """ILQL from a fixed :class:`~agents.q.data.TransitionDataset` (``config.data``).

    Each update draws ``batch_size`` episodes (uniformly, with replacement), runs one forward of
    the LM over them, computes :func:`ilql_loss`, takes one Adam step on the LM, the V head and
    the Q heads, and moves the target heads. The environment (``InstructEnv/Completion-v0``,
    ``monitor_envs`` slots) is used only to collect ``data="rollouts"`` and to monitor the decoding.
    ``reward_mean`` is NaN on updates without monitoring.

    After training, :meth:`decoder` is the policy to evaluate or deploy.
    """

    algo = ILQL.name
    config_class = ILQLConfig
    config: ILQLConfig
    env_id = "InstructEnv/Completion-v0"

    def __init__(self, config: ILQLConfig, policy, tokenizer, env_kwargs=None, log_fn=None, eval_fn=None) -> None:
        _single_process("ILQL")
        device = select_device(config.device) if config.device is not None else next(policy.parameters()).device
        hidden = policy.value_head.in_features
        vocab = int(policy.lm.get_output_embeddings().out_features)
        with torch.random.fork_rng(devices=[]):  # the heads' initial weights depend on the seed only
            torch.manual_seed(config.seed)
            self.heads = ILQLHeads(hidden, vocab).to(device)
        self.dataset = TransitionDataset()
        super().__init__(config, policy, tokenizer, env_kwargs, log_fn=log_fn, eval_fn=eval_fn)
        # Two parameter groups: the LM at lr, the V and Q heads at heads_lr.
        heads = list(self.policy.value_head.parameters()) + list(self.heads.q.parameters())
        lm = [p for p in self.policy.lm.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam([{"params": lm, "lr": config.lr},
                                           {"params": heads, "lr": config.heads_lr or config.lr}],
                                          eps=config.adam_eps)

    def _make_env(self, env_kwargs: dict[str, Any]):
        return gym.make_vec(self.env_id, num_envs=self.config.monitor_envs, vectorization_mode="vector_entry_point",
                            **env_kwargs)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The LM's trainable parameters, the V head's and the online Q heads'."""
        return super().trainable_parameters() + list(self.policy.value_head.parameters()) + \
            list(self.heads.q.parameters())

    def _start(self) -> None:
        cfg = self.config
        self._obs, _ = self.env.reset(seed=self.seed)
        if cfg.data == "rollouts":
            kwargs = {k: v for k, v in self.env_kwargs.items() if k not in ("tokenizer", "max_new_tokens")}
            batch = cfg.rollout_group_size * max(1, 64 // cfg.rollout_group_size)
            self.dataset = sample_episodes(self.policy.lm, self.tokenizer, kwargs, cfg.rollout_episodes,
                                           temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                                           batch_size=batch, seed=self.seed, group_size=cfg.rollout_group_size)
            self.data_reward_calls = len(self.dataset)
        else:
            self.dataset = load_offline_data(cfg.data, self.tokenizer, formatter=self.env.setup.formatter)
            self.data_reward_calls = 0
        vocab = self.heads.vocab
        for i, e in enumerate(self.dataset.episodes):
            if int(e.tokens.max()) >= vocab or int(e.prompt_ids.max()) >= vocab:
                raise DataFormatError(f"{cfg.data}: episode {i + 1} has token ids >= the model's vocabulary size "
                                      f"{vocab}: the data was tokenised with another tokenizer.")

    def _extra_state(self) -> dict[str, Any]:
        return {"obs": self._obs, "heads": self.heads.state_dict(), "dataset": self.dataset.episodes,
                "data_reward_calls": self.data_reward_calls}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self._obs = state["obs"]
        self.heads.load_state_dict(state["heads"])
        self.dataset = TransitionDataset(state["dataset"])
        self.data_reward_calls = state["data_reward_calls"]

    def decoder(self, beta: float | None = None) -> ILQLDecoder:
        """The ILQL policy: the LM's logits perturbed by ``beta * (Q - V)`` (``config.beta`` by default)."""
        return ILQLDecoder(self.policy.lm, self.heads, self.policy.value_head,
                           self.config.beta if beta is None else beta)

    def losses(self, batch: EpisodeBatch) -> ILQLLoss:
        """:func:`ilql_loss` of ``batch`` under the current weights."""
        with autocast(self.device):
            logits, hidden = states_forward(self.train_module, batch)  # (B, K + 1, V), (B, K + 1, H)
        K = batch.tokens.shape[1]
        values = self.policy.value_head(hidden.to(self.policy.value_head.weight.dtype)).squeeze(-1).float()  # (B, K+1)
        q_all = [q.float() for q in self.heads(hidden[:, :K])]  # each (B, K, V)
        target_q_all = [q.float() for q in self.heads.target(hidden[:, :K])]
        return ilql_loss(tuple(q_all), tuple(target_q_all), values, logits[:, :K], batch, self.config)

    @torch.no_grad()
    def monitor(self) -> dict[str, float]:
        """Sample one completion per slot with the ILQL decoding; their mean reward from the env."""
        cfg = self.config
        ids = torch.as_tensor(self._obs["input_ids"], device=self.device)
        mask = torch.as_tensor(self._obs["attention_mask"], device=self.device)
        with autocast(self.device):
            gen = generate(self.decoder(), ids, mask, cfg.max_new_tokens, self.env.setup.eos_token_id,
                           self.env.setup.pad_token_id, SamplingConfig(temperature=cfg.temperature), self.generator)
        self._obs, rewards, _, _, _ = self.env.step(gen.tokens.cpu().numpy())
        return {"reward_mean": float(np.mean(rewards)), "completion_len": float(gen.lengths.float().mean())}

    def learn(self, batch: EpisodeBatch) -> dict[str, Any]:
        """One gradient step of :func:`ilql_loss` on ``batch`` and the Polyak step of the target heads."""
        terms = self.losses(batch)
        self.optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        grad_norm = self._clip_and_step()
        self.heads.update_targets(self.config.polyak)
        metrics: dict[str, Any] = {name: float(getattr(terms, name).detach()) for name in
                                   ("loss", "q_loss", "v_loss", "cql_loss", "awac_loss", "q_mean", "v_mean",
                                    "advantage_mean")}
        metrics.update(grad_norm=grad_norm, tokens=int(batch.token_mask.sum()))
        return metrics

    def _update(self) -> dict[str, Any]:
        cfg = self.config
        episodes = self.dataset.sample(self.np_rng, cfg.batch_size)
        metrics = self.learn(pack_episodes(episodes, self.env.setup.pad_token_id, self.device))
        metrics["reward_mean"] = float("nan")
        metrics["data_reward_mean"] = float(np.mean([e.total_reward for e in episodes]))
        if cfg.monitor_every and (self.num_updates + 1) % cfg.monitor_every == 0:
            start = time.perf_counter()
            metrics.update(self.monitor())
            metrics["rollout_time"] = time.perf_counter() - start
        return metrics


def load_ilql_decoder(directory, device: str | torch.device = "cpu") -> ILQLDecoder:
    """Rebuild the decoder written by :meth:`ILQLDecoder.save_pretrained` (the LM folder + ``ilql_heads.pt``)."""
    from agents.common.model import load_model

    path = Path(directory) / "ilql_heads.pt"
    if not path.exists():
        raise ConfigError(f"{str(directory)!r} has no ilql_heads.pt: it is not an ILQL model folder.")
    lm = load_model(str(directory), kind="causal").to(device)
    state = torch.load(path, map_location=device, weights_only=True)
    vocab, hidden = state["heads"]["q.0.weight"].shape
    heads = ILQLHeads(hidden, vocab).to(device)
    heads.load_state_dict(state["heads"])
    value_head = nn.Linear(hidden, 1).to(device)
    value_head.load_state_dict(state["value_head"])
    return ILQLDecoder(lm, heads, value_head, float(state["beta"]))
