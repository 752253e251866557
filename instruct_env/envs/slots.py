"""Batched episode state: N fixed-size token buffers stepped with array operations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from instruct_env.envs.core import EnvSetup, PromptBank
from instruct_env.tasks.sample import Sample

__all__ = ["TokenSlots", "ShapingFn"]

#: Per-token shaping hook: ``fn(tokens, generated, samples) -> bonus``, where ``tokens`` (k,)
#: are the ids just emitted by the k slots that acted, ``generated`` their completion ids so
#: far (read-only views, EOS included when just emitted) and ``samples`` their samples.
ShapingFn = Callable[[np.ndarray, Sequence[np.ndarray], Sequence[Sample]], Any]


class TokenSlots:
    """``n`` episodes laid out as rows ``[left-padded prompt (P) | completion (T)]``."""

    def __init__(self, setup: EnvSetup, n: int) -> None:
        self.setup = setup
        self.bank = PromptBank(setup)
        self.P, self.T = setup.max_prompt_tokens, setup.max_new_tokens
        self.input_ids = np.full((n, self.P + self.T), setup.pad_token_id, dtype=np.int64)
        self.attention_mask = np.zeros((n, self.P + self.T), dtype=np.int64)
        self.num_generated = np.zeros(n, dtype=np.int64)
        self.samples: list[Sample | None] = [None] * n
        self.prompt_info: list[tuple[int, str, dict[str, Any]] | None] = [None] * n
        self._rows = np.arange(n)

    def start(self, slot: int, sample: Sample) -> None:
        """Begin a new episode in ``slot`` with ``sample``'s prompt."""
        self.prompt_info[slot] = self.bank.fill(self.input_ids[slot, : self.P], self.attention_mask[slot, : self.P], sample)
        self.input_ids[slot, self.P:] = self.setup.pad_token_id
        self.attention_mask[slot, self.P:] = 0
        self.num_generated[slot] = 0
        self.samples[slot] = sample

    def push(self, slots: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Append ``tokens`` to ``slots``; return their (terminated, truncated) flags."""
        cols = self.P + self.num_generated[slots]
        self.input_ids[slots, cols] = tokens
        self.attention_mask[slots, cols] = 1
        self.num_generated[slots] += 1
        terminated = tokens == self.setup.eos_token_id
        truncated = ~terminated & (self.num_generated[slots] >= self.T)
        return terminated, truncated

    def sample(self, slot: int) -> Sample:
        """The sample of the episode in ``slot`` (one must have started there)."""
        sample = self.samples[slot]
        if sample is None:
            raise RuntimeError(f"No episode has started in slot {slot}: reset the environment first.")
        return sample

    def prompt(self, slot: int) -> tuple[int, str, dict[str, Any]]:
        """``(prompt tokens, prompt text, formatter info)`` of the episode in ``slot``."""
        info = self.prompt_info[slot]
        if info is None:
            raise RuntimeError(f"No episode has started in slot {slot}: reset the environment first.")
        return info

    def completion_ids(self, slot: int) -> np.ndarray:
        """Completion token ids of ``slot`` so far (a read-only view, EOS included)."""
        view = self.input_ids[slot, self.P: self.P + self.num_generated[slot]]
        view = view.view()
        view.flags.writeable = False
        return view

    def completion_texts(self, slots: Sequence[int]) -> list[str]:
        """Decoded completions (special tokens, hence EOS, dropped)."""
        return self.setup.decode_batch([self.completion_ids(s) for s in slots])

    def observation(self, slots: np.ndarray | slice | int | None = None) -> dict[str, np.ndarray]:
        """A fresh copy of the observation arrays (all rows, or ``slots``; one int: that row, unbatched)."""
        sel = slice(None) if slots is None else slots
        return {"input_ids": self.input_ids[sel].copy(), "attention_mask": self.attention_mask[sel].copy()}

    def static_info(self, slot: int) -> dict[str, Any]:
        """Text describing the episode in ``slot`` (set at reset, unchanged while it runs)."""
        sample = self.sample(slot)
        n_prompt, prompt, fmt = self.prompt(slot)
        return {
            "task": sample.task,
            "sample_id": sample.id,
            "instruction": sample.instruction,
            "context": sample.context,
            "prompt": prompt,
            "references": sample.references,
            "prompt_tokens": n_prompt,
            "prompt_truncated": bool(fmt.get("truncated", False)),
        }

    def shaping(self, fn: ShapingFn | None, slots: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Evaluate the per-token shaping hook for the slots that just acted."""
        if fn is None or len(slots) == 0:
            return np.zeros(len(slots))
        bonus = np.asarray(
            fn(tokens, [self.completion_ids(s) for s in slots], [self.sample(s) for s in slots]), dtype=np.float64
        )
        if bonus.shape != (len(slots),) or not np.all(np.isfinite(bonus)):
            from instruct_env.error import RewardError

            raise RewardError(f"The shaping hook returned {bonus!r}; expected {len(slots)} finite floats.")
        return bonus

    def finish(self, slots: Sequence[int]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Score finished episodes; return rewards and per-slot end-of-episode info."""
        texts = self.completion_texts(slots)
        samples = [self.sample(s) for s in slots]
        total, components, sources = self.setup.score(texts, samples)
        infos = []
        for j, slot in enumerate(slots):
            infos.append(
                {
                    "completion": texts[j],
                    "completion_tokens": int(self.num_generated[slot]),
                    "reward_components": {k: float(v[j]) for k, v in components.items()},
                    **sources[j],
                }
            )
        return total, infos
