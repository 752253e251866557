"""Turn stored feedback into training data.

=======================  =============================================  ==================================
function                 records                                        read by
=======================  =============================================  ==================================
``event_records``        every log event, as stored (audit, replay)     anything; ``/api/export``
``preference_pairs``     ``prompt``, ``chosen``, ``rejected``           TRL ``DPOTrainer``,
                         (+ ``margin``)                                 ``RewardTrainer`` (margin column)
``unpaired_thumbs``      ``prompt``, ``completion``, ``label`` (bool)   TRL ``KTOTrainer``
``sft_examples``         ``prompt``, ``completion``                     TRL ``SFTTrainer`` (prompt-completion)
=======================  =============================================  ==================================

The training formats use each evaluator's **current** answer (after edits and undos), one record
per (query, evaluator): aggregate first (e.g. with :func:`~instruct_env.feedback.bradley_terry`)
if you want one label per query. Gold queries are quality checks and are left out unless
``include_gold=True``. Prompts are written with :class:`~instruct_env.tasks.prompts.PromptFormatter`
(the environments' default template) unless ``prompt=`` says otherwise: another formatter, or any
function from :class:`~instruct_env.feedback.store.Query` to ``str``.

Arguments of the training formats:
    ``store``         the :class:`~instruct_env.feedback.store.FeedbackStore` to read.
    ``prompt``        how to write the prompt (see above).
    ``include_gold``  also export answers to gold queries.
    ``with_ids``      add ``query_id`` and ``evaluator_id`` to each record.

Pairwise answers become one pair (``tie`` and ``both_bad`` give none); a ranking of ``k``
completions gives all ``k (k - 1) / 2`` ordered pairs. ``margin`` is the pairwise ``strength``
(1-3) where the evaluator gave one; pass ``default_margin=`` to give every record a margin (TRL
needs the column on all rows or none).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from instruct_env.error import ConfigError
from instruct_env.feedback.store import FeedbackStore, Query

__all__ = [
    "event_records",
    "preference_pairs",
    "unpaired_thumbs",
    "sft_examples",
    "write_jsonl",
    "FORMATS",
    "export_records",
]

PromptFn = Callable[[Query], str]


def _prompt_fn(prompt: Any) -> PromptFn:
    from instruct_env.tasks.prompts import PromptFormatter
    from instruct_env.tasks.sample import Sample

    if prompt is None:
        prompt = PromptFormatter()
    if isinstance(prompt, PromptFormatter):
        formatter = prompt
        return lambda q: formatter.format(Sample(str(q.id), q.kind, q.instruction, q.context))
    if callable(prompt):
        return prompt
    raise ConfigError(
        f"prompt must be None, a PromptFormatter or a function Query -> str; got {type(prompt).__name__}."
    )


def _answers(store: FeedbackStore, kind: str, include_gold: bool) -> Iterator[tuple[Query, Any, int, int]]:
    answers = store.current_answers(kind=kind)
    queries = store.queries(ids={a.query_id for a in answers}, kind=kind)
    for a in answers:
        query = queries[a.query_id]
        if include_gold or not query.is_gold:
            yield query, a.answer, a.query_id, a.evaluator_id


def event_records(store: FeedbackStore, since: int = 0, batch_size: int = 1000) -> Iterator[dict[str, Any]]:
    """Yield every log event with ``id > since`` as a JSON-ready dict, in id order, in batches."""
    watermark = since
    while True:
        events = store.events_since(watermark, limit=batch_size)
        if not events:
            return
        for event in events:
            yield event.to_json()
        watermark = events[-1].id


def _records(
    store: FeedbackStore,
    kinds: Iterable[str],
    prompt: Any,
    include_gold: bool,
    with_ids: bool,
    make: Callable[[str, Query, Any, str], Iterable[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """``make(kind, query, answer, prompt text)``'s records for every current answer of ``kinds``."""
    make_prompt = _prompt_fn(prompt)
    records = []
    for kind in kinds:
        for query, answer, query_id, evaluator_id in _answers(store, kind, include_gold):
            for record in make(kind, query, answer, make_prompt(query)):
                if with_ids:
                    record.update(query_id=query_id, evaluator_id=evaluator_id)
                records.append(record)
    return records


def preference_pairs(
    store: FeedbackStore,
    *,
    prompt: Any = None,
    include_gold: bool = False,
    default_margin: float | None = None,
    with_ids: bool = False,
) -> list[dict[str, Any]]:
    """Preference pairs ``{"prompt", "chosen", "rejected"[, "margin"]}`` from ``pairwise`` and ``ranking`` answers.

    ``default_margin`` is the margin of records without a strength (``None`` leaves ``margin`` out
    of them); the other arguments are described in the module docstring.
    """

    def pairs(kind: str, query: Query, answer: Any, text: str) -> Iterator[dict[str, Any]]:
        if kind == "pairwise":
            if answer["choice"] not in ("A", "B"):
                return
            better, worse = (0, 1) if answer["choice"] == "A" else (1, 0)
            ordered = [(better, worse, answer.get("strength", default_margin))]
        else:
            r = answer["ranking"]
            ordered = [(r[i], r[j], default_margin) for i in range(len(r)) for j in range(i + 1, len(r))]
        for better, worse, margin in ordered:
            record: dict[str, Any] = {"prompt": text, "chosen": query.completions[better],
                                      "rejected": query.completions[worse]}
            if margin is not None:
                record["margin"] = float(margin)
            yield record

    return _records(store, ("pairwise", "ranking"), prompt, include_gold, with_ids, pairs)


def unpaired_thumbs(
    store: FeedbackStore,
    *,
    prompt: Any = None,
    include_gold: bool = False,
    rating_threshold: float | None = None,
    with_ids: bool = False,
) -> list[dict[str, Any]]:
    """Unpaired binary feedback ``{"prompt", "completion", "label"}`` (a ``bool`` label) from ``thumbs`` answers.

    With ``rating_threshold``, ratings count too: one ``>= rating_threshold`` is a thumbs up, a
    lower one a thumbs down. The other arguments are described in the module docstring.
    """

    def labelled(kind: str, query: Query, answer: Any, text: str) -> list[dict[str, Any]]:
        label = answer["thumb"] == "up" if kind == "thumbs" else answer["rating"] >= rating_threshold
        return [{"prompt": text, "completion": query.completions[0], "label": bool(label)}]

    kinds = ("thumbs",) if rating_threshold is None else ("thumbs", "rating")
    return _records(store, kinds, prompt, include_gold, with_ids, labelled)


def sft_examples(
    store: FeedbackStore, *, prompt: Any = None, include_gold: bool = False, with_ids: bool = False
) -> list[dict[str, Any]]:
    """Supervised examples ``{"prompt", "completion"}`` from ``edit`` answers: the evaluator's corrected completion.

    The arguments are described in the module docstring.
    """

    def corrected(kind: str, query: Query, answer: Any, text: str) -> list[dict[str, Any]]:
        return [{"prompt": text, "completion": answer["completion"]}]

    return _records(store, ("edit",), prompt, include_gold, with_ids, corrected)


FORMATS: dict[str, Callable[..., Any]] = {
    "events": event_records,
    "preferences": preference_pairs,
    "thumbs": unpaired_thumbs,
    "sft": sft_examples,
}


def export_records(store: FeedbackStore, format: str = "events", **options: Any) -> Iterable[dict[str, Any]]:
    """The records of one of :data:`FORMATS` (``events``, ``preferences``, ``thumbs``, ``sft``)."""
    if format not in FORMATS:
        from instruct_env.error import unknown_name

        raise unknown_name("export format", format, FORMATS)
    return FORMATS[format](store, **options)


def write_jsonl(records: Iterable[dict[str, Any]], path: str | os.PathLike[str] | IO[str]) -> int:
    """Write records as JSON Lines (UTF-8, one object per line) and return how many were written."""
    if hasattr(path, "write"):
        return _write(records, path)  # type: ignore[arg-type]
    with open(path, "w", encoding="utf-8") as f:
        return _write(records, f)


def _write(records: Iterable[dict[str, Any]], f: IO[str]) -> int:
    n = 0
    for record in records:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        n += 1
    return n
