"""Exception types raised by instruct-env.

Every error a user can cause is one of these, with a message that says what was
expected, what was received and what to do about it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "InstructEnvError",
    "UnknownNameError",
    "InvalidAction",
    "ResetNeeded",
    "InvalidOption",
    "EmptyDatasetError",
    "DataFormatError",
    "RewardError",
    "ConfigError",
    "MissingDependency",
    "suggest",
    "require",
]


class InstructEnvError(Exception):
    """Base class of every error raised by instruct-env."""


class UnknownNameError(InstructEnvError, KeyError):
    """A name (reward, task, environment option) is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0]) if self.args else ""


class InvalidAction(InstructEnvError, ValueError):
    """An action is outside the action space or of the wrong type."""


class ResetNeeded(InstructEnvError, RuntimeError):
    """``step`` was called before ``reset`` or after the episode ended."""


class InvalidOption(InstructEnvError, ValueError):
    """``reset(options=...)`` got an unknown key or a bad value."""


class EmptyDatasetError(InstructEnvError, ValueError):
    """A dataset or task selection contains no samples."""


class DataFormatError(InstructEnvError, ValueError):
    """A data file is malformed; the message names the file and the line."""


class RewardError(InstructEnvError, ValueError):
    """A reward got inputs it cannot score (wrong lengths, missing samples...)."""


class ConfigError(InstructEnvError, ValueError):
    """A configuration value is invalid or conflicts with another one."""


class MissingDependency(InstructEnvError, ImportError):
    """An optional package is needed; the message names the pip extra."""


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return a ``" Did you mean ...?"`` hint for ``name`` among ``choices`` (or ``""``).

    >>> suggest("rougel", ["rougeL", "rouge1", "bleu"])
    " Did you mean 'rougeL' or 'rouge1'?"
    >>> suggest("xyz", ["bleu"])
    ''
    """
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    if not close:
        return ""
    names = " or ".join(repr(lowered[c]) for c in close)
    return f" Did you mean {names}?"


def unknown_name(kind: str, name: object, choices: Iterable[str]) -> UnknownNameError:
    """Build the standard error for an unknown registered name."""
    choices = sorted(choices)
    hint = suggest(str(name), choices)
    return UnknownNameError(
        f"Unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(choices)}."
    )


def require(module: str, extra: str):
    """Import an optional module or raise :class:`MissingDependency` naming the pip extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"This feature needs the optional package {module!r}, which is not installed. "
            f"Install it with: pip install 'instruct-env[{extra}]'"
        ) from exc
