"""Families that need the words' meaning from the lexicon: translation and topic keywords."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from instruct_env.tasks.builtin.common import (
    _choose,
    _distinct_words,
    _draw_between,
    _shuffled,
    _words_in,
    lexicon,
)
from instruct_env.tasks.builtin.family import Problem, TaskFamily

__all__ = [
    "Translate",
    "Keywords",
]


@dataclass(frozen=True)
class Translate(TaskFamily):
    """``translate``: word-for-word translation with the built-in lexicon (:func:`lexicon`).

    Instructions (to_spanish / to_english): "Translate the words into Spanish." / "Translate
    the words into English."; "Give the Spanish for each word." / "Give the English for each
    word."; "Say it in Spanish, word by word." / "Say it in English, word by word." (held
    out). Context: distinct words in the source language. Answer: their translations in the
    same order. Verifier: :func:`sequence_credit` on words.

    Args:
        min_words: Fewest words.
        max_words: Most words.
    """

    name: ClassVar[str] = "translate"
    variants: ClassVar[tuple[str, ...]] = ("to_spanish", "to_english")
    instructions: ClassVar[tuple[Mapping[str, str], ...]] = (
        {
            "to_spanish": "Translate the words into Spanish.",
            "to_english": "Translate the words into English.",
        },
        {"to_spanish": "Give the Spanish for each word.", "to_english": "Give the English for each word."},
        {"to_spanish": "Say it in Spanish, word by word.", "to_english": "Say it in English, word by word."},
    )
    min_words: int = 1
    max_words: int = 4

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        english = _distinct_words(rng, _draw_between(rng, self.min_words, self.max_words))
        spanish = [lexicon()[w][0] for w in english]
        if variant == "to_spanish":
            return Problem(" ".join(english), " ".join(spanish))
        return Problem(" ".join(spanish), " ".join(english))


_TOPICS = {"animal": "animals", "color": "colors", "food": "foods"}


@dataclass(frozen=True)
class Keywords(TaskFamily):
    """``keywords``: extract the words of one topic (animals, colors or foods).

    Instructions ({topic} is "animals", "colors" or "foods"): "List the {topic} in the
    text." / "Which words are {topic}?" / "Write only the {topic}, in order." (held out).
    Context: 1..``max_per_topic`` words of *each* topic plus 0..``max_other`` words of other
    categories, shuffled, so the topic named in the instruction decides the answer. Answer:
    the topic's words in input order. Verifier: :func:`sequence_credit` on words.

    Args:
        max_per_topic: Most words of each topic in the context.
        max_other: Most words from other categories.
    """

    name: ClassVar[str] = "keywords"
    variants: ClassVar[tuple[str, ...]] = tuple(_TOPICS)
    instructions: ClassVar[tuple[str, ...]] = (
        "List the {topic} in the text.",
        "Which words are {topic}?",
        "Write only the {topic}, in order.",
    )
    max_per_topic: int = 2
    max_other: int = 2

    def _knob_minimum(self, knob: str) -> int:
        return 0 if knob == "max_other" else 1

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        words: list[str] = []
        for topic in _TOPICS:
            words += _choose(rng, _words_in(topic), _draw_between(rng, 1, self.max_per_topic))
        others = [w for w, (_, cat) in lexicon().items() if cat not in _TOPICS]
        words += _choose(rng, others, _draw_between(rng, 0, self.max_other))
        words = _shuffled(rng, words)
        answer = [w for w in words if lexicon()[w][1] == variant]
        return Problem(" ".join(words), " ".join(answer), fields={"topic": _TOPICS[variant]})
