"""Train / validation / test splits of your own data (files, Hugging Face datasets, lists of samples).

Samples are assigned to a split in one of two ways:

- by a stable hash (the default), as the built-in suite does: the SHA-256 of the sample's
  instruction and context puts 80% of distinct inputs in ``train``, 10% in ``validation`` and
  10% in ``test``. The assignment depends on the text only -- not on the file's order, the
  machine or the run -- and two samples with the same input always land in the same split, so
  no test input is ever trained on;
- by a column you name (``column="split"``): each record's value must be a split name
  (``train``, ``validation`` or ``test``; ``val``, ``valid``, ``dev`` and ``eval`` mean
  ``validation``). A record without the column, or with another value, is an error naming it.

>>> from instruct_env.tasks import Sample
>>> samples = [Sample(f"s{i}", "t", f"Say {i}", "", (str(i),)) for i in range(40)]
>>> sizes = split_sizes(samples)
>>> sizes
{'train': 36, 'validation': 2, 'test': 2}
>>> len(select_split(samples, "test")) == sizes["test"]
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from instruct_env.error import DataFormatError
from instruct_env.tasks.builtin import SPLITS, normalise_split
from instruct_env.tasks.builtin.common import _split_at
from instruct_env.tasks.sample import Sample

__all__ = ["input_key", "split_of_sample", "select_split", "split_sizes", "check_disjoint"]

_COLUMN_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation", "eval": "validation"}


def input_key(sample: Sample) -> str:
    """A stable hex digest of a sample's input (instruction and context): what "the same sample" means here."""
    return hashlib.sha256(f"{sample.instruction}\x1f{sample.context}".encode()).hexdigest()


def split_of_sample(sample: Sample, column: str | None = None) -> str:
    """The split that owns ``sample``: by the record's ``column`` when given, else by the hash of its input.

    Raises:
        DataFormatError: the record has no ``column`` or its value is not a split name.
    """
    if column is None:  # 80 / 10 / 10, with the built-in suite's bounds
        return _split_at(bytes.fromhex(input_key(sample)))
    record = sample.metadata.get("record", {}) if isinstance(sample.metadata, dict) else {}
    where = _where(sample)
    if column not in record:
        keys = ", ".join(map(repr, record)) or "(none)"
        raise DataFormatError(f"{where}: no split column {column!r}; the record's other keys are {keys}. Name the "
                              "column that holds train/validation/test, or leave it unset to split by a hash.")
    value = record[column]
    name = _COLUMN_ALIASES.get(str(value).strip().lower(), str(value).strip().lower())
    if name not in SPLITS:
        raise DataFormatError(f"{where}: split column {column!r} holds {value!r}; expected one of "
                              f"{', '.join(SPLITS)} (or val/valid/dev/eval for validation).")
    return name


def _where(sample: Sample) -> str:
    meta = sample.metadata if isinstance(sample.metadata, dict) else {}
    if "line" in meta:
        return f"{meta.get('source', 'file')}: line {meta['line']}"
    if "row" in meta:
        return f"dataset {meta.get('source')!r}, row {meta['row']}"
    return f"sample {sample.id!r}"


def select_split(samples: Sequence[Sample], split: str, column: str | None = None) -> list[Sample]:
    """The samples of ``split`` (``"train"``, ``"validation"``/``"val"`` or ``"test"``), in their order."""
    split = normalise_split(split)
    return [s for s in samples if split_of_sample(s, column) == split]


def split_sizes(samples: Sequence[Sample], column: str | None = None) -> dict[str, int]:
    """How many samples each split holds: ``{"train": n, "validation": n, "test": n}``."""
    sizes = dict.fromkeys(SPLITS, 0)
    for s in samples:
        sizes[split_of_sample(s, column)] += 1
    return sizes


def check_disjoint(trained: Sequence[Sample] | set[str], evaluated: Sequence[Sample], what: str) -> None:
    """Refuse to evaluate on inputs that were trained on.

    Args:
        trained: The training samples, or the :func:`input_key` of each.
        evaluated: The samples to be scored.
        what: What is being evaluated, for the message (e.g. ``"the test split"``).

    Raises:
        DataFormatError: some evaluated input is also a training input (the message counts them
            and names the first).
    """
    keys = trained if isinstance(trained, set) else {input_key(s) for s in trained}
    overlap: list[Any] = [s for s in evaluated if input_key(s) in keys]
    if overlap:
        raise DataFormatError(
            f"{len(overlap)} of the {len(evaluated)} samples of {what} were trained on (same instruction and "
            f"context), e.g. {overlap[0].id!r} ({_where(overlap[0])}): their scores would measure memory, not "
            "generalisation. Split by the hash (no split column) or fix the split column so no input is in both."
        )
