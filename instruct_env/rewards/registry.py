"""Reward names and :func:`make`, the one way to build a reward from a specification."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from instruct_env.error import ConfigError, suggest, unknown_name
from instruct_env.rewards.base import CallableReward, Reward, WeightedReward
from instruct_env.rewards.bleu import BleuReward, ChrfReward
from instruct_env.rewards.rouge import RougeReward
from instruct_env.rewards.task import TaskReward
from instruct_env.rewards.ter import TerReward
from instruct_env.rewards.text import ExactMatchReward, LengthPenaltyReward, TokenF1Reward

__all__ = ["make", "names", "options", "RewardSpec"]

# name -> (class, default keyword arguments)
_REGISTRY: dict[str, tuple[type[Reward], dict[str, Any]]] = {
    "bleu": (BleuReward, {}),
    "chrf": (ChrfReward, {}),
    "ter": (TerReward, {}),
    "rouge1": (RougeReward, {"rouge_type": "rouge1"}),
    "rouge2": (RougeReward, {"rouge_type": "rouge2"}),
    "rougeL": (RougeReward, {"rouge_type": "rougeL"}),
    "rougeLsum": (RougeReward, {"rouge_type": "rougeLsum"}),
    "exact_match": (ExactMatchReward, {}),
    "token_f1": (TokenF1Reward, {}),
    "length_penalty": (LengthPenaltyReward, {}),
    "task": (TaskReward, {}),
}


def names() -> list[str]:
    """The registered reward names, sorted.

    >>> "rougeL" in names()
    True
    """
    return sorted(_REGISTRY)


def options(name: str) -> list[str]:
    """The options (keyword arguments) of the registered reward ``name``, in signature order.

    >>> options("chrf")
    ['char_order', 'word_order', 'beta', 'lowercase', 'whitespace', 'eps_smoothing']
    >>> options("rougeL")
    ['use_stemmer', 'split_summaries', 'tokenizer']
    """
    if name not in _REGISTRY:
        raise unknown_name("reward", name, names())
    cls, defaults = _REGISTRY[name]
    return [p for p in inspect.signature(cls).parameters if p not in defaults]


#: A reward specification: a name, ``{name: weight}``, ``{name: {"weight": w, **options}}``, a
#: :class:`Reward` or a function.
RewardSpec = str | Mapping[str, Any] | Reward | Callable[..., Any]


def make(spec: RewardSpec, **kwargs: Any) -> Reward:
    """Build a reward from a specification.

    Args:
        spec: One of

            * a registered name (see :func:`names`), e.g. ``"rougeL"``; ``kwargs`` are its options
              (see :func:`options`), e.g. ``make("bleu", tokenize="zh")``;
            * a dict of weights, e.g. ``{"bleu": 0.3, "rougeL": 0.7}``, giving a
              :class:`WeightedReward` whose components are keyed by name; a term's value may
              instead be a dict of its options with an optional ``"weight"`` (default 1.0), e.g.
              ``{"bleu": {"weight": 0.3, "tokenize": "zh"}, "rougeL": {"weight": 0.7, "tokenizer": "cjk"}}``
              -- the form YAML configs and ``--set`` use. The total is ``sum(weight * value)``
              as given, not normalised: weights summing to 1 keep a [0, 1] reward in [0, 1];
            * a :class:`Reward` instance, returned as is;
            * a plain function with the reward signature, ``fn(completions, references, **kwargs)``,
              wrapped in a :class:`CallableReward` (``name=`` may be passed as keyword); a function
              that does not take two positional arguments and ``**kwargs`` is refused here.
        **kwargs: Constructor arguments, see above.

    Raises:
        UnknownNameError: a name is not registered (the message suggests close names).
        ConfigError: the specification or the keyword arguments are invalid.

    >>> make({"exact_match": 0.5, "token_f1": 0.5}).name
    '0.5*exact_match+0.5*token_f1'
    >>> make({"bleu": {"weight": 0.5, "tokenize": "zh"}, "chrf": 0.5}).terms
    [(BleuReward(tokenize='zh'), 0.5), (ChrfReward(), 0.5)]
    """
    if isinstance(spec, str):
        if spec not in _REGISTRY:
            raise unknown_name("reward", spec, names())
        cls, defaults = _REGISTRY[spec]
        allowed = options(spec)
        bad = sorted(set(kwargs) - set(allowed))
        if bad:
            accepted = ", ".join(allowed) if allowed else "none"
            hint = suggest(bad[0], allowed)
            raise ConfigError(f"Reward {spec!r} got unexpected argument(s) {bad}.{hint} It accepts: {accepted}.")
        return cls(**defaults, **kwargs)
    if isinstance(spec, Reward):
        if kwargs:
            raise ConfigError(
                f"make() got keyword arguments {sorted(kwargs)} with an existing Reward instance; configure "
                "the instance itself instead."
            )
        return spec
    if isinstance(spec, Mapping):
        if kwargs:
            raise ConfigError(
                f"make() got keyword arguments {sorted(kwargs)} with a dict of weights. Put each term's options "
                "in the dict instead, e.g. make({'bleu': {'weight': 0.5, 'tokenize': 'zh'}, 'rougeL': 0.5})."
            )
        if not spec:
            raise ConfigError("make() got an empty dict of weights; give at least one, e.g. {'rougeL': 1.0}.")
        terms = []
        for name, value in spec.items():
            if not isinstance(name, str):
                raise ConfigError(f"Reward weights must be keyed by reward name; got key {name!r}.")
            if isinstance(value, Mapping):
                term_options = dict(value)
                weight = term_options.pop("weight", 1.0)
                terms.append((make(name, **term_options), weight))
            else:
                terms.append((make(name), value))
        return WeightedReward(terms)
    if callable(spec):
        bad = sorted(set(kwargs) - {"name"})
        if bad:
            raise ConfigError(f"make() with a function accepts only name=...; got {bad}.")
        return CallableReward(spec, **kwargs)
    raise ConfigError(
        f"Cannot build a reward from {type(spec).__name__} {spec!r}; expected a reward name (one of "
        f"{', '.join(names())}), a dict of weights, a Reward instance or a function."
    )
