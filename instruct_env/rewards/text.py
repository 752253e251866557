"""Light-weight rewards on plain text: exact match, token F1 and a length penalty."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any

import numpy as np

from instruct_env.error import ConfigError
from instruct_env.rewards.base import Reward

__all__ = ["ExactMatchReward", "TokenF1Reward", "LengthPenaltyReward"]


class ExactMatchReward(Reward):
    """1.0 if the completion equals one of its references, else 0.0.

    Both sides are compared after stripping surrounding whitespace. With ``normalize=True`` they
    are also lower-cased and every run of internal whitespace becomes one space.

    Args:
        normalize: Also lower-case and collapse internal whitespace.

    >>> ExactMatchReward()(["Paris ", "paris"], [["Paris"], ["Paris"]])
    array([1., 0.])
    >>> ExactMatchReward(normalize=True)(["  the   BIG cat"], [["The big cat"]])
    array([1.])
    """

    name = "exact_match"

    def __init__(self, normalize: bool = False) -> None:
        self.normalize = bool(normalize)

    def _norm(self, text: str) -> str:
        return " ".join(text.lower().split()) if self.normalize else text.strip()

    def _score(self, completions: list[str], references: list[tuple[str, ...]], **kwargs: Any) -> np.ndarray:
        out = np.zeros(len(completions))
        for i, (completion, refs) in enumerate(zip(completions, references)):
            out[i] = float(self._norm(completion) in {self._norm(r) for r in refs})
        return out

    def __repr__(self) -> str:
        return f"ExactMatchReward(normalize={self.normalize})"


_ARTICLES = re.compile(r"\b(a|an|the)\b")


def _squad_tokens(text: str) -> list[str]:
    """SQuAD answer normalisation: lower-case, delete punctuation, drop articles, split on whitespace."""
    text = "".join(ch for ch in text.lower() if not unicodedata.category(ch).startswith("P"))
    return _ARTICLES.sub(" ", text).split()


class TokenF1Reward(Reward):
    """SQuAD-style F1 between the bags of tokens of the completion and a reference, best reference.

    Normalisation (``normalize=True``, the default, as in the SQuAD evaluation script): lower-case,
    delete every punctuation character (any Unicode category ``P*``, so ``"don't"`` becomes
    ``"dont"``), drop the English articles *a*, *an*, *the*, then split on whitespace. With ``normalize=False`` the text is only split on whitespace.

    For token bags ``P`` (completion) and ``R`` (reference), ``common = |P ∩ R|`` (multiset),
    ``precision = common / |P|``, ``recall = common / |R|`` and
    ``F1 = 2 * precision * recall / (precision + recall)`` (0 when ``common == 0``). If either bag
    is empty, F1 is 1.0 when both are empty and 0.0 otherwise. Range ``[0, 1]``.

    Args:
        normalize: Apply the SQuAD normalisation described above.

    >>> TokenF1Reward()(["The cat sat."], [["a cat sat down", "dog"]])
    array([0.8])
    """

    name = "token_f1"

    def __init__(self, normalize: bool = True) -> None:
        self.normalize = bool(normalize)

    def _tokens(self, text: str) -> list[str]:
        return _squad_tokens(text) if self.normalize else text.split()

    def _score(self, completions: list[str], references: list[tuple[str, ...]], **kwargs: Any) -> np.ndarray:
        out = np.zeros(len(completions))
        for i, (completion, refs) in enumerate(zip(completions, references)):
            pred = self._tokens(completion)
            out[i] = max(_f1(pred, self._tokens(r)) for r in refs)
        return out

    def __repr__(self) -> str:
        return f"TokenF1Reward(normalize={self.normalize})"


def _f1(pred: list[str], ref: list[str]) -> float:
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision = common / len(pred)
    recall = common / len(ref)
    return 2 * precision * recall / (precision + recall)


class LengthPenaltyReward(Reward):
    """How close the completion's length is to a target length: ``min(L, T) / max(L, T)``.

    ``L`` is the completion's length and ``T`` the target: ``target`` when given, otherwise the
    length of each reference, keeping the best (closest) reference. Lengths are counted in
    whitespace-separated words (``unit="words"``) or characters (``unit="chars"``). The value is 1.0
    when the lengths are equal (also when both are 0), falls towards 0 as they diverge, and is 0.0
    when exactly one of them is 0. Range ``[0, 1]``.

    Args:
        target: A fixed target length (then references are not needed), or ``None``.
        unit: ``"words"`` or ``"chars"``.

    >>> LengthPenaltyReward()(["one two three", "one"], [["a b c d"], ["a b", "a"]])
    array([0.75, 1.  ])
    >>> LengthPenaltyReward(target=10, unit="chars")(["12345"], [[]])
    array([0.5])
    """

    name = "length_penalty"

    def __init__(self, target: int | None = None, unit: str = "words") -> None:
        if unit not in ("words", "chars"):
            raise ConfigError(f"LengthPenaltyReward unit must be 'words' or 'chars'; got {unit!r}.")
        if target is not None and (isinstance(target, bool) or not isinstance(target, (int, np.integer))
                                   or target < 0):
            raise ConfigError(f"LengthPenaltyReward target must be a non-negative integer or None; got {target!r}.")
        self.target = None if target is None else int(target)
        self.unit = unit
        self.needs_references = target is None

    def _length(self, text: str) -> int:
        return len(text.split()) if self.unit == "words" else len(text)

    def _score(self, completions: list[str], references: list[tuple[str, ...]], **kwargs: Any) -> np.ndarray:
        out = np.zeros(len(completions))
        for i, (completion, refs) in enumerate(zip(completions, references)):
            length = self._length(completion)
            targets = [self.target] if self.target is not None else [self._length(r) for r in refs]
            out[i] = max(_ratio(length, t) for t in targets)
        return out

    def __repr__(self) -> str:
        return f"LengthPenaltyReward(target={self.target!r}, unit={self.unit!r})"


def _ratio(a: int, b: int) -> float:
    return 1.0 if a == b else min(a, b) / max(a, b)
