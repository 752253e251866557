"""Datasets and corpora over the built-in families: the evaluation/training dataset and the pre-training texts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from instruct_env._validation import check_int
from instruct_env.tasks import minilang
from instruct_env.tasks.builtin.common import _stable_int, lexicon, normalise_split
from instruct_env.tasks.builtin.family import TaskFamily
from instruct_env.tasks.builtin.registry import _resolve_tasks
from instruct_env.tasks.sample import Sample

__all__ = [
    "BuiltinDataset",
    "tokenizer_corpus",
    "pretraining_corpus",
]


def _item_rng(stream: str, seed: int, split: str, task: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _stable_int(stream), _stable_int(split), _stable_int(task), index])


class BuiltinDataset:
    """A lazy, deterministic, indexable dataset over built-in task families.

    Item ``i`` comes from family ``i % n_families`` (so any prefix is balanced) and is the
    ``i // n_families``-th sample of that family, generated from ``(seed, split, family,
    index)`` on first access and then cached. Ids look like ``"sort_numbers/test/17"``.

    Args:
        tasks: ``None`` for the default families (:func:`default_task_names`; the opt-in
            non-English ones are left out), a name, or a list of names / :class:`TaskFamily`
            instances.
        split: ``"train"``, ``"validation"`` (alias ``"val"``) or ``"test"``.
        size_per_task: Samples per family.
        seed: Non-negative integer seed.
        **knobs: Difficulty knobs, applied to every selected family that has them (e.g.
            ``max_words=4``); a knob no selected family has is an error.

    Raises:
        ConfigError: bad split, size, seed, knob or task selection.
        UnknownNameError: an unknown task name.

    >>> data = BuiltinDataset(["copy", "pick_word"], split="test", size_per_task=3)
    >>> len(data), data[0].id, data[1].id, data[2].id
    (6, 'copy/test/0', 'pick_word/test/0', 'copy/test/1')
    >>> data[3].verifier(data[3].references[0], data[3])
    1.0
    """

    def __init__(
        self,
        tasks: str | Sequence[str | TaskFamily] | None = None,
        split: str = "train",
        size_per_task: int = 1000,
        seed: int = 0,
        **knobs: int,
    ) -> None:
        self.split = normalise_split(split)
        self.size_per_task = check_int("size_per_task", size_per_task, 1)
        self.seed = check_int("seed", seed, 0)
        self.families = _resolve_tasks(tasks, knobs)
        self._cache: dict[int, Sample] = {}

    @property
    def task_names(self) -> tuple[str, ...]:
        """Names of the families, in interleaving order."""
        return tuple(f.name for f in self.families)

    def __len__(self) -> int:
        return self.size_per_task * len(self.families)

    def task_of(self, index: int) -> str:
        """The family name of item ``index`` without generating it."""
        return self.families[int(index) % len(self.families)].name

    def __getitem__(self, index: int) -> Sample:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"BuiltinDataset indices must be integers, got {type(index).__name__}.")
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"Index {index} is out of range for a dataset of {len(self)} samples.")
        cached = self._cache.get(index)
        if cached is None:
            family = self.families[index % len(self.families)]
            j = index // len(self.families)
            rng = _item_rng("dataset", self.seed, self.split, family.name, j)
            cached = family.sample(rng, self.split, id=f"{family.name}/{self.split}/{j}")
            self._cache[index] = cached
        return cached

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return (
            f"BuiltinDataset(tasks={list(self.task_names)}, split={self.split!r}, "
            f"size_per_task={self.size_per_task}, seed={self.seed})"
        )


def _cycled_samples(
    family: TaskFamily, stream: str, n: int, seed: int, phrasings: Sequence[int]
) -> Iterator[Sample]:
    """``n`` train samples cycling through ``phrasings`` x variants, so all are covered."""
    for j in range(n):
        phrasing = phrasings[j % len(phrasings)]
        variant = family.variants[(j // len(phrasings)) % len(family.variants)]
        rng = _item_rng(stream, seed, "train", family.name, j)
        yield family.sample(
            rng, "train", id=f"{family.name}/train/{stream}-{j}", phrasing=phrasing, variant=variant
        )


def tokenizer_corpus(
    n_per_task: int = 200,
    seed: int = 0,
    tasks: str | Sequence[str | TaskFamily] | None = None,
    **knobs: int,
) -> list[str]:
    """Text for training the built-in tokenizer, drawn from the TRAIN split only.

    Contains, per family, ``n_per_task`` solved examples formatted with the default prompt
    template (so the template markers are covered) cycling through every phrasing and
    variant; then the lexicon (English and Spanish words), the digits, the numbers 0-99, the
    ASCII punctuation, the prompt truncation marker ``...`` and the mini-language function
    names.

    >>> corpus = tokenizer_corpus(n_per_task=6, tasks=["copy"])
    >>> "### Response:" in corpus[0], any("gato" in line for line in corpus)
    (True, True)
    """
    import string

    from instruct_env.tasks.prompts import PromptFormatter

    n_per_task = check_int("n_per_task", n_per_task, 1)
    seed = check_int("seed", seed, 0)
    formatter = PromptFormatter()
    texts = []
    for family in _resolve_tasks(tasks, knobs):
        for sample in _cycled_samples(family, "tokenizer", n_per_task, seed, range(family.num_phrasings)):
            texts.append(formatter.format(sample) + sample.references[0])
    texts.append(" ".join(lexicon()))
    texts.append(" ".join(spanish for spanish, _ in lexicon().values()))
    texts.append("0 1 2 3 4 5 6 7 8 9 0123456789")
    texts.append(" ".join(str(i) for i in range(100)))
    texts.append(string.punctuation)
    texts.append(" ".join(string.punctuation) + " ...")  # single marks, and the truncation marker
    texts.append(" ".join(minilang.FUNCTIONS) + " x")
    return texts


def pretraining_corpus(
    n_per_task: int = 1000,
    seed: int = 0,
    tasks: str | Sequence[str | TaskFamily] | None = None,
    formatter: Any = None,
    **knobs: int,
) -> list[str]:
    r"""Solved examples (prompt + answer) from the TRAIN split for short LM pre-training.

    Each family's ``heldout_phrasing`` is never used, so an evaluation can measure how well
    the model follows wording it was not pre-trained on (samples carry
    ``metadata["heldout_phrasing"]``). The other phrasings and all variants are cycled
    through evenly; families are interleaved. Each text is ``formatter.format(sample) +
    reference``, with no end-of-sequence marker (the trainer appends the tokenizer's EOS).

    Args:
        n_per_task: Examples per family.
        seed: Non-negative integer seed.
        tasks: Task selection, as for :class:`BuiltinDataset`.
        formatter: A :class:`~instruct_env.tasks.PromptFormatter`; default template if None.
        **knobs: Difficulty knobs, as for :class:`BuiltinDataset`.

    >>> texts = pretraining_corpus(n_per_task=2, tasks=["pick_word"])
    >>> texts[0].startswith("### Instruction:\n"), len(texts)
    (True, 2)
    """
    from instruct_env.tasks.prompts import PromptFormatter

    n_per_task = check_int("n_per_task", n_per_task, 1)
    seed = check_int("seed", seed, 0)
    formatter = formatter if formatter is not None else PromptFormatter()
    streams = [
        _cycled_samples(
            family,
            "pretraining",
            n_per_task,
            seed,
            [p for p in range(family.num_phrasings) if p != family.heldout_phrasing],
        )
        for family in _resolve_tasks(tasks, knobs)
    ]
    texts = []
    for batch in zip(*streams):
        for sample in batch:
            texts.append(formatter.format(sample) + sample.references[0])
    return texts
