"""Tiny models, a tiny tokenizer and toy tasks with a known optimum for the RL tests."""

from __future__ import annotations

import torch

from agents.common.model import ActorCritic, DefaultModelConfig, build_default_model
from instruct_env.tasks.sample import Sample

WORDS = ["<|pad|>", "<|eos|>", "<unk>", "###", "Instruction", "Response", "Input", ":", ".", "Say",
         "yes", "no", "maybe", "cat", "dog", "red"]


def tiny_tokenizer():
    """A 16-token word-level tokenizer (pad, eos, unk, the prompt template's words, a few answers)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|eos|>", pad_token="<|pad|>",
                                   unk_token="<unk>")


class SaysWord:
    """Verifier: 1 for exactly the reference word, 0.25 when the answer starts with it, else 0."""

    def __call__(self, completion: str, sample: Sample) -> float:
        words = completion.split()
        if words == [sample.references[0]]:
            return 1.0
        return 0.25 if words[:1] == [sample.references[0]] else 0.0


def say_dataset(words=("yes", "no")) -> list[Sample]:
    """"Say <word>." -> "<word>": the optimum is to copy the one content word, then EOS."""
    return [Sample(id=f"say/{w}", task="say", instruction=f"Say {w}.", references=(w,), verifier=SaysWord())
            for w in words]


def tiny_policy(tokenizer, seed: int = 0, n_embd: int = 32) -> ActorCritic:
    torch.manual_seed(seed)
    lm = build_default_model(tokenizer, DefaultModelConfig(n_layer=2, n_embd=n_embd, n_head=2, n_positions=64),
                             seed=seed)
    return ActorCritic(lm)


def say_env_kwargs(words=("yes", "no")) -> dict:
    return {"dataset": say_dataset(words), "reward": "auto", "max_prompt_tokens": 16}


class WordCount:
    """Verifier with many reward levels (so that any batch has mixed rewards): min(words, 3) / 3."""

    def __call__(self, completion: str, sample: Sample) -> float:
        return min(len(completion.split()), 3) / 3


def count_env_kwargs() -> dict:
    samples = [Sample(id=f"count/{w}", task="count", instruction=f"Say {w}.", references=(w,), verifier=WordCount())
               for w in ("yes", "no", "cat")]
    return {"dataset": samples, "reward": "auto", "max_prompt_tokens": 16}


def small_config(algo: str, **overrides):
    """A config sized for unit tests (a few ms per update on one CPU thread)."""
    from agents.rl import default_config

    if algo in ("ppo", "a2c"):
        base = {"num_envs": 4, "n_steps": 4, "num_minibatches": 2, "max_new_tokens": 3, "lr": 1e-3}
        if algo == "ppo":
            base["update_epochs"] = 2
    else:
        base = {"num_envs": 8, "group_size": 1 if algo == "reinforce" else 4, "max_new_tokens": 3, "lr": 1e-3}
        if algo == "grpo":
            base.update(update_epochs=2, num_minibatches=2)
    base.update(overrides)
    return default_config(algo, **base)
