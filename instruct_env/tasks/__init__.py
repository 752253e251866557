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

from importlib import resources
from pathlib import Path

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
    "example_file",
    "PromptFormatter",
]


def example_file() -> Path:
    """Path of ``mini_instructions.jsonl``, a small instruction file shipped with the package.

    40 short everyday instructions (rewrite, correct, classify, convert, summarise...) in the
    Alpaca layout (``instruction``, ``input``, ``output``), written for instruct-env. It has no
    task verifier, so use it with reference-based rewards, and give answers room: with the
    built-in tokenizer (trained on the built-in suite, not on general English) the longest
    reference is 62 tokens::

        gym.make("InstructEnv/Completion-v0", dataset=example_file(),
                 reward={"bleu": 0.5, "rougeL": 0.5}, max_new_tokens=64)

    >>> samples = load_file(example_file())
    >>> len(samples), samples[0].id, samples[0].context
    (40, 'mini_instructions/0', 'She walks to the bakery every morning.')
    """
    return Path(str(resources.files("instruct_env").joinpath("data/mini_instructions.jsonl")))
