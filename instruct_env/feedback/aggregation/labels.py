"""Categorical labels: majority vote, Dawid-Skene EM, and evaluator accuracy on gold items."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from instruct_env._validation import check_finite, check_int
from instruct_env.error import ConfigError
from instruct_env.feedback.aggregation._common import (
    _class_labels,
    _index_triples,
    _vote_counts,
)

__all__ = [
    "MajorityVoteResult",
    "DawidSkeneResult",
    "GoldAccuracy",
    "majority_vote",
    "dawid_skene",
    "gold_accuracy",
]


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
class GoldAccuracy:
    """Outcome of :func:`gold_accuracy`.

    Attributes:
        accuracy: Evaluator id -> fraction of their gold-item labels that match the gold answer.
            Evaluators who labelled no gold item are absent.
        counts: Evaluator id -> number of gold items they labelled.
    """

    accuracy: dict[Hashable, float]
    counts: dict[Hashable, int]


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
    check_int("max_iter", max_iter, 1)
    check_finite("tol", tol, 0)
    check_finite("smoothing", smoothing, 0, low_open=True)
    data = _index_triples(labels)
    y, k = _class_labels(data, n_classes)
    item, evaluator = data.item, data.evaluator
    n_items, n_evaluators = len(data.items), len(data.evaluators)

    votes = _vote_counts(item, y, n_items, k)  # (I, K)
    posterior = votes / votes.sum(axis=1, keepdims=True)  # (I, K) soft majority vote
    trace: list[float] = []
    converged = False
    for _ in range(max_iter):
        priors, confusion, log_prior = _m_step(posterior, item, evaluator, y, n_evaluators, k, one_coin, smoothing)
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


def _m_step(
    posterior: np.ndarray, item: np.ndarray, evaluator: np.ndarray, y: np.ndarray, n_evaluators: int, k: int,
    one_coin: bool, smoothing: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """M-step: class priors ``(K,)`` and confusion matrices ``(J, K, K)`` from the current posteriors.

    Also returns the log of the smoothing prior at these estimates (the penalty in the objective).
    """
    n_items = len(posterior)
    priors = (posterior.sum(axis=0) + smoothing) / (n_items + k * smoothing)  # (K,)
    if one_coin:
        accuracy = _one_coin_accuracy(posterior, item, evaluator, y, n_evaluators, smoothing)
        confusion = _one_coin_confusion(accuracy, k)  # (J, K, K)
        log_prior = smoothing * np.sum(np.log(accuracy) + np.log1p(-accuracy))
    else:
        confusion = _full_confusion(posterior, item, evaluator, y, n_evaluators, k, smoothing)
        log_prior = np.sum(_confusion_pseudo_counts(k, smoothing) * np.log(confusion))
    log_prior += smoothing * np.sum(np.log(priors))
    return priors, confusion, log_prior


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
