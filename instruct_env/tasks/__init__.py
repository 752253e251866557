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
    default_task_names,
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
    "default_task_names",
    "make_task",
    "tokenizer_corpus",
    "pretraining_corpus",
    "load_file",
    "from_hf_dataset",
    "from_reasoning_gym",
    "example_file",
    "PromptFormatter",
]


_EXAMPLE_FILES = {"mini": "mini_instructions.jsonl", "multilingual": "multilingual_instructions.jsonl"}


def example_file(name: str = "mini") -> Path:
    """Path of a small instruction file shipped with the package, written for instruct-env.

    ``"mini"`` (the default), ``mini_instructions.jsonl``: 40 short everyday English instructions
    (rewrite, correct, classify, convert, summarise...) in the Alpaca layout (``instruction``,
    ``input``, ``output``). ``"multilingual"``, ``multilingual_instructions.jsonl``: 18 in Chinese,
    Japanese and Arabic (6 each; the record's ``language`` is kept in ``metadata["record"]``).
    Neither has a task verifier, so use them with reference-based rewards, and give answers room:
    with the built-in tokenizer (trained on the built-in suite, not on general English) the
    longest English reference is 62 tokens, and text in other scripts takes a few tokens per
    character (the tokenizer is byte-level)::

        gym.make("InstructEnv/Completion-v0", dataset=example_file(),
                 reward={"bleu": 0.5, "rougeL": 0.5}, max_new_tokens=64)
        gym.make("InstructEnv/Completion-v0", dataset=example_file("multilingual"),
                 reward={"chrf": 0.5, "rougeL": {"weight": 0.5, "tokenizer": "cjk"}}, max_new_tokens=128)

    >>> samples = load_file(example_file())
    >>> len(samples), samples[0].id, samples[0].context
    (40, 'mini_instructions/0', 'She walks to the bakery every morning.')
    >>> [s.metadata["record"]["language"] for s in load_file(example_file("multilingual"))[::6]]
    ['zh', 'ja', 'ar']
    """
    if name not in _EXAMPLE_FILES:
        from instruct_env.error import unknown_name

        raise unknown_name("example file", name, _EXAMPLE_FILES)
    return Path(str(resources.files("instruct_env").joinpath(f"data/{_EXAMPLE_FILES[name]}")))
