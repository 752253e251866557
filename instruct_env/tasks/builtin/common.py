"""What the built-in families share: splits, seeds, the lexicon, random draws and partial credit."""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from importlib import resources

import numpy as np

from instruct_env.error import ConfigError

__all__ = [
    "SPLITS",
    "normalise_split",
    "split_of",
    "lexicon",
    "sequence_credit",
    "digit_credit",
    "count_credit",
]


SPLITS: tuple[str, ...] = ("train", "validation", "test")


_SPLIT_ALIASES = {"val": "validation"}


# Cumulative upper bounds of each split on the unit interval: train 80%, validation 10%, test 10%.
_SPLIT_BOUNDS = (("train", 0.8), ("validation", 0.9), ("test", 1.0))


def normalise_split(split: str) -> str:
    """Return the canonical split name (``"val"`` is accepted for ``"validation"``).

    Raises:
        ConfigError: ``split`` is not a known split.

    >>> normalise_split("val")
    'validation'
    """
    name = _SPLIT_ALIASES.get(split, split) if isinstance(split, str) else split
    if name not in SPLITS:
        raise ConfigError(
            f"Unknown split {split!r}. Expected one of {', '.join(map(repr, SPLITS))} "
            "(or 'val' for 'validation')."
        )
    return name


def _digest(*parts: object) -> bytes:
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).digest()


def _stable_int(*parts: object) -> int:
    """A 63-bit integer derived from ``parts``, identical across runs and platforms."""
    return int.from_bytes(_digest(*parts)[:8], "big") >> 1


def split_of(task: str, context: str) -> str:
    """The split that owns the input ``context`` of family ``task`` (a stable hash).

    >>> split_of("copy", "cat dog bird") in SPLITS
    True
    """
    return _split_at(_digest("split", task, context))


def _split_at(digest: bytes) -> str:
    """The split whose share of the unit interval holds ``digest`` (its first 8 bytes as a fraction)."""
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    for name, bound in _SPLIT_BOUNDS:
        if u < bound:
            return name
    return SPLITS[-1]


def _as_rng(rng: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ConfigError(f"Expected a numpy Generator or an integer seed, got {type(rng).__name__}.")


@functools.lru_cache(maxsize=1)
def lexicon() -> Mapping[str, tuple[str, str]]:
    """The built-in English lexicon: ``english -> (spanish, category)``, about 120 words.

    Read once from ``instruct_env/data/lexicon_en_es.tsv``. Categories include ``animal``,
    ``color``, ``food``, ``body``, ``nature``, ``people``, ``object``, ``adjective``, ``verb``.

    >>> lexicon()["cat"]
    ('gato', 'animal')
    """
    text = resources.files("instruct_env").joinpath("data/lexicon_en_es.tsv").read_text("utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    return {english: (spanish, category) for english, spanish, category in rows[1:]}


@functools.lru_cache(maxsize=1)
def _english_words() -> tuple[str, ...]:
    return tuple(lexicon())


def _words_in(category: str) -> tuple[str, ...]:
    return tuple(w for w, (_, cat) in lexicon().items() if cat == category)


def _draw_between(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer in ``low..high``, both included (one draw)."""
    return int(rng.integers(low, high + 1))


def _choose(rng: np.random.Generator, items: Sequence[str], k: int) -> list[str]:
    """``k`` distinct items in random order."""
    picks = rng.choice(len(items), size=k, replace=False)
    return [items[int(i)] for i in picks]


def _distinct_words(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct English lexicon words in random order."""
    return _choose(rng, _english_words(), n)


def _shuffled(rng: np.random.Generator, items: Sequence[str]) -> list[str]:
    return [items[int(i)] for i in rng.permutation(len(items))]


def _words_with_repeats(rng: np.random.Generator, n: int) -> list[str]:
    """``n >= 3`` words in which at least one word is repeated and one appears once."""
    pairs = _draw_between(rng, 1, (n - 1) // 2)
    singles = n - 2 * pairs
    distinct = _distinct_words(rng, pairs + singles)
    return _shuffled(rng, distinct[:pairs] * 2 + distinct[pairs:])


def sequence_credit(predicted: Sequence[str], reference: Sequence[str]) -> float:
    """Partial credit for a token sequence: ``1.0`` only for an exact match.

    Otherwise the mean of the positional accuracy (tokens equal at the same index, over the
    longer length) and the bag-of-tokens F1, which is always below ``1.0``.

    >>> sequence_credit(["a", "b", "c"], ["a", "b", "c"])
    1.0
    >>> sequence_credit(["c", "b", "a"], ["a", "b", "c"])
    0.6666666666666666
    >>> sequence_credit([], ["a"])
    0.0
    """
    predicted, reference = list(predicted), list(reference)
    if predicted == reference:
        return 1.0
    if not predicted or not reference:
        return 0.0
    positional = sum(p == r for p, r in zip(predicted, reference)) / max(len(predicted), len(reference))
    overlap = sum((Counter(predicted) & Counter(reference)).values())
    if overlap == 0:
        f1 = 0.0
    else:
        precision, recall = overlap / len(predicted), overlap / len(reference)
        f1 = 2 * precision * recall / (precision + recall)
    return 0.5 * positional + 0.5 * f1


def digit_credit(predicted: str, reference: str) -> float:
    """Partial credit for a number: characters compared right-aligned (ones with ones...).

    >>> digit_credit("123", "123"), digit_credit("124", "123"), digit_credit("", "5")
    (1.0, 0.6666666666666666, 0.0)
    """
    predicted, reference = predicted.strip(), reference.strip()
    if predicted == reference:
        return 1.0
    if not predicted or not reference:
        return 0.0
    matches = sum(p == r for p, r in zip(reversed(predicted), reversed(reference)))
    return matches / max(len(predicted), len(reference))


_INTEGER = re.compile(r"-?[0-9]{1,18}")


def count_credit(predicted: str, reference: str) -> float:
    """Partial credit for a count: ``max(0, 1 - |p - r| / max(r, 1))``; not an integer -> 0.

    >>> count_credit("4", "4"), count_credit("3", "4"), count_credit("four", "4"), count_credit("--6", "4")
    (1.0, 0.75, 0.0, 0.0)
    """
    text = predicted.strip()
    if not _INTEGER.fullmatch(text):
        return 0.0
    guess, answer = int(text), int(reference)
    return max(0.0, 1.0 - abs(guess - answer) / max(abs(answer), 1))
