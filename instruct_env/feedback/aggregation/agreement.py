"""Agreement between evaluators: Krippendorff's alpha."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np

from instruct_env.error import ConfigError, suggest
from instruct_env.feedback.aggregation._common import _index_triples, _Indexed, _real_values, _where

__all__ = [
    "KRIPPENDORFF_LEVELS",
    "krippendorff_alpha",
]

KRIPPENDORFF_LEVELS = ("nominal", "ordinal", "interval")

def krippendorff_alpha(labels: Iterable[Sequence[Any]], level: str = "nominal") -> float:
    """Krippendorff's alpha: agreement between evaluators beyond what chance would give.

    ``alpha = 1 - D_o / D_e``, the observed disagreement between values given to the same item over
    the disagreement expected if values were paired at random (Krippendorff, *Content Analysis*,
    2004). 1 means perfect agreement, 0 agreement at chance level, negative values systematic
    disagreement. The difference between two values depends on ``level``:

    * ``"nominal"``: 0 if equal, 1 otherwise (values may be any hashable labels);
    * ``"ordinal"``: the squared distance between the two values' mid-ranks, where each value's
      rank is spread over all the times it occurs (the usual definition via the marginal counts);
    * ``"interval"``: the squared difference of the numbers.

    Missing data: evaluators need not rate every item. Only items with at least two values
    contribute pairs; items with a single value are left out entirely, including from the
    expected disagreement. If all the paired values are the same, both disagreements are 0 and
    alpha is formally undefined; this function returns 1.0 (no disagreement was observed).

    Args:
        labels: ``(item, evaluator, value)`` triples.
        level: ``"nominal"``, ``"ordinal"`` or ``"interval"``.

    Returns:
        Alpha, at most 1.

    Raises:
        ConfigError: empty or malformed ``labels``, an unknown ``level``, non-numeric values for an
            ordinal or interval level, or no item with two or more values.

    Example:
        >>> labels = [("q1", "ann", "yes"), ("q1", "bob", "yes"), ("q2", "ann", "no"), ("q2", "bob", "no")]
        >>> krippendorff_alpha(labels)
        1.0
        >>> krippendorff_alpha(labels[:3] + [("q2", "bob", "yes")])
        0.0
    """
    if level not in KRIPPENDORFF_LEVELS:
        raise ConfigError(
            f"level must be one of {', '.join(map(repr, KRIPPENDORFF_LEVELS))}; got {level!r}."
            + suggest(str(level), KRIPPENDORFF_LEVELS)
        )
    data = _index_triples(labels)
    per_item = np.bincount(data.item)  # (I,) values per item
    pairable = per_item[data.item] >= 2  # (N,)
    if not pairable.any():
        raise ConfigError(
            f"No item has two or more values among the {len(data.values)} labels, so there is no pair "
            "to compare; Krippendorff's alpha needs items rated by at least two evaluators."
        )
    unit = data.item[pairable]  # (n,) the n pairable values
    if level == "nominal":
        codes = _nominal_codes(data, pairable)
        if codes.max() == 0:
            return 1.0
        observed, expected = _nominal_disagreement(codes, unit, per_item)
    else:
        x = _real_values(data, "Values for the ordinal and interval levels")[pairable]
        if np.all(x == x[0]):
            return 1.0
        if level == "ordinal":
            x = _mid_ranks(x)
        observed, expected = _squared_disagreement(x, unit, per_item)
    return float(1.0 - observed / expected)


def _nominal_disagreement(codes: np.ndarray, unit: np.ndarray, per_item: np.ndarray) -> tuple[float, float]:
    """Observed and expected disagreement ``(D_o, D_e)`` for nominal codes ``(n,)`` of items ``unit``.

    Only items with two or more values (``per_item >= 2``) contribute to ``D_o``.
    """
    m = per_item.astype(float)  # values per item; only items with m >= 2 are used below
    used = per_item >= 2
    # Disagreeing ordered pairs in an item: m^2 - sum_c n_c^2 (n_c = count of value c there).
    base = int(codes.max()) + 1
    cells, cell_count = np.unique(unit * base + codes, return_counts=True)  # (item, value) cells
    same = np.bincount(cells // base, weights=cell_count.astype(float) ** 2, minlength=len(m))
    observed = np.sum((m**2 - same)[used] / (m[used] - 1))
    total = np.bincount(codes).astype(float)
    expected = (len(codes) ** 2 - np.sum(total**2)) / (len(codes) - 1)
    return observed, expected


def _squared_disagreement(x: np.ndarray, unit: np.ndarray, per_item: np.ndarray) -> tuple[float, float]:
    """Observed and expected disagreement ``(D_o, D_e)`` with squared differences of values ``x`` ``(n,)``.

    Only items with two or more values (``per_item >= 2``) contribute to ``D_o``.
    """
    m = per_item.astype(float)  # values per item; only items with m >= 2 are used below
    used = per_item >= 2
    x = x - x.mean()  # centring avoids cancellation in the sums of squares
    # Sum over ordered pairs of squared differences in a group: 2 (m sum x^2 - (sum x)^2).
    s1 = np.bincount(unit, weights=x, minlength=len(m))
    s2 = np.bincount(unit, weights=x**2, minlength=len(m))
    observed = np.sum((2 * (m * s2 - s1**2))[used] / (m[used] - 1))
    n = len(x)
    expected = 2 * (n * np.sum(x**2) - np.sum(x) ** 2) / (n - 1)
    return observed, expected


def _nominal_codes(data: _Indexed, pairable: np.ndarray) -> np.ndarray:
    """Integer code per pairable value, shape ``(n,)``; distinct values get distinct codes."""
    code_of: dict[Hashable, int] = {}
    codes = []
    for n in np.flatnonzero(pairable):
        value = data.values[n]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise ConfigError(
                f"labels must not contain missing values; got {value!r} ({_where(data, n)}). "
                "Leave missing ratings out instead."
            )
        try:
            codes.append(code_of.setdefault(value, len(code_of)))
        except TypeError:
            raise ConfigError(
                f"Nominal values must be hashable; got {value!r} ({_where(data, n)})."
            ) from None
    return np.asarray(codes, dtype=np.int64)


def _mid_ranks(x: np.ndarray) -> np.ndarray:
    """Replace each value by its mid-rank among ``x``.

    Krippendorff's ordinal difference between values ``c < k`` is
    ``sum_{g=c..k} n_g - (n_c + n_k) / 2`` (``n_g`` = how often value ``g`` occurs), which equals
    ``t_k - t_c`` with mid-rank ``t_c = sum_{g<c} n_g + n_c / 2``.
    """
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    mid = np.cumsum(counts) - counts / 2.0  # (V,)
    return mid[inverse.ravel()]
