"""Aggregate scores over seeds and tasks: interquartile mean and stratified bootstrap intervals.

Scores of one method form a matrix of shape ``(seeds, tasks)``. Following Agarwal et al. (2021),
*Deep Reinforcement Learning at the Edge of the Statistical Precipice*, the headline number is the
interquartile mean (IQM) of all ``seeds x tasks`` scores, with a 95% confidence interval from a
stratified bootstrap (seeds are resampled with replacement within each task). numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from instruct_env.error import ConfigError

__all__ = ["interquartile_mean", "stratified_bootstrap_ci", "Summary", "summarize"]


def _as_matrix(scores: object) -> np.ndarray:
    matrix = np.asarray(scores, dtype=float)
    if matrix.ndim != 2 or matrix.size == 0:
        raise ConfigError(f"scores must be a non-empty (seeds, tasks) matrix; got shape {matrix.shape}.")
    if not np.all(np.isfinite(matrix)):
        raise ConfigError("scores contain NaN or infinity; score every (seed, task) cell with a finite number.")
    return matrix


def interquartile_mean(scores: object) -> float:
    """Mean of the middle 50% of all values, with fractional weights at the quartile boundaries.

    Convention: the ``n`` sorted values split ``[0, 1]`` into ``n`` equal intervals; each value is
    weighted by how much of its interval lies inside ``[0.25, 0.75]``. When ``n`` is a multiple
    of 4 this is the plain mean of the middle half (and equals ``scipy.stats.trim_mean(x, 0.25)``);
    otherwise the boundary values count in part instead of being dropped or kept whole.

    >>> interquartile_mean(range(1, 9))  # mean of 3, 4, 5, 6
    4.5
    >>> interquartile_mean([1, 2, 3, 4, 100])  # (0.15 * 2 + 0.2 * 3 + 0.15 * 4) / 0.5
    3.0
    """
    values = np.sort(np.asarray(scores, dtype=float).ravel())
    if values.size == 0:
        raise ConfigError("interquartile_mean needs at least one value; got none.")
    n = values.size
    lower = np.arange(n) / n
    upper = (np.arange(n) + 1) / n
    weights = np.clip(np.minimum(upper, 0.75) - np.maximum(lower, 0.25), 0.0, None)  # (n,)
    return float(np.round(np.dot(weights, values) / weights.sum(), 12))


def stratified_bootstrap_ci(scores: object, *, resamples: int = 2000, confidence: float = 0.95,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the IQM, resampling seeds within each task.

    Args:
        scores: ``(seeds, tasks)`` matrix.
        resamples: Bootstrap replicates.
        confidence: Coverage of the interval.
        seed: Seed of the resampling (fixed, so a summary is reproducible).

    Returns:
        ``(low, high)``.
    """
    matrix = _as_matrix(scores)
    if resamples < 1 or not 0.0 < confidence < 1.0:
        raise ConfigError(f"need resamples >= 1 and 0 < confidence < 1; got {resamples} and {confidence}.")
    rng = np.random.default_rng(seed)
    n_seeds, n_tasks = matrix.shape
    rows = rng.integers(n_seeds, size=(resamples, n_seeds, n_tasks))  # (R, S, T) seed index per cell
    replicates = np.take_along_axis(matrix[None].repeat(resamples, 0), rows, axis=1)  # (R, S, T)
    estimates = np.array([interquartile_mean(r) for r in replicates])
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(estimates, [alpha, 1.0 - alpha])
    return float(low), float(high)


@dataclass
class Summary:
    """One method's aggregate numbers.

    Attributes:
        iqm: Interquartile mean of all scores.
        ci: 95% stratified bootstrap interval of the IQM.
        mean: Plain mean of all scores.
        task_mean: Mean over seeds, per task (in the matrix's column order).
        task_std: Standard deviation over seeds (``ddof=1``; 0 with one seed), per task.
    """

    iqm: float
    ci: tuple[float, float]
    mean: float
    task_mean: list[float]
    task_std: list[float]


def summarize(scores: object, *, resamples: int = 2000, seed: int = 0) -> Summary:
    """IQM, its interval, the mean, and per-task mean and std of a ``(seeds, tasks)`` matrix."""
    matrix = _as_matrix(scores)
    std = matrix.std(axis=0, ddof=1) if matrix.shape[0] > 1 else np.zeros(matrix.shape[1])
    return Summary(iqm=interquartile_mean(matrix), ci=stratified_bootstrap_ci(matrix, resamples=resamples, seed=seed),
                   mean=float(matrix.mean()), task_mean=matrix.mean(axis=0).tolist(), task_std=std.tolist())
