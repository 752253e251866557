"""What a feedback store's answers say about its evaluators and its queries.

:func:`store_metrics` is what the admin page (``GET /api/admin/metrics``) and
:meth:`FeedbackStore.metrics <instruct_env.feedback.store.FeedbackStore.metrics>` report: counts
per evaluator, gold accuracy, how many queries are complete, and agreement (Krippendorff's alpha)
per feedback kind. It uses only the store's public reads, so it works on any store the same way.

The edit and undo counts and the watermark come from one read
(:meth:`~instruct_env.feedback.store.FeedbackStore.event_counts`); the current answers, chats,
evaluators and queries are separate reads after it, so while evaluators keep answering an answered
or skipped count may already include an answer the watermark does not (it is a monitoring view,
not an export; read the log with ``events_since`` for an exact one). Queries and evaluators are
read last: they are never deleted, so every answer read before them finds its query and evaluator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from instruct_env.error import ConfigError
from instruct_env.feedback.kinds import make_kind

if TYPE_CHECKING:
    from instruct_env.feedback.store import CurrentAnswer, FeedbackStore, Query

__all__ = ["store_metrics", "agreement"]


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
    events = store.event_counts()
    answers = store.current_answers(status=None)
    chat = store.chat_query_ids()
    evaluators = store.evaluators()
    queries = store.queries()
    per_evaluator: dict[int, dict[str, Any]] = {
        e.id: {
            "id": e.id, "name": e.name, "role": e.role, "answered": 0, "skipped": 0,
            "edits": events.counts.get((e.id, "edit"), 0), "undos": events.counts.get((e.id, "undo"), 0),
            "gold_answered": 0, "gold_correct": 0, "gold_accuracy": None,
        }
        for e in evaluators
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
        "watermark": events.watermark,
    }


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
