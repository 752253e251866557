"""Built-in procedural tasks: offline, seeded, small enough for a tiny model to learn.

Each task *family* (a :class:`TaskFamily` subclass) generates instruction-following
samples from a random generator and scores completions with its own verifier. The
families are designed so that the instruction has to be read: the same input gives a
different answer under "ascending" and "descending", "first word" and "last word",
"upper case" and "lower case", and so on.

Splits:
    Every generated input is assigned to ``train`` (80%), ``validation`` (10%) or ``test``
    (10%) by a SHA-256 hash of ``(family name, context)``; generation for a split rejects
    inputs that hash elsewhere. The same context therefore never appears in two splits,
    whatever the seed, the knobs or the instruction wording.

Phrasings:
    Each family has at least three differently worded instruction *phrasings*. One of them,
    ``heldout_phrasing``, is left out of :func:`pretraining_corpus` so that an evaluation
    can report how a model copes with wording it was not pre-trained on; every sample
    records ``metadata["phrasing"]`` and ``metadata["heldout_phrasing"]``.

Verifiers:
    A family instance is the sample's ``verifier``. Scores are in ``[0, 1]``; an exact
    answer scores ``1.0`` and near misses get partial credit (see :func:`sequence_credit`,
    :func:`digit_credit`, :func:`count_credit`). Surrounding whitespace is ignored and
    words are compared after splitting on whitespace; comparisons are case-sensitive.

Modules: ``common`` (splits, seeds, lexicon, draws, partial credit), ``family`` (the base class),
the families by kind in ``words``, ``lexical``, ``numbers`` and ``chinese``, ``registry`` (names,
:data:`DEFAULT_TASKS`, :func:`make_task`) and ``datasets`` (:class:`BuiltinDataset` and the corpora).

>>> from instruct_env.tasks import make_task
>>> task = make_task("sort_numbers", max_len=4)
>>> sample = task.sample(0, variant="descending")
>>> task.verify(sample.references[0], sample)
1.0
>>> task.verify(" ".join(sorted(sample.context.split(), key=int)), sample) < 1.0
True
"""

from __future__ import annotations

from instruct_env.tasks.builtin.chinese import ChineseChars
from instruct_env.tasks.builtin.common import (
    SPLITS,
    count_credit,
    digit_credit,
    lexicon,
    normalise_split,
    sequence_credit,
    split_of,
)
from instruct_env.tasks.builtin.datasets import BuiltinDataset, pretraining_corpus, tokenizer_corpus
from instruct_env.tasks.builtin.family import Problem, TaskFamily
from instruct_env.tasks.builtin.lexical import Keywords, Translate
from instruct_env.tasks.builtin.numbers import Arithmetic, SemanticParse, SortNumbers
from instruct_env.tasks.builtin.registry import DEFAULT_TASKS, default_task_names, make_task, task_names
from instruct_env.tasks.builtin.words import (
    ChangeCase,
    CopyText,
    CountWords,
    Dedup,
    MostFrequent,
    PickWord,
    ReverseWords,
)

__all__ = [
    "SPLITS",
    "TaskFamily",
    "Problem",
    "CopyText",
    "ReverseWords",
    "SortNumbers",
    "Arithmetic",
    "ChangeCase",
    "CountWords",
    "PickWord",
    "Dedup",
    "Translate",
    "Keywords",
    "MostFrequent",
    "SemanticParse",
    "ChineseChars",
    "BuiltinDataset",
    "DEFAULT_TASKS",
    "task_names",
    "default_task_names",
    "make_task",
    "tokenizer_corpus",
    "pretraining_corpus",
    "normalise_split",
    "split_of",
    "lexicon",
    "sequence_credit",
    "digit_credit",
    "count_credit",
]
