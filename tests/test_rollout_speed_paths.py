"""The fast sampling paths (in-place KV buffers, ready-made masks, bucketed prefills) match full forwards."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from rl_utils import tiny_policy, tiny_tokenizer

import instruct_env  # noqa: F401  (registers the envs)
from agents.common.generation import SamplingConfig, SlotActor, _length_buckets, generate
from agents.common.scoring import score_tokens
from instruct_env.error import ConfigError
from instruct_env.tasks.sample import Sample

# Instructions of different lengths, so that restarted slots have prompts of different widths.
INSTRUCTIONS = ["Say yes.", "Say no maybe.", "Say cat dog red yes no.", "Say dog.", "Say red cat red cat red cat."]


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def _policy(tokenizer, attn: str):
    policy = tiny_policy(tokenizer, seed=3).eval()
    policy.lm.set_attn_implementation(attn)
    return policy


def _env(tokenizer, num_envs: int, max_new_tokens: int):
    samples = [Sample(id=f"s{i}", task="say", instruction=text, references=("yes",))
               for i, text in enumerate(INSTRUCTIONS)]
    return gym.make_vec("InstructEnv/Token-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                        dataset=samples, tokenizer=tokenizer, max_prompt_tokens=16, max_new_tokens=max_new_tokens,
                        reward="exact_match")


@torch.no_grad()
def _full_forward(policy, obs):
    """Next-token log-probs (N, V) and values (N,) of each slot, from one forward over its real tokens."""
    logps, values = [], []
    for ids, mask in zip(obs["input_ids"], obs["attention_mask"]):
        tokens = torch.as_tensor(ids[mask.astype(bool)])[None]  # (1, n), no padding
        logits, value, _ = policy(tokens, torch.ones_like(tokens))
        logps.append(F.log_softmax(logits[0, -1], -1))
        values.append(value[0, -1])
    return torch.stack(logps), torch.stack(values)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize(("slack", "call_tokens"), [(1, 0), (4, None), (3, 10**6)])
def test_slot_actor_matches_full_forward(tokenizer, attn, slack, call_tokens):
    """At every step, every slot's logits and value equal a forward over its whole context (1e-5)."""
    policy = _policy(tokenizer, attn)
    env = _env(tokenizer, num_envs=5, max_new_tokens=4)
    obs, _ = env.reset(seed=0)
    actor = SlotActor(policy, 16, slack=slack, prefill_call_tokens=call_tokens)
    actor.start(obs)
    gen = torch.Generator().manual_seed(0)
    eos = tokenizer.eos_token_id
    restarts = 0
    for step in range(30):
        logp, values = _full_forward(policy, obs)
        torch.testing.assert_close(F.log_softmax(actor.logits, -1), logp, atol=1e-5, rtol=0)
        torch.testing.assert_close(actor.values, values, atol=1e-5, rtol=0)
        probs = F.softmax(actor.logits, -1)
        probs[:, eos] += 0.3  # end episodes at different steps: staggered restarts
        actions = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
        obs, _, terminated, truncated, _ = env.step(actions.numpy())
        finished = np.flatnonzero(terminated | truncated)
        restarts += len(finished)
        actor.advance(actions, finished, obs)
        if step == 15:
            actor.resume(obs)  # mid-episode re-read (after an update in training)
    assert restarts >= 10


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_generate_logprobs_match_sequence_scoring(tokenizer, attn):
    policy = _policy(tokenizer, attn)
    texts = ["Say yes .", "Say cat dog red yes no .", "Say no", "Say red cat red cat red cat ."]
    enc = tokenizer(texts, padding=True, padding_side="left", return_tensors="pt")
    gen = generate(policy.lm, enc["input_ids"], enc["attention_mask"], 6, tokenizer.eos_token_id,
                   tokenizer.pad_token_id, SamplingConfig(), torch.Generator().manual_seed(0))
    with torch.no_grad():
        scores = score_tokens(policy.lm, enc["input_ids"], enc["attention_mask"], gen.tokens, gen.mask)
    real = gen.mask.bool()
    assert real.sum() > 8
    torch.testing.assert_close(gen.logprobs[real], scores.logprobs[real], atol=1e-5, rtol=0)


def _split_cost(sorted_lengths, cuts, call_tokens):
    bounds = [0, *cuts, len(sorted_lengths)]
    return sum((b - a) * sorted_lengths[b - 1] + call_tokens for a, b in itertools.pairwise(bounds))


@pytest.mark.parametrize("call_tokens", [0, 7, 40])
def test_length_buckets_partition_rows_at_least_cost(call_tokens):
    rng = np.random.default_rng(call_tokens)
    for _ in range(20):
        lengths = rng.integers(1, 60, size=rng.integers(1, 8))
        buckets = _length_buckets(lengths, call_tokens)
        assert sorted(np.concatenate(buckets).tolist()) == list(range(len(lengths)))
        cost = sum(len(b) * lengths[b].max() + call_tokens for b in buckets)
        sorted_lengths = np.sort(lengths)
        n = len(lengths)
        best = min(_split_cost(sorted_lengths, cuts, call_tokens)
                   for r in range(n) for cuts in itertools.combinations(range(1, n), r))
        assert cost == best



def test_slot_actor_arguments_are_validated(tokenizer):
    policy = _policy(tokenizer, "sdpa")
    with pytest.raises(ConfigError, match=r"slack must be >= 1 column; got 0\."):
        SlotActor(policy, 16, slack=0)
    with pytest.raises(ConfigError, match=r"prefill_call_tokens must be >= 0; got -1\."):
        SlotActor(policy, 16, prefill_call_tokens=-1)
