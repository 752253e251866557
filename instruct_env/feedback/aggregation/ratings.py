"""Numeric ratings: per-evaluator z-scores, averaged per item."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from instruct_env.feedback.aggregation._common import _index_triples, _real_values

__all__ = [
    "NormalizedRatings",
    "normalize_ratings",
]


@dataclass(frozen=True)
class NormalizedRatings:
    """Outcome of :func:`normalize_ratings`.

    Attributes:
        z: Normalised rating of each input triple, in input order, shape ``(N,)``.
        item_means: Item id -> mean normalised rating.
        item_counts: Item id -> number of ratings.
        evaluator_mean: Evaluator id -> mean raw rating.
        evaluator_std: Evaluator id -> standard deviation of raw ratings (``ddof=0``).
        degenerate: Evaluators with a single rating or no spread; their ``z`` are all 0.
    """

    z: np.ndarray
    item_means: dict[Hashable, float]
    item_counts: dict[Hashable, int]
    evaluator_mean: dict[Hashable, float]
    evaluator_std: dict[Hashable, float]
    degenerate: tuple[Hashable, ...]


def normalize_ratings(ratings: Iterable[Sequence[Any]]) -> NormalizedRatings:
    """Z-score each evaluator's ratings and average them per item.

    Evaluators use scales differently (a harsh rater's 3 is a lenient rater's 5), so each rating
    is replaced by ``(rating - evaluator mean) / evaluator std`` (population std, ``ddof=0``).

    Degenerate evaluators: someone with a single rating, or who gives every item the same rating
    (no spread, up to rounding), tells us nothing about how items compare *on their scale*. Their
    normalised ratings are all 0 (the evaluator's own average) and they are listed in
    ``degenerate``; their 0s still count in the item means, pulling those items gently toward the
    average rather than leaving items seen only by such evaluators without a score.

    Args:
        ratings: ``(item, evaluator, rating)`` triples with finite real ratings.

    Returns:
        A :class:`NormalizedRatings`.

    Raises:
        ConfigError: ``ratings`` is empty or malformed, or a rating is not a finite number.

    Example:
        >>> ratings = [("a", "harsh", 1), ("b", "harsh", 3), ("a", "kind", 3), ("b", "kind", 5)]
        >>> normalize_ratings(ratings).item_means
        {'a': -1.0, 'b': 1.0}
    """
    data = _index_triples(ratings, "ratings")
    x = _real_values(data, "ratings")  # (N,)
    item, evaluator = data.item, data.evaluator
    count = np.bincount(evaluator, minlength=len(data.evaluators))  # (J,)
    mean = np.bincount(evaluator, weights=x, minlength=len(data.evaluators)) / count
    centred = x - mean[evaluator]
    std = np.sqrt(np.bincount(evaluator, weights=centred**2, minlength=len(data.evaluators)) / count)
    # A constant evaluator's mean can differ from their ratings by rounding: compare to the scale.
    degenerate = (count < 2) | (std <= 1e-12 * np.maximum(np.abs(mean), 1.0))
    z = np.where(degenerate[evaluator], 0.0, centred / np.where(degenerate, 1.0, std)[evaluator])
    item_count = np.bincount(item, minlength=len(data.items))
    item_mean = np.bincount(item, weights=z, minlength=len(data.items)) / item_count
    return NormalizedRatings(
        z=z,
        item_means={name: float(item_mean[i]) for i, name in enumerate(data.items)},
        item_counts={name: int(item_count[i]) for i, name in enumerate(data.items)},
        evaluator_mean={name: float(mean[j]) for j, name in enumerate(data.evaluators)},
        evaluator_std={name: float(std[j]) for j, name in enumerate(data.evaluators)},
        degenerate=tuple(name for j, name in enumerate(data.evaluators) if degenerate[j]),
    )
