"""Aggregate crowd feedback: categorical labels, numeric ratings and pairwise preferences.

When rewards come from human evaluators, each evaluator sees only some of the items, some are
careless, a few are adversarial, and each uses a rating scale in their own way. The functions here
turn raw feedback into one estimate per item and one reliability per evaluator:

========================  ====================================================================
function                  use it for
========================  ====================================================================
``majority_vote``         categorical labels (thumbs up/down, K-way choices); the baseline
``dawid_skene``           categorical labels, weighting each evaluator by estimated accuracy
``gold_accuracy``         evaluator accuracy on items whose answer is known
``normalize_ratings``     numeric ratings (1-5 stars...): per-evaluator z-scores, item means
``bradley_terry``         pairwise preferences (and rankings, via ``rankings_to_pairs``)
``reliability_weights``   per-comparison weights for ``bradley_terry`` from evaluator accuracy
``krippendorff_alpha``    how much evaluators agree beyond chance
========================  ====================================================================

Data format:
    Labels and ratings are ``(item, evaluator, value)`` triples, given as a list of tuples or as an
    ``(N, 3)`` array. Item and evaluator ids may be any hashable values (strings, ints, tuples);
    results are keyed back by these ids, in the order in which they first appear. Categorical
    labels are class indices ``0..K-1`` (``bool`` works for thumbs: ``False`` = 0, ``True`` = 1).
    A missing label is simply an absent triple. Each triple counts once, so an evaluator who
    labels the same item twice casts two votes.

Nothing here draws random numbers: results depend only on the input.

Modules: ``labels`` (majority vote, Dawid-Skene, gold accuracy), ``ratings`` (z-scores),
``comparisons`` (Bradley-Terry, rankings, reliability weights), ``agreement`` (Krippendorff's
alpha); ``_common`` reads the triples and checks settings for all of them.
"""

from __future__ import annotations

from instruct_env.feedback.aggregation.agreement import KRIPPENDORFF_LEVELS, krippendorff_alpha
from instruct_env.feedback.aggregation.comparisons import (
    BradleyTerryResult,
    bradley_terry,
    rankings_to_pairs,
    reliability_weights,
)
from instruct_env.feedback.aggregation.labels import (
    DawidSkeneResult,
    GoldAccuracy,
    MajorityVoteResult,
    dawid_skene,
    gold_accuracy,
    majority_vote,
)
from instruct_env.feedback.aggregation.ratings import NormalizedRatings, normalize_ratings

__all__ = [
    "MajorityVoteResult",
    "DawidSkeneResult",
    "NormalizedRatings",
    "BradleyTerryResult",
    "GoldAccuracy",
    "majority_vote",
    "dawid_skene",
    "normalize_ratings",
    "bradley_terry",
    "rankings_to_pairs",
    "reliability_weights",
    "krippendorff_alpha",
    "gold_accuracy",
    "KRIPPENDORFF_LEVELS",
]
