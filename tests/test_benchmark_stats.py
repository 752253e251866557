"""Aggregate statistics of the benchmark suite, checked against hand-computed values."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from instruct_env.error import ConfigError

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:  # benchmarks/ is a folder of the repository, not an installed package
    sys.path.insert(0, ROOT)

from benchmarks.stats import interquartile_mean, stratified_bootstrap_ci, summarize  # noqa: E402


def test_iqm_of_one_to_eight_is_mean_of_middle_half():
    assert interquartile_mean(np.arange(1, 9)) == pytest.approx(4.5)
    assert interquartile_mean(np.arange(1, 9).reshape(2, 4)) == pytest.approx(4.5)  # all cells count alike


def test_iqm_weights_boundary_values_fractionally():
    # five values: intervals of 0.2; weights 0, 0.15, 0.2, 0.15, 0 -> (0.3 + 0.6 + 0.6) / 0.5
    assert interquartile_mean([1, 2, 3, 4, 100]) == pytest.approx(3.0)
    # one value is its own IQM; an outlier at either end does not move it
    assert interquartile_mean([0.7]) == pytest.approx(0.7)
    assert interquartile_mean([-50, 1, 2, 3, 4, 5, 6, 1000]) == pytest.approx(3.5)


def test_bootstrap_interval_contains_estimate_and_is_deterministic():
    rng = np.random.default_rng(1)
    scores = rng.uniform(size=(3, 14))
    low, high = stratified_bootstrap_ci(scores, seed=0)
    assert low < interquartile_mean(scores) < high
    assert (low, high) == stratified_bootstrap_ci(scores, seed=0)
    assert (low, high) != stratified_bootstrap_ci(scores, seed=1)


def test_bootstrap_resamples_seeds_within_each_task():
    # each task's column is constant over seeds, so any within-task resample gives the same matrix
    scores = np.tile([[0.1, 0.5, 0.9, 0.3]], (3, 1))
    assert stratified_bootstrap_ci(scores) == pytest.approx((0.4, 0.4))
    assert stratified_bootstrap_ci(np.full((3, 2), 0.25)) == pytest.approx((0.25, 0.25))


def test_summary_means_and_stds():
    scores = np.array([[0.0, 1.0], [1.0, 1.0], [0.5, 1.0]])
    summary = summarize(scores)
    assert summary.mean == pytest.approx(4.5 / 6)
    assert summary.task_mean == pytest.approx([0.5, 1.0])
    assert summary.task_std == pytest.approx([0.5, 0.0])
    assert summarize(scores[:1]).task_std == [0.0, 0.0]


def test_bad_matrices_are_rejected():
    with pytest.raises(ConfigError, match=r"\(seeds, tasks\) matrix; got shape \(3,\)"):
        summarize([0.1, 0.2, 0.3])
    with pytest.raises(ConfigError, match="NaN"):
        stratified_bootstrap_ci([[0.1, float("nan")]])
