"""What the aggregators share: reading ``(item, evaluator, value)`` triples and checking settings."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from instruct_env._validation import check_int
from instruct_env.error import ConfigError


@dataclass(frozen=True)
class _Indexed:
    """Triples with item and evaluator ids replaced by indices ``0..I-1`` and ``0..J-1``."""

    items: list[Hashable]  # index -> id, first-seen order
    evaluators: list[Hashable]
    item: np.ndarray  # (N,) int64
    evaluator: np.ndarray  # (N,) int64
    values: list[Any]  # (N,) third field, not yet checked


def _rows(data: Any, what: str, row: str) -> list[Any]:
    """Materialise ``data`` as a non-empty list of rows (an array is converted with ``tolist``)."""
    if isinstance(data, np.ndarray):
        if data.ndim != 2:
            raise ConfigError(
                f"{what} given as an array must be 2-D, one {row} per row; got shape {data.shape}."
            )
        rows = data.tolist()
    elif isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
        raise ConfigError(
            f"{what} must be a list (or a 2-D array) whose rows are each a {row}; got {type(data).__name__}."
        )
    else:
        rows = list(data)
    if not rows:
        raise ConfigError(f"{what} is empty; expected at least one {row}.")
    return rows


def _is_row(row: Any, sizes: tuple[int, ...]) -> bool:
    return not isinstance(row, (str, bytes)) and hasattr(row, "__len__") and len(row) in sizes


def _index_triples(labels: Any, what: str = "labels") -> _Indexed:
    """Validate ``(item, evaluator, value)`` triples and map the ids to indices."""
    rows = _rows(labels, what, "(item, evaluator, value) triple")
    item_index: dict[Hashable, int] = {}
    evaluator_index: dict[Hashable, int] = {}
    item = np.empty(len(rows), dtype=np.int64)
    evaluator = np.empty(len(rows), dtype=np.int64)
    values = []
    for n, row in enumerate(rows):
        if not _is_row(row, (3,)):
            raise ConfigError(
                f"{what}[{n}] is {row!r}; expected an (item, evaluator, value) triple. "
                f"An array of {what} must have shape (N, 3)."
            )
        item_id, evaluator_id, value = row
        try:
            item[n] = item_index.setdefault(item_id, len(item_index))
            evaluator[n] = evaluator_index.setdefault(evaluator_id, len(evaluator_index))
        except TypeError:
            raise ConfigError(
                f"{what}[{n}] = {row!r} has an unhashable item or evaluator id; "
                "use strings, ints or tuples as ids."
            ) from None
        values.append(value)
    return _Indexed(list(item_index), list(evaluator_index), item, evaluator, values)


def _where(data: _Indexed, n: int | np.integer) -> str:
    return f"item {data.items[data.item[n]]!r}, evaluator {data.evaluators[data.evaluator[n]]!r}"


def _real_values(data: _Indexed, what: str) -> np.ndarray:
    """The values as a finite float array ``(N,)``, or a ConfigError naming the first bad one."""
    x = np.empty(len(data.values))
    for n, value in enumerate(data.values):
        if not isinstance(value, (int, float, np.integer, np.floating, np.bool_)) or not math.isfinite(value):
            raise ConfigError(
                f"{what} must be finite real numbers; got {value!r} ({_where(data, n)}). "
                "Leave missing ratings out instead of passing None or NaN."
            )
        x[n] = value
    return x


def _class_labels(data: _Indexed, n_classes: int | None) -> tuple[np.ndarray, int]:
    """The values as class indices ``(N,)`` and the number of classes ``K >= 2``."""
    if n_classes is not None:
        check_int("n_classes", n_classes, 2)
    hint = "Map each category to an integer 0..K-1 (and pass n_classes=K if a class is never used)."
    try:
        x = _real_values(data, "labels")
    except ConfigError as exc:
        raise ConfigError(f"{exc} {hint}") from None
    bad = (x != np.round(x)) | (x < 0)
    if n_classes is not None:
        bad |= x >= n_classes
    if bad.any():
        n = int(np.argmax(bad))
        expected = "integer class indices >= 0" if n_classes is None else f"class indices 0..{n_classes - 1}"
        raise ConfigError(f"labels must be {expected}; got {data.values[n]!r} ({_where(data, n)}). {hint}")
    y = x.astype(np.int64)
    k = n_classes if n_classes is not None else max(2, int(y.max()) + 1)
    return y, k


def _vote_counts(item: np.ndarray, y: np.ndarray, n_items: int, k: int) -> np.ndarray:
    """Votes per item and class, shape ``(I, K)``."""
    return np.bincount(item * k + y, minlength=n_items * k).reshape(n_items, k)
