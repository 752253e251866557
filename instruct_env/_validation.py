"""Checks of configuration values, each raising :class:`~instruct_env.error.ConfigError` with one message format.

Every check takes the dotted name the message should show (``"PPOConfig.n_steps"``) and the value,
and returns the value when it passes, so a check can sit in an assignment. The messages say what
was expected and what was got; ``hint`` (a sentence starting with a space) adds what to do.

>>> check_int("PPOConfig.n_steps", 0)
Traceback (most recent call last):
...
instruct_env.error.ConfigError: PPOConfig.n_steps must be an integer >= 1; got 0.
>>> check_range("PPOConfig.clip_range", 1.5, 0.0, 1.0, low_open=True, high_open=True)
Traceback (most recent call last):
...
instruct_env.error.ConfigError: PPOConfig.clip_range must be a number in (0, 1); got 1.5.
>>> from typing import Literal
>>> check_choice("SFTConfig.schedule", "cosin", Literal["cosine", "linear", "constant"])
Traceback (most recent call last):
...
instruct_env.error.ConfigError: SFTConfig.schedule must be one of 'cosine', 'linear', 'constant'; got 'cosin'. Did you mean 'cosine'?
"""

from __future__ import annotations

import math
import numbers
import typing
from collections.abc import Iterable
from typing import Any, TypeVar

from instruct_env.error import ConfigError, suggest

__all__ = ["check_int", "check_int_fields", "check_range", "check_finite", "check_positive", "check_probability",
           "check_choice", "choices_of", "or_list"]

T = TypeVar("T")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` if it is an integer (a ``bool`` is not) of at least ``minimum``; else :class:`ConfigError`."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def check_int_fields(config: object, *names: str, minimum: int = 1) -> None:
    """:func:`check_int` on each of ``config``'s fields ``names``, in order, named ``<Class>.<field>``.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Rollout:
    ...     num_envs: int = 4
    ...     n_steps: int = 0
    >>> check_int_fields(Rollout(), "num_envs", "n_steps")
    Traceback (most recent call last):
    ...
    instruct_env.error.ConfigError: Rollout.n_steps must be an integer >= 1; got 0.
    """
    owner = type(config).__name__
    for name in names:
        check_int(f"{owner}.{name}", getattr(config, name), minimum)


def check_range(name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False,
                hint: str = "") -> float:
    """``value`` if it is a number in the interval from ``low`` to ``high``; else :class:`ConfigError`.

    The interval is closed unless ``low_open`` / ``high_open``; ``high = math.inf`` admits infinity
    itself when the interval is closed there. ``nan`` never passes.
    """
    ok = _is_number(value)
    if ok:
        ok = math.isfinite(value) or (high == math.inf and value == math.inf)
        ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{name} must be a number in {interval}; got {value!r}.{hint}")
    checked: float = value  # returned as given (an int stays an int)
    return checked


def check_finite(name: str, value: Any, low: float | None = None, *, low_open: bool = False, hint: str = "") -> float:
    """``value`` if it is a finite number (``>= low``, or ``> low`` with ``low_open``); else :class:`ConfigError`.

    The message says ``must be a finite number >= 0`` (or ``> 0``, or no bound when ``low`` is
    ``None``); the value is returned as given.

    >>> check_finite("BLEU option beta", float("inf"), 0)
    Traceback (most recent call last):
    ...
    instruct_env.error.ConfigError: BLEU option beta must be a finite number >= 0; got inf.
    """
    ok = _is_number(value) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if not ok:
        bound = "" if low is None else f" {'>' if low_open else '>='} {low:g}"
        raise ConfigError(f"{name} must be a finite number{bound}; got {value!r}.{hint}")
    checked: float = value  # returned as given (an int stays an int)
    return checked


def check_positive(name: str, value: Any, *, hint: str = "") -> float:
    """``value`` if it is a number > 0 (infinity included); else :class:`ConfigError`."""
    return check_range(name, value, 0.0, math.inf, low_open=True, hint=hint)


def check_probability(name: str, value: Any, *, hint: str = "") -> float:
    """``value`` if it is a number in ``[0, 1]``; else :class:`ConfigError`."""
    return check_range(name, value, 0.0, 1.0, hint=hint)


def choices_of(choices: Any) -> tuple[Any, ...]:
    """The values of a ``Literal[...]`` type (``X | None`` adds ``None``), or ``choices`` as a tuple.

    >>> from typing import Literal
    >>> choices_of(Literal["a", "b"]), choices_of(Literal["a"] | None), choices_of(["x"])
    (('a', 'b'), ('a', None), ('x',))
    """
    if typing.get_origin(choices) is typing.Literal:
        return typing.get_args(choices)
    args = typing.get_args(choices)
    if args and all(typing.get_origin(a) is typing.Literal or a is type(None) for a in args):
        return tuple(v for a in args for v in (choices_of(a) if a is not type(None) else (None,)))
    return tuple(choices)


def or_list(choices: Iterable[Any]) -> str:
    """``"'a', 'b' or 'c'"``: the choices as the messages spell them (``None`` as ``null``).

    >>> or_list(["reward", "loss"]), or_list([None, "human"])
    ("'reward' or 'loss'", "null or 'human'")
    """
    words = ["null" if c is None else repr(c) for c in choices]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def check_choice(name: str, value: T, choices: Any, *, or_words: bool = False, hint: str = "") -> T:
    """``value`` if it is one of ``choices`` (a ``Literal[...]`` type or an iterable); else :class:`ConfigError`.

    The message lists the choices (``one of 'a', 'b', 'c'``, or ``'a', 'b' or 'c'`` with
    ``or_words``) and, for a near miss, says "Did you mean ...".
    """
    allowed = choices_of(choices)
    if value in allowed:
        return value
    listed = or_list(allowed) if or_words else "one of " + ", ".join("null" if c is None else repr(c) for c in allowed)
    close = suggest(value, [str(c) for c in allowed if c is not None]) if isinstance(value, str) else ""
    raise ConfigError(f"{name} must be {listed}; got {value!r}.{close}{hint}")
