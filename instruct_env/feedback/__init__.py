"""Rewards from human evaluators: collecting feedback and aggregating crowd answers.

* :mod:`~instruct_env.feedback.store`: the feedback database (SQLite by default): evaluators,
  queries, automatic assignment, and an append-only event log read by training with
  ``store.events_since(watermark)``.
* :mod:`~instruct_env.feedback.kinds`: the feedback kinds (rating, thumbs, pairwise, ranking,
  comment, edit) and their answer validation.
* :mod:`~instruct_env.feedback.export`: JSONL events, TRL-style preference pairs, unpaired thumbs
  and SFT examples.
* :mod:`~instruct_env.feedback.aggregation`: majority vote, Dawid-Skene, Bradley-Terry,
  Krippendorff's alpha, gold accuracy.
* :mod:`~instruct_env.feedback.server`: the REST API and evaluator pages (needs the ``server``
  extra; ``create_app`` and ``serve`` are imported from it only when first used).

Importing this package needs only numpy and the standard library.
"""

from __future__ import annotations

from typing import Any

from instruct_env.feedback.aggregation import (
    BradleyTerryResult,
    DawidSkeneResult,
    GoldAccuracy,
    MajorityVoteResult,
    NormalizedRatings,
    bradley_terry,
    dawid_skene,
    gold_accuracy,
    krippendorff_alpha,
    majority_vote,
    normalize_ratings,
    rankings_to_pairs,
    reliability_weights,
)
from instruct_env.feedback.errors import (
    AccessDenied,
    FeedbackConflict,
    InvalidAnswer,
    InvalidToken,
    QueryNotFound,
)
from instruct_env.feedback.export import (
    event_records,
    preference_pairs,
    sft_examples,
    unpaired_thumbs,
    write_jsonl,
)
from instruct_env.feedback.kinds import KINDS, FeedbackKind, make_kind
from instruct_env.feedback.store import (
    CurrentAnswer,
    Evaluator,
    Event,
    FeedbackStore,
    Progress,
    Query,
    QueryView,
    Receipt,
    parse_store_url,
    query_from_sample,
    replay,
)

__all__ = [
    # aggregation
    "BradleyTerryResult",
    "DawidSkeneResult",
    "GoldAccuracy",
    "MajorityVoteResult",
    "NormalizedRatings",
    "bradley_terry",
    "dawid_skene",
    "gold_accuracy",
    "krippendorff_alpha",
    "majority_vote",
    "normalize_ratings",
    "rankings_to_pairs",
    "reliability_weights",
    # store
    "FeedbackStore",
    "Query",
    "QueryView",
    "Evaluator",
    "Event",
    "CurrentAnswer",
    "Receipt",
    "Progress",
    "parse_store_url",
    "query_from_sample",
    "replay",
    # kinds
    "FeedbackKind",
    "KINDS",
    "make_kind",
    # errors
    "AccessDenied",
    "FeedbackConflict",
    "InvalidAnswer",
    "InvalidToken",
    "QueryNotFound",
    # export
    "event_records",
    "preference_pairs",
    "sft_examples",
    "unpaired_thumbs",
    "write_jsonl",
    # server (lazy)
    "create_app",
    "serve",
]

_SERVER = ("create_app", "serve")


def __getattr__(name: str) -> Any:
    if name in _SERVER:  # FastAPI is imported only when the server is used
        from instruct_env.feedback import server

        return getattr(server, name)
    raise AttributeError(f"module 'instruct_env.feedback' has no attribute {name!r}")
