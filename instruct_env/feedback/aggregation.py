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
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from instruct_env.error import ConfigError, suggest

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
]

KRIPPENDORFF_LEVELS = ("nominal", "ordinal", "interval")


# --------------------------------------------------------------------------------------------------
# Result records
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MajorityVoteResult:
    """Outcome of :func:`majority_vote`.

    Attributes:
        labels: Item id -> winning class index.
        votes: Item id -> vote counts per class, shape ``(K,)``.
        ties: Ids of items whose highest count was shared by several classes (resolved to the
            lowest class index), in first-seen order.
    """

    labels: dict[Hashable, int]
    votes: dict[Hashable, np.ndarray]
    ties: tuple[Hashable, ...]


@dataclass(frozen=True)
class DawidSkeneResult:
    """Outcome of :func:`dawid_skene`.

    Attributes:
        labels: Item id -> most probable class (ties go to the lowest class index).
        posteriors: Item id -> posterior probability of each class, shape ``(K,)``.
        accuracy: Evaluator id -> estimated probability of giving the true class. For the full
            confusion-matrix model this is the diagonal averaged over the class priors.
        confusion: Evaluator id -> ``(K, K)`` matrix, ``[true, given]`` = P(gives ``given`` |
            item is ``true``); each row sums to 1.
        class_priors: Estimated frequency of each class, shape ``(K,)``.
        log_likelihood: Penalised log-likelihood after each EM iteration (the marginal
            log-likelihood of the labels plus the log of the smoothing prior). EM never lowers it.
        n_iter: Number of EM iterations run.
        converged: Whether the relative change fell below ``tol`` before ``max_iter``.
    """

    labels: dict[Hashable, int]
    posteriors: dict[Hashable, np.ndarray]
    accuracy: dict[Hashable, float]
    confusion: dict[Hashable, np.ndarray]
    class_priors: np.ndarray
    log_likelihood: tuple[float, ...]
    n_iter: int
    converged: bool


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


@dataclass(frozen=True)
class GoldAccuracy:
    """Outcome of :func:`gold_accuracy`.

    Attributes:
        accuracy: Evaluator id -> fraction of their gold-item labels that match the gold answer.
            Evaluators who labelled no gold item are absent.
        counts: Evaluator id -> number of gold items they labelled.
    """

    accuracy: dict[Hashable, float]
    counts: dict[Hashable, int]


# --------------------------------------------------------------------------------------------------
# Input parsing and validation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Indexed:
    """Triples with item and evaluator ids replaced by indices ``0..I-1`` and ``0..J-1``."""

    items: list[Hashable]  # index -> id, first-seen order
    evaluators: list[Hashable]
    item: np.ndarray  # (N,) int64
    evaluator: np.ndarray  # (N,) int64
    values: list[Any]  # (N,) third field, not yet checked


def _rows(data: Any, what: str, row: str) -> list[Any]:
    """Materialise ``data`` as a non-empty list of rows (an array is converted with ``tolist``)."""
    if isinstance(data, np.ndarray):
        if data.ndim != 2:
            raise ConfigError(
                f"{what} given as an array must be 2-D, one {row} per row; got shape {data.shape}."
            )
        rows = data.tolist()
    elif isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
        raise ConfigError(
            f"{what} must be a list (or a 2-D array) whose rows are each a {row}; got {type(data).__name__}."
        )
    else:
        rows = list(data)
    if not rows:
        raise ConfigError(f"{what} is empty; expected at least one {row}.")
    return rows


def _is_row(row: Any, sizes: tuple[int, ...]) -> bool:
    return not isinstance(row, (str, bytes)) and hasattr(row, "__len__") and len(row) in sizes


def _index_triples(labels: Any, what: str = "labels") -> _Indexed:
    """Validate ``(item, evaluator, value)`` triples and map the ids to indices."""
    rows = _rows(labels, what, "(item, evaluator, value) triple")
    item_index: dict[Hashable, int] = {}
    evaluator_index: dict[Hashable, int] = {}
    item = np.empty(len(rows), dtype=np.int64)
    evaluator = np.empty(len(rows), dtype=np.int64)
    values = []
    for n, row in enumerate(rows):
        if not _is_row(row, (3,)):
            raise ConfigError(
                f"{what}[{n}] is {row!r}; expected an (item, evaluator, value) triple. "
                f"An array of {what} must have shape (N, 3)."
            )
        item_id, evaluator_id, value = row
        try:
            item[n] = item_index.setdefault(item_id, len(item_index))
            evaluator[n] = evaluator_index.setdefault(evaluator_id, len(evaluator_index))
        except TypeError:
            raise ConfigError(
                f"{what}[{n}] = {row!r} has an unhashable item or evaluator id; "
                "use strings, ints or tuples as ids."
            ) from None
        values.append(value)
    return _Indexed(list(item_index), list(evaluator_index), item, evaluator, values)


def _where(data: _Indexed, n: int) -> str:
    return f"item {data.items[data.item[n]]!r}, evaluator {data.evaluators[data.evaluator[n]]!r}"


def _real_values(data: _Indexed, what: str) -> np.ndarray:
    """The values as a finite float array ``(N,)``, or a ConfigError naming the first bad one."""
    x = np.empty(len(data.values))
    for n, value in enumerate(data.values):
        if not isinstance(value, (int, float, np.integer, np.floating, np.bool_)) or not math.isfinite(value):
            raise ConfigError(
                f"{what} must be finite real numbers; got {value!r} ({_where(data, n)}). "
                "Leave missing ratings out instead of passing None or NaN."
            )
        x[n] = value
    return x


def _class_labels(data: _Indexed, n_classes: int | None) -> tuple[np.ndarray, int]:
    """The values as class indices ``(N,)`` and the number of classes ``K >= 2``."""
    if n_classes is not None:
        _check_int("n_classes", n_classes, minimum=2)
    hint = "Map each category to an integer 0..K-1 (and pass n_classes=K if a class is never used)."
    try:
        x = _real_values(data, "labels")
    except ConfigError as exc:
        raise ConfigError(f"{exc} {hint}") from None
    bad = (x != np.round(x)) | (x < 0)
    if n_classes is not None:
        bad |= x >= n_classes
    if bad.any():
        n = int(np.argmax(bad))
        expected = "integer class indices >= 0" if n_classes is None else f"class indices 0..{n_classes - 1}"
        raise ConfigError(f"labels must be {expected}; got {data.values[n]!r} ({_where(data, n)}). {hint}")
    y = x.astype(np.int64)
    k = n_classes if n_classes is not None else max(2, int(y.max()) + 1)
    return y, k


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}; got {value!r}.")


def _check_number(name: str, value: Any, *, positive: bool) -> None:
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"{name} must be a finite number {bound}; got {value!r}.")


def _vote_counts(item: np.ndarray, y: np.ndarray, n_items: int, k: int) -> np.ndarray:
    """Votes per item and class, shape ``(I, K)``."""
    return np.bincount(item * k + y, minlength=n_items * k).reshape(n_items, k)


# --------------------------------------------------------------------------------------------------
# Categorical labels
# --------------------------------------------------------------------------------------------------


def majority_vote(labels: Iterable[Sequence[Any]], n_classes: int | None = None) -> MajorityVoteResult:
    """Label each item with its most frequent class.

    Ties are broken toward the **lowest class index** (for thumbs, 0 = "down" wins a 1-1 split, the
    cautious choice for a reward); the tied items are listed in ``ties`` so callers can treat them
    differently.

    Args:
        labels: ``(item, evaluator, label)`` triples with integer labels ``0..K-1``.
        n_classes: Number of classes ``K``; by default ``max(label) + 1`` (at least 2).

    Returns:
        A :class:`MajorityVoteResult` with the label and vote counts of every item.

    Raises:
        ConfigError: ``labels`` is empty, malformed, or has a label outside ``0..K-1``.

    Example:
        >>> votes = [("q1", "ann", 1), ("q1", "bob", 1), ("q1", "cy", 0),
        ...          ("q2", "ann", 0), ("q2", "bob", 1)]
        >>> result = majority_vote(votes)
        >>> result.labels
        {'q1': 1, 'q2': 0}
        >>> result.ties
        ('q2',)
    """
    data = _index_triples(labels)
    y, k = _class_labels(data, n_classes)
    votes = _vote_counts(data.item, y, len(data.items), k)  # (I, K)
    winner = votes.argmax(axis=1)  # argmax returns the first maximum: the lowest class index
    tied = (votes == votes.max(axis=1, keepdims=True)).sum(axis=1) > 1
    return MajorityVoteResult(
        labels={name: int(winner[i]) for i, name in enumerate(data.items)},
        votes={name: votes[i] for i, name in enumerate(data.items)},
        ties=tuple(name for i, name in enumerate(data.items) if tied[i]),
    )


def dawid_skene(
    labels: Iterable[Sequence[Any]],
    n_classes: int | None = None,
    one_coin: bool = True,
    max_iter: int = 100,
    tol: float = 1e-6,
    smoothing: float = 1.0,
) -> DawidSkeneResult:
    """Estimate true labels and evaluator accuracies with Dawid-Skene EM.

    The model (Dawid & Skene, 1979): each item has a hidden true class drawn from the class priors,
    and each evaluator reports a class according to their own confusion matrix. With
    ``one_coin=True`` an evaluator has a single accuracy ``p``: they give the true class with
    probability ``p`` and each of the ``K - 1`` other classes with probability ``(1 - p) / (K - 1)``.
    Evaluators below chance (adversaries who flip labels) get ``p < 1/K`` and their labels count
    *against* the class they chose. With ``one_coin=False`` each evaluator has a full ``K x K``
    confusion matrix, which can model class-specific confusions but needs more labels.

    EM starts from the soft majority vote (each item's vote fractions), so the solution is the one
    that agrees with the crowd where the crowd is reliable rather than its label-swapped mirror.
    The data alone cannot tell those two apart: if adversaries outweigh honest evaluators (majority
    vote below chance), EM settles on the mirror, and only gold items (:func:`gold_accuracy`) can
    reveal it.

    Smoothing: every estimate is a MAP estimate under a pseudo-count prior, which keeps all
    probabilities strictly inside (0, 1) in degenerate cases (a single evaluator, an evaluator
    with one label, a crowd that always agrees). Each evaluator gets ``smoothing`` pseudo-labels
    that were right and ``smoothing`` that were wrong (in the full model: ``smoothing`` on each
    diagonal entry and ``smoothing / (K - 1)`` on each off-diagonal entry of every row), and each
    class gets ``smoothing`` pseudo-items. With one label, an evaluator's accuracy is thus
    ``(1 + 1) / (1 + 2) = 2/3`` if the item's posterior agrees with them, not 1.

    Args:
        labels: ``(item, evaluator, label)`` triples with integer labels ``0..K-1``.
        n_classes: Number of classes ``K``; by default ``max(label) + 1`` (at least 2).
        one_coin: One accuracy per evaluator (True) or a full confusion matrix (False).
        max_iter: Maximum number of EM iterations (>= 1).
        tol: Stop when the penalised log-likelihood improves by less than ``tol`` times its
            magnitude.
        smoothing: Pseudo-count strength (> 0), see above.

    Returns:
        A :class:`DawidSkeneResult`.

    Raises:
        ConfigError: bad ``labels`` (empty, malformed, out of range) or bad settings.

    Example:
        >>> truth = [0, 1, 1, 0, 1, 0]
        >>> labels = [(q, "ann", t) for q, t in enumerate(truth)]
        >>> labels += [(q, "bob", t) for q, t in enumerate(truth)]
        >>> labels += [(q, "flipper", 1 - t) for q, t in enumerate(truth)]
        >>> result = dawid_skene(labels)
        >>> [result.labels[q] for q in range(6)] == truth
        True
        >>> {name: round(acc, 2) for name, acc in result.accuracy.items()}
        {'ann': 0.87, 'bob': 0.87, 'flipper': 0.13}
    """
    _check_int("max_iter", max_iter, minimum=1)
    _check_number("tol", tol, positive=False)
    _check_number("smoothing", smoothing, positive=True)
    data = _index_triples(labels)
    y, k = _class_labels(data, n_classes)
    item, evaluator = data.item, data.evaluator
    n_items, n_evaluators = len(data.items), len(data.evaluators)

    votes = _vote_counts(item, y, n_items, k)  # (I, K)
    posterior = votes / votes.sum(axis=1, keepdims=True)  # (I, K) soft majority vote
    trace: list[float] = []
    converged = False
    for _ in range(max_iter):
        # M-step: class priors and evaluator confusion matrices from the current posteriors.
        priors = (posterior.sum(axis=0) + smoothing) / (n_items + k * smoothing)  # (K,)
        if one_coin:
            accuracy = _one_coin_accuracy(posterior, item, evaluator, y, n_evaluators, smoothing)
            confusion = _one_coin_confusion(accuracy, k)  # (J, K, K)
            log_prior = smoothing * np.sum(np.log(accuracy) + np.log1p(-accuracy))
        else:
            confusion = _full_confusion(posterior, item, evaluator, y, n_evaluators, k, smoothing)
            log_prior = np.sum(_confusion_pseudo_counts(k, smoothing) * np.log(confusion))
        log_prior += smoothing * np.sum(np.log(priors))
        # E-step: posterior over each item's true class, and the marginal log-likelihood.
        posterior, log_likelihood = _posterior(np.log(priors), np.log(confusion), item, evaluator, y, n_items)
        trace.append(float(log_likelihood + log_prior))
        if len(trace) > 1 and trace[-1] - trace[-2] <= tol * abs(trace[-1]):
            converged = True
            break

    accuracies = np.einsum("k,jkk->j", priors, confusion)  # (J,) equals `accuracy` for one coin
    return DawidSkeneResult(
        labels={name: int(posterior[i].argmax()) for i, name in enumerate(data.items)},
        posteriors={name: posterior[i] for i, name in enumerate(data.items)},
        accuracy={name: float(accuracies[j]) for j, name in enumerate(data.evaluators)},
        confusion={name: confusion[j] for j, name in enumerate(data.evaluators)},
        class_priors=priors,
        log_likelihood=tuple(trace),
        n_iter=len(trace),
        converged=converged,
    )


def _one_coin_accuracy(
    posterior: np.ndarray,
    item: np.ndarray,
    evaluator: np.ndarray,
    y: np.ndarray,
    n_evaluators: int,
    smoothing: float,
) -> np.ndarray:
    """MAP accuracy per evaluator, shape ``(J,)``: (expected correct + s) / (labels + 2 s)."""
    agree = posterior[item, y]  # (N,) probability that the given label is the true class
    correct = np.bincount(evaluator, weights=agree, minlength=n_evaluators)
    total = np.bincount(evaluator, minlength=n_evaluators)
    return (correct + smoothing) / (total + 2 * smoothing)


def _one_coin_confusion(accuracy: np.ndarray, k: int) -> np.ndarray:
    """``(J, K, K)`` confusion matrices: ``p`` on the diagonal, ``(1 - p) / (K - 1)`` elsewhere."""
    off = (1.0 - accuracy) / (k - 1)  # (J,)
    confusion = np.repeat(off[:, None, None], k, axis=1).repeat(k, axis=2)
    confusion[:, np.arange(k), np.arange(k)] = accuracy[:, None]
    return confusion


def _confusion_pseudo_counts(k: int, smoothing: float) -> np.ndarray:
    """``(K, K)`` prior counts: ``s`` right and ``s`` wrong answers (spread evenly) per true class."""
    pseudo = np.full((k, k), smoothing / (k - 1))
    np.fill_diagonal(pseudo, smoothing)
    return pseudo


def _full_confusion(
    posterior: np.ndarray,
    item: np.ndarray,
    evaluator: np.ndarray,
    y: np.ndarray,
    n_evaluators: int,
    k: int,
    smoothing: float,
) -> np.ndarray:
    """MAP confusion matrices ``(J, K, K)``, ``[evaluator, true, given]``."""
    cell = evaluator * k + y  # (N,) flat (evaluator, given) index
    counts = np.stack(
        [
            np.bincount(cell, weights=posterior[item, true], minlength=n_evaluators * k).reshape(
                n_evaluators, k
            )
            for true in range(k)
        ],
        axis=1,
    )  # (J, K true, K given)
    counts += _confusion_pseudo_counts(k, smoothing)
    return counts / counts.sum(axis=2, keepdims=True)


def _posterior(
    log_priors: np.ndarray,
    log_confusion: np.ndarray,
    item: np.ndarray,
    evaluator: np.ndarray,
    y: np.ndarray,
    n_items: int,
) -> tuple[np.ndarray, float]:
    """E-step: item posteriors ``(I, K)`` and the marginal log-likelihood of all labels."""
    k = len(log_priors)
    per_label = log_confusion[evaluator, :, y]  # (N, K): log P(given label | true class k)
    log_joint = np.tile(log_priors, (n_items, 1))  # (I, K)
    for true in range(k):
        log_joint[:, true] += np.bincount(item, weights=per_label[:, true], minlength=n_items)
    top = log_joint.max(axis=1, keepdims=True)
    log_evidence = top[:, 0] + np.log(np.exp(log_joint - top).sum(axis=1))  # (I,) log-sum-exp
    return np.exp(log_joint - log_evidence[:, None]), float(log_evidence.sum())


def gold_accuracy(labels: Iterable[Sequence[Any]], gold: Mapping[Hashable, Any]) -> GoldAccuracy:
    """Per-evaluator accuracy on gold items (items whose correct answer is known).

    Labels are compared to the gold answer with ``==``, so any label type works. Labels on
    non-gold items are ignored.

    Args:
        labels: ``(item, evaluator, label)`` triples.
        gold: Item id -> correct label.

    Returns:
        A :class:`GoldAccuracy`; evaluators who labelled no gold item are absent from it.

    Raises:
        ConfigError: ``labels`` or ``gold`` is empty or malformed, or no label is on a gold item.

    Example:
        >>> labels = [("g1", "ann", 1), ("g2", "ann", 0), ("g1", "bob", 0), ("x", "cy", 1)]
        >>> gold_accuracy(labels, {"g1": 1, "g2": 1}).accuracy
        {'ann': 0.5, 'bob': 0.0}
    """
    if not isinstance(gold, Mapping) or not gold:
        raise ConfigError(
            f"gold must be a non-empty mapping from item id to correct label; got {gold!r:.80}."
        )
    data = _index_triples(labels)
    n_evaluators = len(data.evaluators)
    correct = np.zeros(n_evaluators)
    counts = np.zeros(n_evaluators, dtype=np.int64)
    for n, value in enumerate(data.values):
        name = data.items[data.item[n]]
        if name in gold:
            counts[data.evaluator[n]] += 1
            correct[data.evaluator[n]] += bool(value == gold[name])
    if not counts.any():
        examples = ", ".join(repr(name) for name in list(gold)[:3])
        raise ConfigError(
            f"None of the {len(data.values)} labels is on a gold item (gold ids look like {examples}; "
            f"labelled ids look like {', '.join(repr(name) for name in data.items[:3])}). "
            "Check that item ids in labels and gold use the same type and spelling."
        )
    seen = [j for j in range(n_evaluators) if counts[j]]
    return GoldAccuracy(
        accuracy={data.evaluators[j]: float(correct[j] / counts[j]) for j in seen},
        counts={data.evaluators[j]: int(counts[j]) for j in seen},
    )


# --------------------------------------------------------------------------------------------------
# Numeric ratings
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Pairwise preferences
# --------------------------------------------------------------------------------------------------


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
    _check_number("prior", prior, positive=True)
    _check_int("max_iter", max_iter, minimum=1)
    _check_number("tol", tol, positive=False)
    names, first, second, share = _index_comparisons(comparisons, items)
    w = _comparison_weights(weights, len(share))
    m = len(names)

    wins = np.bincount(first, weights=w * share, minlength=m) + np.bincount(
        second, weights=w * (1.0 - share), minlength=m
    )  # (M,) weighted wins, ties as half-wins
    wins += prior / 2  # virtual ties against the reference: half a win each
    # Aggregate comparisons per unordered pair, so an iteration costs O(distinct pairs).
    low, high = np.minimum(first, second), np.maximum(first, second)
    pair_key, pair_of = np.unique(low * m + high, return_inverse=True)
    pair_count = np.bincount(pair_of.ravel(), weights=w)  # (P,) n_ij
    pair_low, pair_high = pair_key // m, pair_key % m

    component = _components(pair_low, pair_high, m)  # (M,) connected groups of compared items
    log_strength = np.zeros(m)  # (M,)
    converged = False
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        strength = np.exp(log_strength)
        per_pair = pair_count / (strength[pair_low] + strength[pair_high])  # (P,) n_ij / (g_i + g_j)
        denominator = (
            np.bincount(pair_low, weights=per_pair, minlength=m)
            + np.bincount(pair_high, weights=per_pair, minlength=m)
            + prior / (strength + 1.0)  # the reference has strength 1
        )
        updated = np.log(wins) - np.log(denominator)
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
    for name, r in list(reliability.items()) + ([("default", default)] if default is not None else []):
        if isinstance(r, bool) or not isinstance(r, (int, float, np.number)) or not 0 <= r <= 1:
            raise ConfigError(f"Accuracy of {name!r} must be a number in [0, 1]; got {r!r}.")
    names = list(evaluators)
    missing = [name for name in dict.fromkeys(names) if name not in reliability]
    if missing and default is None:
        raise ConfigError(
            f"{len(missing)} evaluator(s) have no reliability, e.g. {missing[:5]!r}; "
            "add them to `reliability` or pass `default=` (e.g. default=0.5 to ignore them)."
        )
    r = np.array([reliability.get(name, default) for name in names], dtype=float)
    return np.clip((r - chance) / (1.0 - chance), 0.0, 1.0)


# --------------------------------------------------------------------------------------------------
# Agreement
# --------------------------------------------------------------------------------------------------


def krippendorff_alpha(labels: Iterable[Sequence[Any]], level: str = "nominal") -> float:
    """Krippendorff's alpha: agreement between evaluators beyond what chance would give.

    ``alpha = 1 - D_o / D_e``, the observed disagreement between values given to the same item over
    the disagreement expected if values were paired at random (Krippendorff, *Content Analysis*,
    2004). 1 means perfect agreement, 0 agreement at chance level, negative values systematic
    disagreement. The difference between two values depends on ``level``:

    * ``"nominal"``: 0 if equal, 1 otherwise (values may be any hashable labels);
    * ``"ordinal"``: the squared distance between the two values' mid-ranks, where each value's
      rank is spread over all the times it occurs (the usual definition via the marginal counts);
    * ``"interval"``: the squared difference of the numbers.

    Missing data: evaluators need not rate every item. Only items with at least two values
    contribute pairs; items with a single value are left out entirely, including from the
    expected disagreement. If all the paired values are the same, both disagreements are 0 and
    alpha is formally undefined; this function returns 1.0 (no disagreement was observed).

    Args:
        labels: ``(item, evaluator, value)`` triples.
        level: ``"nominal"``, ``"ordinal"`` or ``"interval"``.

    Returns:
        Alpha, at most 1.

    Raises:
        ConfigError: empty or malformed ``labels``, an unknown ``level``, non-numeric values for an
            ordinal or interval level, or no item with two or more values.

    Example:
        >>> labels = [("q1", "ann", "yes"), ("q1", "bob", "yes"), ("q2", "ann", "no"), ("q2", "bob", "no")]
        >>> krippendorff_alpha(labels)
        1.0
        >>> krippendorff_alpha(labels[:3] + [("q2", "bob", "yes")])
        0.0
    """
    if level not in KRIPPENDORFF_LEVELS:
        raise ConfigError(
            f"level must be one of {', '.join(map(repr, KRIPPENDORFF_LEVELS))}; got {level!r}."
            + suggest(str(level), KRIPPENDORFF_LEVELS)
        )
    data = _index_triples(labels)
    per_item = np.bincount(data.item)  # (I,) values per item
    pairable = per_item[data.item] >= 2  # (N,)
    if not pairable.any():
        raise ConfigError(
            f"No item has two or more values among the {len(data.values)} labels, so there is no pair "
            "to compare; Krippendorff's alpha needs items rated by at least two evaluators."
        )
    unit = data.item[pairable]  # (n,) the n pairable values
    m = per_item.astype(float)  # values per item; only items with m >= 2 are used below
    used = per_item >= 2
    if level == "nominal":
        codes = _nominal_codes(data, pairable)
        if codes.max() == 0:
            return 1.0
        # Disagreeing ordered pairs in an item: m^2 - sum_c n_c^2 (n_c = count of value c there).
        base = int(codes.max()) + 1
        cells, cell_count = np.unique(unit * base + codes, return_counts=True)  # (item, value) cells
        same = np.bincount(cells // base, weights=cell_count.astype(float) ** 2, minlength=len(m))
        observed = np.sum((m**2 - same)[used] / (m[used] - 1))
        total = np.bincount(codes).astype(float)
        expected = (len(codes) ** 2 - np.sum(total**2)) / (len(codes) - 1)
    else:
        x = _real_values(data, "Values for the ordinal and interval levels")[pairable]
        if np.all(x == x[0]):
            return 1.0
        if level == "ordinal":
            x = _mid_ranks(x)
        x = x - x.mean()  # centring avoids cancellation in the sums of squares
        # Sum over ordered pairs of squared differences in a group: 2 (m sum x^2 - (sum x)^2).
        s1 = np.bincount(unit, weights=x, minlength=len(m))
        s2 = np.bincount(unit, weights=x**2, minlength=len(m))
        observed = np.sum((2 * (m * s2 - s1**2))[used] / (m[used] - 1))
        n = len(x)
        expected = 2 * (n * np.sum(x**2) - np.sum(x) ** 2) / (n - 1)
    return float(1.0 - observed / expected)


def _nominal_codes(data: _Indexed, pairable: np.ndarray) -> np.ndarray:
    """Integer code per pairable value, shape ``(n,)``; distinct values get distinct codes."""
    code_of: dict[Hashable, int] = {}
    codes = []
    for n in np.flatnonzero(pairable):
        value = data.values[n]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise ConfigError(
                f"labels must not contain missing values; got {value!r} ({_where(data, n)}). "
                "Leave missing ratings out instead."
            )
        try:
            codes.append(code_of.setdefault(value, len(code_of)))
        except TypeError:
            raise ConfigError(
                f"Nominal values must be hashable; got {value!r} ({_where(data, n)})."
            ) from None
    return np.asarray(codes, dtype=np.int64)


def _mid_ranks(x: np.ndarray) -> np.ndarray:
    """Replace each value by its mid-rank among ``x``.

    Krippendorff's ordinal difference between values ``c < k`` is
    ``sum_{g=c..k} n_g - (n_c + n_k) / 2`` (``n_g`` = how often value ``g`` occurs), which equals
    ``t_k - t_c`` with mid-rank ``t_c = sum_{g<c} n_g + n_c / 2``.
    """
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    mid = np.cumsum(counts) - counts / 2.0  # (V,)
    return mid[inverse.ravel()]
