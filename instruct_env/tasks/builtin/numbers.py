"""Families over lists of integers: sorting, arithmetic and programs in the mini-language."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from instruct_env.tasks import minilang
from instruct_env.tasks.builtin.common import _draw_between, digit_credit
from instruct_env.tasks.builtin.family import Problem, TaskFamily
from instruct_env.tasks.sample import Sample

__all__ = [
    "SortNumbers",
    "Arithmetic",
    "SemanticParse",
]


@dataclass(frozen=True)
class SortNumbers(TaskFamily):
    """``sort_numbers``: sort integers ascending or descending, as the instruction says.

    Instructions (ascending / descending): "Sort the numbers in ascending order." / "... in
    descending order."; "Arrange the numbers from smallest to largest." / "... from largest
    to smallest."; "Put the numbers in increasing order." / "... decreasing order." (held
    out). Context: ``min_len..max_len`` integers in ``0..max_value``, space-separated.
    Answer: the sorted numbers, space-separated. Verifier: :func:`sequence_credit`.

    Args:
        min_len: Fewest numbers.
        max_len: Most numbers.
        max_value: Largest number.
    """

    name: ClassVar[str] = "sort_numbers"
    variants: ClassVar[tuple[str, ...]] = ("ascending", "descending")
    instructions: ClassVar[tuple[Mapping[str, str], ...]] = (
        {
            "ascending": "Sort the numbers in ascending order.",
            "descending": "Sort the numbers in descending order.",
        },
        {
            "ascending": "Arrange the numbers from smallest to largest.",
            "descending": "Arrange the numbers from largest to smallest.",
        },
        {
            "ascending": "Put the numbers in increasing order.",
            "descending": "Put the numbers in decreasing order.",
        },
    )
    min_len: int = 3
    max_len: int = 6
    max_value: int = 99

    def _knob_minimum(self, knob: str) -> int:
        return 2 if knob == "min_len" else 1

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        n = _draw_between(rng, self.min_len, self.max_len)
        numbers = [int(v) for v in rng.integers(0, self.max_value + 1, size=n)]
        ordered = sorted(numbers, reverse=variant == "descending")
        return Problem(
            " ".join(map(str, numbers)), " ".join(map(str, ordered)), metadata={"numbers": numbers}
        )


@dataclass(frozen=True)
class Arithmetic(TaskFamily):
    """``arithmetic``: add or subtract two integers.

    Instructions (add / subtract): "Add the two numbers." / "Subtract the second number from
    the first."; "What is their sum?" / "What is the first number minus the second?";
    "Compute the sum of the numbers." / "Compute the difference, first minus second." (held
    out). Context: two integers ``a b`` in ``0..max_value``. Answer: the integer result
    (may be negative). Verifier: :func:`digit_credit` (digits compared right-aligned).

    Args:
        max_value: Largest operand.
    """

    name: ClassVar[str] = "arithmetic"
    variants: ClassVar[tuple[str, ...]] = ("add", "subtract")
    instructions: ClassVar[tuple[Mapping[str, str], ...]] = (
        {"add": "Add the two numbers.", "subtract": "Subtract the second number from the first."},
        {"add": "What is their sum?", "subtract": "What is the first number minus the second?"},
        {"add": "Compute the sum of the numbers.", "subtract": "Compute the difference, first minus second."},
    )
    max_value: int = 99

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        a, b = (int(v) for v in rng.integers(0, self.max_value + 1, size=2))
        result = a + b if variant == "add" else a - b
        return Problem(f"{a} {b}", str(result), metadata={"operands": (a, b)})

    def score(self, completion: str, reference: str, sample: Sample) -> float:
        """:func:`digit_credit`: the digits compared right-aligned."""
        return digit_credit(completion, reference)


# kind -> (English description, program template); {k} is a small count, {n} a threshold.
_QUERIES: Mapping[str, tuple[str, str]] = {
    "sum": ("the sum of the numbers", "sum(x)"),
    "max": ("the largest number", "max(x)"),
    "min": ("the smallest number", "min(x)"),
    "len": ("how many numbers there are", "len(x)"),
    "sort": ("the numbers in ascending order", "sort(x)"),
    "reverse": ("the numbers in reverse order", "reverse(x)"),
    "take": ("the first {k} numbers", "take(x,{k})"),
    "drop": ("the numbers after the first {k}", "drop(x,{k})"),
    "filter_gt": ("the numbers greater than {n}", "filter_gt(x,{n})"),
    "filter_lt": ("the numbers less than {n}", "filter_lt(x,{n})"),
    "even": ("the even numbers", "filter_even(x)"),
    "sum_gt": ("the sum of the numbers greater than {n}", "sum(filter_gt(x,{n}))"),
    "count_gt": ("how many numbers are greater than {n}", "len(filter_gt(x,{n}))"),
    "smallest_k": ("the {k} smallest numbers", "take(sort(x),{k})"),
    "largest_k": ("the {k} largest numbers", "take(reverse(sort(x)),{k})"),
    "range": ("the largest number minus the smallest", "max(x)-min(x)"),
    "max_plus": ("the largest number plus {n}", "max(x)+{n}"),
}


@dataclass(frozen=True)
class SemanticParse(TaskFamily):
    """``semantic_parse``: write a :mod:`~instruct_env.tasks.minilang` program for a request.

    Instructions ({query} describes the computation, e.g. "the sum of the numbers greater
    than 3"): "Write a program over x that gives {query}." / "Give the program computing
    {query} from the list x." / "Express as a program on x: {query}." (held out). Context:
    the list ``x``, ``min_len..max_len`` integers in ``0..max_value``, space-separated.
    Answer: a canonical program such as ``sum(filter_gt(x,3))`` (any equivalent program is
    accepted). Variants are the 17 query kinds.

    Verifier: the completion is parsed and run (no ``eval``) on ``x`` and on ``num_probes``
    extra lists stored in ``metadata["probes"]``; the score is the fraction of these runs
    whose result equals the reference program's. The probes stop a constant answer (the
    result written out as a literal) from scoring 1.0; with ``num_probes=0`` the score is
    exactly "1.0 if the result on ``x`` is right". A malformed program scores 0.0.

    Args:
        min_len: Fewest numbers in ``x``.
        max_len: Most numbers in ``x``.
        max_value: Largest number in ``x`` (at least 2).
        num_probes: Extra inputs the program is also run on (0 allowed).

    >>> task = SemanticParse(num_probes=0)
    >>> sample = task.sample(3, variant="sum_gt")
    >>> sample.references[0].startswith("sum(filter_gt(x,")
    True
    >>> task.verify("sum(filter_gt(x, 99))", sample) < 1.0 or sample.metadata["result"] == 0
    True
    """

    name: ClassVar[str] = "semantic_parse"
    variants: ClassVar[tuple[str, ...]] = tuple(_QUERIES)
    instructions: ClassVar[tuple[str, ...]] = (
        "Write a program over x that gives {query}.",
        "Give the program computing {query} from the list x.",
        "Express as a program on x: {query}.",
    )
    min_len: int = 3
    max_len: int = 6
    max_value: int = 9
    num_probes: int = 2

    def _knob_minimum(self, knob: str) -> int:
        return {"max_value": 2, "num_probes": 0}.get(knob, 1)

    def _draw_list(self, rng: np.random.Generator) -> list[int]:
        n = _draw_between(rng, self.min_len, self.max_len)
        return [int(v) for v in rng.integers(0, self.max_value + 1, size=n)]

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        x = self._draw_list(rng)
        k = _draw_between(rng, min(2, self.min_len), min(3, self.min_len))
        n = int(rng.integers(1, self.max_value))
        description, template = _QUERIES[variant]
        program = template.format(k=k, n=n)
        probes = [self._draw_list(rng) for _ in range(self.num_probes)]
        result = minilang.run(program, x)
        return Problem(
            context=" ".join(map(str, x)),
            answer=program,
            fields={"query": description.format(k=k, n=n)},
            metadata={
                "x": x,
                "program": program,
                "result": result,
                "probes": probes,
                "probe_results": [minilang.run(program, p) for p in probes],
            },
        )

    def verify(self, completion: str, sample: Sample) -> float:
        """Run ``completion`` on ``x`` and the probes; the fraction of correct results."""
        if not isinstance(completion, str):
            return 0.0
        try:
            tree = minilang.parse(completion.strip())
        except minilang.MiniLangError:
            return 0.0
        meta = sample.metadata
        inputs = [meta["x"], *meta.get("probes", ())]
        expected = [meta["result"], *meta.get("probe_results", ())]
        correct = 0
        for x, want in zip(inputs, expected):
            try:
                correct += minilang.evaluate(tree, {"x": list(x)}) == want
            except (minilang.MiniLangError, RecursionError):
                pass
        return correct / len(inputs)
