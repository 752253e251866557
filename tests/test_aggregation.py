"""Tests for instruct_env.feedback.aggregation on synthetic crowds whose truth is known."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from instruct_env.error import ConfigError
from instruct_env.feedback import (
    bradley_terry,
    dawid_skene,
    gold_accuracy,
    krippendorff_alpha,
    majority_vote,
    normalize_ratings,
    rankings_to_pairs,
    reliability_weights,
)

# --------------------------------------------------------------------------------------------------
# Synthetic crowds
# --------------------------------------------------------------------------------------------------


def binary_crowd(seed: int, n_items: int = 300, p_label: float = 0.8):
    """Thumbs labels from 4 good evaluators (85 %), 3 adversaries (20 %: they flip the label on
    purpose) and 4 coin-flippers, each labelling an item with probability ``p_label``.

    The adversaries cancel most of the good votes, so majority vote lands near 0.6, while an
    evaluator model can read the adversaries' labels backwards.
    """
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n_items)
    accuracy = {**{f"good{j}": 0.85 for j in range(4)}, **{f"adv{j}": 0.2 for j in range(3)}}
    accuracy |= {f"rand{j}": 0.5 for j in range(4)}
    labels = []
    for name, acc in accuracy.items():
        for item in range(n_items):
            if rng.random() < p_label:
                correct = rng.random() < acc
                labels.append((f"q{item}", name, int(truth[item] if correct else 1 - truth[item])))
    return {f"q{i}": int(t) for i, t in enumerate(truth)}, labels


def three_class_crowd(seed: int, n_items: int = 300):
    """3-way labels: 3 good evaluators (70 %, errors uniform), 2 "shifters" who answer
    ``(true + 1) % 3`` 90 % of the time, and 2 who answer uniformly at random."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n_items)
    labels = []
    for name in ["good0", "good1", "good2", "shift0", "shift1", "rand0", "rand1"]:
        for item in range(n_items):
            if rng.random() >= 0.8:
                continue
            t = int(truth[item])
            if name.startswith("good"):
                label = t if rng.random() < 0.7 else (t + int(rng.integers(1, 3))) % 3
            elif name.startswith("shift"):
                label = (t + 1) % 3 if rng.random() < 0.9 else t
            else:
                label = int(rng.integers(0, 3))
            labels.append((item, name, label))
    return {i: int(t) for i, t in enumerate(truth)}, labels


def accuracy_against(truth: dict, predicted: dict) -> float:
    return float(np.mean([predicted[item] == label for item, label in truth.items()]))


def ranks(x) -> np.ndarray:
    """Ranks 0..n-1 with tied values sharing their average rank."""
    x = np.asarray(x, dtype=float)
    positions = np.empty(len(x))
    positions[np.argsort(x, kind="stable")] = np.arange(len(x))
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=positions) / counts)[inverse]


def spearman(a, b) -> float:
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def simulate_comparisons(rng: np.random.Generator, quality: np.ndarray, n: int) -> list[tuple[int, int]]:
    """``n`` (winner, loser) pairs between random distinct items under the Bradley-Terry model."""
    a = rng.integers(0, len(quality), n)
    b = (a + rng.integers(1, len(quality), n)) % len(quality)
    a_wins = rng.random(n) < 1.0 / (1.0 + np.exp(quality[b] - quality[a]))
    return [(int(x), int(y)) if win else (int(y), int(x)) for x, y, win in zip(a, b, a_wins)]


def score_vector(result, n_items: int) -> np.ndarray:
    return np.array([result.scores[i] for i in range(n_items)])


# --------------------------------------------------------------------------------------------------
# Majority vote
# --------------------------------------------------------------------------------------------------


def test_majority_vote_breaks_ties_toward_lowest_class():
    labels = [
        ("a", "e1", 1), ("a", "e2", 1), ("a", "e3", 0),  # clear 1
        ("b", "e1", 0), ("b", "e2", 1),  # 1-1 tie -> 0
        ("c", "e1", 2), ("c", "e2", 2), ("c", "e3", 1), ("c", "e4", 1), ("c", "e5", 0),  # 2-2 -> 1
    ]  # fmt: skip
    result = majority_vote(labels)
    assert result.labels == {"a": 1, "b": 0, "c": 1}
    assert result.ties == ("b", "c")
    np.testing.assert_array_equal(result.votes["c"], [1, 2, 2])


def test_majority_vote_accepts_arrays_bools_and_explicit_classes():
    labels = np.array([[0, 10, 1], [0, 11, 1], [1, 10, 0]])
    result = majority_vote(labels, n_classes=4)
    assert result.labels == {0: 1, 1: 0}
    assert result.votes[0].shape == (4,)
    thumbs = majority_vote([("x", "ann", True), ("x", "bob", True), ("x", "cy", False)])
    assert thumbs.labels == {"x": 1}


# --------------------------------------------------------------------------------------------------
# Dawid-Skene
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_dawid_skene_beats_majority_vote_and_finds_adversaries(seed):
    truth, labels = binary_crowd(seed)
    mv_accuracy = accuracy_against(truth, majority_vote(labels).labels)
    result = dawid_skene(labels)
    ds_accuracy = accuracy_against(truth, result.labels)
    # Measured: seed 0 MV 0.613 / DS 0.973; seed 1 MV 0.610 / DS 0.963.
    assert 0.55 <= mv_accuracy <= 0.75, "the crowd should make majority vote mediocre"
    assert ds_accuracy >= mv_accuracy + 0.1
    assert ds_accuracy >= 0.9
    for name, acc in result.accuracy.items():
        if name.startswith("adv"):
            assert acc < 0.5, (name, acc)
        elif name.startswith("good"):
            assert acc > 0.75, (name, acc)
        else:
            assert 0.35 < acc < 0.65, (name, acc)
    assert result.converged
    assert np.all(np.diff(result.log_likelihood) >= -1e-9), "EM must not lower its objective"
    posterior = result.posteriors["q0"]
    assert posterior.shape == (2,) and math.isclose(posterior.sum(), 1.0)


def test_dawid_skene_full_confusion_uses_systematic_confusions():
    truth, labels = three_class_crowd(seed=0)
    mv_accuracy = accuracy_against(truth, majority_vote(labels).labels)
    one_coin = accuracy_against(truth, dawid_skene(labels).labels)
    result = dawid_skene(labels, one_coin=False)
    full = accuracy_against(truth, result.labels)
    # Measured: MV 0.473, one-coin 0.760, full 0.930. Only the full model can read a shifter's
    # "1" as a "0"; the one-coin model spreads their errors uniformly.
    assert one_coin >= mv_accuracy + 0.1
    assert full >= one_coin + 0.1
    np.testing.assert_allclose(result.confusion["shift0"].sum(axis=1), 1.0)
    assert result.confusion["shift0"][0, 1] > 0.7  # true 0 reported as 1
    assert result.accuracy["shift0"] < 0.3 and result.accuracy["good0"] > 0.6
    assert np.all(np.diff(result.log_likelihood) >= -1e-9)


def test_dawid_skene_degenerate_crowds_stay_finite():
    # One evaluator: their labels are all there is.
    alone = dawid_skene([(i, "solo", i % 2) for i in range(6)])
    assert alone.labels == {i: i % 2 for i in range(6)}
    assert 0.5 < alone.accuracy["solo"] < 1.0
    # Everyone agrees: accuracy is high but, thanks to smoothing, not exactly 1.
    agree = dawid_skene([(i, e, i % 2) for i in range(10) for e in "abc"], one_coin=False)
    assert agree.labels == {i: i % 2 for i in range(10)}
    assert all(0.8 < acc < 1.0 for acc in agree.accuracy.values())
    # An evaluator with a single (agreeing) label: (1 + 1) / (1 + 2) = 2/3 under smoothing=1.
    labels = [(i, e, i % 2) for i in range(10) for e in "abc"] + [(0, "once", 0)]
    once = dawid_skene(labels)
    assert once.accuracy["once"] == pytest.approx(2 / 3, abs=1e-3)
    for result in (alone, agree, once):
        assert all(np.isfinite(p).all() for p in result.posteriors.values())
        assert np.isfinite(result.log_likelihood).all()


def test_dawid_skene_is_deterministic_and_does_not_touch_its_input():
    _, labels = binary_crowd(seed=3, n_items=60)
    snapshot = copy.deepcopy(labels)
    first, second = dawid_skene(labels), dawid_skene(np.array(labels, dtype=object))
    assert labels == snapshot
    assert first.labels == second.labels
    assert first.log_likelihood == second.log_likelihood


# --------------------------------------------------------------------------------------------------
# Gold accuracy and rating normalisation
# --------------------------------------------------------------------------------------------------


def test_gold_accuracy_per_evaluator():
    labels = [
        ("g1", "ann", 1), ("g2", "ann", 0), ("g3", "ann", 1), ("x", "ann", 0),
        ("g1", "bob", 0), ("x", "cy", 1),
    ]  # fmt: skip
    result = gold_accuracy(labels, {"g1": 1, "g2": 0, "g3": 0})
    assert result.accuracy == {"ann": pytest.approx(2 / 3), "bob": 0.0}
    assert result.counts == {"ann": 3, "bob": 1}  # cy labelled no gold item


def test_normalize_ratings_removes_evaluator_scale():
    ratings = [
        ("a", "harsh", 1), ("b", "harsh", 2), ("c", "harsh", 3),
        ("a", "kind", 3), ("b", "kind", 4), ("c", "kind", 5),
        ("a", "flat", 4), ("b", "flat", 4),
        ("c", "once", 2),
    ]  # fmt: skip
    result = normalize_ratings(ratings)
    # harsh and kind: mean 2 / 4, std sqrt(2/3), so a, b, c -> -1.2247, 0, +1.2247.
    z = math.sqrt(1.5)
    np.testing.assert_allclose(result.z[:6], [-z, 0, z, -z, 0, z])
    assert set(result.degenerate) == {"flat", "once"}
    np.testing.assert_array_equal(result.z[6:], 0.0)
    # a: (-z - z + 0) / 3, b: 0, c: (z + z + 0) / 3.
    assert result.item_means == pytest.approx({"a": -2 * z / 3, "b": 0.0, "c": 2 * z / 3})
    assert result.item_counts == {"a": 3, "b": 3, "c": 3}
    assert result.evaluator_std["flat"] == 0.0 and result.evaluator_mean["kind"] == 4.0


def test_normalize_ratings_constant_evaluator_with_rounding():
    result = normalize_ratings([("a", "e", 0.1), ("b", "e", 0.1), ("c", "e", 0.1)])
    assert result.degenerate == ("e",)
    np.testing.assert_array_equal(result.z, 0.0)


# --------------------------------------------------------------------------------------------------
# Bradley-Terry
# --------------------------------------------------------------------------------------------------


def test_bradley_terry_improves_with_more_comparisons():
    n_items, seeds = 20, range(5)
    mean_correlation = {}
    for n_comparisons in (50, 500, 5000):
        correlations = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            quality = rng.normal(0.0, 1.0, n_items)
            result = bradley_terry(simulate_comparisons(rng, quality, n_comparisons), items=range(n_items))
            assert result.converged
            correlations.append(spearman(quality, score_vector(result, n_items)))
        mean_correlation[n_comparisons] = float(np.mean(correlations))
    # Measured: 50 -> 0.643, 500 -> 0.884, 5000 -> 0.986.
    assert mean_correlation[50] < mean_correlation[500] < mean_correlation[5000]
    assert mean_correlation[5000] > 0.9


def test_bradley_terry_matches_closed_form_for_two_items():
    # a beat b 3 times out of 4, so the maximum-likelihood log-odds is log 3.
    result = bradley_terry([("a", "b")] * 3 + [("b", "a")], prior=1e-8, tol=1e-12)
    assert result.scores["a"] - result.scores["b"] == pytest.approx(math.log(3), abs=1e-6)
    assert result.scores["a"] + result.scores["b"] == pytest.approx(0.0, abs=1e-12)
    assert result.win_probability("a", "b") == pytest.approx(0.75, abs=1e-6)


def test_bradley_terry_counts_ties_as_half_wins():
    only_ties = bradley_terry([("a", "b", 0.5), ("b", "c", 0.5)])
    assert only_ties.scores == pytest.approx({"a": 0.0, "b": 0.0, "c": 0.0}, abs=1e-9)
    # One win each way carries the same information as two ties.
    split = bradley_terry([("a", "b"), ("b", "a"), ("a", "c"), ("a", "c")])
    tied = bradley_terry([("a", "b", 0.5), ("a", "b", 0.5), ("a", "c"), ("c", "a", 0.0)])
    assert split.scores == pytest.approx(tied.scores, abs=1e-9)


def test_bradley_terry_keeps_undefeated_items_finite():
    result = bradley_terry(
        [("top", "mid")] * 20 + [("mid", "low")] * 20, items=["top", "mid", "low", "unseen"]
    )
    scores = result.scores
    assert all(math.isfinite(s) for s in scores.values())
    assert scores["top"] > scores["mid"] > scores["low"]
    assert list(scores) == ["top", "mid", "low", "unseen"]


def test_bradley_terry_weights_down_weight_a_noisy_evaluator():
    n_items, gains = 20, []
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        quality = rng.normal(0.0, 1.0, n_items)
        careful = simulate_comparisons(rng, quality, 300)
        a = rng.integers(0, n_items, 700)
        b = (a + rng.integers(1, n_items, 700)) % n_items
        noisy = [(int(x), int(y)) for x, y in zip(a, b)]  # coin flips
        comparisons = careful + noisy
        who = ["careful"] * len(careful) + ["noisy"] * len(noisy)
        weights = reliability_weights(who, {"careful": 0.9, "noisy": 0.52})  # -> 1.0 and 0.05
        plain = spearman(quality, score_vector(bradley_terry(comparisons, items=range(n_items)), n_items))
        weighted = bradley_terry(comparisons, weights=weights, items=range(n_items))
        gains.append(spearman(quality, score_vector(weighted, n_items)) - plain)
    # Measured mean gain: 0.11 (0.784 -> 0.897 with the noisy evaluator dropped altogether).
    assert np.mean(gains) > 0.05


def test_rankings_to_pairs_feed_bradley_terry():
    pairs = rankings_to_pairs([["best", ["mid1", "mid2"], "worst"], [("tuple", "id"), "worst"]])
    assert pairs[:4] == [
        ("best", "mid1", 1.0),
        ("best", "mid2", 1.0),
        ("best", "worst", 1.0),
        ("mid1", "mid2", 0.5),
    ]
    assert pairs[-1] == (("tuple", "id"), "worst", 1.0)
    assert len(pairs) == 6 + 1
    scores = bradley_terry(pairs).scores
    assert scores["best"] > scores["mid1"] > scores["worst"]
    assert scores["mid1"] == pytest.approx(scores["mid2"])


def test_reliability_weights_from_dawid_skene_accuracy():
    _, labels = binary_crowd(seed=0)
    accuracy = dawid_skene(labels).accuracy
    weights = reliability_weights(["good0", "adv0", "rand0"], accuracy)
    assert weights[0] > 0.5 and weights[1] == 0.0 and weights[2] < 0.2
    assert reliability_weights(["x"], {}, default=0.75).tolist() == [0.5]
    assert reliability_weights(["x"], {"x": 0.5}, chance=1 / 3)[0] == pytest.approx(0.25)


# --------------------------------------------------------------------------------------------------
# Krippendorff's alpha
# --------------------------------------------------------------------------------------------------


def test_krippendorff_alpha_nominal_hand_example_with_missing_data():
    labels = [
        ("u1", "A", 1), ("u1", "B", 1), ("u1", "C", 2),
        ("u2", "A", 1), ("u2", "B", 1),
        ("u3", "A", 2), ("u3", "B", 2), ("u3", "C", 2),
        ("u4", "A", 2),  # a single value: not pairable, left out
        ("u5", "B", 1), ("u5", "C", 2),
    ]  # fmt: skip
    # Coincidences o_ck = sum over items of (pairs of values c, k from different evaluators) / (m_u - 1):
    #   u1 (1,1,2), m=3: o11 += 2/2 = 1, o12 += 2/2 = 1, o21 += 1
    #   u2 (1,1),   m=2: o11 += 2/1 = 2
    #   u3 (2,2,2), m=3: o22 += 6/2 = 3
    #   u5 (1,2),   m=2: o12 += 1, o21 += 1
    # so o11 = 3, o12 = o21 = 2, o22 = 3; n_1 = 5, n_2 = 5, n = 10.
    # alpha = 1 - (n - 1) * (o12 + o21) / (n_1 n_2 + n_2 n_1) = 1 - 9 * 4 / 50 = 0.28
    assert krippendorff_alpha(labels, "nominal") == pytest.approx(0.28)
    # With two values 1 and 2 every level sees the same differences (delta^2 = 1 or 0).
    assert krippendorff_alpha(labels, "interval") == pytest.approx(0.28)
    assert krippendorff_alpha(labels, "ordinal") == pytest.approx(0.28)


def test_krippendorff_alpha_levels_hand_example():
    labels = [
        ("u1", "A", 1), ("u1", "B", 2),
        ("u2", "A", 2), ("u2", "B", 3),
        ("u3", "A", 1), ("u3", "B", 1),
        ("u4", "A", 3), ("u4", "B", 3), ("u4", "C", 3),
    ]  # fmt: skip
    # Coincidences: o12 = o21 = 1 (u1), o23 = o32 = 1 (u2), o11 = 2 (u3), o33 = 6/2 = 3 (u4).
    # Marginals: n_1 = 2 + 1 = 3, n_2 = 1 + 1 = 2, n_3 = 1 + 3 = 4, n = 9.
    # alpha = 1 - (n - 1) * sum_ck o_ck d_ck / sum_ck n_c n_k d_ck  (sums over ordered pairs)
    # nominal:  d = 1 off the diagonal.
    #   observed 2 * (1 + 1) = 4; expected 2 * (3*2 + 2*4 + 3*4) = 52 -> 1 - 8 * 4 / 52 = 5/13
    # interval: d12 = 1, d23 = 1, d13 = 4.
    #   observed 2 * (1 + 1) = 4; expected 2 * (6*1 + 8*1 + 12*4) = 124 -> 1 - 32 / 124 = 23/31
    # ordinal:  d_ck = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2:
    #   d12 = (5 - 2.5)^2 = 6.25, d23 = (6 - 3)^2 = 9, d13 = (9 - 3.5)^2 = 30.25
    #   observed 2 * (6.25 + 9) = 30.5; expected 2 * (6*6.25 + 8*9 + 12*30.25) = 945
    #   -> 1 - 8 * 30.5 / 945 = 701/945
    assert krippendorff_alpha(labels, "nominal") == pytest.approx(5 / 13)
    assert krippendorff_alpha(labels, "interval") == pytest.approx(23 / 31)
    assert krippendorff_alpha(labels, "ordinal") == pytest.approx(701 / 945)


def test_krippendorff_alpha_published_reliability_data():
    # The 4-coder, 12-unit example of Krippendorff (2011), "Computing Krippendorff's
    # Alpha-Reliability", with published alphas 0.743 (nominal), 0.815 (ordinal), 0.849 (interval).
    rows = {
        "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    }
    labels = [(unit, coder, v) for coder, row in rows.items() for unit, v in enumerate(row) if v is not None]
    assert round(krippendorff_alpha(labels, "nominal"), 3) == 0.743
    assert round(krippendorff_alpha(labels, "ordinal"), 3) == 0.815
    assert round(krippendorff_alpha(labels, "interval"), 3) == 0.849


def test_krippendorff_alpha_perfect_chance_and_systematic_disagreement():
    perfect = [(i, e, i % 3) for i in range(9) for e in "ab"]
    assert krippendorff_alpha(perfect) == 1.0
    assert krippendorff_alpha([(i, e, "same") for i in range(4) for e in "ab"]) == 1.0
    # Values that ignore the item carry no information: alpha is near 0.
    rng = np.random.default_rng(0)
    noise = [(i, e, int(rng.integers(0, 4))) for i in range(2000) for e in "abc"]
    for level in ("nominal", "ordinal", "interval"):
        assert abs(krippendorff_alpha(noise, level)) < 0.03
    # Two evaluators who always give opposite answers disagree more than chance.
    opposite = [(i, "a", i % 2) for i in range(10)] + [(i, "b", 1 - i % 2) for i in range(10)]
    assert krippendorff_alpha(opposite) < 0


def test_krippendorff_alpha_ignores_single_ratings():
    labels = [(i, e, (i + (e == "c")) % 2) for i in range(6) for e in "abc"]
    assert krippendorff_alpha(labels + [("lonely", "a", 0), ("other", "b", 1)]) == pytest.approx(
        krippendorff_alpha(labels)
    )


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: majority_vote([]), r"labels is empty; expected at least one"),
        (
            lambda: dawid_skene([("q", "e", 2)], n_classes=2),
            r"class indices 0\.\.1; got 2 \(item 'q', evaluator 'e'\)",
        ),
        (lambda: majority_vote([("q", "e", 0.5)]), r"integer class indices >= 0; got 0\.5"),
        (lambda: majority_vote([("q", "e", "good")]), r"finite real numbers; got 'good'.*Map each category"),
        (
            lambda: majority_vote([("q", "e")]),
            r"labels\[0\] is \('q', 'e'\); expected an \(item, evaluator, value\)",
        ),
        (
            lambda: majority_vote(np.zeros((4, 2))),
            r"expected an \(item, evaluator, value\) triple.*shape \(N, 3\)",
        ),
        (lambda: majority_vote(np.zeros(3)), r"must be 2-D.*got shape \(3,\)"),
        (lambda: majority_vote([("q", "e", 0)], n_classes=1), r"n_classes must be an integer >= 2; got 1"),
        (lambda: dawid_skene([("q", "e", 0)], smoothing=0), r"smoothing must be a finite number > 0; got 0"),
        (
            lambda: normalize_ratings([("q", "e", float("nan"))]),
            r"ratings must be finite.*Leave missing ratings out",
        ),
        (lambda: bradley_terry([("a", "a")]), r"compares item 'a' with itself"),
        (lambda: bradley_terry([("a", "b", 2)]), r"share 2; expected a number in \[0, 1\]"),
        (lambda: bradley_terry([("a", "b")], weights=[1, 1]), r"expected shape \(1,\), got \(2,\)"),
        (lambda: bradley_terry([("a", "b")], weights=[-1]), r"finite and >= 0"),
        (lambda: bradley_terry([("a", "b")], weights=[0]), r"All comparison weights are 0"),
        (lambda: rankings_to_pairs([["a", "b", "a"]]), r"lists an id more than once"),
        (lambda: rankings_to_pairs(["abc"]), r"expected a sequence of ids"),
        (
            lambda: reliability_weights(["x", "y"], {"x": 0.9}),
            r"have no reliability, e\.g\. \['y'\].*default=",
        ),
        (
            lambda: reliability_weights(["x"], {"x": 1.5}),
            r"Accuracy of 'x' must be a number in \[0, 1\]; got 1\.5",
        ),
        (
            lambda: krippendorff_alpha([("q", "e", 1)], level="nominl"),
            r"got 'nominl'\. Did you mean 'nominal'",
        ),
        (lambda: krippendorff_alpha([("q", "e", 1), ("r", "e", 2)]), r"No item has two or more values"),
        (lambda: krippendorff_alpha([("q", "a", "x"), ("q", "b", "y")], "interval"), r"finite real numbers"),
        (lambda: gold_accuracy([("q", "e", 1)], {"g": 1}), r"None of the 1 labels is on a gold item"),
        (lambda: gold_accuracy([("q", "e", 1)], {}), r"gold must be a non-empty mapping"),
    ],
)
def test_errors_say_what_was_expected(call, message):
    with pytest.raises(ConfigError, match=message):
        call()
