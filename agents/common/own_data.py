"""Your own data in the pipeline and the command line (``data.dataset``).

``data.dataset`` names one of

- a JSON, JSONL, CSV or TSV file (columns detected, or mapped with ``data.fields``);
- a folder written by ``datasets``' ``save_to_disk`` (a ``Dataset`` or a ``DatasetDict``);
- ``hf:NAME`` (or ``hf:NAME:CONFIG``): ``datasets.load_dataset(NAME[, CONFIG])``, which downloads
  unless the dataset is in the local ``datasets`` cache.

A ``DatasetDict`` with its own ``train``, ``validation`` (or ``val``/``valid``/``dev``) and ``test``
splits keeps them. Anything else is split by :mod:`instruct_env.tasks.splits`: by
``data.split_column`` when set, else by a stable hash of each input (80/10/10), so that the same
input never lands in two splits.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from instruct_env.error import ConfigError, EmptyDatasetError
from instruct_env.tasks.sample import Sample

__all__ = ["OwnData", "load_own_data", "effective_reward"]

_SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "val", "valid", "dev"), "test": ("test",)}


@dataclass(frozen=True)
class OwnData:
    """The three splits of a ``data.dataset`` and how they were made."""

    spec: str
    splits: dict[str, list[Sample]]
    how: str

    def sizes(self) -> dict[str, int]:
        """The number of samples in each split."""
        return {name: len(samples) for name, samples in self.splits.items()}

    def describe(self) -> str:
        """One line for the console and the report."""
        s = self.sizes()
        return (f"data.dataset {self.spec!r}: {s['train']} train, {s['validation']} validation and {s['test']} test "
                f"samples ({self.how})")


def load_own_data(spec: str, fields: Mapping[str, str] | None = None, split_column: str | None = None) -> OwnData:
    """Load and split ``spec`` (see the module docs); cached per argument values.

    Raises:
        ConfigError: no such file or folder (with a suggestion), or ``datasets`` is missing.
        EmptyDatasetError: a split is empty (the message gives every split's size).
    """
    return _load(spec, tuple(sorted((fields or {}).items())), split_column)


@functools.lru_cache(maxsize=4)
def _load(spec: str, fields: tuple[tuple[str, str], ...], split_column: str | None) -> OwnData:
    from instruct_env.tasks import from_hf_dataset, load_file
    from instruct_env.tasks.splits import select_split

    mapping = dict(fields) or None
    own_splits = None
    if spec.startswith("hf:"):
        from instruct_env.error import require

        datasets = require("datasets", "datasets")
        name, _, config = spec[3:].partition(":")
        loaded = datasets.load_dataset(name, config or None)
        origin = f"Hugging Face dataset {name!r}"
    elif os.path.isdir(spec):
        from instruct_env.error import require

        datasets = require("datasets", "datasets")
        loaded = datasets.load_from_disk(spec)
        origin = f"saved dataset folder {spec!r}"
    elif os.path.isfile(spec):
        loaded, origin = load_file(spec, fields=mapping), f"file {spec!r}"
    else:
        _missing(spec)
    if hasattr(loaded, "keys") and not isinstance(loaded, list):  # a DatasetDict
        named = {split: next((k for k in aliases if k in loaded), None) for split, aliases in _SPLIT_NAMES.items()}
        if split_column is None and all(named.values()):
            own_splits = {split: from_hf_dataset(loaded[key], fields=mapping) for split, key in named.items()}
        elif len(loaded) == 1:
            loaded = next(iter(loaded.values()))
        else:
            raise ConfigError(f"{origin} has the splits {', '.join(map(repr, loaded))}, not train, validation and "
                              "test. Save one split (or all three under those names) and name that.")
    if own_splits is not None:
        return _checked(OwnData(spec, own_splits, f"the {origin}'s own train/validation/test splits"))
    samples = loaded if isinstance(loaded, list) else from_hf_dataset(loaded, fields=mapping)
    how = f"split by its column {split_column!r}" if split_column else \
        "split 80/10/10 by a stable hash of each input"
    splits = {name: select_split(samples, name, split_column) for name in _SPLIT_NAMES}
    return _checked(OwnData(spec, splits, how))


def _checked(data: OwnData) -> OwnData:
    empty = [name for name, samples in data.splits.items() if not samples]
    if empty:
        raise EmptyDatasetError(f"The {' and '.join(empty)} split of {data.describe()} is empty; every split needs "
                                "samples (add samples, or set data.split_column to a column assigning them).")
    return data


def _missing(spec: str) -> None:
    from pathlib import Path

    from instruct_env.error import suggest

    path = Path(spec).expanduser()
    parent = path.parent if path.parent.is_dir() else None
    near = [str(path.parent / p.name) if str(path.parent) != "." else p.name
            for p in parent.iterdir()] if parent is not None else []
    raise ConfigError(
        f"data.dataset: no such file or folder {spec!r} (nothing at {path.absolute()}).{suggest(spec, near)} Name a "
        "JSON/JSONL/CSV/TSV file, a folder saved with datasets' save_to_disk, or hf:NAME for a Hugging Face dataset."
    )


def effective_reward(reward: Any, train: list[Sample]) -> tuple[Any, str | None]:
    """The RL reward for your own data, and a note when it differs from the configured one.

    ``"auto"``, and the default ``"task"`` on samples without a task verifier (which would
    have nothing to score with), become :func:`instruct_env.envs.core.auto_reward`'s choice
    for the data's script; anything else is kept.
    """
    from instruct_env.envs.core import auto_reward

    has_verifier = getattr(train[0], "verifier", None) is not None
    if reward == "auto" or reward == "task" and not has_verifier:
        chosen, why = auto_reward(train)
        return chosen, f"RL reward {chosen!r} (data.reward={reward!r}: {why})"
    return reward, None
