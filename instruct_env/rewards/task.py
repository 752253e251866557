"""The ``task`` reward: each sample's own verifier scores its completion."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from instruct_env.error import RewardError
from instruct_env.rewards.base import Reward
from instruct_env.tasks.sample import Sample

__all__ = ["TaskReward"]

_HOW_TO_PASS = (
    "The environments pass samples automatically; when calling the reward by hand, pass the Sample "
    "of each completion in the same order: reward(completions, references, samples=samples)."
)


class TaskReward(Reward):
    """``sample.score(completion)`` for each completion, clipped to ``[0, 1]``.

    Needs the keyword argument ``samples``: one :class:`~instruct_env.tasks.sample.Sample` per
    completion, each with a ``verifier``. References are not used (they may be empty).

    >>> from instruct_env.tasks.sample import Sample
    >>> class Contains:
    ...     def __call__(self, completion, sample):
    ...         return float(sample.context in completion)
    >>> sample = Sample(id="s0", task="demo", instruction="Repeat.", context="hi", verifier=Contains())
    >>> TaskReward()(["hi there", "bye"], [[], []], samples=[sample, sample])
    array([1., 0.])
    """

    name = "task"
    needs_references = False

    def _score(
        self,
        completions: list[str],
        references: list[tuple[str, ...]],
        samples: Sequence[Sample] | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        if samples is None:
            raise RewardError(f"The 'task' reward needs samples=[...], one Sample per completion. {_HOW_TO_PASS}")
        if isinstance(samples, Sample):
            samples = [samples]
        samples = list(samples)
        if len(samples) != len(completions):
            raise RewardError(
                f"The 'task' reward got {len(completions)} completions but {len(samples)} samples; expected "
                f"one Sample per completion. {_HOW_TO_PASS}"
            )
        out = np.zeros(len(completions))
        for i, (completion, sample) in enumerate(zip(completions, samples)):
            if not isinstance(sample, Sample):
                raise RewardError(f"samples[{i}] is a {type(sample).__name__}, expected a Sample. {_HOW_TO_PASS}")
            value = sample.score(completion)
            if not math.isfinite(value):
                raise RewardError(
                    f"The verifier of sample {sample.id!r} returned {value} for completions[{i}]; verifiers "
                    "must return a finite float in [0, 1]."
                )
            out[i] = min(1.0, max(0.0, value))
        return out

    def __repr__(self) -> str:
        return "TaskReward()"
