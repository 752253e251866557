"""The reward model learns pairs, ratings and thumbs on synthetic features; LM features are frozen and cached."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from instruct_env.error import ConfigError
from instruct_env.feedback.reward_model import FeatureExtractor, Label, RewardModel, RewardModelConfig

DIM = 6


class Synthetic:
    """Features of ``(prompt, "i")`` = row ``i`` of a fixed Gaussian matrix; true quality = a fixed direction."""

    def __init__(self, n: int = 600, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((n, DIM)).astype(np.float32)
        self.w = rng.standard_normal(DIM)
        self.quality = self.x @ self.w
        self.calls = 0

    def __call__(self, pairs):
        self.calls += 1
        return self.x[[int(c) for _, c in pairs]]

    @staticmethod
    def pair(i: int):
        return ("prompt", str(i))


def pair_labels(data: Synthetic, indices, n: int, rng, noise: float = 0.5, evaluators: int = 3):
    labels = []
    for _ in range(n):
        a, b = rng.choice(indices, 2, replace=False)
        gap = data.quality[a] - data.quality[b] + noise * rng.standard_normal()
        labels.append(Label("pairwise", (data.pair(a), data.pair(b)), float(gap > 0),
                            evaluator=f"e{rng.integers(evaluators)}"))
    return labels


def split(n: int = 600):
    return np.arange(0, n // 2), np.arange(n // 2, n)


def test_learns_pairwise_preferences():
    torch.set_num_threads(1)
    data, rng = Synthetic(), np.random.default_rng(1)
    train_idx, test_idx = split()
    train, test = pair_labels(data, train_idx, 400, rng), pair_labels(data, test_idx, 400, rng, noise=0.0)
    model = RewardModel(data, RewardModelConfig(n_heads=4, hidden=16, epochs=200, seed=0))
    assert model.accuracy(test).overall < 0.8  # untrained heads are not good
    losses = model.fit(train)
    assert set(losses) == {"pairwise_loss"}
    accuracy = model.accuracy(test)
    assert accuracy.overall >= 0.88, accuracy
    assert accuracy.counts == {"pairwise": 400}
    mean, std = model.predict([data.pair(i) for i in test_idx])
    assert mean.shape == std.shape == (len(test_idx),) and np.all((0 <= mean) & (mean <= 1)) and np.all(std >= 0)
    assert np.corrcoef(mean, data.quality[test_idx])[0, 1] > 0.8


def test_learns_ratings_by_regression():
    torch.set_num_threads(1)
    data, rng = Synthetic(seed=2), np.random.default_rng(3)
    train_idx, test_idx = split()

    def rating_labels(indices, noise):
        scores = data.quality[indices] / data.quality.std() + noise * rng.standard_normal(len(indices))
        ratings = np.clip(np.round(3 + scores), 1, 5)
        return [Label("rating", (data.pair(i),), (r - 1) / 4) for i, r in zip(indices, ratings)]

    model = RewardModel(data, RewardModelConfig(n_heads=4, hidden=16, epochs=300, seed=0))
    losses = model.fit(rating_labels(train_idx, 0.3))
    assert set(losses) == {"rating_loss"}
    accuracy = model.accuracy(rating_labels(test_idx, 0.0))
    assert accuracy.per_kind["rating"] >= 0.85, accuracy


def test_learns_thumbs_with_a_linear_ensemble():
    torch.set_num_threads(1)
    data, rng = Synthetic(seed=4), np.random.default_rng(5)
    train_idx, test_idx = split()

    def thumbs(indices, noise):
        up = data.quality[indices] + noise * rng.standard_normal(len(indices)) > 0
        return [Label("thumbs", (data.pair(i),), float(u)) for i, u in zip(indices, up)]

    model = RewardModel(data, RewardModelConfig(n_heads=3, hidden=0, epochs=300, seed=0))
    model.fit(thumbs(train_idx, 0.5))
    assert model.accuracy(thumbs(test_idx, 0.0)).per_kind["thumbs"] >= 0.9


def test_mixed_kinds_share_one_scale_and_ties_count():
    torch.set_num_threads(1)
    data, rng = Synthetic(seed=6), np.random.default_rng(7)
    train_idx, test_idx = split()
    labels = pair_labels(data, train_idx, 300, rng)
    labels += [Label("thumbs", (data.pair(i),), float(data.quality[i] > 0)) for i in train_idx[:100]]
    labels += [Label("pairwise", (data.pair(i), data.pair(i + 1)), 0.5) for i in train_idx[:20:2]]  # ties
    model = RewardModel(data, RewardModelConfig(epochs=200, seed=0))
    assert set(model.fit(labels)) == {"pairwise_loss", "thumbs_loss"}
    test = pair_labels(data, test_idx, 300, rng, noise=0.0)
    test += [Label("thumbs", (data.pair(i),), float(data.quality[i] > 0)) for i in test_idx]
    accuracy = model.accuracy(test)
    assert accuracy.per_kind["pairwise"] >= 0.85 and accuracy.per_kind["thumbs"] >= 0.8, accuracy


def test_heads_disagree_less_with_more_labels():
    torch.set_num_threads(1)
    data, rng = Synthetic(seed=8), np.random.default_rng(9)
    test = [data.pair(i) for i in range(300, 600)]
    spread = []
    for n in (30, 600):
        model = RewardModel(data, RewardModelConfig(n_heads=6, epochs=200, seed=0))
        model.fit(pair_labels(data, np.arange(300), n, rng))
        spread.append(model.predict(test)[1].mean())
    assert spread[1] < 0.7 * spread[0], spread


def test_warm_start_clone_save_and_load(tmp_path):
    torch.set_num_threads(1)
    data, rng = Synthetic(seed=10), np.random.default_rng(11)
    model = RewardModel(data, RewardModelConfig(n_heads=2, epochs=100, warm_epochs=20, seed=0))
    first = pair_labels(data, np.arange(300), 100, rng)
    model.fit(first)
    mean_before = model.predict([data.pair(i) for i in range(10)])[0]
    clone = model.clone()
    clone.fit(first + pair_labels(data, np.arange(300), 100, rng))  # warm: continues from the heads
    assert clone.n_fits == 2 and clone.n_labels == 200
    assert np.allclose(model.predict([data.pair(i) for i in range(10)])[0], mean_before)  # the original is untouched
    assert torch.equal(clone.feature_mean, model.feature_mean)  # normalisation fixed after the first fit
    clone.version = 3
    path = clone.save(tmp_path / "rm.pt")
    loaded = RewardModel.load(path, data)
    assert loaded.version == 3 and loaded.n_labels == 200
    pairs = [data.pair(i) for i in range(300, 320)]
    assert np.allclose(loaded.predict(pairs)[0], clone.predict(pairs)[0])
    copy = pickle.loads(pickle.dumps(clone))
    assert np.allclose(copy.predict(pairs)[1], clone.predict(pairs)[1])
    with pytest.raises(ConfigError, match="No reward model at"):
        RewardModel.load(tmp_path / "missing.pt", data)


def test_labels_and_config_are_checked():
    with pytest.raises(ConfigError, match="A 'pairwise' label needs 2"):
        Label("pairwise", (("p", "c"),), 1.0)
    with pytest.raises(ConfigError, match=r"target must be a number in \[0, 1\]"):
        Label("rating", (("p", "c"),), 4.0)
    with pytest.raises(ConfigError, match="Label kind must be one of"):
        Label("ranking", (("p", "c"),), 1.0)
    with pytest.raises(ConfigError, match="n_heads must be an integer >= 1"):
        RewardModelConfig(n_heads=0)
    with pytest.raises(ConfigError, match="fit\\(\\) got no labels"):
        RewardModel(Synthetic()).fit([])


def test_feature_extractor_is_frozen_cached_and_padding_free():
    from rl_utils import tiny_policy, tiny_tokenizer

    torch.set_num_threads(1)
    tokenizer = tiny_tokenizer()
    policy = tiny_policy(tokenizer, seed=0)
    extract = FeatureExtractor(policy, tokenizer, batch_size=4)
    assert extract.dim == 32 + 3
    pairs = [("Say yes .", "yes"), ("Say no .", "no no no no no"), ("Say cat .", "")]
    together = extract(pairs)
    assert together.shape == (3, extract.dim) and together.dtype == np.float32
    alone = np.stack([FeatureExtractor(policy, tokenizer)([p])[0] for p in pairs])
    assert np.allclose(together, alone, atol=1e-5)  # left padding does not change a text's features
    assert len(extract._cache) == 3
    answer = FeatureExtractor(policy, tokenizer, pooling="completion", logprob_features=False)
    batched = answer(pairs)
    assert np.allclose(batched, np.stack([answer._compute([p])[0] for p in pairs]), atol=1e-5)
    assert not np.allclose(batched, together[:, :32])
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(1.0)  # training the policy afterwards...
    assert np.allclose(FeatureExtractor(policy, tokenizer, copy=True)(pairs[:1]), together[:1]) is False
    assert np.allclose(extract(pairs), together)  # ...changes nothing for the frozen copy: not from the cache,
    assert np.allclose(extract._compute(pairs), together, atol=1e-5)  # nor computed afresh
    shared = FeatureExtractor(policy, tokenizer, batch_size=4, copy=False)  # the check can fail: a live model moves
    assert not np.allclose(shared._compute(pairs), together, atol=1e-5)
    last = FeatureExtractor(policy, tokenizer, pooling="last", logprob_features=False)
    assert last(pairs).shape == (3, 32)
    assert pickle.loads(pickle.dumps(extract))(pairs[:1]).shape == (1, extract.dim)
    with pytest.raises(ConfigError, match="pooling must be one of 'mean', 'completion', 'last'"):
        FeatureExtractor(policy, tokenizer, pooling="max")
