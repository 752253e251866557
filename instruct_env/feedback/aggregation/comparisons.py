"""Pairwise preferences: Bradley-Terry scores, rankings as comparisons, and reliability weights."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from instruct_env._validation import check_finite, check_int
from instruct_env.error import ConfigError
from instruct_env.feedback.aggregation._common import _is_row, _rows

__all__ = [
    "BradleyTerryResult",
    "bradley_terry",
    "rankings_to_pairs",
    "reliability_weights",
]


@dataclass(frozen=True)
class BradleyTerryResult:
    """Outcome of :func:`bradley_terry`.

    Attributes:
        scores: Item id -> log-strength, centred so that the scores average to 0.
        n_iter: Number of MM iterations run.
        converged: Whether the largest change in a score fell below ``tol`` before ``max_iter``.
    """

    scores: dict[Hashable, float]
    n_iter: int
    converged: bool

    def win_probability(self, a: Hashable, b: Hashable) -> float:
        """Model probability that ``a`` is preferred to ``b``: ``1 / (1 + exp(score_b - score_a))``.

        Raises:
            ConfigError: ``a`` or ``b`` was not scored.
        """
        for name in (a, b):
            if name not in self.scores:
                raise ConfigError(
                    f"Item {name!r} has no Bradley-Terry score; expected one of the "
                    f"{len(self.scores)} scored ids. Pass it in `items=` to score uncompared items."
                )
        return float(1.0 / (1.0 + math.exp(self.scores[b] - self.scores[a])))


def bradley_terry(
    comparisons: Iterable[Sequence[Any]],
    weights: Sequence[float] | np.ndarray | None = None,
    items: Iterable[Hashable] | None = None,
    prior: float = 1.0,
    max_iter: int = 10_000,
    tol: float = 1e-8,
) -> BradleyTerryResult:
    """Fit Bradley-Terry scores to pairwise preferences with the MM algorithm.

    The model: item ``i`` has strength ``g_i = exp(score_i)`` and is preferred to ``j`` with
    probability ``g_i / (g_i + g_j)``. The fit uses the minorise-maximise update of Hunter (2004),
    ``g_i <- W_i / sum_j n_ij / (g_i + g_j)``, where ``W_i`` is ``i``'s (weighted) number of wins
    and ``n_ij`` the (weighted) number of comparisons between ``i`` and ``j``. A tie counts as half
    a win for each side.

    Prior: without one, an item that won (or lost) every comparison has an infinite score, and
    items in disconnected groups cannot be placed relative to each other. Each item therefore gets
    ``prior`` virtual ties against a fixed reference item of score 0. This keeps every score finite
    and shrinks items with few comparisons toward the middle; with many comparisons per item its
    effect vanishes. Scores are centred to average 0 after fitting, so only differences matter.

    Args:
        comparisons: ``(winner, loser)`` pairs, or ``(a, b, s)`` triples where ``s`` in ``[0, 1]``
            is ``a``'s share of the win: 1 = ``a`` won, 0 = ``b`` won, 0.5 = tie. Both forms may
            be mixed. :func:`rankings_to_pairs` builds these from rankings.
        weights: Optional non-negative weight per comparison (e.g. evaluator reliability from
            :func:`reliability_weights`), same length as ``comparisons``.
        items: Optional ids to score even if they appear in no comparison (they get the
            reference's score, from the prior alone); these ids come first in ``scores``.
        prior: Number of virtual ties of each item against the reference (> 0).
        max_iter: Maximum number of MM iterations (>= 1).
        tol: Stop when no log-strength changes by more than ``tol`` in an iteration.

    Returns:
        A :class:`BradleyTerryResult` with one centred log-strength per item.

    Raises:
        ConfigError: empty or malformed comparisons, an item compared with itself, a share outside
            ``[0, 1]``, weights of the wrong length, negative or all zero, or bad settings.

    Example:
        >>> result = bradley_terry([("a", "b"), ("a", "b"), ("b", "a"), ("b", "c"), ("a", "c", 0.5)])
        >>> sorted(result.scores, key=result.scores.get, reverse=True)
        ['a', 'b', 'c']
        >>> abs(sum(result.scores.values())) < 1e-12  # centred
        True
    """
    check_finite("prior", prior, 0, low_open=True)
    check_int("max_iter", max_iter, 1)
    check_finite("tol", tol, 0)
    names, first, second, share = _index_comparisons(comparisons, items)
    w = _comparison_weights(weights, len(share))
    m = len(names)
    wins = _wins(first, second, share, w, m, prior)  # (M,)
    pair_low, pair_high, pair_count = _pair_counts(first, second, w, m)  # (P,) each

    component = _components(pair_low, pair_high, m)  # (M,) connected groups of compared items
    log_strength = np.zeros(m)  # (M,)
    converged = False
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        updated = _mm_update(log_strength, wins, pair_low, pair_high, pair_count, prior)
        # The comparisons cannot tell a group of connected items apart from the same group shifted
        # by a constant; only the weak prior can, so MM alone crawls along that direction. Moving
        # each group to its best shift is exact and keeps the ascent monotone.
        updated += _best_shift(updated, component)
        change = float(np.max(np.abs(updated - log_strength)))
        log_strength = updated
        if change <= tol:
            converged = True
            break
    scores = log_strength - log_strength.mean()
    return BradleyTerryResult(
        scores={name: float(scores[i]) for i, name in enumerate(names)},
        n_iter=n_iter,
        converged=converged,
    )


def _wins(
    first: np.ndarray, second: np.ndarray, share: np.ndarray, w: np.ndarray, m: int, prior: float
) -> np.ndarray:
    """Weighted wins ``W_i`` per item ``(M,)``: ties as half-wins, plus half of each virtual tie."""
    wins: np.ndarray = np.bincount(first, weights=w * share, minlength=m) + np.bincount(
        second, weights=w * (1.0 - share), minlength=m
    )  # (M,) weighted wins, ties as half-wins
    wins += prior / 2  # virtual ties against the reference: half a win each
    return wins


def _pair_counts(
    first: np.ndarray, second: np.ndarray, w: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Comparisons per unordered pair: the pairs' lower and higher item ``(P,)`` and ``n_ij`` ``(P,)``.

    Aggregating per pair makes an MM iteration cost O(distinct pairs), not O(comparisons).
    """
    low, high = np.minimum(first, second), np.maximum(first, second)
    pair_key, pair_of = np.unique(low * m + high, return_inverse=True)
    pair_count = np.bincount(pair_of.ravel(), weights=w)  # (P,) n_ij
    return pair_key // m, pair_key % m, pair_count


def _mm_update(
    log_strength: np.ndarray,
    wins: np.ndarray,
    pair_low: np.ndarray,
    pair_high: np.ndarray,
    pair_count: np.ndarray,
    prior: float,
) -> np.ndarray:
    """Hunter's MM step in log space: ``log g_i <- log W_i - log sum_j n_ij / (g_i + g_j)``.

    The sum includes the ``prior`` virtual ties against the reference item of strength 1.
    """
    m = len(log_strength)
    strength = np.exp(log_strength)
    per_pair = pair_count / (strength[pair_low] + strength[pair_high])  # (P,) n_ij / (g_i + g_j)
    denominator = (
        np.bincount(pair_low, weights=per_pair, minlength=m)
        + np.bincount(pair_high, weights=per_pair, minlength=m)
        + prior / (strength + 1.0)  # the reference has strength 1
    )
    return np.log(wins) - np.log(denominator)


def _index_comparisons(
    comparisons: Any, items: Iterable[Hashable] | None
) -> tuple[list[Hashable], np.ndarray, np.ndarray, np.ndarray]:
    """Ids, first and second item indices ``(C,)`` and the first item's win share ``(C,)``."""
    rows = _rows(comparisons, "comparisons", "(winner, loser) pair or (a, b, share) triple")
    index: dict[Hashable, int] = {}
    try:
        for name in items if items is not None else ():
            index.setdefault(name, len(index))
    except TypeError:
        raise ConfigError("items must be an iterable of hashable ids (strings, ints, tuples).") from None
    first = np.empty(len(rows), dtype=np.int64)
    second = np.empty(len(rows), dtype=np.int64)
    share = np.ones(len(rows))
    for n, row in enumerate(rows):
        if not _is_row(row, (2, 3)):
            raise ConfigError(
                f"comparisons[{n}] is {row!r}; expected a (winner, loser) pair or an (a, b, share) "
                "triple with share 1 (a won), 0 (b won) or 0.5 (tie)."
            )
        if len(row) == 3:
            s = row[2]
            if (
                isinstance(s, (bool, str, bytes))
                or not isinstance(s, (int, float, np.number))
                or not 0 <= s <= 1
            ):
                raise ConfigError(
                    f"comparisons[{n}] = {row!r} has share {s!r}; expected a number in [0, 1] "
                    "(1 = first item won, 0 = second won, 0.5 = tie)."
                )
            share[n] = s
        try:
            first[n] = index.setdefault(row[0], len(index))
            second[n] = index.setdefault(row[1], len(index))
        except TypeError:
            raise ConfigError(f"comparisons[{n}] = {row!r} has an unhashable item id.") from None
        if first[n] == second[n]:
            raise ConfigError(f"comparisons[{n}] = {row!r} compares item {row[0]!r} with itself; drop it.")
    return list(index), first, second, share


def _components(low: np.ndarray, high: np.ndarray, m: int) -> np.ndarray:
    """Connected-component index of each of ``m`` items, given the compared pairs ``(low, high)``."""
    label = np.arange(m)  # each item points to the smallest item index known to be connected to it
    while True:
        updated = label.copy()
        np.minimum.at(updated, low, label[high])
        np.minimum.at(updated, high, label[low])
        updated = updated[updated]  # follow pointers: a label's own label is also connected
        if np.array_equal(updated, label):
            return np.unique(label, return_inverse=True)[1].ravel()
        label = updated


def _best_shift(log_strength: np.ndarray, component: np.ndarray) -> np.ndarray:
    """Per-component shift ``c`` maximising the prior's virtual ties, shape ``(G,)``.

    The prior term of item ``i`` is ``prior * (x_i / 2 - log(1 + exp(x_i)))``; its derivative in a
    common shift vanishes where ``sum_{i in group} sigmoid(x_i + c) = |group| / 2``, found by
    bisection (the left side increases with ``c``).
    """
    n_groups = int(component.max()) + 1
    size = np.bincount(component, minlength=n_groups)
    top = np.full(n_groups, -np.inf)
    bottom = np.full(n_groups, np.inf)
    np.maximum.at(top, component, log_strength)
    np.minimum.at(bottom, component, log_strength)
    low, high = -top - 1.0, -bottom + 1.0  # every sigmoid < 1/2 at `low`, > 1/2 at `high`
    for _ in range(60):
        mid = (low + high) / 2
        sigmoid = 0.5 * (1.0 + np.tanh((log_strength + mid[component]) / 2))
        too_low = np.bincount(component, weights=sigmoid, minlength=n_groups) < size / 2
        low, high = np.where(too_low, mid, low), np.where(too_low, high, mid)
    return ((low + high) / 2)[component]


def _comparison_weights(weights: Any, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    try:
        w = np.asarray(weights, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError("weights must be an array of non-negative numbers, one per comparison.") from None
    if w.shape != (n,):
        raise ConfigError(
            f"weights must have one entry per comparison: expected shape ({n},), got {w.shape}."
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ConfigError(
            f"weights must be finite and >= 0; got {w[~np.isfinite(w) | (w < 0)][0]!r} "
            f"at index {int(np.argmax(~np.isfinite(w) | (w < 0)))}."
        )
    if not np.any(w > 0):
        raise ConfigError(
            "All comparison weights are 0, so every comparison would be ignored. "
            "Check the reliabilities behind them (e.g. all evaluators at chance level)."
        )
    return w


def rankings_to_pairs(rankings: Iterable[Sequence[Any]]) -> list[tuple[Hashable, Hashable, float]]:
    """Expand rankings into ``(a, b, share)`` comparisons for :func:`bradley_terry`.

    Each ranking lists ids from best to worst. A ``list`` inside a ranking is a group of tied ids;
    anything else (including a tuple) is a single id. Every ordered pair of entries gives one
    comparison: ``(better, worse, 1.0)``, or ``(a, b, 0.5)`` for two ids in the same group. A
    ranking of ``k`` ids therefore gives ``k * (k - 1) / 2`` comparisons, in ranking order.

    Args:
        rankings: An iterable of rankings (each a sequence of ids and tie groups).

    Returns:
        The comparisons of all rankings, concatenated.

    Raises:
        ConfigError: a ranking is not a sequence, has an empty group or repeats an id.

    Example:
        >>> rankings_to_pairs([["best", ["mid1", "mid2"], "worst"]])  # doctest: +NORMALIZE_WHITESPACE
        [('best', 'mid1', 1.0), ('best', 'mid2', 1.0), ('best', 'worst', 1.0),
         ('mid1', 'mid2', 0.5), ('mid1', 'worst', 1.0), ('mid2', 'worst', 1.0)]
    """
    if isinstance(rankings, (str, bytes)) or not isinstance(rankings, Iterable):
        raise ConfigError(f"rankings must be an iterable of rankings; got {type(rankings).__name__}.")
    pairs: list[tuple[Hashable, Hashable, float]] = []
    for r, ranking in enumerate(rankings):
        if isinstance(ranking, (str, bytes)) or not isinstance(ranking, Sequence):
            raise ConfigError(
                f"rankings[{r}] is {ranking!r}; expected a sequence of ids from best to worst "
                "(wrap a single ranking in a list: rankings_to_pairs([ranking]))."
            )
        groups = [entry if isinstance(entry, list) else [entry] for entry in ranking]
        if any(not group for group in groups):
            raise ConfigError(f"rankings[{r}] = {ranking!r} has an empty tie group; remove it.")
        flat = [name for group in groups for name in group]
        try:
            repeated = len(set(flat)) != len(flat)
        except TypeError:
            raise ConfigError(f"rankings[{r}] = {ranking!r} contains an unhashable id.") from None
        if repeated:
            raise ConfigError(
                f"rankings[{r}] = {ranking!r} lists an id more than once; each id may appear once."
            )
        rank = [g for g, group in enumerate(groups) for _ in group]  # group position of each id
        for a in range(len(flat)):
            for b in range(a + 1, len(flat)):
                pairs.append((flat[a], flat[b], 1.0 if rank[a] < rank[b] else 0.5))
    return pairs


def reliability_weights(
    evaluators: Iterable[Hashable],
    reliability: Mapping[Hashable, float],
    chance: float = 0.5,
    default: float | None = None,
) -> np.ndarray:
    """Turn per-evaluator reliability into per-comparison weights for :func:`bradley_terry`.

    A comparison by an evaluator of accuracy ``r`` gets weight ``clip((r - chance) / (1 - chance),
    0, 1)``: 1 for a perfect evaluator, 0 for one at or below chance, linear in between. ``r`` can
    come from :func:`dawid_skene` (``result.accuracy``) or :func:`gold_accuracy`. For pairwise
    choices chance is 0.5; for accuracies on ``K``-way labels use ``chance=1/K``.

    Args:
        evaluators: The evaluator id of each comparison, in the order of the comparisons.
        reliability: Evaluator id -> accuracy in ``[0, 1]``.
        chance: Accuracy of random answering, in ``[0, 1)``.
        default: Accuracy assumed for evaluators missing from ``reliability``; by default a missing
            evaluator is an error.

    Returns:
        Weights of shape ``(C,)``.

    Raises:
        ConfigError: an accuracy outside ``[0, 1]``, a bad ``chance``, or an evaluator missing from
            ``reliability`` when no ``default`` is given.

    Example:
        >>> reliability_weights(["ann", "bob", "ann", "eve"], {"ann": 0.9, "bob": 0.5, "eve": 0.2})
        array([0.8, 0. , 0.8, 0. ])
    """
    if not isinstance(chance, (int, float)) or isinstance(chance, bool) or not 0 <= chance < 1:
        raise ConfigError(f"chance must be a number in [0, 1); got {chance!r}.")
    if not isinstance(reliability, Mapping):
        raise ConfigError(
            f"reliability must be a mapping from evaluator id to accuracy; got {type(reliability).__name__}."
        )
    for name, accuracy in list(reliability.items()) + ([("default", default)] if default is not None else []):
        if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float, np.number)) or not 0 <= accuracy <= 1:
            raise ConfigError(f"Accuracy of {name!r} must be a number in [0, 1]; got {accuracy!r}.")
    names = list(evaluators)
    missing = [name for name in dict.fromkeys(names) if name not in reliability]
    if missing and default is None:
        raise ConfigError(
            f"{len(missing)} evaluator(s) have no reliability, e.g. {missing[:5]!r}; "
            "add them to `reliability` or pass `default=` (e.g. default=0.5 to ignore them)."
        )
    r = np.array([reliability.get(name, default) for name in names], dtype=float)
    return np.clip((r - chance) / (1.0 - chance), 0.0, 1.0)
