"""KV-cached sampling: batch generation for whole completions and a per-slot actor for token envs."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from agents.common.distributed import unwrap
from agents.common.model import check_context, lm_forward, output_cache, position_ids_from_mask
from instruct_env.error import ConfigError

if TYPE_CHECKING:
    from transformers.cache_utils import DynamicCache

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

    When every layer of the model's cache is a full-attention ``DynamicLayer``, the keys and
    values are written in place into buffers as wide as prompt + completion (no copy per
    token) and, with SDPA attention, the boolean mask is passed ready-made; otherwise the
    model's own cache grows as usual. Stops early once every row has produced EOS.
    """
    sampling = sampling or SamplingConfig()
    input_ids, attention_mask = trim_left_padding(input_ids, attention_mask)
    B, L = input_ids.shape
    check_context(model, L, max_new_tokens, " (max_prompt_tokens and max_new_tokens of the env, trainer or "
                  "evaluation; in the main job data.max_prompt_tokens and data.max_new_tokens)")
    device = input_ids.device
    positions = position_ids_from_mask(attention_mask)
    out = lm_forward(model, input_ids, attention_mask, positions, use_cache=True)
    logits = out.logits[:, -1]
    window = _Window(start=0, end=L)
    cache = _in_place_cache(output_cache(out), L + max_new_tokens, 0, window)
    mask_4d = cache is not None and _uses_sdpa(model)
    if cache is None:
        cache = output_cache(out)
    live = torch.zeros(B, L + max_new_tokens, dtype=torch.bool, device=device)  # (B, L + T) attended columns
    live[:, :L] = attention_mask.bool()
    next_pos = positions[:, -1] + 1
    tokens = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((B, max_new_tokens), device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    lengths = torch.full((B,), max_new_tokens, dtype=torch.long, device=device)
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
        live[:, L + t] = True
        out = lm_forward(model, tok[:, None], _attention_mask(live[:, : L + t + 1], 1, mask_4d), next_pos[:, None],
                         cache, use_cache=True)
        window.end += 1
        cache, logits = output_cache(out), out.logits[:, -1]
        next_pos = next_pos + 1
    steps = torch.arange(max_new_tokens, device=device)[None, :]
    gen_mask = (steps < lengths[:, None]).long()
    return Generation(tokens=tokens, logprobs=logprobs, mask=gen_mask, lengths=lengths)


def _uses_sdpa(model) -> bool:
    config = getattr(unwrap(model), "config", None)
    return getattr(config, "_attn_implementation", None) == "sdpa"


def _attention_mask(live: torch.Tensor, q: int, as_4d: bool) -> torch.Tensor:
    """The mask argument for ``q`` new tokens whose (B, S) attended columns (``q`` new ones last) are ``live``.

    ``as_4d``: the (B, 1, q, S) boolean mask SDPA uses, built here instead of by the model on
    every forward (``q > 1`` only for a prefill without cache, ``S == q``); else the (B, S) 0/1 mask.
    """
    if not as_4d:
        return live.long()
    mask = live[:, None, None, :]  # (B, 1, 1, S)
    if q > 1:
        causal = torch.ones(q, q, dtype=torch.bool, device=live.device).tril()  # (q, q)
        # A padding position would attend to nothing (a NaN row): let it see itself; no real token sees it.
        mask = (mask & causal) | torch.eye(q, dtype=torch.bool, device=live.device)  # (B, 1, q, q)
    return mask


class SlotActor:
    """Acts in a ``TokenVectorEnv`` keeping one KV cache row per environment slot.

    The keys and values live in buffers (``(N, heads, C, head_dim)`` per layer, ``C`` a few
    columns wider than the live tokens), and every forward writes its new column into them in
    place instead of concatenating a grown copy. All slots write the token of a step into the
    same column, so each slot's live tokens end at the same column; slots whose episodes end
    and restart get their new prompts prefilled and written into the columns that end there,
    the other slots carry on. Forwards see the buffers from the oldest live token on; every
    ``slack`` steps or so the live columns are copied to fresh buffers.

    Each env step therefore costs one one-token forward for all slots, plus the prefill of the
    slots that just started an episode: one forward for all of them, or a few when their prompt
    lengths differ enough that padding them to one width costs more than the extra forwards
    (``prefill_call_tokens``). The log-probabilities equal those of a forward over each slot's
    whole context (masked columns get zero attention weight).

    Args:
        policy: An :class:`~agents.common.model.ActorCritic`.
        prompt_width: The env's ``max_prompt_tokens`` (the prompt columns of an observation).
        slack: Free columns kept on the right of the buffers. The live columns are copied to
            fresh buffers (``max(P, live) + slack`` wide) when the right end is reached or more than
            ``slack`` dead columns gathered on the left. Small values keep the buffers compact (the
            attention reads them whole every step) at the price of a copy every ``slack`` steps.
        prefill_call_tokens: The cost of one more prefill forward, in padded prompt tokens
            (default 48 on CPU, where a forward's fixed cost is that of about 48 tokens of a small
            model, and 1024 on accelerators, where padding is nearly free).
    """

    def __init__(self, policy, prompt_width: int, slack: int = 4, prefill_call_tokens: int | None = None) -> None:
        if slack < 1:
            raise ConfigError(f"slack must be >= 1 column; got {slack}.")
        if prefill_call_tokens is not None and prefill_call_tokens < 0:
            raise ConfigError(f"prefill_call_tokens must be >= 0; got {prefill_call_tokens}.")
        self.policy = policy
        self.P = prompt_width
        self.slack = slack
        self.prefill_call_tokens = prefill_call_tokens
        # With SDPA attention the boolean (B, 1, q, S) mask is passed ready-made (the model
        # would otherwise rebuild it from the 2-D mask on every forward).
        self._mask_4d = _uses_sdpa(policy)
        # A transformers DynamicCache whose layers write into the buffers below (None until ``start``).
        self.cache: DynamicCache | None = None
        self._window = _Window()
        # The per-slot buffers below are empty until ``start`` allocates them.
        self._mask = torch.zeros(0, 0, dtype=torch.bool)  # (N, C) bool, True on each slot's live columns
        self._row_start = np.zeros(0, dtype=np.int64)  # (N,) first live column of each slot
        self.next_pos = torch.zeros(0, dtype=torch.long)  # (N,)
        self.logits = torch.zeros(0, 0)  # (N, V) next-token logits per slot
        self.values = torch.zeros(0)  # (N,) value of the current state per slot

    @property
    def mask(self) -> torch.Tensor:
        """(N, S) attention mask (0/1) of the live columns of the cache."""
        return self._mask[:, self._window.start: self._window.end].long()

    def _prompts(self, obs: dict[str, np.ndarray], rows: np.ndarray, device):
        ids = torch.as_tensor(obs["input_ids"][rows, : self.P], device=device)
        mask = torch.as_tensor(obs["attention_mask"][rows, : self.P], device=device)
        return trim_left_padding(ids, mask)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache=None):
        """The policy on ``ids`` (B, q) after ``cache``; ``mask`` (B, S) covers the cached columns and ``ids``."""
        # The ready-made 4-D mask only once the first prefill showed full-attention layers.
        attn = _attention_mask(mask.bool(), ids.shape[1], self._mask_4d and self.cache is not None)
        return self.policy(ids, attn, positions, cache, use_cache=True)

    @torch.no_grad()
    def start(self, obs: dict[str, np.ndarray]) -> None:
        """Prefill every slot from a fresh ``reset`` observation."""
        device = next(self.policy.parameters()).device
        ids, mask = self._prompts(obs, np.arange(obs["input_ids"].shape[0]), device)
        # An observation is [prompt (P columns) | answer so far]: its width fixes the answer budget.
        check_context(self.policy, ids.shape[1], obs["input_ids"].shape[1] - self.P,
                      " (the Token env's max_prompt_tokens and max_new_tokens; in the main job "
                      "data.max_prompt_tokens and data.max_new_tokens)")
        self._fill(ids, mask)

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
        self._fill(torch.as_tensor(ids, device=device), torch.as_tensor(mask, device=device))

    def _fill(self, ids: torch.Tensor, mask: torch.Tensor) -> None:
        """Prefill all slots with right-aligned ``ids`` (N, L) and allocate the buffers."""
        pos = position_ids_from_mask(mask)
        logits, values, fresh = self._forward(ids, mask, pos)
        N, L = ids.shape
        # The live columns end at column >= P, so that a restarted prompt (<= P wide) always fits on the left.
        end = max(self.P, L)
        capacity = end + self.slack
        self._window = _Window(start=end - L, end=end)
        self.cache = _in_place_cache(fresh, capacity, end - L, self._window)
        if self.cache is None:
            _full_attention_layers(fresh)  # raises, naming the layer types
        self._mask = torch.zeros(N, capacity, dtype=torch.bool, device=mask.device)
        self._mask[:, end - L: end] = mask.bool()
        self._row_start = end - L + _leading_zeros(mask.cpu().numpy())
        self.next_pos = pos[:, -1] + 1
        self.logits, self.values = logits[:, -1], values[:, -1]

    @torch.no_grad()
    def advance(self, actions: torch.Tensor, restarted: np.ndarray, obs: dict[str, np.ndarray]) -> None:
        """Feed the actions just taken; prefill the slots in ``restarted`` from ``obs``."""
        device = actions.device
        w = self._window
        w.start = int(self._row_start.min())
        live = w.end - w.start
        if w.end >= self._mask.shape[1] or w.start - max(self.P - live, 0) > self.slack:
            self._move_left()
        self._mask[:, w.end] = True
        if len(restarted):
            self._mask[torch.as_tensor(restarted, device=device), w.end] = False  # their token is dead: masked out
        logits, values, _ = self._forward(actions[:, None], self._mask[:, w.start: w.end + 1], self.next_pos[:, None],
                                          self.cache)
        w.end += 1
        self.logits, self.values = logits[:, -1], values[:, -1]
        self.next_pos = self.next_pos + 1
        if len(restarted):
            lengths = obs["attention_mask"][restarted, : self.P].sum(1)
            for bucket in _length_buckets(lengths, self._call_tokens(device)):
                self._prefill(np.asarray(restarted)[bucket], obs, device)

    def _call_tokens(self, device) -> int:
        if self.prefill_call_tokens is not None:
            return self.prefill_call_tokens
        return 48 if torch.device(device).type == "cpu" else 1024

    def _prefill(self, rows: np.ndarray, obs: dict[str, np.ndarray], device) -> None:
        """Prefill the new prompts of ``rows`` in one forward; write them into the columns ending at ``end``."""
        ids, mask = self._prompts(obs, rows, device)
        pos = position_ids_from_mask(mask)
        logits, values, fresh = self._forward(ids, mask, pos)
        rows_t = torch.as_tensor(rows, device=device)
        width, end = ids.shape[1], self._window.end
        for big, small in zip(self._cache_layers(), _full_attention_layers(fresh)):
            big.write_rows(rows_t, end - width, small.keys, small.values)
        self._mask[rows_t] = False
        self._mask[rows_t, end - width: end] = mask.bool()
        self._row_start[rows] = end - width + _leading_zeros(obs["attention_mask"][rows, : self.P][:, -width:])
        self.next_pos[rows_t] = pos[:, -1] + 1
        self.logits[rows_t] = logits[:, -1]
        self.values[rows_t] = values[:, -1]

    def _cache_layers(self) -> list:
        """The in-place layers of the slot cache (allocated by ``start``)."""
        if self.cache is None:
            raise RuntimeError("SlotActor.start() must be called before the cache is used.")
        return self.cache.layers

    def _move_left(self) -> None:
        """Copy the live columns to fresh buffers ``slack`` columns wider, ending at column ``max(P, live)``."""
        w = self._window
        live = w.end - w.start
        new_end = max(self.P, live)
        new_start, capacity = new_end - live, new_end + self.slack
        mask = self._mask.new_zeros(self._mask.shape[0], capacity)
        mask[:, new_start: new_end] = self._mask[:, w.start: w.end]
        self._mask = mask
        for layer in self._cache_layers():
            layer.move(w.start, w.end, new_start, capacity)
        self._row_start -= w.start - new_start
        w.start, w.end = new_start, new_end


def _length_buckets(lengths: np.ndarray, call_tokens: int) -> list[np.ndarray]:
    """Split rows into groups prefilled together, minimising padded tokens + ``call_tokens`` per group.

    Each group is padded to its longest prompt; with the rows sorted by length the best split
    into contiguous runs is found by dynamic programming (O(k^2) for k rows).

    >>> [b.tolist() for b in _length_buckets(np.array([5, 60, 6, 58]), call_tokens=10)]
    [[0, 2], [3, 1]]
    >>> [b.tolist() for b in _length_buckets(np.array([5, 60, 6, 58]), call_tokens=200)]
    [[0, 2, 3, 1]]
    """
    order = np.argsort(lengths, kind="stable")
    k = len(order)
    if k < 2:
        return [order]
    sorted_len = np.asarray(lengths)[order].astype(np.int64)
    best = np.zeros(k + 1, dtype=np.int64)  # best[j]: cost of the first j sorted rows
    cut = np.zeros(k + 1, dtype=np.int64)
    starts = np.arange(k)
    for j in range(1, k + 1):
        costs = best[:j] + (j - starts[:j]) * sorted_len[j - 1] + call_tokens  # last group = rows i..j-1
        i = int(np.argmin(costs))
        best[j], cut[j] = costs[i], i
    groups, j = [], k
    while j > 0:
        groups.append(order[cut[j]: j])
        j = int(cut[j])
    return groups[::-1]


@dataclass
class _Window:
    """The columns ``[start, end)`` of a :class:`SlotActor`'s buffers that the next forward attends to."""

    start: int = 0
    end: int = 0


def _leading_zeros(mask: np.ndarray) -> np.ndarray:
    """(B,) number of leading zeros of each row of a (B, L) 0/1 mask (L for an all-zero row)."""
    mask = np.asarray(mask).astype(bool)
    return np.where(mask.any(1), mask.argmax(1), mask.shape[1])


def _full_attention_layers(cache) -> list:
    """The layers of ``cache`` if all are full-attention ``DynamicLayer``s; else a ConfigError."""
    if not _is_full_attention(cache):
        kinds = sorted({type(layer).__name__ for layer in getattr(cache, "layers", None) or []})
        raise ConfigError(
            f"SlotActor needs a model whose forward returns a transformers DynamicCache of full-attention "
            f"layers (DynamicLayer); got {type(cache).__name__} with layers {kinds or 'none'}. "
            "Models with sliding-window, linear or shared-KV attention layers are not supported by the "
            "token-env actor; train them with a whole-completion algorithm (grpo, rloo, reinforce) instead."
        )
    return cache.layers


def _is_full_attention(cache) -> bool:
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers:
        return False
    return all(type(layer) is DynamicLayer for layer in layers)


def _in_place_cache(cache, capacity: int, offset: int, window: _Window):
    """``cache`` with each layer's keys/values moved to column ``offset`` of in-place buffers ``capacity`` wide.

    None when some layer is not a full-attention ``DynamicLayer`` (the model's cache is then used as is).
    """
    if not _is_full_attention(cache):
        return None
    cache.layers = [_in_place_layer_class()(layer.keys, layer.values, capacity, offset, window)
                    for layer in cache.layers]
    return cache


@functools.cache
def _in_place_layer_class():
    """A transformers cache layer that writes new keys/values into preallocated buffers.

    Defined on first use so that importing this module does not import transformers.
    """
    from transformers.cache_utils import DynamicLayer

    class InPlaceLayer(DynamicLayer):
        """Keys/values in ``(N, heads, capacity, head_dim)`` buffers; a forward sees columns ``[start, end + q)``."""

        def __init__(self, keys: torch.Tensor, values: torch.Tensor, capacity: int, offset: int,
                     window: _Window) -> None:
            super().__init__()
            N, H, L, D = keys.shape
            self.key_buffer = keys.new_zeros(N, H, capacity, D)  # zeros: masked columns must hold finite values
            self.value_buffer = values.new_zeros(N, H, capacity, values.shape[-1])
            self.key_buffer[:, :, offset: offset + L] = keys
            self.value_buffer[:, :, offset: offset + L] = values
            self.window = window
            self.device = keys.device
            self.is_initialized = True
            self._view(window.end)

        def _view(self, end: int) -> None:
            self.keys = self.key_buffer[:, :, self.window.start: end]
            self.values = self.value_buffer[:, :, self.window.start: end]

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
            end = self.window.end
            q = key_states.shape[-2]
            self.key_buffer[:, :, end: end + q] = key_states
            self.value_buffer[:, :, end: end + q] = value_states
            self._view(end + q)
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.window.end - self.window.start

        def write_rows(self, rows: torch.Tensor, col: int, keys: torch.Tensor, values: torch.Tensor) -> None:
            """Write ``keys``/``values`` (len(rows), H, L, D) of ``rows`` into columns ``[col, col + L)``."""
            L = keys.shape[-2]
            self.key_buffer[rows, :, col: col + L] = keys
            self.value_buffer[rows, :, col: col + L] = values

        def move(self, start: int, end: int, new_start: int, capacity: int) -> None:
            """Copy columns ``[start, end)`` to column ``new_start`` of new buffers ``capacity`` wide."""
            new_end = new_start + end - start
            for name in ("key_buffer", "value_buffer"):
                old = getattr(self, name)
                new = old.new_empty(*old.shape[:2], capacity, old.shape[3])
                new[:, :, :new_start] = 0  # masked columns must hold finite values
                new[:, :, new_start: new_end] = old[:, :, start: end]
                new[:, :, new_end:] = 0
                setattr(self, name, new)

    return InPlaceLayer
