"""Rewards from human evaluators: collecting feedback and aggregating crowd answers.

* :mod:`~instruct_env.feedback.store`: the feedback database (SQLite by default, PostgreSQL by
  URL): evaluators, queries, automatic assignment, chat turns, and an append-only event log read
  by training with ``store.events_since(watermark)``.
* :mod:`~instruct_env.feedback.kinds`: the feedback kinds (rating, thumbs, pairwise, ranking,
  comment, edit) and their answer validation.
* :mod:`~instruct_env.feedback.export`: JSONL events, TRL-style preference pairs, unpaired thumbs
  and SFT examples.
* :mod:`~instruct_env.feedback.aggregation`: majority vote, Dawid-Skene, Bradley-Terry,
  Krippendorff's alpha, gold accuracy; :mod:`~instruct_env.feedback.analytics`: a store's metrics.
* :mod:`~instruct_env.feedback.server`: the REST API, the evaluator pages and the chat page
  (needs the ``server`` extra; ``create_app`` and ``serve`` are imported from it only when first
  used).

Learning from feedback (imported when first used; the reward model and the online learner need torch):

* :mod:`~instruct_env.feedback.oracle`: ask for judgements and get them back, blocking or with a
  ticket (``SimulatedOracle``, ``HumanOracle``, ``OraclePool``); :mod:`~instruct_env.feedback.items`
  holds what they are asked and answer.
* :mod:`~instruct_env.feedback.log`: the one reader of a store's answer log (``AnswerLog``) and
  ``FeedbackSource``, what learners need from a store; :mod:`~instruct_env.feedback.client`:
  ``RemoteStore``, a store read and written through the feedback server's admin API.
* :mod:`~instruct_env.feedback.reward_model`: an ensemble of heads over frozen LM features.
* :mod:`~instruct_env.feedback.online`: a worker that refits it on new labels and promotes only
  candidates whose held-out accuracy does not drop.
* :mod:`~instruct_env.feedback.active`: which outputs to send to people (query by committee).
* :mod:`~instruct_env.feedback.rewards`: ``ProxyReward``, ``DelayedHumanReward`` and ``HumanReward`` for ``reward=``.

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
    StoreUnavailable,
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
    ChatTurn,
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

# name -> module: imported on first use (FastAPI for the server, torch for the reward model).
_LAZY = {
    "create_app": "server",
    "serve": "server",
    **dict.fromkeys(("FeedbackItem", "Ticket", "Judgement", "FeedbackResult", "answer_value", "prompt_text"), "items"),
    **dict.fromkeys(("FeedbackTimeout", "Oracle", "SimulatedOracle", "HumanOracle", "OraclePool"), "oracle"),
    "RemoteStore": "client",
    **dict.fromkeys(("AnswerLog", "FeedbackSource"), "log"),
    **dict.fromkeys(("Label", "RewardModel", "FeatureExtractor", "Accuracy"), "reward_model"),
    "RewardModelConfig": "reward_model_config",  # no torch
    **dict.fromkeys(("OnlineRewardLearner", "RefitReport", "labels_from_answer"), "online"),
    "ActiveSelector": "active",
    **dict.fromkeys(("ProxyReward", "DelayedHumanReward", "HumanReward"), "rewards"),
}

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
    "ChatTurn",
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
    "StoreUnavailable",
    # export
    "event_records",
    "preference_pairs",
    "sft_examples",
    "unpaired_thumbs",
    "write_jsonl",
    # imported on first use
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"instruct_env.feedback.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'instruct_env.feedback' has no attribute {name!r}")
