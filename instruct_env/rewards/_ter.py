"""TER edit counts for many (hypothesis, reference) pairs at once, identical to sacreBLEU's.

sacreBLEU (``sacrebleu.metrics.lib_ter``) follows Tercom: greedily apply the block shift of the
hypothesis that lowers the edit distance most, until none does; TER edits = shifts + the final
edit distance. The edit distance is a Levenshtein distance restricted to a beam around the
(length-scaled) diagonal. Almost all of its time goes into that distance, evaluated once per shift
candidate in pure Python. Here one round of the greedy search is done for every pair together:

1. one banded edit-distance table per pair, with the chosen operations, for the current
   hypotheses, walked back to align them with their references;
2. the shift candidates of every pair, enumerated in Python in exactly sacreBLEU's order, with
   its filters and its cap of 1000 candidates per pair (a shift found twice is evaluated once);
3. the distances of all candidates of all pairs at once: the table is filled row by row for all
   of them with numpy, the insertion chain along a row being a running minimum
   (``cur[j] = min_k (a[k] + j - k)``).

The beam (``floor(i * m / n) +- 25`` columns in row ``i``, all columns in the last row), the
choice between equal-cost operations in a cell (match or substitution, then the cell above, then
the cell to the left), the ranking of candidates (gain, then length, then earliest start, then
earliest target) and the caps (blocks of at most 10 words starting at most 50 positions apart,
1000 candidates per pair) follow sacreBLEU 2.x; the tests compare with it directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np

__all__ = ["ter_edits"]

_MAX_SHIFT_SIZE = 10
_MAX_SHIFT_DIST = 50
_BEAM_WIDTH = 25
_MAX_SHIFT_CANDIDATES = 1000
_BLOCK = 1024  # pairs per table block
_TABLE_CELLS = 1 << 24  # cells of operation tables kept at once (int8), bounds memory on long texts
# operation codes, read on the table built for hypothesis -> reference
_NOP, _SUB, _INS, _DEL, _UNDEF = 0, 1, 2, 3, 4


def ter_edits(hyps: Sequence[Sequence[int]], refs: Sequence[Sequence[int]]) -> list[int]:
    """Number of TER edits (shifts + edit distance) turning each ``hyps[k]`` into ``refs[k]``.

    Words are given as integer ids. Both sides of every pair must be non-empty.
    """
    words = [list(h) for h in hyps]
    ref_words = [list(r) for r in refs]
    ref_positions = [_positions(r) for r in ref_words]
    shifts = [0] * len(words)
    checked = [0] * len(words)  # shift candidates evaluated so far, per pair
    result = [0] * len(words)
    active = list(range(len(words)))
    while active:  # one round of the greedy search for every pair still improving
        distance, alignments = _distances([words[k] for k in active], [ref_words[k] for k in active], align=True)
        shifted: list[list[int]] = []  # distinct shifted hypotheses of all pairs
        owner: list[int] = []
        ranked = []  # per pair: (length, -start, -target, index into shifted) in sacreBLEU's order
        for a, k in enumerate(active):
            found, checked[k] = _shift_candidates(words[k], ref_words[k], ref_positions[k], *alignments[a], checked[k])
            ranked.append(_distinct_shifts(found, words[k], a, shifted, owner))
        cost = _distances(shifted, [ref_words[active[a]] for a in owner])[0].tolist() if shifted else []
        still = []
        for a, k in enumerate(active):
            gain, best = _best_shift(int(distance[a]), ranked[a], cost)
            if checked[k] >= _MAX_SHIFT_CANDIDATES or gain <= 0:
                result[k] = shifts[k] + int(distance[a])
            else:
                shifts[k] += 1
                words[k] = shifted[best]
                still.append(k)
        active = still
    return result


def _positions(words: list[int]) -> dict[int, list[int]]:
    where: dict[int, list[int]] = {}
    for j, w in enumerate(words):
        where.setdefault(w, []).append(j)
    return where


def _distinct_shifts(found, words, a, shifted, owner) -> list[tuple[int, int, int, int]]:
    """Rank keys of the shifts of pair ``a``; each distinct shift's words are appended once."""
    index: dict[tuple[int, int, int], int] = {}
    out = []
    for shift in found:
        if shift not in index:  # the same shift found from another block: same words, same cost
            index[shift] = len(shifted)
            shifted.append(_perform_shift(words, *shift))
            owner.append(a)
        start, length, target = shift
        out.append((length, -start, -target, index[shift]))
    return out


def _best_shift(distance: int, ranked, cost) -> tuple[int, int]:
    """``(gain, index)`` of sacreBLEU's choice: largest gain, then longest, earliest start and target.

    On a full tie the first candidate stays (the tied candidates are the same shift).
    """
    best = None
    for length, start, target, c in ranked:
        key = (distance - cost[c], length, start, target)
        if best is None or key > best[0]:
            best = (key, c)
    return (best[0][0], best[1]) if best is not None else (0, -1)


def _perform_shift(words: list[int], start: int, length: int, target: int) -> list[int]:
    """Move ``words[start:start+length]`` to ``target`` (sacreBLEU's convention, quirks included)."""
    if target < start:
        return words[:target] + words[start : start + length] + words[target:start] + words[start + length :]
    if target > start + length:
        return words[:start] + words[start + length : target] + words[start : start + length] + words[target:]
    return words[:start] + words[start + length : length + target] + words[start : start + length] + words[length + target :]


def _shift_candidates(hyp, ref, ref_positions, align, next_ref_err, next_hyp_err, checked):
    """The ``(start, length, target)`` shifts sacreBLEU evaluates, in its order; and the new count.

    Blocks are the common word sequences (at most 10 words, starting at most 50 positions apart)
    in the order of sacreBLEU's double loop over hypothesis and reference starts, each start
    giving the blocks of length 1, 2, ... up to the common run. A block counts only if it has an
    error on both sides and is not aligned onto itself; each of its targets is just after where
    the aligner put a reference word of the block (or its predecessor). The three conditions are
    monotone in the length, so each start gives one range of lengths; the bounds that need no
    word comparison are checked first, and the common run is only walked when still needed.
    ``next_*_err[i]`` is the first error position at or after ``i`` (the length if none).
    """
    n, m = len(hyp), len(ref)
    out = []
    for start_h in range(n):
        first_hyp_err = next_hyp_err[start_h] - start_h + 1  # shortest length with a hypothesis error
        if first_hyp_err > _MAX_SHIFT_SIZE:
            continue
        for start_r in ref_positions.get(hyp[start_h], ()):
            if abs(start_r - start_h) > _MAX_SHIFT_DIST:
                continue
            shortest = max(first_hyp_err, next_ref_err[start_r] - start_r + 1)
            longest = min(_MAX_SHIFT_SIZE, n - start_h, m - start_r)
            aligned_to = align[start_r]
            if aligned_to >= start_h:  # lengths reaching the aligned position would shift onto itself
                longest = min(longest, aligned_to - start_h)
            if shortest > longest:
                continue
            run = 1  # the common run, needed up to `longest` only
            while run < longest and hyp[start_h + run] == ref[start_r + run]:
                run += 1
            for length in range(shortest, run + 1):
                previous = -1
                for offset in range(-1, length):
                    target = 0 if start_r + offset == -1 else align[start_r + offset] + 1
                    if target == previous:
                        continue
                    previous = target
                    out.append((start_h, length, target))
                    checked += 1
                if checked >= _MAX_SHIFT_CANDIDATES:
                    return out, checked
    return out, checked


def _alignment(ops: bytes, width: int, n: int, m: int) -> tuple[list[int], list[int], list[int]]:
    """Walk the optimal path back from cell ``(n, m)``; return the alignment and next-error positions.

    ``align[j]`` is the hypothesis position the j-th reference word is aligned to (-1 before the
    first word); ``next_ref_err[j]`` (``next_hyp_err[i]``) is the first reference (hypothesis)
    position at or after ``j`` (``i``) whose word is not matched unchanged, or m (n) if none.
    A deletion consumes a hypothesis word, an insertion a reference word; sacreBLEU reads the same
    path flipped, as a rewrite of the reference into the hypothesis, which gives the same arrays.
    The walk visits positions from the end, the order the next-error arrays need.
    """
    align = [0] * m
    next_ref_err = [m] * (m + 1)
    next_hyp_err = [n] * (n + 1)
    i, j = n, m
    while i > 0 or j > 0:
        op = ops[i * width + j]
        if op == _NOP:
            i -= 1
            j -= 1
            align[j] = i
            next_ref_err[j] = next_ref_err[j + 1]
            next_hyp_err[i] = next_hyp_err[i + 1]
        elif op == _SUB:
            i -= 1
            j -= 1
            align[j] = i
            next_ref_err[j] = j
            next_hyp_err[i] = i
        elif op == _INS:
            j -= 1
            align[j] = i - 1
            next_ref_err[j] = j
        elif op == _DEL:
            i -= 1
            next_hyp_err[i] = i
        else:
            raise RuntimeError("TER alignment reached a cell outside the beam; please report this input")
    return align, next_ref_err, next_hyp_err


def _distances(hyps: list[list[int]], refs: list[list[int]],
               align: bool = False) -> tuple[np.ndarray, list[tuple[list[int], list[int], list[int]]]]:
    """Beam edit distance of each pair; with ``align``, also its alignment (see :func:`_alignment`).

    Pairs are grouped by reference length (so tables are not much wider than needed) in blocks of
    at most ``_BLOCK`` pairs (small enough to stay in cache); with ``align``, blocks are also
    limited to ``_TABLE_CELLS`` operation cells. Within a block, longest hypothesis first, so that
    row ``i`` only touches the pairs still needing it (a prefix of the block).
    """
    n = np.fromiter(map(len, hyps), dtype=np.int64, count=len(hyps))
    m = np.fromiter(map(len, refs), dtype=np.int64, count=len(refs))
    by_ref = np.argsort(m, kind="stable")
    costs = np.empty(len(hyps), dtype=np.int64)
    alignments: list[tuple[list[int], list[int], list[int]]] = [([], [], [])] * len(hyps)
    block = _BLOCK
    if align:
        block = max(1, min(block, _TABLE_CELLS // ((int(n.max()) + 1) * (int(m.max()) + 1))))
    for g in range(0, len(hyps), block):
        part = by_ref[g : g + block]
        idx = part[np.argsort(-n[part], kind="stable")]
        group_costs, ops = _banded_table([hyps[i] for i in idx], [refs[i] for i in idx], n[idx], m[idx], align)
        costs[idx] = group_costs
        if align:
            width = ops.shape[2]
            for a, i in enumerate(idx.tolist()):
                alignments[i] = _alignment(ops[a].tobytes(), width, len(hyps[i]), len(refs[i]))
    return costs, alignments


def _padded(seqs: list[list[int]], lengths: np.ndarray, width: int, fill: int) -> np.ndarray:
    out = np.full((len(seqs), width), fill, dtype=np.int32)
    total = int(lengths.sum())
    row = np.repeat(np.arange(len(seqs)), lengths)
    col = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[row, col] = np.fromiter(chain.from_iterable(seqs), dtype=np.int32, count=total)
    return out


def _banded_table(hyps, refs, n, m, want_ops):
    """Fill the beam edit-distance tables of pairs sorted by decreasing hypothesis length."""
    count, n_max, m_max = len(hyps), int(n[0]), int(m.max())
    width = m_max + 1
    # int16 tables when distances stay small (several times faster: less memory traffic)
    dtype, inf = (np.int16, 1 << 14) if n_max + m_max + 2 < 1 << 14 else (np.int32, 1 << 30)
    hyp = _padded(hyps, n, n_max, fill=-1)
    ref = _padded(refs, m, m_max, fill=-2)

    # the beam: columns [lo, hi) of row i, exactly as sacreBLEU computes them (float ratio, floor)
    ratio = m / n
    beam = np.where(_BEAM_WIDTH < ratio / 2, np.ceil(ratio / 2 + _BEAM_WIDTH), _BEAM_WIDTH).astype(np.int64)
    rows = np.arange(1, n_max + 1)
    diagonal = np.floor(rows[None, :] * ratio[:, None]).astype(np.int64)  # (C, n_max)
    lo = np.maximum(0, diagonal - beam[:, None])
    hi = np.minimum(m[:, None] + 1, diagonal + beam[:, None])
    last = rows[None, :] == n[:, None]
    hi = np.where(last, m[:, None] + 1, hi)
    whole_row = (lo == 0) & (hi == m[:, None] + 1)

    column = np.arange(width, dtype=dtype)
    dist = np.where(column[None, :] <= m[:, None], column[None, :], inf).astype(dtype)  # row 0: insertions
    ops = np.full((count, n_max + 1, width), _UNDEF, dtype=np.int8) if want_ops else None
    if want_ops:
        ops[:, 0, :] = _INS
    active = count
    for i in range(1, n_max + 1):
        while active and n[active - 1] < i:
            active -= 1
        prev = dist[:active]
        mismatch = hyp[:active, i - 1, None] != ref[:active]  # (A, m_max)
        diag = prev[:, :-1] + mismatch
        up = prev + 1
        best = up.copy()
        np.minimum(diag, up[:, 1:], out=best[:, 1:])
        # Columns past a pair's reference length never influence the cells that matter (values only
        # flow rightwards and downwards), so the beam needs masking only where it cuts the row.
        full = bool(whole_row[:active, i - 1].all())
        if not full:
            inside = (column >= lo[:active, i - 1, None]) & (column < hi[:active, i - 1, None])
            best = np.where(inside, np.minimum(best, inf), inf)
        # insertions along the row: cur[j] = min over k <= j of best[k] + (j - k)
        cur = np.minimum.accumulate(best - column, axis=1) + column
        if not full:
            cur = np.where(inside, np.minimum(cur, inf), inf)
        if want_ops:
            # the operation sacreBLEU keeps: the first strictly cheapest of substitution (or no-op),
            # deletion (from the row above), insertion (from the left)
            row_ops = ops[:active, i]
            row_ops[:, 0] = _DEL
            row_ops[:, 1:] = mismatch  # _NOP = 0, _SUB = 1
            row_ops[:, 1:][up[:, 1:] < diag] = _DEL
            row_ops[:, 1:][cur[:, :-1] + 1 < best[:, 1:]] = _INS
            if not full:
                row_ops[~(inside & (cur < inf))] = _UNDEF
        dist[:active] = cur
    return dist[np.arange(count), m], ops
