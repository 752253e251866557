"""Reading the answer log: each evaluator's current answer, from events read once each, in order.

A feedback store's ``events`` table is append-only: ``submit``, ``edit``, ``skip`` and ``undo``
events, with ids that only grow. :class:`AnswerLog` is the one reader of it. It keeps a
watermark (the newest event id read), consumes events in id order, applies ``undo`` (which
cancels the event its ``ref`` names, so an undone ``edit`` brings the answer it replaced back)
and ``edit`` (which replaces the pair's answer), and exposes the current answer of every
(query, evaluator) item plus the items that changed in each read. The store derives its
``answers`` table with it, :class:`~instruct_env.feedback.oracle.HumanOracle` its judgements and
:class:`~instruct_env.feedback.online.OnlineRewardLearner` its labels.

:class:`FeedbackSource` is what those learners need from a store: a
:class:`~instruct_env.feedback.store.FeedbackStore` in this process and a
:class:`~instruct_env.feedback.client.RemoteStore` (the feedback server's admin API) both are one.

Example:
    >>> from instruct_env.feedback.store import Event
    >>> log = AnswerLog()
    >>> sorted(log.apply([Event(1, 7, 1, "submit", {"thumb": "up"}, None, 0.0),
    ...                   Event(2, 7, 1, "edit", {"thumb": "down"}, None, 0.0)]))
    [(7, 1)]
    >>> log.current(7, 1).answer, log.watermark
    ({'thumb': 'down'}, 2)
    >>> _ = log.apply([Event(3, 7, 1, "undo", None, 2, 0.0)])
    >>> log.current(7, 1).answer
    {'thumb': 'up'}
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the store imports this module: records are only named in annotations here
    from instruct_env.feedback.store.records import Evaluator, Event, Query

__all__ = ["AnswerLog", "FeedbackSource", "Item", "replay"]

#: A (query id, evaluator id) pair: one evaluator's answer to one query.
Item = tuple[int, int]


class FeedbackSource(Protocol):
    """What learners need from a feedback store: post queries, read the log, the queries and the evaluators.

    Satisfied by :class:`~instruct_env.feedback.store.FeedbackStore` (in this process) and by
    :class:`~instruct_env.feedback.client.RemoteStore` (through the feedback server).
    """

    def add_queries(self, queries: list[Query]) -> list[int]:
        """Store queries and return their ids, in order."""
        ...

    def events_since(self, watermark: int = 0, limit: int | None = None) -> list[Event]:
        """Log events with ``id > watermark``, in id order (at most ``limit``)."""
        ...

    def queries(self, ids: Iterable[int]) -> dict[int, Query]:
        """Stored queries by id (unknown ids are left out)."""
        ...

    def evaluators(self) -> list[Evaluator]:
        """Every evaluator."""
        ...


class AnswerLog:
    """The current answer of every (query, evaluator) item, from log events consumed in id order.

    Each item keeps a stack of its ``submit``, ``edit`` and ``skip`` events; an ``undo`` removes
    the event it cancels, wherever it is on the stack, and the item's current answer is the top.
    An item whose events are all cancelled has no current answer (it is back in the queue).

    Attributes:
        watermark: The newest event id consumed (0 before any): read on with
            ``events_since(watermark)`` and every event is consumed exactly once.
    """

    def __init__(self) -> None:
        self.watermark = 0
        self._stacks: dict[Item, list[Event]] = {}
        self._by_query: dict[int, set[int]] = {}  # query id -> evaluators with events on it

    def apply(self, events: Iterable[Event]) -> set[Item]:
        """Consume ``events`` (in id order) and return the items they changed.

        The watermark moves to the newest id consumed; it never moves back.
        """
        changed: set[Item] = set()
        for event in events:
            item = (event.query_id, event.evaluator_id)
            stack = self._stacks.setdefault(item, [])
            self._by_query.setdefault(event.query_id, set()).add(event.evaluator_id)
            if event.type == "undo":
                stack[:] = [e for e in stack if e.id != event.ref]
            else:
                stack.append(event)
            changed.add(item)
            self.watermark = max(self.watermark, event.id)
        return changed

    def read(self, source: FeedbackSource, limit: int | None = None) -> list[Event]:
        """Consume the events of ``source`` after the watermark (at most ``limit``); return them.

        An empty list means the log has nothing new. Call again until it is empty to catch up.
        """
        events = source.events_since(self.watermark, limit)
        self.apply(events)
        return events

    def current(self, query_id: int, evaluator_id: int) -> Event | None:
        """The event holding this item's current answer (``submit``, ``edit`` or ``skip``), or ``None``."""
        stack = self._stacks.get((query_id, evaluator_id))
        return stack[-1] if stack else None

    def evaluators_of(self, query_id: int) -> set[int]:
        """The evaluators with any event on this query (answered, skipped, or all undone)."""
        return self._by_query.get(query_id, set())

    def items(self) -> Iterator[tuple[Item, Event]]:
        """``(item, current event)`` for every item with a current answer or skip, in first-seen order."""
        for item, stack in self._stacks.items():
            if stack:
                yield item, stack[-1]


def replay(events: Iterable[Event]) -> dict[Item, Event]:
    """Derive the current answer of each (query, evaluator) pair from log events, in id order.

    Returns:
        ``(query_id, evaluator_id)`` -> the event holding the current answer (``submit``,
        ``edit`` or ``skip``); pairs whose events are all cancelled are absent.

    >>> from instruct_env.feedback.store import Event
    >>> log = [Event(1, 7, 1, "submit", {"thumb": "up"}, None, 0.0),
    ...        Event(2, 7, 1, "edit", {"thumb": "down"}, None, 0.0),
    ...        Event(3, 7, 1, "undo", None, 2, 0.0)]
    >>> replay(log)[(7, 1)].answer
    {'thumb': 'up'}
    """
    log = AnswerLog()
    log.apply(events)
    return dict(log.items())
