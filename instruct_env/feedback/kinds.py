"""The kinds of feedback an evaluator can give, and how each answer is checked.

=============  ===========  =========================================================  ============
kind           completions  answer (JSON)                                              gold allowed
=============  ===========  =========================================================  ============
``rating``     1            ``{"rating": 4}`` (an integer in ``low..high``, 1..5)      yes
``thumbs``     1            ``{"thumb": "up"}`` or ``{"thumb": "down"}``                yes
``pairwise``   2            ``{"choice": "A"}``; ``"A"``, ``"B"``, ``"tie"`` or          yes
                            ``"both_bad"``, plus an optional ``"strength"`` 1..3
                            (slightly / clearly / much better) for ``A`` or ``B``
``ranking``    2..9         ``{"ranking": [2, 0, 1]}``: positions, best first, a        yes
                            permutation of ``0..k-1``
``comment``    1            ``{"comment": "free text"}``                                no
``edit``       1            ``{"completion": "the corrected answer"}``                  no
=============  ===========  =========================================================  ============

Blind presentation: for ``pairwise`` and ``ranking`` every evaluator sees the completions in their
own random order, stored with their assignment. Evaluators answer in **display** terms (``"A"`` is
the completion shown on the left, ranking positions are display positions). The store converts
each answer to **canonical** terms (``"A"`` is ``completions[0]`` of the query, ranking entries
are indices into ``completions``) with :meth:`FeedbackKind.to_canonical` before saving it, so the
log, the exports and the gold answers never depend on what one evaluator happened to see.

>>> kind = make_kind("pairwise")
>>> answer = kind.validate({"choice": "A", "strength": 2}, n_completions=2)
>>> kind.to_canonical(answer, order=[1, 0])  # the evaluator saw completion 1 on the left
{'choice': 'B', 'strength': 2}
>>> make_kind("rating", low=1, high=3).validate({"rating": 7}, n_completions=1)
Traceback (most recent call last):
...
instruct_env.feedback.errors.InvalidAnswer: rating must be an integer from 1 to 3; got 7.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar

from instruct_env.error import ConfigError, unknown_name
from instruct_env.feedback.errors import InvalidAnswer

__all__ = [
    "FeedbackKind",
    "Rating",
    "Thumbs",
    "Pairwise",
    "Ranking",
    "Comment",
    "Edit",
    "KINDS",
    "make_kind",
]

MAX_COMMENT_CHARS = 10_000
MAX_EDIT_CHARS = 100_000


class FeedbackKind:
    """One kind of feedback: how many completions it shows and which answers it accepts.

    Subclasses set the class attributes and override :meth:`validate` (and, for kinds whose
    display order is shuffled, :meth:`to_canonical` / :meth:`to_display`).

    Attributes:
        name: The kind's name, as stored with each query.
        min_completions: Fewest completions a query of this kind may have.
        max_completions: Most completions a query of this kind may have.
        shuffled: Whether each evaluator sees the completions in their own random order.
        agreement_level: Krippendorff level used for agreement (``None``: no agreement metric).
        gold_allowed: Whether queries of this kind may carry a gold answer.
        guidelines: Default instructions shown to evaluators on this kind's page.
        answer_field: The answer's field that :meth:`label` compares with a gold answer.
    """

    name: ClassVar[str] = ""
    min_completions: ClassVar[int] = 1
    max_completions: ClassVar[int] = 1
    shuffled: ClassVar[bool] = False
    agreement_level: ClassVar[str | None] = "nominal"
    gold_allowed: ClassVar[bool] = True
    guidelines: ClassVar[str] = ""
    answer_field: ClassVar[str] = ""

    def options(self) -> dict[str, Any]:
        """The options that rebuild this kind with :func:`make_kind` (stored with each query)."""
        return {}

    def check_completions(self, completions: Sequence[str]) -> tuple[str, ...]:
        """Return ``completions`` as a tuple, or raise :class:`ConfigError` if they do not fit."""
        if isinstance(completions, str) or not isinstance(completions, Sequence):
            raise ConfigError(
                f"completions of a {self.name!r} query must be a list of strings; got {type(completions).__name__}."
            )
        bad = [i for i, c in enumerate(completions) if not isinstance(c, str)]
        if bad:
            raise ConfigError(
                f"completions[{bad[0]}] of a {self.name!r} query is {completions[bad[0]]!r}; expected a string."
            )
        n = len(completions)
        if not self.min_completions <= n <= self.max_completions:
            expected = (
                str(self.min_completions)
                if self.min_completions == self.max_completions
                else f"{self.min_completions} to {self.max_completions}"
            )
            raise ConfigError(f"A {self.name!r} query needs {expected} completion(s); got {n}.")
        return tuple(completions)

    def validate(self, answer: Any, n_completions: int) -> dict[str, Any]:
        """Check an answer (in display terms) and return it normalised.

        Raises:
            InvalidAnswer: the answer is not a mapping, has unknown or missing fields, or a value
                out of range. The message names the field and the accepted values.
        """
        raise NotImplementedError

    def to_canonical(self, answer: Mapping[str, Any], order: Sequence[int]) -> dict[str, Any]:
        """Translate a validated display-terms answer; ``order[p]`` is the completion shown at ``p``."""
        return dict(answer)

    def to_display(self, answer: Mapping[str, Any], order: Sequence[int]) -> dict[str, Any]:
        """Inverse of :meth:`to_canonical`."""
        return dict(answer)

    def label(self, answer: Mapping[str, Any]) -> Hashable:
        """The part of a canonical answer compared with a gold answer: its :attr:`answer_field`."""
        return answer[self.answer_field]

    def agreement_triples(
        self, query_id: Hashable, evaluator_id: Hashable, answer: Mapping[str, Any]
    ) -> list[tuple[Hashable, Hashable, Any]]:
        """``(item, evaluator, value)`` triples for :func:`~instruct_env.feedback.krippendorff_alpha`.

        None for a kind without an agreement metric (``agreement_level`` is ``None``).
        """
        if self.agreement_level is None:
            return []
        return [(query_id, evaluator_id, self.label(answer))]

    def shortcuts(self, n_completions: int) -> list[tuple[str, str]]:
        """Keyboard shortcuts of this kind's page, as ``(keys, what they do)`` pairs."""
        return []

    # -- helpers for subclasses ---------------------------------------------------------------

    def _fields(self, answer: Any, required: Sequence[str], optional: Sequence[str] = ()) -> None:
        example = self._example()
        if not isinstance(answer, Mapping):
            raise InvalidAnswer(
                f"A {self.name!r} answer must be a JSON object such as {example}; got {type(answer).__name__}."
            )
        unknown = sorted(str(k) for k in answer if k not in (*required, *optional))
        if unknown:
            raise InvalidAnswer(
                f"A {self.name!r} answer has unknown field(s) {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(map(repr, (*required, *optional)))} (e.g. {example})."
            )
        missing = [k for k in required if k not in answer]
        if missing:
            raise InvalidAnswer(
                f"A {self.name!r} answer needs the field(s) {', '.join(map(repr, missing))} (e.g. {example})."
            )

    def _example(self) -> str:
        return "{}"

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and isinstance(other, FeedbackKind) and self.options() == other.options()

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(self.options().items()))))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(kind: str, field: str, value: Any, max_chars: int, hint: str) -> str:
    if not isinstance(value, str):
        raise InvalidAnswer(f"{field} of a {kind!r} answer must be a string; got {type(value).__name__}.")
    if not value.strip():
        raise InvalidAnswer(f"{field} of a {kind!r} answer is empty. {hint}")
    if len(value) > max_chars:
        raise InvalidAnswer(
            f"{field} of a {kind!r} answer has {len(value)} characters; the limit is {max_chars}."
        )
    return value


class Rating(FeedbackKind):
    """A score on an integer scale, ``low..high`` (1..5 by default); higher is better.

    Args:
        low: Lowest score.
        high: Highest score; must exceed ``low``. Digit shortcuts cover scores 0..10 (``0`` types 10
            when the scale has no 0).
    """

    name = "rating"
    answer_field = "rating"
    agreement_level = "ordinal"
    guidelines = (
        "Rate how well the response follows the instruction: correct, complete, and nothing "
        "extra. The lowest score means useless or wrong, the highest means you would not change "
        "anything. Judge the response, not the instruction."
    )

    MAX_POINTS = 101  # a page shows one button per score: 0..100 at most

    def __init__(self, low: int = 1, high: int = 5) -> None:
        if not (_is_int(low) and _is_int(high)) or low >= high:
            raise ConfigError(
                f"A rating scale needs integers low < high; got low={low!r}, high={high!r}."
            )
        if high - low + 1 > self.MAX_POINTS:
            raise ConfigError(
                f"A rating scale has at most {self.MAX_POINTS} scores (e.g. 0..100); got low={low}, high={high} "
                f"({high - low + 1} scores). Use a coarser scale."
            )
        self.low = low
        self.high = high

    def options(self) -> dict[str, Any]:
        """The scale: ``{"low": ..., "high": ...}``."""
        return {"low": self.low, "high": self.high}

    def _example(self) -> str:
        return f'{{"rating": {self.high}}}'

    def validate(self, answer: Any, n_completions: int) -> dict[str, Any]:
        """``{"rating": score}`` with an integer score on the scale."""
        self._fields(answer, ["rating"])
        rating = answer["rating"]
        if not _is_int(rating) or not self.low <= rating <= self.high:
            raise InvalidAnswer(f"rating must be an integer from {self.low} to {self.high}; got {rating!r}.")
        return {"rating": rating}

    def digit_of(self, score: int) -> str | None:
        """The key that types ``score`` on the rating page, or ``None`` if no digit does."""
        if 0 <= score <= 9:
            return str(score)
        if score == 10 and self.low > 0:
            return "0"
        return None

    def shortcuts(self, n_completions: int) -> list[tuple[str, str]]:
        """The page's keys for this kind."""
        keys = [d for d in (self.digit_of(s) for s in range(self.low, self.high + 1)) if d]
        if not keys:
            return []
        if len(keys) == 1:
            span = keys[0]
        elif keys[-1] == "0":  # 10 is typed with 0
            span = f"{keys[0]}-{keys[-2]}, 0 (= 10)"
        else:
            span = f"{keys[0]}-{keys[-1]}"
        return [(span, f"choose a score ({self.low} = worst, {self.high} = best)")]


class Thumbs(FeedbackKind):
    """Thumbs up (acceptable) or down (not acceptable)."""

    name = "thumbs"
    answer_field = "thumb"
    guidelines = (
        "Thumbs up if you would accept this response as an answer to the instruction as it is; "
        "thumbs down if it is wrong, incomplete, unsafe or ignores the instruction."
    )

    def _example(self) -> str:
        return '{"thumb": "up"}'

    def validate(self, answer: Any, n_completions: int) -> dict[str, Any]:
        """``{"thumb": "up" | "down"}``."""
        self._fields(answer, ["thumb"])
        if answer["thumb"] not in ("up", "down"):
            raise InvalidAnswer(f"thumb must be 'up' or 'down'; got {answer['thumb']!r}.")
        return {"thumb": answer["thumb"]}

    def agreement_triples(
        self, query_id: Hashable, evaluator_id: Hashable, answer: Mapping[str, Any]
    ) -> list[tuple[Hashable, Hashable, Any]]:
        """One triple whose value is 1 for up and 0 for down."""
        return [(query_id, evaluator_id, int(answer["thumb"] == "up"))]

    def shortcuts(self, n_completions: int) -> list[tuple[str, str]]:
        """The page's keys for this kind."""
        return [("Y or +", "thumbs up"), ("N or -", "thumbs down")]


PAIRWISE_CHOICES = ("A", "B", "tie", "both_bad")


class Pairwise(FeedbackKind):
    """Which of two completions is better: ``A`` (left), ``B`` (right), ``tie`` or ``both_bad``.

    An optional ``strength`` (1 = slightly, 2 = clearly, 3 = much better) may accompany ``A`` or
    ``B``; it becomes the ``margin`` of exported preference pairs.
    """

    name = "pairwise"
    answer_field = "choice"
    min_completions = max_completions = 2
    shuffled = True
    guidelines = (
        "Pick the response that follows the instruction better (A = left, B = right). Choose tie "
        "when both are equally good, both bad when neither is acceptable. Optionally say how much "
        "better: 1 slightly, 2 clearly, 3 much better. The order of the responses is random."
    )

    def _example(self) -> str:
        return '{"choice": "A", "strength": 2}'

    def validate(self, answer: Any, n_completions: int) -> dict[str, Any]:
        """``{"choice": ...}`` from :data:`PAIRWISE_CHOICES`, with an optional ``strength`` 1..3 for A or B."""
        self._fields(answer, ["choice"], ["strength"])
        choice = answer["choice"]
        if choice not in PAIRWISE_CHOICES:
            raise InvalidAnswer(
                f"choice must be one of {', '.join(map(repr, PAIRWISE_CHOICES))}; got {choice!r}."
            )
        result: dict[str, Any] = {"choice": choice}
        strength = answer.get("strength")
        if strength is not None:
            if choice not in ("A", "B"):
                raise InvalidAnswer(
                    f"strength only applies to a choice of 'A' or 'B'; got choice {choice!r} with "
                    f"strength {strength!r}. Leave strength out."
                )
            if not _is_int(strength) or not 1 <= strength <= 3:
                raise InvalidAnswer(f"strength must be 1, 2 or 3 (or left out); got {strength!r}.")
            result["strength"] = strength
        return result

    def _swap(self, answer: Mapping[str, Any], order: Sequence[int]) -> dict[str, Any]:
        result = dict(answer)
        if list(order) == [1, 0] and answer["choice"] in ("A", "B"):
            result["choice"] = "B" if answer["choice"] == "A" else "A"
        return result

    to_canonical = _swap
    to_display = _swap  # swapping is its own inverse

    def shortcuts(self, n_completions: int) -> list[tuple[str, str]]:
        """The page's keys for this kind."""
        return [
            ("A", "the left response (A) is better"),
            ("B", "the right response (B) is better"),
            ("T", "tie: equally good"),
            ("N", "both bad"),
            ("1-3", "how much better: slightly / clearly / much (optional)"),
        ]


class Ranking(FeedbackKind):
    """Order ``k`` completions (2..9) from best to worst; the answer is a permutation of positions."""

    name = "ranking"
    answer_field = "ranking"
    min_completions = 2
    max_completions = 9
    shuffled = True
    agreement_level = "ordinal"
    guidelines = (
        "Order the responses from best to worst at following the instruction. Type the numbers "
        "of the responses, best first. The order in which they are shown is random."
    )

    def _example(self) -> str:
        return '{"ranking": [1, 0, 2]}'

    def validate(self, answer: Any, n_completions: int) -> dict[str, Any]:
        """``{"ranking": [...]}``: every display position once, best first."""
        self._fields(answer, ["ranking"])
        ranking = answer["ranking"]
        expected = list(range(n_completions))
        if (
            not isinstance(ranking, (list, tuple))
            or not all(_is_int(r) for r in ranking)
            or sorted(ranking) != expected
        ):
            raise InvalidAnswer(
                f"ranking must list each of the positions {expected} exactly once, best first; got {ranking!r}."
            )
        return {"ranking": list(ranking)}

    def to_canonical(self, answer: Mapping[str, Any], order: Sequence[int]) -> dict[str, Any]:
        """The ranking in completion indices instead of display positions."""
        return {**answer, "ranking": [order[p] for p in answer["ranking"]]}

    def to_display(self, answer: Mapping[str, Any], order: Sequence[int]) -> dict[str, Any]:
        """The ranking in display positions instead of completion indices."""
        position = {c: p for p, c in enumerate(order)}
        return {**answer, "ranking": [position[c] for c in answer["ranking"]]}

    def label(self, answer: Mapping[str, Any]) -> Hashable:
        """The whole ranking, as a tuple."""
        return tuple(answer["ranking"])

    def agreement_triples(
        self, query_id: Hashable, evaluator_id: Hashable, answer: Mapping[str, Any]
    ) -> list[tuple[Hashable, Hashable, Any]]:
        """One triple per completion ``(query_id, completion)``, whose value is its rank (ordinal)."""
        return [((query_id, c), evaluator_id, rank) for rank, c in enumerate(answer["ranking"])]

    def shortcuts(self, n_completions: int) -> list[tuple[str, str]]:
        """The page's keys for this kind."""
        return [
            (f"1-{n_completions}", "add that response to the ranking, best first"),
            ("Backspace", "remove the last response from the ranking"),
        ]


class Comment(FeedbackKind):
    """Free-text feedback on one completion."""

    name = "comment"
    answer_field = "comment"
    agreement_level = None
    gold_allowed = False
    guidelines = (
        "Write what is wrong or missing in the response and what a better response would do. "
        "Be specific: quote the part you mean."
    )

    def _example(self) -> str:
        return '{"comment": "The list is not sorted."}'

    def validate(self, answer: Any, n_completions: int) -> dict[str, Any]:
        """``{"comment": text}``: non-empty, at most :data:`MAX_COMMENT_CHARS` characters."""
        self._fields(answer, ["comment"])
        text = _text(self.name, "comment", answer["comment"], MAX_COMMENT_CHARS, "Write a comment or skip the query.")
        return {"comment": text}

    def shortcuts(self, n_completions: int) -> list[tuple[str, str]]:
        """The page's keys for this kind."""
        return [("C", "write in the comment box (Esc leaves it)"), ("Ctrl+Enter", "submit from the box")]


class Edit(FeedbackKind):
    """A corrected version of the completion, written by the evaluator (becomes an SFT example)."""

    name = "edit"
    answer_field = "completion"
    agreement_level = None
    gold_allowed = False
    guidelines = (
        "Correct the response so that it follows the instruction exactly. Change only what is "
        "needed; if it is already right, submit it unchanged."
    )

    def _example(self) -> str:
        return '{"completion": "the corrected answer"}'

    def validate(self, answer: Any, n_completions: int) -> dict[str, Any]:
        """``{"completion": text}``: non-empty, at most :data:`MAX_EDIT_CHARS` characters."""
        self._fields(answer, ["completion"])
        text = _text(
            self.name, "completion", answer["completion"], MAX_EDIT_CHARS,
            "Write the corrected answer, or skip the query if you cannot.",
        )
        return {"completion": text}

    def shortcuts(self, n_completions: int) -> list[tuple[str, str]]:
        """The page's keys for this kind."""
        return [("E", "edit the answer (Esc leaves the box)"), ("Ctrl+Enter", "submit from the box")]


KINDS: dict[str, type[FeedbackKind]] = {
    cls.name: cls for cls in (Rating, Thumbs, Pairwise, Ranking, Comment, Edit)
}


def make_kind(name: str, **options: Any) -> FeedbackKind:
    """Build the feedback kind ``name`` with its options (only ``rating`` takes any: ``low``, ``high``).

    Raises:
        UnknownNameError: ``name`` is not a kind (with a "did you mean" hint).
        ConfigError: an option is unknown or invalid.

    >>> make_kind("rating", high=7)
    Rating(low=1, high=7)
    """
    if name not in KINDS:
        raise unknown_name("feedback kind", name, KINDS)
    known = KINDS[name]().options()
    unknown = sorted(str(option) for option in options if option not in known)
    if unknown:
        raise ConfigError(
            f"Feedback kind {name!r} got unknown option(s) {unknown}; accepted options: {', '.join(known) or 'none'}."
        )
    return KINDS[name](**options)
