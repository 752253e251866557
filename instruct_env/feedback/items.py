"""What an oracle is asked and what it answers: items, tickets, judgements and results.

:class:`FeedbackItem` is one thing to judge; :meth:`~instruct_env.feedback.oracle.Oracle.ask`
returns a :class:`Ticket`, and ``poll`` / ``wait`` a :class:`FeedbackResult` of
:class:`Judgement` objects, in canonical terms. :func:`answer_value` turns an answer into one number
in ``[0, 1]`` and :func:`prompt_text` writes the prompt a reward model scores. All of them are also
importable from :mod:`instruct_env.feedback.oracle`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from instruct_env.error import ConfigError
from instruct_env.feedback.kinds import Rating, make_kind
from instruct_env.feedback.store import Query
from instruct_env.tasks.sample import Sample

__all__ = ["FeedbackItem", "Ticket", "Judgement", "FeedbackResult", "answer_value", "prompt_text"]


@dataclass(frozen=True)
class FeedbackItem:
    """One thing to judge: an instruction, its context and the completion(s) to judge.

    Attributes:
        instruction: What the model was asked.
        completions: The output(s): one for ``rating``/``thumbs``/``comment``/``edit``, two for
            ``pairwise``, 2..9 for ``ranking``. A single string counts as one completion.
        context: The input the instruction applies to (may be empty).
        sample: The :class:`~instruct_env.tasks.Sample` it came from, if any; simulated
            evaluators score with its verifier and references. Never shown to people.
        selector: Name of whatever chose the item (e.g. an active-learning selector).
        score: That selector's score.
        metadata: JSON-serialisable extra information, stored with the query (not shown).
    """

    instruction: str
    completions: tuple[str, ...]
    context: str = ""
    sample: Sample | None = field(default=None, compare=False, repr=False)
    selector: str | None = None
    score: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        completions = self.completions
        if isinstance(completions, str):
            completions = (completions,)
        if not isinstance(completions, Sequence) or not all(isinstance(c, str) for c in completions):
            raise ConfigError(
                f"FeedbackItem.completions must be a string or a sequence of strings; got {self.completions!r:.80}."
            )
        object.__setattr__(self, "completions", tuple(completions))
        if not isinstance(self.instruction, str) or not isinstance(self.context, str):
            raise ConfigError("FeedbackItem.instruction and context must be strings.")
        if self.sample is not None and not isinstance(self.sample, Sample):
            raise ConfigError(f"FeedbackItem.sample must be a Sample or None; got {type(self.sample).__name__}.")

    @classmethod
    def from_sample(cls, sample: Sample, completions: str | Sequence[str], **fields: Any) -> FeedbackItem:
        """An item for ``sample``'s instruction and context (``fields``: selector, score, metadata)."""
        items = (completions,) if isinstance(completions, str) else completions
        # A non-sequence goes through as given, for __post_init__ to refuse with its message.
        return cls(sample.instruction, tuple(items) if isinstance(items, Sequence) else items, sample.context,
                   sample=sample, **fields)

    @property
    def references(self) -> tuple[str, ...]:
        """The reference answers: the sample's, else ``metadata["references"]``, else none."""
        if self.sample is not None:
            return self.sample.references
        return tuple(self.metadata.get("references", ()))

    def prompt(self, formatter: Any = None) -> str:
        """The prompt text a reward model scores the completions with (zero-shot, ``formatter``'s template).

        ``formatter`` is a :class:`~instruct_env.tasks.PromptFormatter` (the default template when
        ``None``). The same function builds the prompts of stored queries and of environment
        samples, so a reward model sees one format whatever the source.
        """
        return prompt_text(self.instruction, self.context, formatter)

    def pairs(self, formatter: Any = None) -> list[tuple[str, str]]:
        """``(prompt, completion)`` for each completion: what a reward model scores."""
        prompt = self.prompt(formatter)
        return [(prompt, c) for c in self.completions]

    def to_query(self, kind: str, options: Mapping[str, Any] | None = None) -> Query:
        """The store query for this item. The sample's id, task and references go into metadata."""
        metadata = dict(self.metadata)
        if self.sample is not None:
            metadata.setdefault("sample_id", self.sample.id)
            metadata.setdefault("task", self.sample.task)
            metadata.setdefault("references", list(self.sample.references))
        return Query(kind, self.instruction, self.completions, context=self.context, options=dict(options or {}),
                     selector=self.selector, score=self.score, metadata=metadata)


def prompt_text(instruction: str, context: str = "", formatter: Any = None) -> str:
    """Zero-shot prompt text for an instruction and context (``formatter``: a ``PromptFormatter``).

    >>> print(prompt_text("Sort.", "3 1 2"), end="")
    ### Instruction:
    Sort.
    ### Input:
    3 1 2
    ### Response:
    """
    from instruct_env.tasks.prompts import PromptFormatter

    formatter = formatter if formatter is not None else _default_formatter()
    if not isinstance(formatter, PromptFormatter):
        raise ConfigError(f"formatter must be a PromptFormatter or None; got {type(formatter).__name__}.")
    return formatter.format(Sample("feedback", "feedback", instruction, context))


@functools.cache
def _default_formatter() -> Any:
    from instruct_env.tasks.prompts import PromptFormatter

    return PromptFormatter()


@dataclass(frozen=True)
class Ticket:
    """A receipt for one :meth:`Oracle.ask`: pass it to ``poll``, ``wait`` or ``collect``.

    Tickets are small and picklable, so they can travel in an episode's ``info``.

    Attributes:
        id: Unique id.
        kind: Feedback kind asked for.
        options: The kind's options (e.g. ``{"low": 1, "high": 5}``).
        n_items: Number of items asked about.
        created: Unix time of the request.
        query_ids: Store query ids, one per item (oracles backed by a store); else empty.
    """

    id: str
    kind: str
    options: Mapping[str, Any]
    n_items: int
    created: float
    query_ids: tuple[int, ...] = ()

    def __hash__(self) -> int:
        return hash(self.id)


@dataclass(frozen=True)
class Judgement:
    """One evaluator's answer to one item, in canonical terms (``answer is None``: skipped).

    Attributes:
        item: Position of the item in its ticket.
        evaluator: Evaluator name (unique within an oracle or pool).
        answer: The answer (e.g. ``{"rating": 4}``), or ``None`` for a skip.
        time: Unix time of the answer.
        query_id: Store query id, when a store is involved.
        event_id: Store event id of the answer, when a store is involved.
    """

    item: int
    evaluator: str
    answer: Mapping[str, Any] | None
    time: float
    query_id: int | None = None
    event_id: int | None = None

    @property
    def skipped(self) -> bool:
        """Whether the evaluator skipped the item."""
        return self.answer is None


def answer_value(kind: str, answer: Mapping[str, Any] | None, options: Mapping[str, Any] | None = None) -> float:
    """One number in ``[0, 1]`` for an answer, or ``nan`` when it carries no such number.

    ``rating``: ``(rating - low) / (high - low)``; ``thumbs``: 1 up, 0 down; ``pairwise``: the
    probability that completion A is better (1 ``A``, 0 ``B``, 0.5 ``tie``; ``both_bad`` says
    nothing about the order: ``nan``). Other kinds and skips (``None``) give ``nan``.

    >>> answer_value("rating", {"rating": 4}), answer_value("pairwise", {"choice": "B"})
    (0.75, 0.0)
    """
    if answer is None:
        return math.nan
    if kind == "rating":
        spec = make_kind("rating", **dict(options or {}))
        assert isinstance(spec, Rating)  # make_kind("rating") builds a Rating
        return (answer["rating"] - spec.low) / (spec.high - spec.low)
    if kind == "thumbs":
        return 1.0 if answer["thumb"] == "up" else 0.0
    if kind == "pairwise":
        return {"A": 1.0, "B": 0.0, "tie": 0.5}.get(answer["choice"], math.nan)
    return math.nan


@dataclass(frozen=True)
class FeedbackResult:
    """The answers to one ticket so far.

    Attributes:
        ticket: The ticket.
        judgements: One per (item, evaluator) that answered or skipped, by item then evaluator.
        complete: No more answers are expected (every item has as many as the oracle wants, or
            every evaluator asked has answered or skipped it).
    """

    ticket: Ticket
    judgements: tuple[Judgement, ...]
    complete: bool

    def by_item(self) -> list[list[Judgement]]:
        """The judgements of each item (answers and skips), in item order."""
        out: list[list[Judgement]] = [[] for _ in range(self.ticket.n_items)]
        for j in self.judgements:
            out[j.item].append(j)
        return out

    def n_answers(self) -> np.ndarray:
        """``(n_items,)`` number of (non-skip) answers per item."""
        counts = np.zeros(self.ticket.n_items, dtype=np.int64)
        for j in self.judgements:
            counts[j.item] += not j.skipped
        return counts

    def values(self) -> np.ndarray:
        """``(n_items,)`` mean :func:`answer_value` over each item's answers (``nan`` where none).

        Raises:
            ConfigError: the kind has no numeric value (``ranking``, ``comment``, ``edit``).
        """
        if self.ticket.kind not in ("rating", "thumbs", "pairwise"):
            raise ConfigError(
                f"values() is defined for rating, thumbs and pairwise feedback; this ticket is "
                f"{self.ticket.kind!r}. Read result.judgements instead."
            )
        sums = np.zeros(self.ticket.n_items)
        counts = np.zeros(self.ticket.n_items)
        for j in self.judgements:
            v = answer_value(self.ticket.kind, j.answer, self.ticket.options)
            if not math.isnan(v):
                sums[j.item] += v
                counts[j.item] += 1
        with np.errstate(invalid="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
