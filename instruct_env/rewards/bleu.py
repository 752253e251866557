"""Sentence BLEU and chrF, batched; values identical to sacreBLEU's ``sentence_bleu``/``sentence_chrf``.

The n-gram statistics of the whole batch come from :mod:`instruct_env.rewards._ngrams` (one numpy
sort instead of a ``Counter`` per sentence); the scores are then computed for all pairs at once
with sacreBLEU's formulas. sacreBLEU itself is not needed at run time; the tokenisation and the
formulas follow sacreBLEU 2.x and the tests compare the values with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import chain
from typing import Any

import numpy as np

from instruct_env.rewards._ngrams import (
    MatchStats,
    distinct_texts,
    encoded_match_stats,
    gather_sequences,
    match_stats,
)
from instruct_env.rewards.base import Reward

__all__ = ["BleuReward", "ChrfReward", "tokenize_13a"]

# The mteval-v13a tokenisation used by sacreBLEU ("13a"). Step 1 surrounds these ASCII symbols with
# spaces; steps 2-4 split "." and "," from non-digits and "-" after digits.
_SYMBOLS = "{|}~[\\]^_` !\"#$%&()*+:;<=>?@/"
_PAD_SYMBOLS = str.maketrans({c: f" {c} " for c in _SYMBOLS})
_DOT_COMMA_DASH = re.compile(r"[.,\-]")
_PUNCT_RULES = (
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
)


def _split_words(words: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """13a tokens of each whitespace-free word.

    The 13a rules only look at pairs of adjacent characters and treat whitespace like any other
    non-digit that is not ``.``/``,``/``-``, so tokenising a line word by word gives the same tokens
    as tokenising it whole. Three shapes are settled without the regular expressions: letters and
    digits only (one token); no ``.``, ``,`` or ``-`` (only the symbol padding applies); and a
    single trailing ``.`` or ``,`` after such a word (always split off, whatever precedes it). The
    remaining words are processed together, one per line of a single string (a newline is never
    touched by the rules since it only ever has spaces next to it).
    """
    out: dict[str, tuple[str, ...]] = {}
    hard = []
    for w in words:
        if w.isalnum():
            out[w] = (w,)
        elif not _DOT_COMMA_DASH.search(w):
            out[w] = tuple(w.translate(_PAD_SYMBOLS).split())
        elif w[-1] in ".," and not _DOT_COMMA_DASH.search(w, 0, len(w) - 1):
            out[w] = (*w[:-1].translate(_PAD_SYMBOLS).split(), w[-1])
        else:
            hard.append(w)
    if hard:
        text = (" " + " \n ".join(hard) + " ").translate(_PAD_SYMBOLS)
        for pattern, repl in _PUNCT_RULES:
            text = pattern.sub(repl, text)
        for word, piece in zip(hard, text.split("\n")):
            out[word] = tuple(piece.split())
    return out


def _clean_13a(line: str) -> str:
    """The language-independent part of 13a, applied as sacreBLEU does (after ``rstrip``)."""
    line = line.rstrip().replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    return line


def tokenize_13a(lines: list[str]) -> list[list[str]]:
    """sacreBLEU's default ("13a") tokenisation of each line, as lists of tokens.

    >>> tokenize_13a(["Hello, world! It costs $3.50 (2-3 days)."])
    [['Hello', ',', 'world', '!', 'It', 'costs', '$', '3.50', '(', '2', '-', '3', 'days', ')', '.']]
    """
    words_of = [_clean_13a(line).split() for line in lines]
    split = _split_words(dict.fromkeys(chain.from_iterable(words_of)))
    return [list(chain.from_iterable(map(split.__getitem__, words))) for words in words_of]


def _encode_13a(texts: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """13a token ids of each text, concatenated; returns ``(ids, tokens per text, vocabulary size)``."""
    words_of = [_clean_13a(t).split() for t in texts]
    split = _split_words(dict.fromkeys(chain.from_iterable(words_of)))
    token_id = {t: i for i, t in enumerate(dict.fromkeys(chain.from_iterable(split.values())), 1)}
    word_ids = {w: tuple(map(token_id.__getitem__, tokens)) for w, tokens in split.items()}
    occurrences = list(map(word_ids.__getitem__, chain.from_iterable(words_of)))
    ids = np.fromiter(chain.from_iterable(occurrences), dtype=np.int64)
    tokens_per_word = np.fromiter(map(len, occurrences), dtype=np.int64, count=len(occurrences))
    words_per_text = np.fromiter(map(len, words_of), dtype=np.int64, count=len(words_of))
    text_of_word = np.repeat(np.arange(len(texts)), words_per_text)
    lengths = np.bincount(text_of_word, weights=tokens_per_word, minlength=len(texts)).astype(np.int64)
    return ids, lengths, len(token_id)


def bleu_from_stats(stats: MatchStats, max_order: int = 4) -> np.ndarray:
    """Sentence BLEU (0-100) of every pair from its clipped n-gram counts.

    sacreBLEU's ``BLEU.compute_bleu`` with ``smooth_method="exp"`` and ``effective_order=True``,
    vectorised: the reference length is the closest one (the shorter on ties); precision
    ``100 * correct / total`` per order, or ``100 / (2**z * total)`` for an order without matches
    where ``z`` counts such orders so far; orders from the first one without hypothesis n-grams on
    are dropped; BLEU is the brevity penalty times the geometric mean of the precisions, and 0 when
    nothing matches at all.
    """
    sys_len = stats.hyp_len  # (P,)
    far = np.iinfo(np.int64).max
    diff = np.where(stats.ref_len >= 0, np.abs(stats.ref_len - sys_len[:, None]), far)  # (P, R)
    closest = diff == diff.min(axis=1, keepdims=True)
    ref_len = np.where(closest, stats.ref_len, far).min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        bp = np.where(sys_len < ref_len, np.where(sys_len > 0, np.exp(1 - ref_len / sys_len), 0.0), 1.0)
        log_sum = np.zeros(sys_len.shape)
        eff_order = np.ones(sys_len.shape, dtype=np.int64)
        smooth = np.ones(sys_len.shape)
        alive = np.ones(sys_len.shape, dtype=bool)  # no order without hypothesis n-grams met yet
        for n in range(1, max_order + 1):
            total = np.maximum(sys_len - n + 1, 0)
            correct = stats.clipped[:, n - 1]
            alive &= total > 0
            smooth = np.where(alive & (correct == 0), smooth * 2, smooth)
            precision = np.where(correct == 0, 100.0 / (smooth * total), 100.0 * correct / total)
            log_sum = np.where(alive, log_sum + np.log(np.where(alive, precision, 1.0)), log_sum)
            eff_order = np.where(alive, n, eff_order)
        score = bp * np.exp(log_sum / eff_order)
    return np.where(stats.clipped.any(axis=1), score, 0.0)


class BleuReward(Reward):
    """Sentence BLEU in ``[0, 1]``: ``sacrebleu.sentence_bleu(completion, references).score / 100``.

    sacreBLEU's sentence-level defaults: 13a tokenisation, case-sensitive, exponential smoothing,
    effective n-gram order, maximum order 4, closest reference length for the brevity penalty.
    Clipped to ``[0, 1]`` (sacreBLEU can return 100.00000000000001 for a perfect match).

    >>> reward = BleuReward()
    >>> reward(["the cat sat on the mat", "a dog"], [["the cat sat on the mat"], ["the cat sat"]])
    array([1., 0.])
    """

    name = "bleu"

    def _score(self, completions: list[str], references: list[tuple[str, ...]], **kwargs: Any) -> np.ndarray:
        texts, seq_text, refs_per_pair = distinct_texts(completions, references)
        ids, lengths, n_symbols = _encode_13a(texts)
        flat, seq_len = gather_sequences(ids, lengths, seq_text)
        stats = encoded_match_stats(flat, seq_len, refs_per_pair, n_symbols, order=4, want="clipped")
        # exp(log(100)) / 100 can exceed 1 by a rounding error (sacreBLEU's too): clip to the range
        return np.clip(bleu_from_stats(stats) / 100, 0.0, 1.0)

    def __repr__(self) -> str:
        return "BleuReward()"


class ChrfReward(Reward):
    """Sentence chrF in ``[0, 1]``: ``sacrebleu.sentence_chrf(completion, references).score / 100``.

    sacreBLEU's defaults: character n-grams of orders 1-6 with whitespace removed, no word n-grams,
    ``beta = 2``, averaged over the orders both sides have ("effective order"); the best reference
    counts.

    >>> ChrfReward()(["the cat sat", "xyz"], [["the cat sat"], ["abc"]])
    array([1., 0.])
    """

    name = "chrf"
    char_order = 6
    beta = 2

    def _score(self, completions: list[str], references: list[tuple[str, ...]], **kwargs: Any) -> np.ndarray:
        hyps = ["".join(c.split()) for c in completions]
        refs = [["".join(r.split()) for r in rs] for rs in references]
        stats = match_stats(hyps, refs, order=self.char_order)
        factor = self.beta**2
        hyp_len = stats.hyp_len[:, None]  # (P, 1)
        avg_prec = np.zeros(stats.ref_len.shape)  # (P, R)
        avg_rec = np.zeros(stats.ref_len.shape)
        effective = np.zeros(stats.ref_len.shape, dtype=np.int64)
        for n in range(1, self.char_order + 1):
            n_ref = np.maximum(stats.ref_len - n + 1, 0)
            n_hyp = np.maximum(hyp_len - n + 1, 0)
            both = (n_hyp > 0) & (n_ref > 0)  # orders without n-grams on either side are skipped
            matches = stats.match[:, :, n - 1]
            avg_prec += np.where(both, matches / np.where(both, n_hyp, 1), 0.0)
            avg_rec += np.where(both, matches / np.where(both, n_ref, 1), 0.0)
            effective += both
        some = effective > 0
        avg_prec = np.where(some, avg_prec / np.maximum(effective, 1), 0.0)
        avg_rec = np.where(some, avg_rec / np.maximum(effective, 1), 0.0)
        positive = (avg_prec + avg_rec) > 0
        denom = np.where(positive, factor * avg_prec + avg_rec, 1.0)
        score = np.where(positive, 100 * ((1 + factor) * avg_prec * avg_rec / denom), 0.0)
        score[stats.ref_len < 0] = -1.0  # padding for pairs with fewer references
        return score.max(axis=1) / 100

    def __repr__(self) -> str:
        return "ChrfReward()"
