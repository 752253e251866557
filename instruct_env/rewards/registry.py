"""Reward names and :func:`make`, the one way to build a reward from a specification."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from instruct_env.error import ConfigError, unknown_name
from instruct_env.rewards.base import CallableReward, Reward, WeightedReward
from instruct_env.rewards.bleu import BleuReward, ChrfReward
from instruct_env.rewards.rouge import RougeReward
from instruct_env.rewards.task import TaskReward
from instruct_env.rewards.ter import TerReward
from instruct_env.rewards.text import ExactMatchReward, LengthPenaltyReward, TokenF1Reward

__all__ = ["make", "names"]

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


def make(spec: str | Mapping[str, float] | Reward | Callable[..., Any], **kwargs: Any) -> Reward:
    """Build a reward from a specification.

    Args:
        spec: One of

            * a registered name (see :func:`names`), e.g. ``"rougeL"``; ``kwargs`` go to its
              constructor, e.g. ``make("exact_match", normalize=True)``;
            * a dict of weights, e.g. ``{"bleu": 0.3, "rougeL": 0.7}``, giving a
              :class:`WeightedReward` whose components are keyed by name;
            * a :class:`Reward` instance, returned as is;
            * a plain function with the reward signature, wrapped in a :class:`CallableReward`
              (``name=`` may be passed as keyword).
        **kwargs: Constructor arguments, see above.

    Raises:
        UnknownNameError: a name is not registered (the message suggests close names).
        ConfigError: the specification or the keyword arguments are invalid.

    >>> make({"exact_match": 0.5, "token_f1": 0.5}).name
    '0.5*exact_match+0.5*token_f1'
    """
    if isinstance(spec, str):
        if spec not in _REGISTRY:
            raise unknown_name("reward", spec, names())
        cls, defaults = _REGISTRY[spec]
        allowed = [p for p in inspect.signature(cls).parameters if p not in defaults]
        bad = sorted(set(kwargs) - set(allowed))
        if bad:
            accepted = ", ".join(allowed) if allowed else "none"
            raise ConfigError(f"Reward {spec!r} got unexpected argument(s) {bad}; it accepts: {accepted}.")
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
                f"make() got keyword arguments {sorted(kwargs)} with a dict of weights. To configure terms, "
                "build them yourself: WeightedReward([(make('exact_match', normalize=True), 0.5), ...])."
            )
        if not spec:
            raise ConfigError("make() got an empty dict of weights; give at least one, e.g. {'rougeL': 1.0}.")
        terms = []
        for name, weight in spec.items():
            if not isinstance(name, str):
                raise ConfigError(f"Reward weights must be keyed by reward name; got key {name!r}.")
            terms.append((make(name), weight))
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
