"""Task sources: the built-in procedural suite, file and dataset loaders, prompt formatting.

Importing this package is light (numpy only); ``datasets`` and ``reasoning_gym`` are
imported by the loaders that need them.

>>> from instruct_env.tasks import BuiltinDataset, PromptFormatter
>>> sample = BuiltinDataset(["reverse_words"], split="validation", size_per_task=1)[0]
>>> sample.id
'reverse_words/validation/0'
>>> sample.score(sample.references[0])
1.0
"""

from __future__ import annotations

from instruct_env.tasks.builtin import (
    BuiltinDataset,
    TaskFamily,
    make_task,
    pretraining_corpus,
    task_names,
    tokenizer_corpus,
)
from instruct_env.tasks.loaders import from_hf_dataset, from_reasoning_gym, load_file
from instruct_env.tasks.prompts import PromptFormatter
from instruct_env.tasks.sample import Sample, SampleSource, Verifier

__all__ = [
    "Sample",
    "Verifier",
    "SampleSource",
    "TaskFamily",
    "BuiltinDataset",
    "task_names",
    "make_task",
    "tokenizer_corpus",
    "pretraining_corpus",
    "load_file",
    "from_hf_dataset",
    "from_reasoning_gym",
    "PromptFormatter",
]
