"""The store's records: what the feedback store reads and writes, and how database rows become them.

Every record is a frozen dataclass. :class:`Query` validates itself against its feedback kind when
built; the others are built by the store from rows it wrote. The ``*_from_row`` functions are the
only places where a row's column order is spelled out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from instruct_env.error import ConfigError
from instruct_env.feedback.errors import InvalidAnswer
from instruct_env.feedback.kinds import FeedbackKind, make_kind

__all__ = [
    "Evaluator",
    "Query",
    "QueryView",
    "Event",
    "CurrentAnswer",
    "Receipt",
    "Progress",
    "EventCounts",
    "ChatTurn",
    "QueryIds",
    "query_from_sample",
    "chat_history",
    "ROLES",
    "EVENT_TYPES",
    "ANSWER_EVENTS",
    "MAX_ID",
    "SESSION_TTL",
    "MAX_KEY_CHARS",
    "MAX_REASON_CHARS",
    "MAX_NAME_CHARS",
    "MAX_CHAT_TURNS",
    "MAX_CHAT_CONTEXT_CHARS",
]

MAX_ID = 2**63 - 1  # ids are signed 64-bit integers in both back-ends
SESSION_TTL = 12 * 3600.0  # default lifetime of a page login, seconds
ROLES = ("evaluator", "admin")
EVENT_TYPES = ("submit", "edit", "undo", "skip")
ANSWER_EVENTS = ("submit", "edit", "skip")  # the events an undo can cancel
MAX_KEY_CHARS = 200
MAX_REASON_CHARS = 1000
MAX_NAME_CHARS = 100
MAX_CHAT_TURNS = 100  # turns per conversation; then the evaluator starts a new one
MAX_CHAT_CONTEXT_CHARS = 16_000  # the stored context of a chat turn keeps the newest turns that fit

# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluator:
    """A person (or an admin) who answers queries. The token is never part of this record."""

    id: int
    name: str
    role: str
    created: float

    @property
    def is_admin(self) -> bool:
        """Whether the evaluator has the admin role."""
        return self.role == "admin"


@dataclass(frozen=True)
class Query:
    """Something to judge: an instruction, its context and the model's completion(s).

    Attributes:
        kind: Feedback kind (``rating``, ``thumbs``, ``pairwise``, ``ranking``, ``comment``,
            ``edit``); see :mod:`instruct_env.feedback.kinds`.
        instruction: What the model was asked to do.
        completions: The model output(s) to judge, in canonical order.
        context: The input the instruction applies to; may be empty.
        options: Options of the kind (``{"low": 1, "high": 7}`` for a 7-point rating); filled
            in with the kind's defaults.
        gold: The known correct answer, in canonical terms, for quality control. Gold queries
            are mixed into every evaluator's queue and are not counted towards ``min_evaluators``.
        selector: Name of whatever chose this query (e.g. an active-learning selector).
        score: That selector's score for the query.
        metadata: JSON-serialisable extra information (sample id, model name...). Never shown
            to evaluators.
        id: Set by the store.
        created: Unix time at which it was stored; set by the store.

    Raises:
        ConfigError: an invalid field (unknown kind, wrong number of completions, a gold answer
            that does not fit the kind...).
    """

    kind: str
    instruction: str
    completions: Sequence[str]
    context: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    gold: Mapping[str, Any] | None = None
    selector: str | None = None
    score: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None
    created: float | None = None
    spec: FeedbackKind = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str):
            raise ConfigError(f"Query kind must be a string such as 'rating'; got {self.kind!r}.")
        if not isinstance(self.options, Mapping):
            raise ConfigError(f"Query options must be a mapping; got {type(self.options).__name__}.")
        spec = make_kind(self.kind, **self.options)
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "options", spec.options())
        object.__setattr__(self, "completions", spec.check_completions(self.completions))
        for name in ("instruction", "context"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"Query {name} must be a string; got {type(getattr(self, name)).__name__}.")
        if not self.instruction.strip():
            raise ConfigError("Query instruction is empty; evaluators need to know what was asked.")
        if self.gold is not None:
            if not spec.gold_allowed:
                raise ConfigError(
                    f"{self.kind!r} queries cannot have a gold answer (free text cannot be checked); "
                    "leave gold=None."
                )
            try:
                object.__setattr__(self, "gold", spec.validate(self.gold, len(self.completions)))
            except InvalidAnswer as exc:
                raise ConfigError(f"Invalid gold answer: {exc}") from None
        if self.selector is not None and not isinstance(self.selector, str):
            raise ConfigError(f"Query selector must be a string or None; got {self.selector!r}.")
        if self.score is not None:
            if isinstance(self.score, bool) or not isinstance(self.score, (int, float)) or not math.isfinite(self.score):
                raise ConfigError(f"Query score must be a finite number or None; got {self.score!r}.")
            object.__setattr__(self, "score", float(self.score))
        if not isinstance(self.metadata, Mapping):
            raise ConfigError(f"Query metadata must be a mapping; got {type(self.metadata).__name__}.")
        try:
            dumps(dict(self.metadata))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Query metadata must be JSON-serialisable: {exc}.") from None

    @property
    def is_gold(self) -> bool:
        """Whether the query has a gold answer."""
        return self.gold is not None

    def payload(self) -> dict[str, Any]:
        """The JSON object stored in the ``queries`` table."""
        return {
            "instruction": self.instruction,
            "context": self.context,
            "completions": list(self.completions),
            "options": dict(self.options),
            "gold": None if self.gold is None else dict(self.gold),
            "selector": self.selector,
            "score": self.score,
            "metadata": dict(self.metadata),
        }


def query_from_sample(
    sample: Any,
    completions: Sequence[str],
    kind: str = "rating",
    **fields: Any,
) -> Query:
    """Build a :class:`Query` from a :class:`~instruct_env.tasks.Sample` and model completion(s).

    The sample's id and task go into ``metadata`` (merged with ``fields["metadata"]``).

    >>> from instruct_env.tasks import Sample
    >>> q = query_from_sample(Sample("sort/0", "sort", "Sort.", "3 1 2"), ["1 2 3"], "thumbs")
    >>> q.context, q.metadata
    ('3 1 2', {'sample_id': 'sort/0', 'task': 'sort'})
    """
    metadata = {"sample_id": sample.id, "task": sample.task, **dict(fields.pop("metadata", {}))}
    return Query(kind, sample.instruction, completions, context=sample.context, metadata=metadata, **fields)


@dataclass(frozen=True)
class QueryView:
    """A query as one evaluator sees it: completions in their display order, no gold, no selector.

    Attributes:
        id: Query id.
        kind: Feedback kind.
        options: Kind options.
        instruction: The instruction.
        context: The context (may be empty).
        completions: The completions in this evaluator's display order.
        status: ``None`` (open), ``"answered"`` or ``"skipped"``.
        answer: This evaluator's current answer in display terms, if answered.
    """

    id: int
    kind: str
    options: Mapping[str, Any]
    instruction: str
    context: str
    completions: tuple[str, ...]
    status: str | None = None
    answer: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Event:
    """One row of the append-only log.

    Attributes:
        id: Log position; read new events with ``events_since(watermark)``.
        query_id: The query.
        evaluator_id: Who acted.
        type: ``submit``, ``edit`` (replaces the current answer), ``undo`` or ``skip``.
        answer: The answer in canonical terms (``submit``/``edit``), ``{"reason": ...}`` or
            ``None`` (``skip``), ``None`` (``undo``).
        ref: For ``undo``, the id of the event it cancels; else ``None``.
        time: Unix time.
    """

    id: int
    query_id: int
    evaluator_id: int
    type: str
    answer: Any
    ref: int | None
    time: float

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON-ready dict (the export's ``events`` format)."""
        return {
            "id": self.id,
            "query_id": self.query_id,
            "evaluator_id": self.evaluator_id,
            "type": self.type,
            "answer": self.answer,
            "ref": self.ref,
            "time": self.time,
        }


@dataclass(frozen=True)
class CurrentAnswer:
    """The current state of one (query, evaluator) pair: ``status`` is ``answered`` or ``skipped``."""

    query_id: int
    evaluator_id: int
    status: str
    answer: Any
    event_id: int


@dataclass(frozen=True)
class Receipt:
    """What a write returns: the event appended, or the earlier one when an idempotency key repeats."""

    event: Event
    replayed: bool = False


@dataclass(frozen=True)
class Progress:
    """One evaluator's progress.

    Attributes:
        answered: Queries with a current answer.
        skipped: Queries skipped.
        remaining: Queries still waiting for them (open assignments plus queries they could still
            be assigned; gold queries are not counted, so the number is a lower bound).
    """

    answered: int
    skipped: int
    remaining: int

    def to_json(self) -> dict[str, int]:
        """The counts as a JSON-ready dict."""
        return {"answered": self.answered, "skipped": self.skipped, "remaining": self.remaining}


@dataclass(frozen=True)
class EventCounts:
    """How many events of each type each evaluator has in the log, as of one watermark.

    Attributes:
        counts: ``(evaluator id, event type) -> count``; pairs without events are absent.
        watermark: The newest event id counted (0 for an empty log): the counts cover exactly
            the events ``events_since(0)`` returned at that moment.
    """

    counts: dict[tuple[int, str], int]
    watermark: int


@dataclass(frozen=True)
class ChatTurn:
    """One exchange of a chat: the evaluator's message and the policy's reply.

    Attributes:
        query_id: The ``thumbs`` query holding the exchange (rate it with :meth:`FeedbackStore.submit`).
        conversation: The conversation's id (the query id of its first turn).
        turn: Position in the conversation, from 0.
        message: What the evaluator wrote.
        reply: What the policy answered.
        thumb: The evaluator's current thumb (``"up"`` / ``"down"``), or ``None``.
    """

    query_id: int
    conversation: int
    turn: int
    message: str
    reply: str
    thumb: str | None = None


def chat_history(turns: Iterable[ChatTurn], max_chars: int | None = None) -> str:
    r"""The transcript of earlier turns: the context of the next turn's query (rebuilt when read, not stored).

    With ``max_chars``, the oldest turns are left out until the transcript fits (the newest turn
    is kept whole even if it alone is longer), so each stored turn is bounded and a long
    conversation's storage grows linearly, not with its square.

    >>> chat_history([ChatTurn(1, 1, 0, "Hi", "Hello!")])
    'User: Hi\nAssistant: Hello!'
    >>> chat_history([ChatTurn(1, 1, 0, "Hi", "Hello!"), ChatTurn(2, 1, 1, "Bye", "Bye!")], max_chars=30)
    'User: Bye\nAssistant: Bye!'
    """
    lines = [f"User: {t.message}\nAssistant: {t.reply}" for t in turns]
    if max_chars is not None:
        size, start = 0, len(lines)
        while start > 0 and (start == len(lines) or size + len(lines[start - 1]) + 1 <= max_chars):
            size += len(lines[start - 1]) + 1
            start -= 1
        lines = lines[start:]
    return "\n".join(lines)


class QueryIds(list):
    """The ids :meth:`FeedbackStore.add_queries` stored, in order; ``replayed``: an earlier batch's (repeated key)."""

    def __init__(self, ids: Iterable[int] = (), replayed: bool = False) -> None:
        super().__init__(ids)
        self.replayed = replayed


# --------------------------------------------------------------------------------------------------
# JSON and rows
# --------------------------------------------------------------------------------------------------

QUERY_FIELDS = ("kind", "instruction", "completions", "context", "options", "gold", "selector", "score", "metadata")
EVALUATOR_COLUMNS = "id, name, role, created"
EVENT_COLUMNS = "id, query_id, evaluator_id, type, answer, ref, time"
ANSWER_COLUMNS = "query_id, evaluator_id, status, answer, event_id"
QUERY_COLUMNS = "id, kind, payload, created"


def dumps(value: Any) -> str:
    """Canonical JSON text of a stored value (sorted keys, compact, UTF-8 kept)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | None) -> Any:
    """The value of a stored JSON column (``None`` stays ``None``)."""
    return None if text is None else json.loads(text)


def evaluator_from_row(row: Sequence[Any]) -> Evaluator:
    """``(id, name, role, created, ...)`` (:data:`EVALUATOR_COLUMNS` first) -> :class:`Evaluator`."""
    return Evaluator(int(row[0]), row[1], row[2], float(row[3]))


def event_from_row(row: Sequence[Any]) -> Event:
    """A row of :data:`EVENT_COLUMNS` -> :class:`Event`."""
    return Event(int(row[0]), int(row[1]), int(row[2]), row[3], loads(row[4]), row[5], float(row[6]))


def answer_from_row(row: Sequence[Any]) -> CurrentAnswer:
    """A row of :data:`ANSWER_COLUMNS` -> :class:`CurrentAnswer`."""
    return CurrentAnswer(int(row[0]), int(row[1]), row[2], loads(row[3]), int(row[4]))


def query_from_row(row: Sequence[Any]) -> Query:
    """A row of :data:`QUERY_COLUMNS` -> :class:`Query` (a chat turn's context is rebuilt by the store)."""
    payload = json.loads(row[2])
    return Query(
        kind=row[1],
        instruction=payload["instruction"],
        completions=payload["completions"],
        context=payload["context"],
        options=payload["options"],
        gold=payload["gold"],
        selector=payload["selector"],
        score=payload["score"],
        metadata=payload["metadata"],
        id=int(row[0]),
        created=float(row[3]),
    )


def chat_turn_from_row(row: Sequence[Any]) -> ChatTurn:
    """``(query_id, conversation, turn, payload, answer)`` -> :class:`ChatTurn`."""
    payload = json.loads(row[3])
    answer = loads(row[4])
    thumb = answer.get("thumb") if isinstance(answer, dict) else None
    return ChatTurn(int(row[0]), int(row[1]), int(row[2]), payload["instruction"], payload["completions"][0], thumb)
