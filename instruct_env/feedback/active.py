"""Active learning: choose which fresh policy outputs to send to people.

:class:`ActiveSelector` takes a pool of candidates (one :class:`~instruct_env.feedback.oracle.FeedbackItem`
per completion, usually several per instruction) and returns at most ``n`` items ready for
:meth:`~instruct_env.feedback.oracle.Oracle.ask`:

1. **Hold-out share.** ``round(random_share * n)`` items are drawn uniformly at random, from
   distinct instructions, with selector ``"holdout"`` and ``metadata["holdout"] = True``: an
   unbiased sample on which the online learner judges candidate reward models. Their
   instructions are not used for the rest.
2. **The rest** by ``strategy``: ``"qbc"`` (query by committee) takes the items on which the
   reward model's heads disagree most, ``"random"`` takes them uniformly (the baseline).

Items are deduplicated per instruction: identical completions of one instruction count once, and
at most ``per_instruction`` items share an instruction (a sample id, or the instruction and context).
Each item records its ``selector`` and ``score`` (the disagreement, for every item when a model is
given), which the store keeps in the query payload.

Disagreement is the standard deviation across the ensemble's heads of what is asked: of
``sigma(r)`` for a one-completion kind (rating, thumbs...), of ``P(a better than b) =
sigma(r_a - r_b)`` for ``pairwise`` (each pair of distinct completions of an instruction is a
candidate pair), and its mean over the pairs for ``ranking`` (one item per instruction with up to
``max_ranked`` completions).

>>> from instruct_env.tasks import Sample
>>> pool = [FeedbackItem.from_sample(Sample(f"s{i}", "t", f"Say {i}."), c) for i in range(5) for c in ("a", "b", "a")]
>>> chosen = ActiveSelector(strategy="random", random_share=0.4, seed=0).select(pool, 5, kind="pairwise")
>>> sorted(item.selector for item in chosen), len({item.sample.id for item in chosen})
(['holdout', 'holdout', 'random', 'random', 'random'], 5)
>>> chosen[0].completions
('a', 'b')
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from instruct_env._validation import check_int
from instruct_env.error import ConfigError
from instruct_env.feedback.items import FeedbackItem
from instruct_env.feedback.kinds import make_kind

__all__ = ["ActiveSelector", "STRATEGIES"]

#: Selection strategies for the non-held-out items.
STRATEGIES = ("qbc", "random")


@dataclass
class _Option:
    group: Any
    completions: tuple[str, ...]
    source: FeedbackItem
    score: float = math.nan


class ActiveSelector:
    """Chooses what to ask people: by ensemble disagreement, with a random hold-out share.

    Args:
        model: A :class:`~instruct_env.feedback.reward_model.RewardModel`, or anything with a
            ``.current`` one (an online learner, read at each call); ``None`` scores nothing
            (then only ``strategy="random"`` makes sense).
        strategy: ``"qbc"`` or ``"random"``.
        random_share: Share of each selection drawn at random as the hold-out, in ``[0, 1]``.
        per_instruction: Most items per instruction.
        max_ranked: Most completions in one ``ranking`` item (2..9).
        formatter: Prompt template of the reward model's texts (``PromptFormatter``; default template).
        seed: Seed of the random draws.
    """

    def __init__(self, model: Any = None, *, strategy: str = "qbc", random_share: float = 0.2,
                 per_instruction: int = 1, max_ranked: int = 4, formatter: Any = None, seed: int | None = 0) -> None:
        if strategy not in STRATEGIES:
            from instruct_env.error import unknown_name

            raise unknown_name("selection strategy", strategy, STRATEGIES)
        if strategy == "qbc" and model is None:
            raise ConfigError("strategy='qbc' needs a reward model (model=...) to measure disagreement; "
                              "pass one, or use strategy='random'.")
        if isinstance(random_share, bool) or not isinstance(random_share, (int, float)) or not 0 <= random_share <= 1:
            raise ConfigError(f"random_share must be a number in [0, 1]; got {random_share!r}.")
        for name, value, low, high in (("per_instruction", per_instruction, 1, 10**9), ("max_ranked", max_ranked, 2, 9)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name} must be an integer in [{low}, {high}]; got {value!r}.")
        self.source, self.strategy = model, strategy
        self.random_share, self.per_instruction, self.max_ranked = float(random_share), per_instruction, max_ranked
        self.formatter = formatter
        self.rng = np.random.default_rng(seed)

    @property
    def name(self) -> str:
        """The selector name recorded with the non-held-out items."""
        return self.strategy

    def __repr__(self) -> str:
        return f"ActiveSelector(strategy={self.strategy!r}, random_share={self.random_share}, " \
               f"per_instruction={self.per_instruction})"

    def select(self, candidates: Sequence[FeedbackItem], n: int, kind: str = "rating", **kind_options: Any
               ) -> list[FeedbackItem]:
        """Choose at most ``n`` items of ``kind`` feedback from ``candidates`` (one completion each).

        Returns fewer than ``n`` when the pool has too few distinct instructions (or pairs).

        Raises:
            ConfigError: a candidate with other than one completion, or ``n < 1``.
        """
        n = check_int("n", n)
        spec = make_kind(kind, **kind_options)
        for i, item in enumerate(candidates):
            if not isinstance(item, FeedbackItem) or len(item.completions) != 1:
                raise ConfigError(
                    f"candidates[{i}] must be a FeedbackItem with exactly one completion (one per policy output); "
                    f"got {item!r:.120}."
                )
        options = self._options(candidates, spec.name, spec.min_completions, spec.max_completions)
        if not options:
            return []
        self._score(options, spec.name)
        groups = list(dict.fromkeys(o.group for o in options))
        n_holdout = min(int(round(self.random_share * n)), len(groups))
        holdout_groups = [groups[i] for i in self.rng.permutation(len(groups))[:n_holdout]]
        by_group: dict[Any, list[_Option]] = {}
        for option in options:
            by_group.setdefault(option.group, []).append(option)
        chosen = [(by_group[g][int(self.rng.integers(len(by_group[g])))], "holdout") for g in holdout_groups]
        rest = [o for o in options if o.group not in set(holdout_groups)]
        order = self.rng.permutation(len(rest))  # random order; qbc re-sorts it by score (ties stay random)
        if self.strategy == "qbc":
            scores = np.array([-np.inf if math.isnan(rest[i].score) else rest[i].score for i in order])
            order = order[np.argsort(-scores, kind="stable")]
        used: dict[Any, int] = {}
        for i in order:
            if len(chosen) >= n:
                break
            option = rest[i]
            if used.get(option.group, 0) < self.per_instruction:
                used[option.group] = used.get(option.group, 0) + 1
                chosen.append((option, self.strategy))
        return [self._item(option, selector) for option, selector in chosen]

    def _options(self, candidates: Sequence[FeedbackItem], kind: str, low: int, high: int) -> list[_Option]:
        grouped: dict[Any, list[FeedbackItem]] = {}
        for item in candidates:
            key = item.sample.id if item.sample is not None else (item.instruction, item.context)
            grouped.setdefault(key, [])
            if all(c.completions != item.completions for c in grouped[key]):  # identical completions count once
                grouped[key].append(item)
        options: list[_Option] = []
        for key, items in grouped.items():
            if high == 1:
                options.extend(_Option(key, it.completions, it) for it in items)
            elif kind == "pairwise":
                options.extend(_Option(key, a.completions + b.completions, a) for a, b in itertools.combinations(items, 2))
            elif len(items) >= low:
                ranked = items[: min(self.max_ranked, high)]
                options.append(_Option(key, tuple(it.completions[0] for it in ranked), ranked[0]))
        return options

    def _score(self, options: list[_Option], kind: str) -> None:
        model = getattr(self.source, "current", self.source)
        if model is None:
            return
        prompt = {id(o): o.source.prompt(self.formatter) for o in options}
        if kind not in ("pairwise", "ranking"):
            _, std = model.predict([(prompt[id(o)], o.completions[0]) for o in options])
            for option, s in zip(options, std):
                option.score = float(s)
            return
        firsts, seconds, owner = [], [], []
        for k, option in enumerate(options):
            for a, b in itertools.combinations(option.completions, 2):
                firsts.append((prompt[id(option)], a))
                seconds.append((prompt[id(option)], b))
                owner.append(k)
        _, std = model.preference(firsts, seconds)
        totals = np.bincount(owner, weights=std, minlength=len(options))
        counts = np.bincount(owner, minlength=len(options))
        for option, total, count in zip(options, totals, counts):
            option.score = float(total / count)

    @staticmethod
    def _item(option: _Option, selector: str) -> FeedbackItem:
        source = option.source
        metadata = {**dict(source.metadata), "holdout": selector == "holdout"}
        return FeedbackItem(source.instruction, option.completions, source.context, sample=source.sample,
                            selector=selector, score=None if math.isnan(option.score) else option.score,
                            metadata=metadata)
