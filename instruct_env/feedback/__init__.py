"""Rewards from human evaluators: aggregating crowd labels, ratings and preferences.

Only numpy is imported here.
"""

from __future__ import annotations

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

__all__ = [
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
]
