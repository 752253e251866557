"""Rollout storage and advantage estimation for token-level episodes.

:func:`compute_gae` is generalised advantage estimation (Schulman et al., 2016) on a
``(n_steps, num_envs)`` grid. :class:`TokenRolloutBuffer` stores what an actor-critic
agent saw and did in a :class:`~instruct_env.envs.token_env.TokenVectorEnv` for a fixed
number of steps per slot, and lays the steps out again as *segments* -- the stretch of one
episode inside one rollout -- so that the update can score each segment's tokens in one
forward pass over ``context + actions``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["compute_gae", "TokenRolloutBuffer", "Segment", "SegmentBatch"]


def compute_gae(rewards, values, dones, last_value, gamma: float, lam: float):
    """Generalised advantage estimation over ``T`` steps of ``N`` parallel episodes.

    Step ``t`` of slot ``n`` observed a state with value ``values[t, n]``, acted, got
    ``rewards[t, n]`` and ``dones[t, n] = 1`` if that action ended the episode (EOS or the
    token budget: both are final for an answer, so nothing is bootstrapped past them).
    ``last_value[n]`` is the value of the state after the last step (the bootstrap at the
    rollout cut). With ``not_done = 1 - dones[t]`` and ``next_value`` = ``values[t + 1]``
    (or ``last_value`` at ``t = T - 1``)::

        delta[t] = rewards[t] + gamma * next_value * not_done - values[t]
        adv[t]   = delta[t] + gamma * lam * not_done * adv[t + 1]

    Works on numpy arrays or torch tensors (shapes ``(T, N)`` and ``(N,)``, or ``(T,)``
    and ``()`` for one episode stream).

    Returns:
        ``(advantages, returns)`` with ``returns = advantages + values`` (the value targets).
    """
    T = len(rewards)
    advantages = rewards * 0.0  # same type, shape, dtype and device as rewards
    next_adv = last_value * 0.0
    next_value = last_value
    for t in reversed(range(T)):
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * not_done - values[t]
        next_adv = delta + gamma * lam * not_done * next_adv
        advantages[t] = next_adv
        next_value = values[t]
    return advantages, advantages + values


@dataclass
class Segment:
    """The part of one episode that falls inside one rollout.

    Attributes:
        slot: Env slot.
        start: First step (row of the buffer) of the segment.
        length: Number of actions in it.
        context: Tokens the episode had before ``start`` (prompt + completion so far).
    """

    slot: int
    start: int
    length: int
    context: np.ndarray


@dataclass
class SegmentBatch:
    """Segments packed for one forward pass, laid out like a prompt and its completion.

    Row ``b`` is ``[left padding, context_b | actions_b, right padding]``: contexts are
    right-aligned to ``C`` columns and actions left-aligned after them, so the logits that
    predict action ``j`` of every row sit at column ``C - 1 + j``.

    Attributes:
        context_ids: (B, C) left-padded contexts.
        context_mask: (B, C)
        tokens: (B, K) actions, right-padded.
        token_mask: (B, K) 1 on real actions.
        index: (B, K) flat index ``t * num_envs + slot`` of each action in the buffer (0 on padding).
    """

    context_ids: torch.Tensor
    context_mask: torch.Tensor
    tokens: torch.Tensor
    token_mask: torch.Tensor
    index: torch.Tensor


class TokenRolloutBuffer:
    """Per-step storage for ``n_steps`` steps of ``num_envs`` token-env slots.

    Filled with :meth:`add` once per env step; :meth:`finish` records the bootstrap value.
    The trainer then fills ``ref_logprobs`` and calls :meth:`compute_advantages`.

    Tensors (all ``(n_steps, num_envs)`` on ``device``): ``actions``, ``logprobs`` (of the
    behaviour policy), ``values``, ``rewards`` (the env's), ``dones``, ``ref_logprobs``,
    ``advantages``, ``returns``.
    """

    def __init__(self, n_steps: int, num_envs: int, pad_id: int, device: torch.device) -> None:
        self.n_steps, self.num_envs, self.pad_id, self.device = n_steps, num_envs, pad_id, device
        shape = (n_steps, num_envs)
        self.actions = torch.zeros(shape, dtype=torch.long, device=device)
        self.logprobs = torch.zeros(shape, device=device)
        self.values = torch.zeros(shape, device=device)
        self.rewards = torch.zeros(shape, device=device)
        self.dones = torch.zeros(shape, device=device)
        self.ref_logprobs = torch.zeros(shape, device=device)
        self.advantages = torch.zeros(shape, device=device)
        self.returns = torch.zeros(shape, device=device)
        self.last_values = torch.zeros(num_envs, device=device)
        self._contexts: dict[tuple[int, int], np.ndarray] = {}
        self.pos = 0

    def reset(self) -> None:
        """Empty the buffer for the next rollout."""
        self._contexts.clear()
        self.pos = 0

    @property
    def full(self) -> bool:
        """Whether all ``n_steps`` steps of the rollout are stored."""
        return self.pos == self.n_steps

    def add(self, obs: dict[str, np.ndarray], actions, logprobs, values, rewards, dones) -> None:
        """Store one step. ``obs`` is the observation the actions were taken in.

        The episode context (the real tokens of ``obs``) is kept for the slots whose segment
        starts at this step: every slot at step 0, and slots whose episode ended at the step before.
        """
        t = self.pos
        starting = np.arange(self.num_envs) if t == 0 else np.flatnonzero(self.dones[t - 1].cpu().numpy())
        for n in starting:
            row_mask = obs["attention_mask"][n].astype(bool)
            self._contexts[(t, int(n))] = obs["input_ids"][n][row_mask].copy()
        self.actions[t] = actions
        self.logprobs[t] = logprobs
        self.values[t] = values
        self.rewards[t] = torch.as_tensor(rewards, dtype=torch.float32, device=self.device)
        self.dones[t] = torch.as_tensor(dones, dtype=torch.float32, device=self.device)
        self.pos += 1

    def finish(self, last_values: torch.Tensor) -> None:
        """Record the values of the states after the last step (bootstrap at the cut)."""
        self.last_values = last_values.detach().clone()

    def compute_advantages(self, rewards: torch.Tensor, gamma: float, lam: float) -> None:
        """GAE on ``rewards`` (the env rewards, possibly with a per-token KL penalty added)."""
        self.advantages, self.returns = compute_gae(rewards, self.values, self.dones, self.last_values, gamma, lam)

    def segments(self) -> list[Segment]:
        """All segments, ordered by (start step, slot)."""
        dones = self.dones.cpu().numpy().astype(bool)
        out = []
        for (t0, n), context in sorted(self._contexts.items()):
            ends = np.flatnonzero(dones[t0:, n])
            length = int(ends[0]) + 1 if len(ends) else self.n_steps - t0
            out.append(Segment(slot=n, start=t0, length=length, context=context))
        return out

    def pack(self, segments: list[Segment]) -> SegmentBatch:
        """Lay ``segments`` out for one forward pass (see :class:`SegmentBatch`)."""
        B = len(segments)
        C = max(len(s.context) for s in segments)
        K = max(s.length for s in segments)
        context_ids = np.full((B, C), self.pad_id, dtype=np.int64)
        context_mask = np.zeros((B, C), dtype=np.int64)
        index = np.zeros((B, K), dtype=np.int64)
        token_mask = np.zeros((B, K), dtype=np.int64)
        for b, s in enumerate(segments):
            c = len(s.context)
            context_ids[b, C - c:] = s.context
            context_mask[b, C - c:] = 1
            index[b, : s.length] = (s.start + np.arange(s.length)) * self.num_envs + s.slot
            token_mask[b, : s.length] = 1
        index_t = torch.as_tensor(index, device=self.device)
        mask_t = torch.as_tensor(token_mask, device=self.device)
        tokens = torch.where(mask_t.bool(), self.actions.reshape(-1)[index_t], self.pad_id)
        return SegmentBatch(
            context_ids=torch.as_tensor(context_ids, device=self.device),
            context_mask=torch.as_tensor(context_mask, device=self.device),
            tokens=tokens,
            token_mask=mask_t,
            index=index_t,
        )
