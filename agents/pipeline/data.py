"""The samples of each split for the main job: built-in families, reasoning-gym datasets, or your own data."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from agents.pipeline.config import DataConfig
from instruct_env.tasks.reasoning import reasoning_gym_split

__all__ = ["Samples", "split_samples", "rl_env_kwargs"]


class Samples(Protocol):
    """What a split is: sized, indexable and iterable (a list, a ``BuiltinDataset``, a concatenation)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


class _Concat:
    """Read-only concatenation of indexable sample sources (built-in families, then reasoning-gym)."""

    def __init__(self, parts: Sequence[Samples]) -> None:
        self.parts = list(parts)
        self._ends = list(itertools.accumulate(len(p) for p in self.parts))

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __getitem__(self, index: int) -> Any:
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"Index {index} is out of range for a dataset of {len(self)} samples.")
        part = bisect.bisect_right(self._ends, index)
        return self.parts[part][index - (self._ends[part - 1] if part else 0)]

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(len(self)))


def split_samples(data: DataConfig, split: str, size_per_task: int, seed: int | None = None) -> Samples:
    """The samples of one split: the built-in families, then each reasoning-gym task (or ``data.dataset``'s split).

    Args:
        data: The data section (``tasks``, ``reasoning_gym``).
        split: ``"train"``, ``"validation"`` or ``"test"``.
        size_per_task: Samples per family (reasoning-gym tasks may yield fewer, see
            :class:`~instruct_env.tasks.reasoning.ReasoningGymTask`).
        seed: Seed of the built-in datasets (default ``data.seed``); reasoning-gym tasks always
            use ``data.seed``, so that their held-out splits stay apart from every training set.

    Returns:
        A :class:`~instruct_env.tasks.BuiltinDataset` when there are no reasoning-gym tasks,
        else an indexable sequence of :class:`~instruct_env.tasks.Sample`.
    """
    from instruct_env.tasks import BuiltinDataset

    if data.dataset is not None:  # your own data: each split whole
        from agents.common.own_data import load_own_data
        from instruct_env.tasks.builtin import normalise_split

        return load_own_data(data.dataset, data.fields, data.split_column).splits[normalise_split(split)]
    seed = data.seed if seed is None else seed
    builtin = BuiltinDataset(data.tasks, split=split, size_per_task=size_per_task, seed=seed)
    if not data.reasoning_gym:
        return builtin
    return _Concat([builtin] + [reasoning_gym_split(t, split, size_per_task, seed=data.seed, validation_size=data.val_size_per_task,
                                                  test_size=data.test_size_per_task) for t in data.reasoning_gym])



def rl_env_kwargs(data: DataConfig) -> dict[str, Any]:
    """Keyword arguments of the RL training environment (train split) for ``data``."""
    kwargs: dict[str, Any] = {"split": "train", "reward": data.reward, "max_prompt_tokens": data.max_prompt_tokens,
                              "template": data.template, "num_shots": data.num_shots, "sampling": data.sampling,
                              "use_chat_template": data.use_chat_template}
    if data.dataset is not None:
        from agents.common.own_data import effective_reward

        train = list(split_samples(data, "train", data.train_size_per_task))
        return {**kwargs, "dataset": train, "reward": effective_reward(data.reward, train)[0]}
    if data.reasoning_gym:
        return {**kwargs, "dataset": split_samples(data, "train", data.train_size_per_task)}
    return {**kwargs, "tasks": data.tasks,
            "dataset_kwargs": {"size_per_task": data.train_size_per_task, "seed": data.seed}}

