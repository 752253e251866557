"""Batched n-gram match statistics for many (hypothesis, references) pairs at once.

BLEU, chrF and ROUGE-N all reduce to the same integer statistics: for each n-gram order, how many
n-grams of the hypothesis also occur in a reference, counting each n-gram at most as often as it
occurs on both sides (``sum over n-grams of min(hyp_count, ref_count)``). Computing these with one
``Counter`` per sentence costs a Python-level loop per n-gram; here the whole batch is done with one
numpy sort.

How: symbols (tokens or characters) get small integer ids ``1..A``. Every position of every sequence
becomes one int64 key ``(pair, s0, s1, ..., s_{K-1}, role)`` where ``s0..s_{K-1}`` are the symbol ids
of the K-gram starting there (0 past the end of the sequence), ``pair`` numbers the hypothesis and
its references, and ``role`` is 0 for the hypothesis and ``k`` for the k-th reference. After sorting,
equal n-grams of the same pair are adjacent *for every order n <= K at once* (an n-gram is a prefix
of the K-gram), so group boundaries and per-role counts follow from ``diff``/``cumsum``/``bincount``.
If the key does not fit in 63 bits the batch is split into smaller groups of pairs (each with its
own symbol ids); a single pair that still does not fit is counted with ``Counter``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

__all__ = ["MatchStats", "match_stats", "encoded_match_stats", "distinct_texts", "gather_sequences"]

_KEY_BITS = 63  # int64 keys must stay non-negative
_CHUNK = 8192  # positions sorted and counted together (measured: larger chunks fall out of cache)


@dataclass
class MatchStats:
    """n-gram statistics of P pairs with at most R references, orders 1..K.

    Attributes:
        hyp_len: ``(P,)`` number of symbols in each hypothesis.
        ref_len: ``(P, R)`` number of symbols in each reference, -1 where a pair has fewer refs.
        match: ``(P, R, K)`` ``sum_g min(hyp_count(g), ref_count(g))`` per reference and order.
        clipped: ``(P, K)`` ``sum_g min(hyp_count(g), max over refs of ref_count(g))`` (BLEU).
    """

    hyp_len: np.ndarray
    ref_len: np.ndarray
    match: np.ndarray
    clipped: np.ndarray


def match_stats(
    hyps: Sequence[Sequence[Hashable]],
    refs: Sequence[Sequence[Sequence[Hashable]]],
    order: int,
    want: str = "match",
    key_bits: int = _KEY_BITS,
) -> MatchStats:
    """n-gram match statistics of ``hyps[p]`` against each of ``refs[p]``, for orders ``1..order``.

    Sequences are strings (their characters are the symbols) or sequences of hashable tokens.
    ``want`` is ``"match"`` (per reference, chrF and ROUGE) or ``"clipped"`` (best reference per
    n-gram, BLEU); the other array stays zero. ``key_bits`` exists so tests can force the fallbacks.
    """
    seqs = [s for h, rs in zip(hyps, refs) for s in (h, *rs)]
    flat, n_symbols = _symbol_ids(seqs)
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    refs_per_pair = np.fromiter(map(len, refs), dtype=np.int64, count=len(refs))
    return encoded_match_stats(flat, lengths, refs_per_pair, n_symbols, order, want, key_bits)


def encoded_match_stats(
    flat: np.ndarray,
    lengths: np.ndarray,
    refs_per_pair: np.ndarray,
    n_symbols: int,
    order: int,
    want: str = "match",
    key_bits: int = _KEY_BITS,
) -> MatchStats:
    """:func:`match_stats` on sequences already encoded as symbol ids ``1..n_symbols``.

    Args:
        flat: ``(N,)`` the ids of all sequences, concatenated pair by pair: the hypothesis of
            pair 0, its references, the hypothesis of pair 1, ...
        lengths: ``(S,)`` length of each sequence.
        refs_per_pair: ``(P,)`` number of references of each pair.
        n_symbols: The largest symbol id.
        order: The n-gram orders counted are ``1..order``.
        want: ``"match"`` or ``"clipped"``, as for :func:`match_stats`.
        key_bits: The bits of an n-gram key, as for :func:`match_stats`.
    """
    if want not in ("match", "clipped"):
        raise ValueError(f"want must be 'match' or 'clipped'; got {want!r}")
    n_pairs = refs_per_pair.size
    n_refs = int(refs_per_pair.max()) if n_pairs else 0
    first_seq = np.cumsum(refs_per_pair + 1) - refs_per_pair - 1  # (P,) index of each hypothesis
    ref_len = np.full((n_pairs, n_refs), -1, dtype=np.int64)
    slot = np.arange(n_refs)
    has = slot < refs_per_pair[:, None]
    ref_len[has] = lengths[(first_seq[:, None] + 1 + slot)[has]]
    stats = MatchStats(
        hyp_len=lengths[first_seq].astype(np.int64),
        ref_len=ref_len,
        match=np.zeros((n_pairs, n_refs, order), dtype=np.int64),
        clipped=np.zeros((n_pairs, order), dtype=np.int64),
    )
    if n_pairs and n_refs:
        seq_start = np.cumsum(lengths) - lengths
        last_seq = first_seq + refs_per_pair
        layout = _Layout(lengths, refs_per_pair, seq_start, first_seq, seq_start[last_seq] + lengths[last_seq])
        _fill(stats, layout, 0, n_pairs, flat, n_symbols, order, n_refs, want, key_bits)
    return stats


def distinct_texts(
    completions: Sequence[str], references: Sequence[Sequence[str]]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Distinct texts of a batch and the layout :func:`encoded_match_stats` expects.

    Returns ``(texts, seq_text, refs_per_pair)``: ``seq_text[s]`` is the index in ``texts`` of the
    s-th sequence of the layout (hypothesis of pair 0, its references, hypothesis of pair 1, ...).
    """
    index: dict[str, int] = {}
    seq_text = [index.setdefault(t, len(index)) for h, rs in zip(completions, references) for t in (h, *rs)]
    refs_per_pair = np.fromiter(map(len, references), dtype=np.int64, count=len(references))
    return list(index), np.array(seq_text, dtype=np.int64), refs_per_pair


def gather_sequences(ids: np.ndarray, lengths: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the id sequences ``order[0], order[1], ...`` of a concatenation ``ids``."""
    starts = np.cumsum(lengths) - lengths
    seq_len = lengths[order]
    out_starts = np.cumsum(seq_len) - seq_len
    index = np.arange(int(seq_len.sum())) + np.repeat(starts[order] - out_starts, seq_len)
    return ids[index], seq_len


@dataclass
class _Layout:
    lengths: np.ndarray  # (S,)
    refs_per_pair: np.ndarray  # (P,)
    seq_start: np.ndarray  # (S,) offset of each sequence in `flat`
    first_seq: np.ndarray  # (P,) index of each pair's hypothesis among the sequences
    pair_end: np.ndarray  # (P,) offset in `flat` just past each pair's last reference


def _fill(stats, layout, lo, hi, flat, n_symbols, order, n_refs, want, key_bits) -> None:
    """Compute the statistics of pairs ``lo..hi-1`` into ``stats``; ``flat`` holds exactly their ids."""
    bits = n_symbols.bit_length()
    role_bits = n_refs.bit_length()
    pair_bits = (hi - lo - 1).bit_length()
    if pair_bits + order * bits + role_bits <= key_bits:
        # consecutive pairs in chunks of about _CHUNK positions: the arrays then stay in cache
        offset = layout.seq_start[layout.first_seq[lo]]
        start = lo
        while start < hi:
            stop = int(np.searchsorted(layout.pair_end, layout.pair_end[start - 1] + _CHUNK if start else _CHUNK,
                                       side="right"))
            stop = min(hi, max(stop, start + 1))
            a = layout.seq_start[layout.first_seq[start]] - offset
            b = layout.pair_end[stop - 1] - offset
            _sorted_counts(stats, layout, start, stop, flat[a:b], bits, role_bits, order, n_refs, want)
            start = stop
        return
    if hi - lo == 1:
        _counter_fallback(stats, layout, lo, flat, order)
        return
    for a, b in ((lo, (lo + hi) // 2), ((lo + hi) // 2, hi)):
        start = layout.seq_start[layout.first_seq[a]] - layout.seq_start[layout.first_seq[lo]]
        last = layout.first_seq[b - 1] + layout.refs_per_pair[b - 1]
        stop = layout.seq_start[last] + layout.lengths[last] - layout.seq_start[layout.first_seq[lo]]
        part = flat[start:stop]
        alphabet, ids = np.unique(part, return_inverse=True)  # symbol ids local to these pairs
        _fill(stats, layout, a, b, ids.astype(np.int64) + 1, alphabet.size, order, n_refs, want, key_bits)


def _symbol_ids(seqs: list) -> tuple[np.ndarray, int]:
    """Concatenate the sequences as symbol ids ``1..A``; returns ``(ids, A)``."""
    if all(isinstance(s, str) for s in seqs):
        # characters: code points through a lookup table (no Python-level loop over characters)
        text = "".join(seqs)
        if not text:
            return np.zeros(0, dtype=np.int64), 0
        points = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        present = np.zeros(int(points.max()) + 1, dtype=bool)
        present[points] = True
        alphabet = np.flatnonzero(present)
        table = np.zeros(present.size, dtype=np.int64)
        table[alphabet] = np.arange(1, alphabet.size + 1)
        return table[points], int(alphabet.size)
    vocab = {token: i for i, token in enumerate(dict.fromkeys(chain.from_iterable(seqs)), 1)}
    total = sum(len(s) for s in seqs)
    ids = np.fromiter(map(vocab.__getitem__, chain.from_iterable(seqs)), dtype=np.int64, count=total)
    return ids, len(vocab)


def _sorted_counts(stats, layout, lo, hi, flat, bits, role_bits, order, n_refs, want) -> None:
    if flat.size == 0:
        return
    n_pairs = hi - lo
    refs_per_pair = layout.refs_per_pair[lo:hi]
    lengths = layout.lengths[layout.first_seq[lo] : layout.first_seq[hi - 1] + refs_per_pair[-1] + 1]
    seq_pair = np.repeat(np.arange(n_pairs), refs_per_pair + 1)  # (S,)
    seq_role = np.arange(seq_pair.size) - np.repeat(np.cumsum(refs_per_pair + 1) - refs_per_pair - 1,
                                                    refs_per_pair + 1)  # 0 = hypothesis, k = k-th ref

    # Lay the sequences out with order-1 zeros after each, so that the K-gram at every position
    # is `order` contiguous slices; then keep the positions that hold a symbol.
    stride = lengths + order - 1
    padded = np.zeros(int(stride.sum()) + order - 1, dtype=np.int64)
    real = np.zeros(padded.size, dtype=bool)
    offsets = np.repeat(np.cumsum(stride) - stride - (np.cumsum(lengths) - lengths), lengths)
    where = np.arange(flat.size) + offsets
    padded[where] = flat
    real[where] = True
    size = int(stride.sum())
    gram = padded[:size].copy()  # (M,) `bits` bits per symbol, first symbol highest
    for k in range(1, order):
        gram <<= bits
        gram |= padded[k : size + k]
    pair_shift = order * bits + role_bits
    keys = (np.repeat(seq_pair, stride) << pair_shift) | (gram << role_bits) | np.repeat(seq_role, stride)
    keys = keys[real[:size]]
    keys.sort()

    role = keys & ((1 << role_bits) - 1)
    symbol_mask = (1 << bits) - 1
    pair_index = slice(lo, hi)
    for n in range(1, order + 1):
        shift = role_bits + (order - n) * bits
        prefix = keys >> shift  # (pair, first n symbols) of each position, sorted
        valid = (prefix & symbol_mask) != 0  # the n-gram fits inside its sequence
        r = role
        if not valid.all():
            prefix, r = prefix[valid], role[valid]
        if prefix.size == 0:
            continue
        new_gram = np.empty(prefix.size, dtype=bool)
        new_gram[0] = True
        np.not_equal(prefix[1:], prefix[:-1], out=new_gram[1:])
        gram_id = np.cumsum(new_gram) - 1
        n_grams = int(gram_id[-1]) + 1
        # counts[g, 0]: occurrences of n-gram g in the hypothesis; counts[g, k]: in the k-th reference
        counts = np.bincount(gram_id * (n_refs + 1) + r, minlength=n_grams * (n_refs + 1))
        counts = counts.reshape(n_grams, n_refs + 1)
        gram_pair = prefix[new_gram] >> (pair_shift - shift)  # (G,) sorted
        if want == "match":
            per_gram = np.minimum(counts[:, :1], counts[:, 1:])  # (G, R) min(hyp count, ref count)
            stats.match[pair_index, :, n - 1] = _sum_by_pair(per_gram, gram_pair, n_pairs)
        else:
            # BLEU clipping: an n-gram counts at most as often as in the reference where it is most frequent
            ref_max = counts[:, 1]
            for k in range(2, n_refs + 1):
                ref_max = np.maximum(ref_max, counts[:, k])
            stats.clipped[pair_index, n - 1] = _sum_by_pair(np.minimum(counts[:, 0], ref_max), gram_pair, n_pairs)


def _sum_by_pair(values: np.ndarray, pair: np.ndarray, n_pairs: int) -> np.ndarray:
    """Sum the rows of ``values`` that belong to each pair (``pair`` is sorted)."""
    out = np.zeros((n_pairs, *values.shape[1:]), dtype=values.dtype)
    starts = np.searchsorted(pair, np.arange(n_pairs))
    present = starts < np.append(starts[1:], pair.size)
    if present.any():
        out[present] = np.add.reduceat(values, starts[present], axis=0)
    return out


def _counter_fallback(stats, layout, p, flat, order) -> None:
    """Plain ``Counter`` statistics for one pair whose symbols do not fit a 63-bit key."""
    first = layout.first_seq[p]
    seqs = np.split(flat, np.cumsum(layout.lengths[first : first + layout.refs_per_pair[p]]))
    hyp, refs = seqs[0].tolist(), [s.tolist() for s in seqs[1:]]
    for n in range(1, order + 1):
        h = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
        best: Counter = Counter()
        for k, ref in enumerate(refs):
            r = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
            stats.match[p, k, n - 1] = sum((h & r).values())
            best |= r
        stats.clipped[p, n - 1] = sum((h & best).values())
