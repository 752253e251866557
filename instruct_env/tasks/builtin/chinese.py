"""The opt-in Chinese family: instructions in Chinese about a string of Chinese characters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from instruct_env.tasks.builtin.common import _draw_between, count_credit, sequence_credit
from instruct_env.tasks.builtin.family import Problem, TaskFamily
from instruct_env.tasks.sample import Sample

__all__ = [
    "ChineseChars",
]


# Common Chinese characters of the ``zh_chars`` family (one character each, all distinct).
_ZH_CHARS = (
    "天地人日月山水火木金土风云雨雪花草树鸟鱼马牛羊狗猫书画字文门车船田石海星光心手口目耳米茶"
    "家国城路桥林春夏秋冬东西南北中上下左右大小多少好红白黑"
)


def _chars(text: str) -> list[str]:
    """The characters of ``text`` with all whitespace removed."""
    return list("".join(text.split()))


@dataclass(frozen=True)
class ChineseChars(TaskFamily):
    """``zh_chars``: Chinese instructions about a string of Chinese characters (opt-in family).

    Not part of the default selection (``tasks=None``, see :func:`default_task_names`): choose it
    with ``tasks=["zh_chars"]``. Variants: ``copy`` (the text unchanged), ``reverse`` (the
    characters last first), ``count`` (how many characters, in Arabic digits), ``first`` and
    ``last`` (one character). Instructions, three phrasings per variant, e.g. copy:
    "请原样重复输入的文字。" / "抄写下面的文字。" / "把这段文字再写一遍，不要改动。" (held out).
    Context: ``min_chars..max_chars`` characters drawn with replacement from 78 common ones, no
    spaces. Verifier: :func:`sequence_credit` on characters, whitespace ignored (``count``:
    :func:`count_credit`). With reference-based rewards use a tokeniser that splits Chinese, e.g.
    ``reward={"bleu": {"tokenize": "zh"}}`` or ``{"rougeL": {"tokenizer": "char"}}``.

    Args:
        min_chars: Fewest characters in the context (at least 2).
        max_chars: Most characters in the context.

    >>> from instruct_env.tasks import make_task
    >>> sample = make_task("zh_chars").sample(3, variant="reverse")
    >>> sample.references[0] == sample.context[::-1]
    True
    """

    name: ClassVar[str] = "zh_chars"
    variants: ClassVar[tuple[str, ...]] = ("copy", "reverse", "count", "first", "last")
    instructions: ClassVar[tuple[Mapping[str, str], ...]] = (
        {
            "copy": "请原样重复输入的文字。",
            "reverse": "请把输入的文字倒过来写。",
            "count": "输入里有几个汉字？",
            "first": "输入的第一个字是什么？",
            "last": "输入的最后一个字是什么？",
        },
        {
            "copy": "抄写下面的文字。",
            "reverse": "把这些字按相反的顺序写出来。",
            "count": "数一数输入有多少个字。",
            "first": "写出第一个字。",
            "last": "写出最后一个字。",
        },
        {
            "copy": "把这段文字再写一遍，不要改动。",
            "reverse": "从最后一个字开始，倒着写出全部文字。",
            "count": "请回答：这段文字共有多少个字？",
            "first": "只写开头的那个字。",
            "last": "只写结尾的那个字。",
        },
    )
    min_chars: int = 3
    max_chars: int = 6

    def _knob_minimum(self, knob: str) -> int:
        return 2 if knob == "min_chars" else 1

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        n = _draw_between(rng, self.min_chars, self.max_chars)
        text = "".join(_ZH_CHARS[int(i)] for i in rng.integers(len(_ZH_CHARS), size=n))
        answer = {"copy": text, "reverse": text[::-1], "count": str(len(text)), "first": text[0],
                  "last": text[-1]}[variant]
        return Problem(text, answer)

    def score(self, completion: str, reference: str, sample: Sample) -> float:
        """:func:`count_credit` for ``count``, else :func:`sequence_credit` on characters."""
        if sample.metadata.get("variant") == "count":
            return count_credit(completion, reference)
        return sequence_credit(_chars(completion), _chars(reference))
