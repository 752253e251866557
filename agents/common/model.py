"""Language models: the embedded default, Hugging Face loading, and the actor-critic policy.

The default model's shape, :class:`DefaultModelConfig`, lives in the torch-free
:mod:`agents.common.model_config` (so configs import without torch) and is re-exported here.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from agents.common.model_config import DefaultModelConfig
from instruct_env.error import ConfigError, require

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "DefaultModelConfig",
    "build_default_model",
    "load_model",
    "check_local_path",
    "ActorCritic",
    "lm_forward",
    "position_ids_from_mask",
    "output_cache",
    "check_context",
]


def build_default_model(tokenizer, config: DefaultModelConfig | None = None, seed: int | None = None):
    """A randomly initialised GPT-2-style causal LM sized for ``tokenizer``'s vocabulary."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = config or DefaultModelConfig()
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    hf_config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return GPT2LMHeadModel(hf_config)
    return GPT2LMHeadModel(hf_config)


def check_local_path(name_or_path: str) -> None:
    """Refuse at once a model name that is meant as a local folder but names none.

    A name is taken as a local path when it starts with ``.``, ``/`` or ``~``, ends with a
    slash, has more than one ``/``, or its first part is an existing local folder (``runs/x``);
    otherwise it is a hub name (``org/name``), left to ``from_pretrained``. Without this check a
    misspelled folder is looked up on the hub, which waits for the network and then blames it.

    >>> check_local_path("gpt2"); check_local_path("org/name")
    >>> check_local_path("./no/such/model")
    Traceback (most recent call last):
    ...
    instruct_env.error.ConfigError: No such folder: './no/such/model' (nothing at ... on this machine). ...
    """
    import os
    from pathlib import Path

    from instruct_env.error import suggest

    text = os.fspath(name_or_path)
    parts = text.replace("\\", "/").split("/")
    local = (text.startswith((".", "/", "~")) or text.endswith(("/", "\\")) or len(parts) > 2
             or (len(parts) == 2 and os.path.isdir(parts[0])))
    path = Path(text).expanduser()
    if not local or path.exists():
        return
    parent = path.parent
    while not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    siblings = [os.path.join(os.path.dirname(text.rstrip("/")), p.name) for p in parent.iterdir() if p.is_dir()] \
        if parent.is_dir() and path.parent == parent else []
    hint = suggest(text.rstrip("/"), siblings)
    raise ConfigError(
        f"No such folder: {text!r} (nothing at {path.absolute()} on this machine).{hint} Pass the folder that holds "
        f"the model's config.json (e.g. a run's model/), or a hub name such as 'gpt2'."
    )


def load_model(name_or_path: str, kind: str = "auto", **kwargs: Any):
    """Load a Hugging Face model by hub name or local path.

    Args:
        name_or_path: e.g. ``"gpt2"``, ``"t5-small"`` or a local directory.
        kind: ``"causal"`` (``AutoModelForCausalLM``), ``"seq2seq"``
            (``AutoModelForSeq2SeqLM``), or ``"auto"`` (decided from the model config).
        **kwargs: Passed to ``from_pretrained`` (e.g. ``torch_dtype``, ``revision``).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    if kind not in ("auto", "causal", "seq2seq"):
        raise ConfigError(f"kind must be 'auto', 'causal' or 'seq2seq'; got {kind!r}.")
    check_local_path(name_or_path)
    if kind == "auto":
        cfg = AutoConfig.from_pretrained(name_or_path)
        kind = "seq2seq" if getattr(cfg, "is_encoder_decoder", False) else "causal"
    cls = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    return cls.from_pretrained(name_or_path, **kwargs)


def _context_field(model: Any) -> tuple[str, int] | None:
    """``(config field, value)`` of the most positions ``model`` embeds, if its config says.

    The field is ``n_positions`` or ``max_position_embeddings``; ``None`` when the config names no
    limit. ``model`` may be an :class:`ActorCritic` or a data-parallel wrapper.
    """
    from agents.common.distributed import unwrap

    config = getattr(unwrap(model, lm=True), "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return name, value
    return None


def check_context(model: Any, prompt_tokens: int, new_tokens: int, hint: str = "") -> None:
    """Raise :class:`~instruct_env.error.ConfigError` when a prompt plus its answer would not fit ``model``.

    A model with learned absolute positions (GPT-2, the embedded default) fails with an
    ``IndexError`` deep inside its embedding beyond its context; this says what to change instead.

    Args:
        model: The language model (or an :class:`ActorCritic`).
        prompt_tokens: The longest prompt, in tokens.
        new_tokens: The answer budget, in tokens.
        hint: Which settings set the two numbers, for the message (e.g. the main job's fields).

    >>> from types import SimpleNamespace
    >>> check_context(SimpleNamespace(config=SimpleNamespace(n_positions=256)), 200, 56)
    >>> check_context(SimpleNamespace(config=SimpleNamespace(n_positions=256)), 250, 32)
    Traceback (most recent call last):
    ...
    instruct_env.error.ConfigError: A prompt of 250 tokens plus 32 new tokens needs 282 positions, but the model has 256 (its config's n_positions). Shorten the prompt budget or the answer budget so that they add up to at most 256.
    """
    found = _context_field(model)
    if found is None:
        return
    field, limit = found
    if prompt_tokens + new_tokens > limit:
        raise ConfigError(
            f"A prompt of {prompt_tokens} tokens plus {new_tokens} new tokens needs {prompt_tokens + new_tokens} "
            f"positions, but the model has {limit} (its config's {field}). Shorten the prompt budget or the "
            f"answer budget so that they add up to at most {limit}{hint}."
        )


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counting real tokens only (left padding gets position 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _cache_kwarg(model: nn.Module) -> str:
    # transformers 5 renamed ``past_key_values`` to ``cache`` (the old name warns).
    get_base_model = getattr(model, "get_base_model", None)  # peft wrappers
    base = get_base_model() if get_base_model is not None else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def lm_forward(model: nn.Module, input_ids, attention_mask, position_ids=None, cache=None, use_cache=False,
               output_hidden_states=False):
    """Call a causal LM with the cache keyword its transformers version expects."""
    kwargs = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids if position_ids is not None else position_ids_from_mask(attention_mask),
        "use_cache": use_cache,
        "output_hidden_states": output_hidden_states,
    }
    if cache is not None:
        name = getattr(model, "_instruct_env_cache_kw", None)
        if name is None:
            name = _cache_kwarg(model)
            with contextlib.suppress(AttributeError):
                object.__setattr__(model, "_instruct_env_cache_kw", name)
        kwargs[name] = cache
    return model(**kwargs)


def output_cache(out) -> Any:
    """The KV cache of a model output (``cache`` in transformers 5, ``past_key_values`` before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


class ActorCritic(nn.Module):
    """A causal LM (the actor) with a scalar value head on its last hidden state (the critic).

    The value head shares the LM's backbone. With a PEFT adapter (``peft_config``) only the
    adapter and the value head train, and :meth:`reference` disables the adapter to give
    the frozen base model -- no second copy. Without an adapter, :meth:`reference` uses a
    frozen deep copy taken when :meth:`freeze_reference` is called (e.g. after SFT).

    Args:
        lm: A Hugging Face causal LM.
        peft_config: Optional ``peft`` config (e.g. ``peft.LoraConfig``).
    """

    def __init__(self, lm: PreTrainedModel, peft_config: Any = None) -> None:
        super().__init__()
        if peft_config is not None:
            peft = require("peft", "peft")
            lm = peft.get_peft_model(lm, peft_config)
        self.lm = lm
        self.uses_adapter = peft_config is not None
        hidden = lm.config.hidden_size if hasattr(lm.config, "hidden_size") else lm.config.n_embd
        self.value_head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self._reference: nn.Module | None = None

    @property
    def config(self):
        """The LM's Hugging Face config."""
        return self.lm.config

    def forward(self, input_ids, attention_mask, position_ids=None, cache=None, use_cache=False):
        """Return ``(logits (B, T, V), values (B, T), cache)``."""
        out = lm_forward(self.lm, input_ids, attention_mask, position_ids, cache, use_cache, output_hidden_states=True)
        hidden = out.hidden_states[-1]  # (B, T, H)
        values = self.value_head(hidden.float() if hidden.dtype != self.value_head.weight.dtype else hidden).squeeze(-1)
        return out.logits, values, (output_cache(out) if use_cache else None)

    def freeze_reference(self) -> None:
        """Snapshot the current LM as the KL reference (no-op with an adapter)."""
        if self.uses_adapter:
            return
        from agents.common import distributed as dist

        # An LM sharded by an earlier stage (distributed.strategy="fsdp") cannot be deep-copied: gather a whole copy.
        ref = dist.unsharded_copy(self.lm) if dist.is_sharded(self.lm) else copy.deepcopy(self.lm)
        ref.requires_grad_(False)
        ref.eval()
        self._reference = ref

    @contextlib.contextmanager
    def reference(self):
        """Context yielding the reference LM (adapter disabled, or the frozen snapshot)."""
        if self.uses_adapter:
            with self.lm.disable_adapter():
                yield self.lm
            return
        if self._reference is None:
            raise ConfigError("No reference model: call freeze_reference() (done after SFT) before RL.")
        yield self._reference
