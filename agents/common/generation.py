"""KV-cached sampling: batch generation for whole completions and a per-slot actor for token envs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from agents.common.model import lm_forward, output_cache, position_ids_from_mask

__all__ = ["SamplingConfig", "sample_tokens", "generate", "Generation", "trim_left_padding", "SlotActor"]


@dataclass
class SamplingConfig:
    """How tokens are drawn: ``temperature=0`` is greedy; ``top_k=0`` keeps all tokens."""

    temperature: float = 1.0
    top_k: int = 0


def sample_tokens(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None):
    """Draw one token per row from ``logits`` (B, V); return ``(tokens (B,), logprobs (B,))``.

    Log-probabilities are those of the *sampling* distribution at temperature 1 over the
    full vocabulary (what the policy-gradient loss differentiates), not of the tempered one.
    """
    logp = F.log_softmax(logits.float(), dim=-1)  # (B, V)
    if cfg.temperature == 0:
        tokens = logp.argmax(-1)
    else:
        scores = logits.float() / cfg.temperature
        if cfg.top_k:
            kth = torch.topk(scores, cfg.top_k, dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        probs = F.softmax(scores, dim=-1)
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)


def trim_left_padding(input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """Drop leading columns that are padding in every row."""
    used = attention_mask.any(0).nonzero()
    start = int(used[0]) if len(used) else attention_mask.shape[1]
    return input_ids[:, start:], attention_mask[:, start:]


@dataclass
class Generation:
    """Result of :func:`generate` (all tensors on the model's device).

    Attributes:
        tokens: (B, T) generated ids; after the first EOS filled with ``pad_id``.
        logprobs: (B, T) log-probabilities of the generated tokens (0 after the end).
        mask: (B, T) 1 for generated tokens up to and including EOS.
        lengths: (B,) number of generated tokens (EOS included).
    """

    tokens: torch.Tensor
    logprobs: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor


@torch.no_grad()
def generate(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int, eos_id: int,
             pad_id: int, sampling: SamplingConfig | None = None, generator: torch.Generator | None = None
             ) -> Generation:
    """Sample completions for left-padded prompts with a KV cache (one forward per token).

    Stops early once every row has produced EOS.
    """
    sampling = sampling or SamplingConfig()
    input_ids, attention_mask = trim_left_padding(input_ids, attention_mask)
    B = input_ids.shape[0]
    device = input_ids.device
    positions = position_ids_from_mask(attention_mask)
    out = lm_forward(model, input_ids, attention_mask, positions, use_cache=True)
    cache, logits = output_cache(out), out.logits[:, -1]
    next_pos = positions[:, -1] + 1
    tokens = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((B, max_new_tokens), device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    lengths = torch.full((B,), max_new_tokens, dtype=torch.long, device=device)
    mask = attention_mask
    for t in range(max_new_tokens):
        tok, lp = sample_tokens(logits, sampling, generator)
        tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        tokens[:, t] = tok
        logprobs[:, t] = torch.where(done, torch.zeros_like(lp), lp)
        finished = ~done & (tok == eos_id)
        lengths = torch.where(finished, torch.full_like(lengths, t + 1), lengths)
        done = done | finished
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype, device=device)], dim=1)
        out = lm_forward(model, tok[:, None], mask, next_pos[:, None], cache, use_cache=True)
        cache, logits = output_cache(out), out.logits[:, -1]
        next_pos = next_pos + 1
    steps = torch.arange(max_new_tokens, device=device)[None, :]
    gen_mask = (steps < lengths[:, None]).long()
    return Generation(tokens=tokens, logprobs=logprobs, mask=gen_mask, lengths=lengths)


class SlotActor:
    """Acts in a ``TokenVectorEnv`` keeping one KV cache row per environment slot.

    The cache is one batched Hugging Face cache whose rows are the env slots. Every row's
    live tokens are right-aligned (older columns masked out), so a slot whose episode ends
    and restarts gets its new prompt prefilled separately and written into the last columns
    of its row; the other slots carry on. Each env step therefore costs one one-token
    forward for all slots, plus a prefill for the slots that just started an episode.

    Args:
        policy: An :class:`~agents.common.model.ActorCritic`.
        prompt_width: The env's ``max_prompt_tokens`` (the prompt columns of an observation).
    """

    def __init__(self, policy, prompt_width: int) -> None:
        self.policy = policy
        self.P = prompt_width
        self.cache = None
        self.mask: torch.Tensor | None = None  # (N, S)
        self.next_pos: torch.Tensor | None = None  # (N,)
        self.logits: torch.Tensor | None = None  # (N, V) next-token logits per slot
        self.values: torch.Tensor | None = None  # (N,) value of the current state per slot

    def _prompts(self, obs: dict[str, np.ndarray], rows: np.ndarray, device):
        ids = torch.as_tensor(obs["input_ids"][rows, : self.P], device=device)
        mask = torch.as_tensor(obs["attention_mask"][rows, : self.P], device=device)
        return trim_left_padding(ids, mask)

    @torch.no_grad()
    def start(self, obs: dict[str, np.ndarray]) -> None:
        """Prefill every slot from a fresh ``reset`` observation."""
        device = next(self.policy.parameters()).device
        ids, mask = self._prompts(obs, np.arange(obs["input_ids"].shape[0]), device)
        pos = position_ids_from_mask(mask)
        logits, values, self.cache = self.policy(ids, mask, pos, use_cache=True)
        self.mask, self.next_pos = mask, pos[:, -1] + 1
        self.logits, self.values = logits[:, -1], values[:, -1]

    @torch.no_grad()
    def resume(self, obs: dict[str, np.ndarray]) -> None:
        """Prefill every slot from a mid-episode observation (prompt *and* completion so far).

        Use after the policy's weights changed (an RL update): the cached keys and values
        were computed by the old weights, so every row is recomputed from its tokens.
        """
        device = next(self.policy.parameters()).device
        mask_np = obs["attention_mask"].astype(bool)
        lengths = mask_np.sum(1)
        width = int(lengths.max())
        pad = int(obs["input_ids"][~mask_np][0]) if (~mask_np).any() else 0
        ids = np.full((len(lengths), width), pad, dtype=np.int64)
        mask = np.zeros((len(lengths), width), dtype=np.int64)
        for i, n in enumerate(lengths):  # the real tokens are contiguous: right-align them
            ids[i, width - n:] = obs["input_ids"][i][mask_np[i]]
            mask[i, width - n:] = 1
        ids_t, mask_t = torch.as_tensor(ids, device=device), torch.as_tensor(mask, device=device)
        pos = position_ids_from_mask(mask_t)
        logits, values, self.cache = self.policy(ids_t, mask_t, pos, use_cache=True)
        self.mask, self.next_pos = mask_t, pos[:, -1] + 1
        self.logits, self.values = logits[:, -1], values[:, -1]

    @torch.no_grad()
    def advance(self, actions: torch.Tensor, restarted: np.ndarray, obs: dict[str, np.ndarray]) -> None:
        """Feed the actions just taken; prefill the slots in ``restarted`` from ``obs``."""
        device = actions.device
        N = actions.shape[0]
        keep = torch.ones(N, dtype=self.mask.dtype, device=device)
        if len(restarted):
            keep[torch.as_tensor(restarted, device=device)] = 0  # their token is dead: masked out
        self.mask = torch.cat([self.mask, keep[:, None]], dim=1)
        logits, values, self.cache = self.policy(actions[:, None], self.mask, self.next_pos[:, None], self.cache,
                                                 use_cache=True)
        self.logits, self.values = logits[:, -1], values[:, -1]
        self.next_pos = self.next_pos + 1
        if len(restarted):
            self._prefill(restarted, obs, device)
        self._compact()

    def _prefill(self, rows: np.ndarray, obs: dict[str, np.ndarray], device) -> None:
        ids, mask = self._prompts(obs, rows, device)
        pos = position_ids_from_mask(mask)
        logits, values, fresh = self.policy(ids, mask, pos, use_cache=True)
        rows_t = torch.as_tensor(rows, device=device)
        width = ids.shape[1]
        S = self.mask.shape[1]
        if width > S:  # grow every row on the left (masked columns)
            self._pad_left(width - S)
            S = width
        for big, small in zip(_cache_layers(self.cache), _cache_layers(fresh)):
            for name in ("keys", "values"):
                getattr(big, name)[rows_t, :, S - width:] = getattr(small, name)
                getattr(big, name)[rows_t, :, : S - width] = 0
        self.mask[rows_t] = 0
        self.mask[rows_t, S - width:] = mask
        self.next_pos[rows_t] = pos[:, -1] + 1
        self.logits[rows_t] = logits[:, -1]
        self.values[rows_t] = values[:, -1]

    def _pad_left(self, n: int) -> None:
        self.mask = torch.cat([self.mask.new_zeros(self.mask.shape[0], n), self.mask], dim=1)
        for layer in _cache_layers(self.cache):
            for name in ("keys", "values"):
                t = getattr(layer, name)
                setattr(layer, name, torch.cat([t.new_zeros(*t.shape[:2], n, t.shape[3]), t], dim=2))

    def _compact(self) -> None:
        """Drop leading columns no slot attends to (keeps the cache at most ~P + T wide)."""
        used = self.mask.any(0).nonzero()
        start = int(used[0]) if len(used) else 0
        if start < 64:
            return
        self.mask = self.mask[:, start:]
        for layer in _cache_layers(self.cache):
            for name in ("keys", "values"):
                setattr(layer, name, getattr(layer, name)[:, :, start:].contiguous())


def _cache_layers(cache):
    layers = getattr(cache, "layers", None)
    if layers is None:
        raise TypeError(
            f"SlotActor needs a transformers DynamicCache with per-layer keys/values; got {type(cache).__name__}."
        )
    return layers
