"""A saved policy as the responder of the feedback server's ``/chat`` page.

``instruct-env serve --policy runs/<run>/model`` loads the folder with :meth:`PolicyResponder.from_folder`
and passes the responder to :func:`instruct_env.feedback.create_app`. The prompt is the one the
store records for the reply's ``thumbs`` query (instruction = the new message, context = the
conversation before it), rendered with the environments' :class:`~instruct_env.tasks.PromptFormatter`,
so the reward model later sees the exact prompt the policy answered.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from instruct_env._validation import check_int
from instruct_env.error import ConfigError
from instruct_env.feedback.store import ChatTurn, chat_history

__all__ = ["PolicyResponder", "chat_prompt"]


def chat_prompt(messages: list[dict[str, str]]) -> tuple[str, list[ChatTurn]]:
    """Split a conversation into the new message and the earlier turns.

    Raises:
        ConfigError: messages that do not alternate user / assistant and end with a user message.

    >>> chat_prompt([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
    ...              {"role": "user", "content": "Sort 2 1"}])[0]
    'Sort 2 1'
    """
    roles = [m.get("role") for m in messages]
    expected = ["user", "assistant"] * (len(messages) // 2) + ["user"]
    if not messages or roles != expected[: len(messages)] or roles[-1] != "user":
        raise ConfigError(
            f"A chat must alternate user and assistant messages and end with a user message; got roles {roles}."
        )
    turns = [
        ChatTurn(0, 0, i, messages[2 * i]["content"], messages[2 * i + 1]["content"])
        for i in range(len(messages) // 2)
    ]
    return messages[-1]["content"], turns


class PolicyResponder:
    """Answers chat messages with a causal language model (greedy by default).

    Args:
        model: A causal LM (or an :class:`~agents.common.model.ActorCritic` wrapping one).
        tokenizer: Its tokenizer; needs an EOS token.
        max_new_tokens: Longest reply, in tokens.
        temperature: ``0`` is greedy; above ``0`` samples (see :class:`~agents.common.generation.SamplingConfig`).
        top_k: Sample among the ``top_k`` likeliest tokens (``0``: all).
        max_prompt_tokens: Prompt budget; the oldest turns are left out first, then the message
            itself is cut as the environments cut long prompts. ``None``: what the model's
            context length leaves after ``max_new_tokens`` (256 when the model does not say).
        seed: Seed of the sampling generator (``None``: fresh entropy).
        formatter: The prompt template (default: the environments' :class:`~instruct_env.tasks.PromptFormatter`).
        name: Shown on the chat page and stored with each reply.

    Raises:
        ConfigError: an encoder-decoder model, a tokenizer without EOS, invalid numbers, or a
            prompt budget plus reply length beyond the model's context length.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_k: int = 0,
        max_prompt_tokens: int | None = None,
        seed: int | None = None,
        formatter: Any = None,
        name: str = "",
    ) -> None:
        import torch

        from agents.common import distributed as dist
        from agents.common.generation import SamplingConfig
        from instruct_env.tasks import PromptFormatter

        lm = dist.unwrap(model, lm=True)
        if getattr(lm.config, "is_encoder_decoder", False):
            raise ConfigError("The chat page needs a causal (decoder-only) model; this one is encoder-decoder.")
        if tokenizer.eos_token_id is None:
            raise ConfigError("The tokenizer has no EOS token; replies could never end.")
        max_new_tokens = check_int("max_new_tokens", max_new_tokens)
        context = getattr(lm.config, "n_positions", None) or getattr(lm.config, "max_position_embeddings", None)
        if max_prompt_tokens is None:
            max_prompt_tokens = 256 if context is None else int(context) - max_new_tokens
            if max_prompt_tokens < 1:
                raise ConfigError(
                    f"max_new_tokens={max_new_tokens} leaves no room for a prompt in the model's context of "
                    f"{context} tokens; lower max_new_tokens (--max-new-tokens) below {context}."
                )
        max_prompt_tokens = check_int("max_prompt_tokens", max_prompt_tokens)
        if context is not None and max_prompt_tokens + max_new_tokens > context:
            raise ConfigError(
                f"max_prompt_tokens ({max_prompt_tokens}) + max_new_tokens ({max_new_tokens}) exceed the model's "
                f"context of {context} tokens; lower one of them (or leave max_prompt_tokens=None)."
            )
        if not isinstance(temperature, (int, float)) or temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0 is greedy); got {temperature!r}.")
        self.lm = lm
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.sampling = SamplingConfig(temperature=float(temperature), top_k=int(top_k))
        self.formatter = formatter if formatter is not None else PromptFormatter()
        self.name = name
        self.device = next(lm.parameters()).device
        self.generator = torch.Generator(device=self.device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self._lock = threading.Lock()  # one generation at a time: the server calls from many threads

    @classmethod
    def from_folder(cls, path: str | Path, device: str = "cpu", **options: Any) -> PolicyResponder:
        """Load a model folder saved by ``instruct-env`` (``runs/<run>/model``: model + tokenizer).

        Raises:
            ConfigError: ``path`` is not a folder holding a saved model and tokenizer.
        """
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"--policy must be a model folder saved by instruct-env (e.g. runs/<run>/model, with "
                f"config.json); {str(folder)!r} has no config.json."
            )
        from transformers import AutoTokenizer

        from agents.common.model import load_model

        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"No tokenizer could be loaded from {str(folder)!r}: {exc}") from None
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
            tokenizer.pad_token = tokenizer.eos_token  # our own fresh copy, nobody else holds it
        model = load_model(str(folder), kind="causal").to(device).eval()
        return cls(model, tokenizer, name=options.pop("name", str(folder)), **options)

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The encoded prompt: as many of the most recent turns as fit in ``max_prompt_tokens``."""
        from instruct_env.tasks.sample import Sample

        message, turns = chat_prompt(messages)
        for start in range(len(turns) + 1):
            sample = Sample("chat", "chat", message, chat_history(turns[start:]))
            ids, _ = self.formatter.encode(sample, self.tokenizer)
            if len(ids) <= self.max_prompt_tokens:
                return ids
        return self.formatter.encode(Sample("chat", "chat", message, ""), self.tokenizer, self.max_prompt_tokens)[0]

    def __call__(self, messages: list[dict[str, str]]) -> str:
        """The model's reply to the chat ``messages`` (``role``/``content`` dicts), EOS and spaces stripped."""
        import torch

        from agents.common.generation import generate

        ids = self.prompt_ids(messages)
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)  # (1, P)
        mask = torch.ones_like(input_ids)
        with self._lock, torch.no_grad():
            was_training = self.lm.training
            self.lm.eval()
            try:
                out = generate(self.lm, input_ids, mask, self.max_new_tokens, eos, pad, self.sampling, self.generator)
            finally:
                self.lm.train(was_training)
        tokens = out.tokens[0, : int(out.lengths[0])].tolist()
        if tokens and tokens[-1] == eos:
            tokens = tokens[:-1]
        return self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
