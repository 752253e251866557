"""ROUGE-N, ROUGE-L and ROUGE-Lsum F-measures, batched; identical to the ``rouge_score`` package.

Convention: the value for one completion is the best F-measure over its references of
``RougeScorer([rouge_type], use_stemmer=True).score(reference, completion)[rouge_type].fmeasure``.

Speed comes from three things: each distinct text is tokenised once per call and each distinct
word is Porter-stemmed once per process (an LRU cache; :func:`clear_caches` empties it); ROUGE-N
counts come from the batched :func:`~instruct_env.rewards._ngrams.match_stats`; and the longest
common subsequence is computed bit-parallel (Hyyrö, 2004) with Python integers as bit vectors.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from itertools import chain
from typing import Any

import numpy as np

from instruct_env.error import ConfigError
from instruct_env.rewards._ngrams import match_stats
from instruct_env.rewards.base import Reward

__all__ = ["RougeReward", "rouge_tokenize", "clear_caches"]

_ROUGE_TYPES = tuple(f"rouge{n}" for n in range(1, 10)) + ("rougeL", "rougeLsum")
_WORD = re.compile(r"[a-z0-9]+")  # rouge_score keeps lower-cased ASCII letters and digits only
_VALID = re.compile(r"^[a-z0-9]+$")


@functools.lru_cache(maxsize=1)
def _porter():
    from nltk.stem import porter

    return porter.PorterStemmer()


@functools.lru_cache(maxsize=2**17)
def _stem(word: str) -> str | None:
    """rouge_score's treatment of one word: Porter stem if longer than 3 characters; None if invalid."""
    stem = _porter().stem(word) if len(word) > 3 else word
    return stem if _VALID.match(stem) else None


def clear_caches() -> None:
    """Forget the per-process cache of Porter stems (to free memory or time a cold start)."""
    _stem.cache_clear()


def rouge_tokenize(texts: list[str]) -> list[tuple[str, ...]]:
    """``rouge_score``'s default tokenisation with stemming, for each text.

    >>> rouge_tokenize(["The cats were RUNNING, quickly!"])
    [('the', 'cat', 'were', 'run', 'quickli')]
    """
    words_of = [_WORD.findall(t.lower()) for t in texts]
    final = {w: _stem(w) for w in set(chain.from_iterable(words_of))}
    return [tuple(final[w] for w in words if final[w] is not None) for words in words_of]


def _fmeasure(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _lcs_length(masks: dict[str, int], ref_len: int, hyp: tuple[str, ...]) -> int:
    """Length of the longest common subsequence; ``masks[w]`` has bit i set where ``ref[i] == w``.

    Bit-parallel algorithm of Hyyrö (2004): a zero bit i in ``v`` marks a reference position
    that ends a longer common subsequence; one pass over the hypothesis, O(len(hyp)) integer ops.
    """
    v = (1 << ref_len) - 1
    get = masks.get
    for word in hyp:
        u = v & get(word, 0)
        v = (v + u) | (v - u)
    return ref_len - (v & ((1 << ref_len) - 1)).bit_count()


def _bit_masks(ref: tuple[str, ...]) -> dict[str, int]:
    masks: dict[str, int] = {}
    for i, word in enumerate(ref):
        masks[word] = masks.get(word, 0) | (1 << i)
    return masks


def _lcs_indices(ref: tuple[str, ...], hyp: tuple[str, ...]) -> list[int]:
    """Positions in ``ref`` of one longest common subsequence, chosen like ``rouge_score`` does.

    Dynamic-programming table, then a walk back from the end that moves left in ``hyp`` only
    when that keeps a strictly longer subsequence than moving up in ``ref`` (ties move up).
    """
    rows, cols = len(ref), len(hyp)
    table = [[0] * (cols + 1) for _ in range(rows + 1)]
    for i in range(1, rows + 1):
        above, row, word = table[i - 1], table[i], ref[i - 1]
        for j in range(1, cols + 1):
            row[j] = above[j - 1] + 1 if word == hyp[j - 1] else max(above[j], row[j - 1])
    out = []
    i, j = rows, cols
    while i > 0 and j > 0:
        if ref[i - 1] == hyp[j - 1]:
            out.append(i - 1)
            i, j = i - 1, j - 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return out


def _summary_lcs_fmeasure(ref_sents: list[tuple[str, ...]], hyp_sents: list[tuple[str, ...]]) -> float:
    """Summary-level ROUGE-L (union LCS over sentences, Lin 2004, section 3.2)."""
    ref_total = sum(map(len, ref_sents))
    hyp_total = sum(map(len, hyp_sents))
    if not ref_sents or not hyp_sents or not ref_total or not hyp_total:
        return 0.0
    ref_left = Counter(chain.from_iterable(ref_sents))
    hyp_left = Counter(chain.from_iterable(hyp_sents))
    hits = 0
    for ref in ref_sents:
        union = sorted(set().union(*(_lcs_indices(ref, hyp) for hyp in hyp_sents)))
        for i in union:
            word = ref[i]
            if ref_left[word] > 0 and hyp_left[word] > 0:
                hits += 1
                ref_left[word] -= 1
                hyp_left[word] -= 1
    return _fmeasure(hits / hyp_total, hits / ref_total)


class RougeReward(Reward):
    """ROUGE F-measure in ``[0, 1]`` with Porter stemming, best reference.

    Equals ``max(RougeScorer([rouge_type], use_stemmer=True).score(ref, completion)[rouge_type].fmeasure
    for ref in references)`` from the ``rouge_score`` package. Text is lower-cased and only ASCII
    letters and digits are kept (so text without them, e.g. Chinese, has no tokens and scores 0).
    ``rougeLsum`` splits texts into sentences at newlines.

    Args:
        rouge_type: ``"rouge1"`` ... ``"rouge9"``, ``"rougeL"`` or ``"rougeLsum"``.

    >>> RougeReward("rougeL")(["The cats sat down."], [["the cat sat", "a dog"]])  # P = 3/4, R = 1
    array([0.85714286])
    """

    def __init__(self, rouge_type: str = "rougeL") -> None:
        if rouge_type not in _ROUGE_TYPES:
            from instruct_env.error import suggest

            raise ConfigError(
                f"Unknown ROUGE type {rouge_type!r}.{suggest(rouge_type, _ROUGE_TYPES)} "
                f"Valid types: {', '.join(_ROUGE_TYPES)}."
            )
        self.rouge_type = rouge_type
        self.name = rouge_type

    def _score(self, completions: list[str], references: list[tuple[str, ...]], **kwargs: Any) -> np.ndarray:
        n_refs = [len(rs) for rs in references]
        texts = list(dict.fromkeys(chain(completions, chain.from_iterable(references))))
        if self.rouge_type == "rougeLsum":
            return self._score_lsum(completions, references, texts)
        tokens = dict(zip(texts, rouge_tokenize(texts)))
        hyps = [tokens[c] for c in completions]
        refs = [[tokens[r] for r in rs] for rs in references]
        if self.rouge_type == "rougeL":
            return self._lcs_fmeasures(hyps, refs)
        n = int(self.rouge_type[5:])
        stats = match_stats(hyps, refs, order=n)
        inter = stats.match[:, :, n - 1].astype(np.float64)  # (P, R)
        precision = inter / np.maximum(stats.hyp_len[:, None] - n + 1, 1)
        recall = inter / np.maximum(stats.ref_len - n + 1, 1)
        positive = precision + recall > 0
        f = np.where(positive, 2 * precision * recall / np.where(positive, precision + recall, 1.0), 0.0)
        f[np.arange(f.shape[1]) >= np.asarray(n_refs)[:, None]] = -1.0  # padding
        return f.max(axis=1) if f.shape[1] else np.zeros(len(completions))

    @staticmethod
    def _lcs_fmeasures(hyps: list[tuple[str, ...]], refs: list[list[tuple[str, ...]]]) -> np.ndarray:
        masks: dict[tuple[str, ...], dict[str, int]] = {}
        out = np.zeros(len(hyps))
        for p, (hyp, rs) in enumerate(zip(hyps, refs)):
            best = 0.0
            for ref in rs:
                if not hyp or not ref:
                    continue
                if ref not in masks:
                    masks[ref] = _bit_masks(ref)
                lcs = _lcs_length(masks[ref], len(ref), hyp)
                best = max(best, _fmeasure(lcs / len(hyp), lcs / len(ref)))
            out[p] = best
        return out

    @classmethod
    def _score_lsum(cls, completions, references, texts) -> np.ndarray:
        sents = {t: [s for s in t.split("\n") if s] for t in texts}
        simple = [len(sents[c]) <= 1 and all(len(sents[r]) <= 1 for r in rs) for c, rs in zip(completions, references)]
        out = np.zeros(len(completions))
        # One sentence per side: the union LCS is the plain LCS, so ROUGE-Lsum equals ROUGE-L.
        easy = [p for p, ok in enumerate(simple) if ok]
        if easy:
            easy_texts = list(dict.fromkeys(chain.from_iterable([completions[p], *references[p]] for p in easy)))
            tokens = dict(zip(easy_texts, rouge_tokenize(easy_texts)))
            out[easy] = cls._lcs_fmeasures(
                [tokens[completions[p]] for p in easy], [[tokens[r] for r in references[p]] for p in easy]
            )
        hard = [p for p, ok in enumerate(simple) if not ok]
        if hard:
            hard_sents = list(dict.fromkeys(
                chain.from_iterable(sents[t] for p in hard for t in (completions[p], *references[p]))
            ))
            tokens = dict(zip(hard_sents, rouge_tokenize(hard_sents)))
            for p in hard:
                hyp = [tokens[s] for s in sents[completions[p]]]
                out[p] = max(_summary_lcs_fmeasure([tokens[s] for s in sents[r]], hyp) for r in references[p])
        return out

    def __repr__(self) -> str:
        return f"RougeReward({self.rouge_type!r})"
