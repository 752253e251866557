"""A reward model learned from feedback: a small ensemble of heads over frozen language-model features.

Every judged text is a ``(prompt, completion)`` pair. A *featurizer* turns pairs into vectors;
the standard one, :class:`FeatureExtractor`, runs a frozen copy of the policy's language model
over ``prompt + completion`` and keeps the mean (or last-token) hidden state, plus, by default,
three statistics of the completion's likelihood under that model. Features are cached per pair,
so refitting never runs the language model again on a text it has seen.

:class:`RewardModel` holds ``n_heads`` small heads (an MLP with one hidden layer, or linear). Each
head maps a feature vector to a quality logit ``r``; each is trained on its own bootstrap resample
of the raw per-evaluator labels (no aggregation across evaluators first), with one loss per kind:

=============  =====================================================================================
label kind     loss of one label (``sigma`` is the logistic function)
=============  =====================================================================================
``pairwise``   Bradley-Terry: ``BCE(sigma(r_a - r_b), t)``, ``t = 1`` (a better), 0 (b better),
               0.5 (tie)
``thumbs``     binary cross-entropy: ``BCE(sigma(r), t)``, ``t = 1`` up, 0 down
``rating``     regression: ``(sigma(r) - t)^2`` with the rating rescaled to ``t`` in ``[0, 1]``
=============  =====================================================================================

so one logit scale serves all three kinds. :meth:`RewardModel.predict` returns the ensemble mean of
``sigma(r)`` (the reward, in ``[0, 1]``) and its standard deviation across heads (the heads'
disagreement, used by query-by-committee active learning). Models carry an integer ``version``
and save to one small file (the heads only; the featurizer is given again when loading).

Example (synthetic 2-d features whose first coordinate is the quality):

    >>> feats = {("p", str(i)): np.array([i / 10, 0.3], dtype=np.float32) for i in range(10)}
    >>> featurize = lambda pairs: np.stack([feats[p] for p in pairs])
    >>> labels = [Label("pairwise", (("p", str(i)), ("p", str(j))), float(i > j))
    ...           for i in range(10) for j in range(10) if i != j]
    >>> model = RewardModel(featurize, RewardModelConfig(n_heads=2, epochs=100, seed=0))
    >>> _ = model.fit(labels)
    >>> mean, std = model.predict([("p", "9"), ("p", "0")])
    >>> bool(mean[0] > mean[1]), model.accuracy(labels).overall
    (True, 1.0)
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import threading
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from instruct_env.error import ConfigError
from instruct_env.feedback.reward_model_config import Pooling, RewardModelConfig

__all__ = [
    "Pair",
    "Label",
    "LABEL_KINDS",
    "RewardModelConfig",
    "RewardModel",
    "Accuracy",
    "FeatureExtractor",
    "POOLINGS",
]

#: ``(prompt text, completion text)``: what a reward model scores.
Pair = tuple[str, str]
Featurizer = Callable[[Sequence[Pair]], np.ndarray]

#: How hidden states become one vector: all tokens, the completion's tokens, or the last token.
POOLINGS: tuple[str, ...] = typing.get_args(Pooling)

#: Label kinds the reward model learns from, and how many pairs each label holds.
LABEL_KINDS = {"pairwise": 2, "rating": 1, "thumbs": 1}
_FORMAT = 1


@dataclass(frozen=True)
class Label:
    """One evaluator's judgement, ready for training.

    Attributes:
        kind: ``"pairwise"``, ``"rating"`` or ``"thumbs"``.
        items: The judged ``(prompt, completion)`` pairs: two for ``pairwise`` (first, second),
            one otherwise.
        target: ``pairwise``: probability that the first is better (1, 0, or 0.5 for a tie);
            ``thumbs``: 1 up, 0 down; ``rating``: the rating rescaled to ``[0, 1]``.
        evaluator: Who gave it (labels are kept per evaluator).
        query_id: The store query it answers, if any.
        weight: Weight in the loss.
    """

    kind: str
    items: tuple[Pair, ...]
    target: float
    evaluator: str = ""
    query_id: int | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in LABEL_KINDS:
            raise ConfigError(f"Label kind must be one of {sorted(LABEL_KINDS)}; got {self.kind!r}.")
        items = tuple(tuple(p) for p in self.items)
        if len(items) != LABEL_KINDS[self.kind] or not all(len(p) == 2 and all(isinstance(t, str) for t in p)
                                                         for p in items):
            raise ConfigError(
                f"A {self.kind!r} label needs {LABEL_KINDS[self.kind]} (prompt, completion) pair(s) of strings; "
                f"got {self.items!r:.120}."
            )
        object.__setattr__(self, "items", items)
        if not isinstance(self.target, (int, float)) or not 0.0 <= self.target <= 1.0:
            raise ConfigError(f"Label target must be a number in [0, 1]; got {self.target!r}.")
        if not isinstance(self.weight, (int, float)) or not self.weight > 0:
            raise ConfigError(f"Label weight must be > 0; got {self.weight!r}.")


@dataclass(frozen=True)
class Accuracy:
    """How often a reward model agrees with labels.

    Attributes:
        overall: Mean of the per-kind accuracies (``nan`` with no usable label).
        per_kind: ``pairwise``: the higher-scored completion is the preferred one (ties left
            out); ``thumbs``: ``sigma(r) >= 0.5`` exactly for thumbs up; ``rating``: for pairs of
            rating labels with different ratings, the higher-rated one scores higher.
        counts: Labels used per kind.
    """

    overall: float
    per_kind: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


class _Heads(nn.Module):
    """``n`` independent heads evaluated together: features ``(U, D)`` -> logits ``(n, U)``."""

    def __init__(self, n: int, dim: int, hidden: int, generator: torch.Generator) -> None:
        super().__init__()
        self.hidden = hidden
        width = hidden if hidden else 1
        bound_in = 1.0 / math.sqrt(dim)
        self.w1 = nn.Parameter((torch.rand(n, dim, width, generator=generator) * 2 - 1) * bound_in)
        self.b1 = nn.Parameter(torch.zeros(n, width))
        if hidden:
            bound_out = 1.0 / math.sqrt(hidden)
            self.w2 = nn.Parameter((torch.rand(n, hidden, generator=generator) * 2 - 1) * bound_out)
            self.b2 = nn.Parameter(torch.zeros(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.einsum("ud,ndk->nuk", x, self.w1) + self.b1[:, None, :]  # (n, U, k)
        if not self.hidden:
            return z.squeeze(-1)  # (n, U)
        return torch.einsum("nuk,nk->nu", torch.tanh(z), self.w2) + self.b2[:, None]  # (n, U)


class RewardModel:
    """An ensemble of heads over frozen features, trained on per-evaluator labels.

    Args:
        featurizer: ``featurizer(pairs) -> (N, D) array``: a :class:`FeatureExtractor`, or any
            function of ``(prompt, completion)`` pairs (e.g. a lookup of synthetic features).
        config: A :class:`RewardModelConfig`.

    Attributes:
        version: 0 until trained; whoever promotes a model (e.g. the online learner) numbers it.
        n_labels: Labels of the last fit.
    """

    def __init__(self, featurizer: Featurizer, config: RewardModelConfig | None = None) -> None:
        if not callable(featurizer):
            raise ConfigError(f"featurizer must be callable (pairs -> array); got {type(featurizer).__name__}.")
        self.featurizer = featurizer
        self.config = config if config is not None else RewardModelConfig()
        self.version = 0
        self.n_labels = 0
        self.n_fits = 0
        self.heads: _Heads | None = None
        self.feature_mean: torch.Tensor | None = None
        self.feature_std: torch.Tensor | None = None

    def __repr__(self) -> str:
        c = self.config
        return f"RewardModel(version={self.version}, n_heads={c.n_heads}, hidden={c.hidden}, n_labels={self.n_labels})"

    @property
    def trained(self) -> bool:
        """Whether :meth:`fit` has run."""
        return self.n_fits > 0

    # -- features -----------------------------------------------------------------------------

    def features(self, pairs: Sequence[Pair]) -> torch.Tensor:
        """Normalised features ``(N, D)`` of ``pairs`` (normalised with the first fit's statistics)."""
        pairs = [(prompt, completion) for prompt, completion in pairs]
        x = torch.as_tensor(np.asarray(self.featurizer(pairs), dtype=np.float32))
        if x.ndim != 2 or x.shape[0] != len(pairs):
            raise ConfigError(f"The featurizer returned shape {tuple(x.shape)} for {len(pairs)} pairs; expected (N, D).")
        self._build(x.shape[1])
        if self.feature_mean is not None and self.feature_std is not None:
            x = (x - self.feature_mean) / self.feature_std
        return x

    def _build(self, dim: int) -> _Heads:
        """The heads, built for ``dim`` features on first use."""
        if self.heads is None:
            generator = torch.Generator().manual_seed(self.config.seed)
            self.heads = _Heads(self.config.n_heads, dim, self.config.hidden, generator)
        elif self.heads.w1.shape[1] != dim:
            raise ConfigError(f"The featurizer gives {dim} features, but the heads were built for {self.heads.w1.shape[1]}.")
        return self.heads

    # -- prediction ---------------------------------------------------------------------------

    @torch.no_grad()
    def logits(self, pairs: Sequence[Pair]) -> np.ndarray:
        """``(n_heads, N)`` quality logits of every head."""
        if not len(pairs):
            return np.zeros((self.config.n_heads, 0))
        x = self.features(pairs)
        heads = self._build(x.shape[1])
        return heads(x).numpy().astype(np.float64)

    def predict(self, pairs: Sequence[Pair]) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` over heads of ``sigma(r)`` for each pair: the reward and the disagreement."""
        probs = 1.0 / (1.0 + np.exp(-self.logits(pairs)))  # (n_heads, N)
        return probs.mean(0), probs.std(0)

    def preference(self, first: Sequence[Pair], second: Sequence[Pair]) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` over heads of ``P(first better) = sigma(r_first - r_second)``."""
        n = len(first)
        r = self.logits(list(first) + list(second))
        probs = 1.0 / (1.0 + np.exp(-(r[:, :n] - r[:, n:])))
        return probs.mean(0), probs.std(0)

    # -- training -----------------------------------------------------------------------------

    def fit(self, labels: Sequence[Label], *, warm_start: bool = True, epochs: int | None = None) -> dict[str, float]:
        """Train the heads on ``labels`` (in place); returns the final losses.

        Args:
            labels: The training labels (raw, one per evaluator and query).
            warm_start: Continue from the current heads (after the first fit) instead of new ones.
            epochs: Adam steps (default: ``config.warm_epochs`` when warm-starting, else ``config.epochs``).

        Raises:
            ConfigError: no labels, or a label that is not a :class:`Label`.
        """
        labels = list(labels)
        if not labels:
            raise ConfigError("fit() got no labels; collect feedback first.")
        for i, label in enumerate(labels):
            if not isinstance(label, Label):
                raise ConfigError(f"labels[{i}] is a {type(label).__name__}; expected a Label.")
        cfg = self.config
        warm = warm_start and self.trained
        steps = epochs if epochs is not None else (cfg.warm_epochs or cfg.epochs) if warm else cfg.epochs
        index: dict[Pair, int] = {}
        for label in labels:
            for pair in label.items:
                index.setdefault(pair, len(index))
        pairs = list(index)
        raw = torch.as_tensor(np.asarray(self.featurizer(pairs), dtype=np.float32))  # (U, D)
        if not warm or self.feature_mean is None or self.feature_std is None:
            # Statistics of the first fit stay fixed, so warm-started heads see inputs on the same scale.
            self.heads = None
            self.feature_mean = raw.mean(0)
            self.feature_std = raw.std(0).clamp_min(1e-4) if len(pairs) > 1 else torch.ones(raw.shape[1])
        heads = self._build(raw.shape[1])
        x = (raw - self.feature_mean) / self.feature_std
        batch = _LabelBatch(labels, index)
        generator = np.random.default_rng([cfg.seed, self.n_fits])
        counts = batch.bootstrap(cfg.n_heads, cfg.bootstrap, generator)  # (n_heads, L)
        weights = torch.as_tensor(counts * batch.weight[None, :], dtype=torch.float32)
        weights = weights / weights.sum(1, keepdim=True).clamp_min(1e-9)
        optimizer = torch.optim.AdamW(heads.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        losses: dict[str, torch.Tensor] = {}
        for _ in range(steps):
            r = heads(x)  # (n_heads, U)
            per_label, losses = batch.losses(r)  # (n_heads, L)
            loss = (weights * per_label).sum()  # a weighted mean per head, summed over independent heads
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        self.n_labels = len(labels)
        self.n_fits += 1
        return {k: float(v) for k, v in losses.items()}

    # -- evaluation ---------------------------------------------------------------------------

    def accuracy(self, labels: Sequence[Label], max_rating_pairs: int = 200_000) -> Accuracy:
        """Agreement of the ensemble's mean logit with ``labels`` (see :class:`Accuracy`)."""
        labels = list(labels)
        if not labels:
            return Accuracy(math.nan)
        index: dict[Pair, int] = {}
        for label in labels:
            for pair in label.items:
                index.setdefault(pair, len(index))
        r = self.logits(list(index)).mean(0)  # (U,) ensemble mean logit
        per_kind: dict[str, float] = {}
        counts: dict[str, int] = {}
        pairs = [(index[lb.items[0]], index[lb.items[1]], lb.target) for lb in labels
                 if lb.kind == "pairwise" and lb.target != 0.5]
        if pairs:
            a, b, t = (np.array(v) for v in zip(*pairs))
            gap = r[a] - r[b]
            per_kind["pairwise"] = float(np.mean(np.where(gap == 0, 0.5, (gap > 0) == (t > 0.5))))
            counts["pairwise"] = len(pairs)
        thumbs = [(index[lb.items[0]], lb.target) for lb in labels if lb.kind == "thumbs"]
        if thumbs:
            i, t = (np.array(v) for v in zip(*thumbs))
            per_kind["thumbs"] = float(np.mean((r[i] >= 0) == (t >= 0.5)))
            counts["thumbs"] = len(thumbs)
        ratings = [(index[lb.items[0]], lb.target) for lb in labels if lb.kind == "rating"]
        if len(ratings) > 1:
            i, t = (np.array(v) for v in zip(*ratings))
            concordance = _concordance(r[i], t, max_rating_pairs)
            if not math.isnan(concordance):
                per_kind["rating"] = concordance
                counts["rating"] = len(ratings)
        overall = float(np.mean(list(per_kind.values()))) if per_kind else math.nan
        return Accuracy(overall, per_kind, counts)

    # -- copies and files ---------------------------------------------------------------------

    def clone(self) -> RewardModel:
        """A copy with its own heads (sharing the featurizer)."""
        other = copy.copy(self)
        other.heads = copy.deepcopy(self.heads)
        other.config = dataclasses.replace(self.config)
        return other

    def state(self) -> dict[str, Any]:
        """Everything but the featurizer, as tensors and plain values."""
        return {
            "format": _FORMAT,
            "config": dataclasses.asdict(self.config),
            "version": self.version,
            "n_labels": self.n_labels,
            "n_fits": self.n_fits,
            "dim": None if self.heads is None else int(self.heads.w1.shape[1]),
            "heads": None if self.heads is None else {k: v.detach().clone() for k, v in self.heads.state_dict().items()},
            "feature_mean": self.feature_mean,
            "feature_std": self.feature_std,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the heads, normalisation, config and version to ``path`` (atomically)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def from_state(cls, state: dict[str, Any], featurizer: Featurizer) -> RewardModel:
        """Rebuild a model from :meth:`state` output, scoring with ``featurizer``."""
        if state.get("format") != _FORMAT:
            raise ConfigError(f"Unknown reward-model file format {state.get('format')!r}; expected {_FORMAT}.")
        model = cls(featurizer, RewardModelConfig(**state["config"]))
        model.version, model.n_labels, model.n_fits = state["version"], state["n_labels"], state["n_fits"]
        model.feature_mean, model.feature_std = state["feature_mean"], state["feature_std"]
        if state["heads"] is not None:
            model._build(state["dim"]).load_state_dict(state["heads"])
        return model

    @classmethod
    def load(cls, path: str | os.PathLike[str], featurizer: Featurizer) -> RewardModel:
        """Read a model written by :meth:`save`; ``featurizer`` must give the features it was trained on."""
        if not Path(path).exists():
            raise ConfigError(f"No reward model at {str(path)!r}.")
        return cls.from_state(torch.load(path, map_location="cpu", weights_only=True), featurizer)


class _LabelBatch:
    """Labels as index tensors into the unique pairs, grouped by kind."""

    def __init__(self, labels: Sequence[Label], index: dict[Pair, int]) -> None:
        self.n = len(labels)
        self.weight = np.array([lb.weight for lb in labels], dtype=np.float64)
        self.groups: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for kind in LABEL_KINDS:
            rows = [(n, lb) for n, lb in enumerate(labels) if lb.kind == kind]
            if not rows:
                continue
            position = torch.tensor([n for n, _ in rows])
            first = torch.tensor([index[lb.items[0]] for _, lb in rows])
            second = torch.tensor([index[lb.items[-1]] for _, lb in rows])
            target = torch.tensor([lb.target for _, lb in rows], dtype=torch.float32)
            self.groups[kind] = (position, first, second, target)

    def bootstrap(self, n_heads: int, resample: bool, rng: np.random.Generator) -> np.ndarray:
        """``(n_heads, L)`` multiplicity of each label in each head's resample."""
        if not resample:
            return np.ones((n_heads, self.n))
        return np.stack([np.bincount(rng.integers(self.n, size=self.n), minlength=self.n) for _ in range(n_heads)])

    def losses(self, r: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-label losses ``(n_heads, L)`` from the logits ``r`` ``(n_heads, U)``, and each kind's mean."""
        per_label = r.new_zeros(r.shape[0], self.n)
        means = {}
        for kind, (position, first, second, target) in self.groups.items():
            t = target.expand(r.shape[0], -1)  # (n_heads, k)
            if kind == "pairwise":  # Bradley-Terry: P(first better) = sigma(r_first - r_second)
                loss = F.binary_cross_entropy_with_logits(r[:, first] - r[:, second], t, reduction="none")
            elif kind == "thumbs":
                loss = F.binary_cross_entropy_with_logits(r[:, first], t, reduction="none")
            else:  # rating: regression of sigma(r) on the rescaled rating
                loss = (torch.sigmoid(r[:, first]) - t) ** 2
            per_label[:, position] = loss
            means[f"{kind}_loss"] = loss.detach().mean()
        return per_label, means


def _concordance(score: np.ndarray, target: np.ndarray, max_pairs: int) -> float:
    """Fraction of pairs with different targets that ``score`` orders like ``target`` (ties: 1/2)."""
    n = len(score)
    if n * (n - 1) // 2 > max_pairs:  # subsample pairs deterministically
        rng = np.random.default_rng(0)
        i, j = rng.integers(n, size=max_pairs), rng.integers(n, size=max_pairs)
    else:
        i, j = np.triu_indices(n, 1)
    keep = target[i] != target[j]
    if not keep.any():
        return math.nan
    i, j = i[keep], j[keep]
    ds, dt = score[i] - score[j], target[i] - target[j]
    return float(np.mean(np.where(ds == 0, 0.5, np.sign(ds) == np.sign(dt))))


# --------------------------------------------------------------------------------------------------
# Frozen language-model features
# --------------------------------------------------------------------------------------------------


class FeatureExtractor:
    """Frozen features of ``prompt + completion`` from a causal language model, cached per pair.

    The text is tokenised as ``prompt`` then ``completion`` followed by EOS, cut on the left to
    ``max_tokens``. Features: the last layer's hidden state, averaged over all tokens
    (``pooling="mean"``), over the completion's tokens only (``"completion"``, EOS included; each
    state still sees the prompt before it) or at the last token (``"last"``); with ``logprob_features`` also the
    completion tokens' mean and minimum log-probability under the model and ``log(1 + number of
    completion tokens)`` (3 more numbers, which the reward model learns to weigh like the rest).

    The model is frozen: by default a deep copy is taken at construction (so training the
    policy afterwards changes nothing here, and cached features stay valid); ``copy=False`` uses
    the given model as is, for a model nobody trains (e.g. the policy's frozen reference).

    Features are computed under a lock, so one extractor can serve the training thread and an
    online learner's thread. Pickling keeps the model's class, config and weights (not the
    cache) and rebuilds it on the CPU.

    Args:
        model: A Hugging Face causal LM, or an :class:`~agents.common.model.ActorCritic` (its ``lm``).
        tokenizer: Its tokenizer (needs an EOS token).
        pooling: ``"mean"``, ``"completion"`` or ``"last"``.
        logprob_features: Append the completion's likelihood statistics.
        max_tokens: Longest tokenised text.
        batch_size: Texts per forward pass.
        copy: Deep-copy (freeze) the model.
        cache_size: Pairs kept in the cache (it is emptied when full).
    """

    def __init__(self, model: Any, tokenizer: Any, *, pooling: str = "mean", logprob_features: bool = True,
                 max_tokens: int = 256, batch_size: int = 32, copy: bool = True, cache_size: int = 200_000) -> None:
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(map(repr, POOLINGS))}; got {pooling!r}.")
        if tokenizer.eos_token_id is None:
            raise ConfigError("The tokenizer has no eos_token_id; the completion's end could not be marked.")
        for name, value in (("max_tokens", max_tokens), ("batch_size", batch_size), ("cache_size", cache_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ConfigError(f"{name} must be an integer >= 2; got {value!r}.")
        lm = getattr(model, "lm", model) if hasattr(model, "value_head") else model
        if copy:
            import copy as copy_module

            lm = copy_module.deepcopy(lm)
        lm.requires_grad_(False)
        lm.eval()
        self.lm, self.tokenizer = lm, tokenizer
        self.pooling, self.logprob_features = pooling, logprob_features
        self.max_tokens, self.batch_size, self.cache_size = max_tokens, batch_size, cache_size
        config = lm.config
        self.hidden_size = int(getattr(config, "hidden_size", None) or config.n_embd)
        self._cache: dict[Pair, np.ndarray] = {}
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        """Number of features per pair."""
        return self.hidden_size + (3 if self.logprob_features else 0)

    def __repr__(self) -> str:
        return (f"FeatureExtractor({type(self.lm).__name__}, pooling={self.pooling!r}, "
                f"logprob_features={self.logprob_features}, dim={self.dim})")

    def __getstate__(self) -> dict[str, Any]:
        # After a forward pass, transformers models hold hooks that do not pickle: keep the class,
        # config and weights, and rebuild the model when unpickled.
        state = self.__dict__.copy()
        state["_cache"] = {}
        del state["_lock"]
        lm = state.pop("lm")
        state["_lm"] = (type(lm), lm.config, {k: v.detach().cpu() for k, v in lm.state_dict().items()})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        cls, config, weights = state.pop("_lm")
        lm = cls(config)
        lm.load_state_dict(weights)
        lm.requires_grad_(False)
        lm.eval()
        self.__dict__.update(state)
        self.lm = lm
        self._lock = threading.Lock()

    def __call__(self, pairs: Sequence[Pair]) -> np.ndarray:
        """``(N, dim)`` float32 features of ``pairs``."""
        pairs = [(prompt, completion) for prompt, completion in pairs]
        with self._lock:
            missing = list(dict.fromkeys(p for p in pairs if p not in self._cache))
            if missing:
                if len(self._cache) + len(missing) > self.cache_size:
                    self._cache.clear()
                for start in range(0, len(missing), self.batch_size):
                    chunk = missing[start:start + self.batch_size]
                    for pair, feats in zip(chunk, self._compute(chunk)):
                        self._cache[pair] = feats
            out = np.stack([self._cache[p] for p in pairs]) if pairs else np.zeros((0, self.dim), np.float32)
        return out

    def _encode(self, prompt: str, completion: str) -> tuple[list[int], int]:
        """Token ids of prompt + completion + EOS (cut on the left) and the completion's length."""
        tok = self.tokenizer
        p = list(tok.encode(prompt, add_special_tokens=False))
        c = list(tok.encode(completion, add_special_tokens=False))[: self.max_tokens - 2] + [tok.eos_token_id]
        ids = (p + c)[-self.max_tokens:]
        return ids, len(c)

    @torch.no_grad()
    def _compute(self, pairs: list[Pair]) -> list[np.ndarray]:
        encoded = [self._encode(p, c) for p, c in pairs]
        device = next(self.lm.parameters()).device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        width = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)  # (B, W), left-padded
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, (ids, _) in enumerate(encoded):
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            mask[row, width - len(ids):] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.lm(input_ids=input_ids, attention_mask=mask, position_ids=positions, output_hidden_states=True,
                      use_cache=False)
        hidden = out.hidden_states[-1].float()  # (B, W, H)
        if self.pooling == "mean":
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (B, H)
        elif self.pooling == "completion":
            columns = torch.arange(width, device=device)[None, :]  # (1, W)
            n = torch.tensor([n_completion for _, n_completion in encoded], device=device)[:, None]  # (B, 1)
            in_completion = (columns >= width - n).float()  # (B, W): the completion's tokens, EOS included
            pooled = (hidden * in_completion[..., None]).sum(1) / n  # (B, H)
        else:
            pooled = hidden[:, -1]  # (B, H): every row ends at the last column
        feats = [pooled]
        if self.logprob_features:
            logp = torch.log_softmax(out.logits[:, :-1].float(), -1)  # (B, W-1, V): predicts column t+1
            token_logp = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (B, W-1)
            stats = []
            for row, (_, n_completion) in enumerate(encoded):
                lp = token_logp[row, width - 1 - n_completion:]  # the completion's tokens (EOS included)
                stats.append(torch.stack([lp.mean(), lp.min(), torch.tensor(math.log1p(n_completion), device=device)]))
            feats.append(torch.stack(stats))
        return list(torch.cat(feats, 1).cpu().numpy().astype(np.float32))
