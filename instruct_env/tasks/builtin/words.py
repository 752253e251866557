"""Families that transform, pick or count the words of the input."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from instruct_env.tasks.builtin.common import (
    _distinct_words,
    _draw_between,
    _english_words,
    _shuffled,
    _words_with_repeats,
    count_credit,
)
from instruct_env.tasks.builtin.family import Problem, TaskFamily
from instruct_env.tasks.sample import Sample

__all__ = [
    "CopyText",
    "ReverseWords",
    "ChangeCase",
    "CountWords",
    "PickWord",
    "Dedup",
    "MostFrequent",
]


@dataclass(frozen=True)
class CopyText(TaskFamily):
    """``copy``: repeat the input words unchanged.

    Instructions: "Repeat the input exactly." / "Copy the text." / "Write the input again,
    unchanged." (held out of pre-training). Context: ``min_words..max_words`` lexicon words.
    Answer: the context. Verifier: :func:`sequence_credit` on words.

    Args:
        min_words: Fewest words in the context.
        max_words: Most words in the context.
    """

    name: ClassVar[str] = "copy"
    instructions: ClassVar[tuple[str, ...]] = (
        "Repeat the input exactly.",
        "Copy the text.",
        "Write the input again, unchanged.",
    )
    min_words: int = 3
    max_words: int = 6

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        n = _draw_between(rng, self.min_words, self.max_words)
        words = [_english_words()[int(i)] for i in rng.integers(len(_english_words()), size=n)]
        text = " ".join(words)
        return Problem(text, text)


@dataclass(frozen=True)
class ReverseWords(TaskFamily):
    """``reverse_words``: the input words in reverse order.

    Instructions: "Reverse the order of the words." / "Write the words backwards, last word
    first." / "List the words in reverse order." (held out). Answer: the words, last first.
    Verifier: :func:`sequence_credit` on words.

    Args:
        min_words: Fewest words in the context.
        max_words: Most words in the context.
    """

    name: ClassVar[str] = "reverse_words"
    instructions: ClassVar[tuple[str, ...]] = (
        "Reverse the order of the words.",
        "Write the words backwards, last word first.",
        "List the words in reverse order.",
    )
    min_words: int = 3
    max_words: int = 6

    def _knob_minimum(self, knob: str) -> int:
        return 2 if knob == "min_words" else 1

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        n = _draw_between(rng, self.min_words, self.max_words)
        words = _distinct_words(rng, n)
        return Problem(" ".join(words), " ".join(reversed(words)))


_CASINGS = (str.lower, str.title, str.upper)


@dataclass(frozen=True)
class ChangeCase(TaskFamily):
    """``change_case``: rewrite mixed-case words in upper or lower case.

    Instructions (upper / lower): "Convert the text to upper case." / "... lower case.";
    "Write the text in capital letters." / "Write the text in small letters."; "Make every
    letter uppercase." / "Make every letter lowercase." (held out). Context: words each in
    lower, Title or UPPER case, never already all upper or all lower. Answer: the context in
    the requested case. Verifier: :func:`sequence_credit` on words (case-sensitive).

    Args:
        min_words: Fewest words.
        max_words: Most words.
    """

    name: ClassVar[str] = "change_case"
    variants: ClassVar[tuple[str, ...]] = ("upper", "lower")
    instructions: ClassVar[tuple[Mapping[str, str], ...]] = (
        {"upper": "Convert the text to upper case.", "lower": "Convert the text to lower case."},
        {"upper": "Write the text in capital letters.", "lower": "Write the text in small letters."},
        {"upper": "Make every letter uppercase.", "lower": "Make every letter lowercase."},
    )
    min_words: int = 2
    max_words: int = 5

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        n = _draw_between(rng, self.min_words, self.max_words)
        words = _distinct_words(rng, n)
        casings = [int(c) for c in rng.integers(len(_CASINGS), size=n)]
        if 1 not in casings and len(set(casings)) == 1:  # would already be all lower / all upper
            casings[int(rng.integers(n))] = 1
        text = " ".join(_CASINGS[c](w) for c, w in zip(casings, words))
        return Problem(text, text.upper() if variant == "upper" else text.lower())


@dataclass(frozen=True)
class CountWords(TaskFamily):
    """``count_words``: count all words, or only the distinct ones.

    Instructions (all / distinct): "How many words are there?" / "How many different words
    are there?"; "Count the words." / "Count the distinct words."; "Give the number of words
    in the text." / "Give the number of unique words in the text." (held out). Context:
    ``min_words..max_words`` words with at least one repeated, so the two counts differ.
    Answer: the count as digits. Verifier: :func:`count_credit`.

    Args:
        min_words: Fewest words (at least 3).
        max_words: Most words.
    """

    name: ClassVar[str] = "count_words"
    variants: ClassVar[tuple[str, ...]] = ("all", "distinct")
    instructions: ClassVar[tuple[Mapping[str, str], ...]] = (
        {"all": "How many words are there?", "distinct": "How many different words are there?"},
        {"all": "Count the words.", "distinct": "Count the distinct words."},
        {
            "all": "Give the number of words in the text.",
            "distinct": "Give the number of unique words in the text.",
        },
    )
    min_words: int = 3
    max_words: int = 8

    def _knob_minimum(self, knob: str) -> int:
        return 3

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        words = _words_with_repeats(rng, _draw_between(rng, self.min_words, self.max_words))
        count = len(words) if variant == "all" else len(set(words))
        return Problem(" ".join(words), str(count))

    def score(self, completion: str, reference: str, sample: Sample) -> float:
        """:func:`count_credit`: full credit for the right count, less the further off."""
        return count_credit(completion, reference)


@dataclass(frozen=True)
class PickWord(TaskFamily):
    """``pick_word``: the first or the last word of the input.

    Instructions (first / last): "What is the first word?" / "What is the last word?";
    "Return the first word of the text." / "Return the last word of the text."; "Give only
    the word at the start." / "Give only the word at the end." (held out). Context: distinct
    words. Answer: one word. Verifier: :func:`sequence_credit` on words.

    Args:
        min_words: Fewest words (at least 2).
        max_words: Most words.
    """

    name: ClassVar[str] = "pick_word"
    variants: ClassVar[tuple[str, ...]] = ("first", "last")
    instructions: ClassVar[tuple[Mapping[str, str], ...]] = (
        {"first": "What is the first word?", "last": "What is the last word?"},
        {"first": "Return the first word of the text.", "last": "Return the last word of the text."},
        {"first": "Give only the word at the start.", "last": "Give only the word at the end."},
    )
    min_words: int = 2
    max_words: int = 6

    def _knob_minimum(self, knob: str) -> int:
        return 2

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        words = _distinct_words(rng, _draw_between(rng, self.min_words, self.max_words))
        return Problem(" ".join(words), words[0] if variant == "first" else words[-1])


@dataclass(frozen=True)
class Dedup(TaskFamily):
    """``dedup``: remove repeated words, or keep only the words that occur once.

    Instructions (first / once): "Remove duplicate words, keeping the first of each." / "Keep
    only the words that appear exactly once."; "Write each word once, in order of first
    appearance." / "Write only the words that occur once."; "Delete the later copies of
    repeated words." / "Delete every word that is repeated." (held out). Context: words with
    at least one repeated and one single word. Answer: the remaining words in input order.
    Verifier: :func:`sequence_credit` on words.

    Args:
        min_words: Fewest words (at least 3).
        max_words: Most words.
    """

    name: ClassVar[str] = "dedup"
    variants: ClassVar[tuple[str, ...]] = ("first", "once")
    instructions: ClassVar[tuple[Mapping[str, str], ...]] = (
        {
            "first": "Remove duplicate words, keeping the first of each.",
            "once": "Keep only the words that appear exactly once.",
        },
        {
            "first": "Write each word once, in order of first appearance.",
            "once": "Write only the words that occur once.",
        },
        {
            "first": "Delete the later copies of repeated words.",
            "once": "Delete every word that is repeated.",
        },
    )
    min_words: int = 4
    max_words: int = 8

    def _knob_minimum(self, knob: str) -> int:
        return 3

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        words = _words_with_repeats(rng, _draw_between(rng, self.min_words, self.max_words))
        counts = Counter(words)
        if variant == "first":
            kept = list(dict.fromkeys(words))
        else:
            kept = [w for w in words if counts[w] == 1]
        return Problem(" ".join(words), " ".join(kept))


@dataclass(frozen=True)
class MostFrequent(TaskFamily):
    """``most_frequent``: the word that occurs most often (always unique).

    Instructions: "Which word appears most often?" / "Name the most frequent word." / "Give
    the word that is repeated the most." (held out). Context: one word 2-3 times, possibly a
    runner-up one time fewer, the rest once. Answer: one word. Verifier:
    :func:`sequence_credit` on words.

    Args:
        min_words: Fewest words (at least 3).
        max_words: Most words.
    """

    name: ClassVar[str] = "most_frequent"
    instructions: ClassVar[tuple[str, ...]] = (
        "Which word appears most often?",
        "Name the most frequent word.",
        "Give the word that is repeated the most.",
    )
    min_words: int = 4
    max_words: int = 8

    def _knob_minimum(self, knob: str) -> int:
        return 3

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        n = _draw_between(rng, self.min_words, self.max_words)
        top = _draw_between(rng, 2, min(3, n - 1))
        rest = n - top
        runner_up = top - 1 if top - 1 >= 2 and rest >= top - 1 and rng.random() < 0.5 else 0
        singles = rest - runner_up
        distinct = _distinct_words(rng, 1 + (1 if runner_up else 0) + singles)
        words = [distinct[0]] * top
        if runner_up:
            words += [distinct[1]] * runner_up
        words += distinct[len(distinct) - singles :] if singles else []
        return Problem(" ".join(_shuffled(rng, words)), distinct[0])
