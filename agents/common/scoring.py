"""Score given tokens after given contexts in one forward pass (the update side of RL)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from agents.common.distributed import unwrap
from agents.common.generation import trim_left_padding
from agents.common.model import ActorCritic, lm_forward, position_ids_from_mask

__all__ = ["TokenScores", "score_tokens", "masked_mean"]


@dataclass
class TokenScores:
    """Per-token results of :func:`score_tokens`, all ``(B, K)``.

    Attributes:
        logprobs: log pi(token | context, earlier tokens) under ``softmax(logits / temperature)``.
        entropy: Entropy of that distribution at each position.
        values: The critic's value of the state *before* each token (``None`` for a plain LM).
    """

    logprobs: torch.Tensor
    entropy: torch.Tensor
    values: torch.Tensor | None


def score_tokens(model, context_ids: torch.Tensor, context_mask: torch.Tensor, tokens: torch.Tensor,
                 token_mask: torch.Tensor, temperature: float = 1.0) -> TokenScores:
    """Log-probabilities (and values) of ``tokens`` (B, K) following left-padded ``context_ids`` (B, C).

    ``tokens`` are left-aligned after the contexts and right-padded (``token_mask`` 0 on
    padding), so one forward over ``[context | tokens[:, :-1]]`` puts the logits predicting
    token ``j`` of every row at column ``C - 1 + j``.

    Args:
        model: An :class:`~agents.common.model.ActorCritic` (values returned) or a causal LM,
            either possibly inside a :class:`~torch.nn.parallel.DistributedDataParallel` wrapper.
        context_ids: (B, C) left-padded context token ids.
        context_mask: (B, C) 1 on real context tokens.
        tokens: (B, K) the scored tokens, right-padded.
        token_mask: (B, K) 1 on real tokens.
        temperature: The policy is ``softmax(logits / temperature)``, the same distribution
            the rollout sampled from (so the first PPO ratio is exactly 1).
    """
    context_ids, context_mask = trim_left_padding(context_ids, context_mask)
    C = context_ids.shape[1]
    input_ids = torch.cat([context_ids, tokens[:, :-1]], dim=1)  # (B, C + K - 1)
    mask = torch.cat([context_mask, token_mask[:, :-1].to(context_mask.dtype)], dim=1)
    positions = position_ids_from_mask(mask)
    if isinstance(unwrap(model), ActorCritic):
        logits, values, _ = model(input_ids, mask, positions)
        values = values[:, C - 1:].float()  # (B, K)
    else:
        logits, values = lm_forward(model, input_ids, mask, positions).logits, None
    logits = logits[:, C - 1:].float() / temperature  # (B, K, V)
    logp_all = F.log_softmax(logits, dim=-1)  # (B, K, V)
    logprobs = logp_all.gather(-1, tokens[:, :, None]).squeeze(-1)  # (B, K)
    entropy = -(logp_all.exp() * logp_all).sum(-1)  # (B, K)
    return TokenScores(logprobs=logprobs, entropy=entropy, values=values)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1 (all of them, or along ``dim``)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)
