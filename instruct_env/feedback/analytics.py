"""What a feedback store's answers say about its evaluators and its queries.

:func:`store_metrics` is what the admin page, ``instruct-env metrics`` and
:meth:`FeedbackStore.metrics <instruct_env.feedback.store.FeedbackStore.metrics>` report: counts
per evaluator, gold accuracy, how many queries are complete, and agreement (Krippendorff's alpha)
per feedback kind. It uses only the store's public reads, so it works on any store the same way.

The reads are separate calls: while evaluators keep answering, a count may already include an
answer the watermark does not (it is a monitoring view, not an export; read the log with
``events_since`` for an exact one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from instruct_env.error import ConfigError
from instruct_env.feedback.kinds import make_kind

if TYPE_CHECKING:
    from instruct_env.feedback.store import CurrentAnswer, FeedbackStore, Query

__all__ = ["store_metrics", "agreement"]

_EVENT_BATCH = 10_000


def store_metrics(store: FeedbackStore) -> dict[str, Any]:
    """Counts per evaluator, gold accuracy, and agreement (Krippendorff's alpha) per kind.

    Args:
        store: An open feedback store.

    Returns:
        A JSON-serialisable dict with ``evaluators`` (one entry each: ``answered``,
        ``skipped``, ``edits``, ``undos``, ``gold_answered``, ``gold_accuracy``), ``queries``
        (``total``, ``gold``, ``chat``: replies made in chats, ``complete``: queue queries,
        neither gold nor chat, with at least ``min_evaluators`` answers), ``agreement`` (kind ->
        alpha, or ``None`` where no query has two answers) and ``watermark`` (the newest event id).
    """
    edits_undos, watermark = _event_counts(store)
    queries = store.queries()
    answers = store.current_answers(status=None)
    chat = store.chat_query_ids()
    per_evaluator: dict[int, dict[str, Any]] = {
        e.id: {
            "id": e.id, "name": e.name, "role": e.role, "answered": 0, "skipped": 0,
            "edits": edits_undos.get((e.id, "edit"), 0), "undos": edits_undos.get((e.id, "undo"), 0),
            "gold_answered": 0, "gold_correct": 0, "gold_accuracy": None,
        }
        for e in store.evaluators()
    }
    answers_per_query: dict[int, int] = {}
    for a in answers:
        stats = per_evaluator[a.evaluator_id]
        stats[a.status] += 1
        if a.status == "answered":
            answers_per_query[a.query_id] = answers_per_query.get(a.query_id, 0) + 1
            query = queries[a.query_id]
            if query.gold is not None:
                stats["gold_answered"] += 1
                stats["gold_correct"] += int(query.spec.label(a.answer) == query.spec.label(query.gold))
    for stats in per_evaluator.values():
        if stats["gold_answered"]:
            stats["gold_accuracy"] = stats["gold_correct"] / stats["gold_answered"]
    regular = [qid for qid, q in queries.items() if not q.is_gold and qid not in chat]
    return {
        "evaluators": list(per_evaluator.values()),
        "queries": {
            "total": len(queries),
            "gold": sum(q.is_gold for q in queries.values()),
            "chat": len(chat),
            "complete": sum(answers_per_query.get(qid, 0) >= store.min_evaluators for qid in regular),
            "min_evaluators": store.min_evaluators,
        },
        "agreement": agreement(queries, answers),
        "watermark": watermark,
    }


def _event_counts(store: FeedbackStore) -> tuple[dict[tuple[int, str], int], int]:
    """``(evaluator id, event type) -> count`` over the whole log, and the newest event id."""
    counts: dict[tuple[int, str], int] = {}
    watermark = 0
    while events := store.events_since(watermark, limit=_EVENT_BATCH):
        for event in events:
            key = (event.evaluator_id, event.type)
            counts[key] = counts.get(key, 0) + 1
        watermark = events[-1].id
    return counts, watermark


def agreement(queries: dict[int, Query], answers: list[CurrentAnswer]) -> dict[str, float | None]:
    """Krippendorff's alpha per feedback kind over the current answers (kinds that have a level).

    Args:
        queries: The answered queries by id.
        answers: Current answers; skips are ignored.

    Returns:
        Kind -> alpha, or ``None`` where no query of the kind has two answers yet; sorted by kind.
    """
    from instruct_env.feedback.aggregation import krippendorff_alpha

    triples: dict[str, list[tuple[Any, Any, Any]]] = {}
    for a in answers:
        query = queries[a.query_id]
        if a.status == "answered" and query.spec.agreement_level is not None:
            triples.setdefault(query.kind, []).extend(query.spec.agreement_triples(a.query_id, a.evaluator_id, a.answer))
    result: dict[str, float | None] = {}
    for kind, kind_triples in sorted(triples.items()):
        level = make_kind(kind).agreement_level
        assert level is not None  # only kinds with a level collected triples
        try:
            result[kind] = krippendorff_alpha(kind_triples, level=level)
        except ConfigError:  # no item with two answers yet
            result[kind] = None
    return result
