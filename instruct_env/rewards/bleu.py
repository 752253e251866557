"""Sentence BLEU and chrF, batched; values identical to sacreBLEU's ``BLEU``/``CHRF`` sentence scores.

The n-gram statistics of the whole batch come from :mod:`instruct_env.rewards._ngrams` (one numpy
sort instead of a ``Counter`` per sentence); the scores are then computed for all pairs at once
with sacreBLEU's formulas. Both rewards take the options of sacreBLEU's ``BLEU`` and ``CHRF``
classes under the same names; sacreBLEU itself is only used for the tokenisers that need its
optional packages (``ja-mecab``, ``ko-mecab``, ``flores101``, ``flores200``). The tests compare
every option with sacreBLEU.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np

from instruct_env._validation import check_finite, check_int
from instruct_env.error import ConfigError
from instruct_env.rewards._ngrams import (
    MatchStats,
    distinct_texts,
    encoded_match_stats,
    gather_sequences,
    match_stats,
)
from instruct_env.rewards._tokenizers import (
    BLEU_TOKENIZERS,
    EXTERNAL_TOKENIZERS,
    bleu_encode,
    check_external,
    external_tokenizer,
    tokenize_13a,
)
from instruct_env.rewards.base import Reward

__all__ = ["BleuReward", "ChrfReward", "tokenize_13a", "bleu_from_stats", "BLEU_TOKENIZERS", "SMOOTH_METHODS"]

#: sacreBLEU's smoothing methods and the value each uses when ``smooth_value`` is None.
SMOOTH_METHODS: dict[str, float | None] = {"none": None, "floor": 0.1, "add-k": 1, "exp": None}
_LOG_OF_ZERO = -9999999999  # sacreBLEU's floor for log(0)


def bleu_from_stats(
    stats: MatchStats,
    max_order: int = 4,
    smooth_method: str = "exp",
    smooth_value: float | None = None,
    effective_order: bool = True,
) -> np.ndarray:
    """Sentence BLEU (0-100) of every pair from its clipped n-gram counts.

    sacreBLEU's ``BLEU.compute_bleu``, vectorised: the reference length is the closest one (the
    shorter on ties); 0 when no n-gram matches at all. For each order ``n`` (``add-k`` first adds
    ``k`` to the counts of orders above 1), the loop stops at the first order without hypothesis
    n-grams; precision is ``100 * correct / total``, and for an order without matches
    ``100 / (2**z * total)`` (``exp``, ``z`` counting such orders so far), ``100 * k / total``
    (``floor``) or 0. With ``effective_order`` the mean runs over the orders reached, otherwise
    over all ``max_order`` (unreached ones at precision 0). BLEU is the brevity penalty times the
    geometric mean, with ``log(0)`` taken as sacreBLEU's ``-9999999999``.
    """
    if smooth_value is None:
        smooth_value = SMOOTH_METHODS[smooth_method]
    sys_len = stats.hyp_len  # (P,)
    far = np.iinfo(np.int64).max
    diff = np.where(stats.ref_len >= 0, np.abs(stats.ref_len - sys_len[:, None]), far)  # (P, R)
    closest = diff == diff.min(axis=1, keepdims=True)
    ref_len = np.where(closest, stats.ref_len, far).min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bp = np.where(sys_len < ref_len, np.where(sys_len > 0, np.exp(1 - ref_len / sys_len), 0.0), 1.0)
        precisions = np.zeros((sys_len.size, max_order))  # (P, N)
        eff_order = np.full(sys_len.shape, max_order, dtype=np.int64)
        if effective_order:
            eff_order[:] = 1
        smooth = np.ones(sys_len.shape)
        # The constant of add-k and floor, whose defaults are numbers (the other methods have none).
        k = smooth_value if smooth_value is not None else 0.0
        alive = np.ones(sys_len.shape, dtype=bool)  # no order without hypothesis n-grams met yet
        for n in range(1, max_order + 1):
            total = np.maximum(sys_len - n + 1, 0).astype(np.float64)
            correct = stats.clipped[:, n - 1].astype(np.float64)
            if smooth_method == "add-k" and n > 1:
                correct = correct + k
                total = total + k
            alive &= total != 0
            if effective_order:
                eff_order = np.where(alive, n, eff_order)
            missed = correct == 0
            matched = 100.0 * correct / total
            if smooth_method == "exp":
                smooth = np.where(alive & missed, smooth * 2, smooth)
                value = np.where(missed, 100.0 / (smooth * total), matched)
            elif smooth_method == "floor":
                value = np.where(missed, 100.0 * k / total, matched)
            else:
                value = np.where(missed, 0.0, matched)
            precisions[:, n - 1] = np.where(alive, value, 0.0)
        logs = np.where(precisions == 0, _LOG_OF_ZERO, np.log(np.where(precisions == 0, 1.0, precisions)))
        log_sum = np.zeros(sys_len.shape)
        for n in range(1, max_order + 1):  # summed in order, as Python's sum() does
            log_sum = np.where(n <= eff_order, log_sum + logs[:, n - 1], log_sum)
        score = bp * np.exp(log_sum / eff_order)
    return np.where(stats.clipped.any(axis=1), score, 0.0)


def _check_bool(owner: str, name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{owner} option {name} must be true or false; got {value!r}.")
    return bool(value)


def _options_repr(obj: object, defaults: dict[str, Any]) -> str:
    """``name=value`` for every option that differs from its default."""
    return ", ".join(f"{k}={getattr(obj, k)!r}" for k, d in defaults.items() if getattr(obj, k) != d)


class BleuReward(Reward):
    """Sentence BLEU in ``[0, 1]``: ``sacrebleu.BLEU(**options, effective_order=True).sentence_score(...).score / 100``.

    With the default options this is ``sacrebleu.sentence_bleu(completion, references).score / 100``:
    13a tokenisation, case-sensitive, exponential smoothing, effective n-gram order, maximum order
    4, closest reference length for the brevity penalty. Clipped to ``[0, 1]`` (sacreBLEU can return
    100.00000000000001 for a perfect match).

    Args:
        tokenize: sacreBLEU's tokeniser: ``"13a"`` (default; ``None`` means the same), ``"intl"``,
            ``"zh"`` (each Chinese character a token, 13a rules for the rest), ``"char"`` (every
            character), ``"none"`` (split on whitespace), and where their packages are installed
            ``"ja-mecab"``, ``"ko-mecab"``, ``"flores101"``, ``"flores200"`` (tokens from sacreBLEU's
            own tokeniser; the flores ones also need their SentencePiece model file). Missing
            packages or files are reported when the reward is built.
        lowercase: Lower-case both sides first.
        smooth_method: ``"exp"`` (default), ``"floor"``, ``"add-k"`` or ``"none"``.
        smooth_value: The value of ``floor`` (default 0.1) and ``add-k`` (default 1).
        max_ngram_order: Highest n-gram order (default 4).
        effective_order: Average only over the orders the hypothesis has n-grams of (sentence BLEU's
            default, ``True``; sacreBLEU's class defaults to ``False`` for corpus BLEU).

    Attributes:
        path: How values are computed: ``"batched"``, or for the external tokenisers
            ``"batched (tokens from sacreBLEU's <name> tokenizer)"``.

    >>> reward = BleuReward()
    >>> reward(["the cat sat on the mat", "a dog"], [["the cat sat on the mat"], ["the cat sat"]])
    array([1., 0.])
    >>> BleuReward(tokenize="zh")(["我爱北京天安门"], [["我爱北京"]]).round(4)
    array([0.4111])
    """

    name = "bleu"
    _DEFAULTS: dict[str, Any] = {"tokenize": "13a", "lowercase": False, "smooth_method": "exp", "smooth_value": None,
                                 "max_ngram_order": 4, "effective_order": True}

    def __init__(
        self,
        tokenize: str | None = "13a",
        lowercase: bool = False,
        smooth_method: str = "exp",
        smooth_value: float | None = None,
        max_ngram_order: int = 4,
        effective_order: bool = True,
    ) -> None:
        from instruct_env.error import suggest

        tokenize = "13a" if tokenize is None else tokenize
        if tokenize not in BLEU_TOKENIZERS:
            raise ConfigError(
                f"Unknown BLEU tokenize={tokenize!r}.{suggest(str(tokenize), BLEU_TOKENIZERS)} sacreBLEU's "
                f"tokenizers: {', '.join(BLEU_TOKENIZERS)}."
            )
        if smooth_method not in SMOOTH_METHODS:
            raise ConfigError(
                f"Unknown BLEU smooth_method={smooth_method!r}.{suggest(str(smooth_method), SMOOTH_METHODS)} "
                f"Expected one of {', '.join(SMOOTH_METHODS)}."
            )
        if smooth_value is not None:
            check_finite("BLEU option smooth_value", smooth_value, 0)
            if SMOOTH_METHODS[smooth_method] is None:
                raise ConfigError(
                    f"BLEU smooth_value={smooth_value!r} has no effect with smooth_method={smooth_method!r}; "
                    "it sets the value of 'floor' and 'add-k'. Remove it or choose one of those methods."
                )
        self.tokenize = tokenize
        self.lowercase = _check_bool("BLEU", "lowercase", lowercase)
        self.smooth_method = smooth_method
        self.smooth_value = smooth_value
        self.max_ngram_order = check_int("BLEU option max_ngram_order", max_ngram_order, 1)
        self.effective_order = _check_bool("BLEU", "effective_order", effective_order)
        if tokenize in EXTERNAL_TOKENIZERS:
            check_external(tokenize)
        self._external: Any = None

    @property
    def path(self) -> str:
        """``"batched"``, or where the tokens come from when sacreBLEU tokenises."""
        if self.tokenize in EXTERNAL_TOKENIZERS:
            return f"batched (tokens from sacreBLEU's {self.tokenize} tokenizer)"
        return "batched"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_external": None}  # the tokeniser object is rebuilt where needed

    def _score(self, completions: list[str], references: list[tuple[str, ...]], **kwargs: Any) -> np.ndarray:
        texts, seq_text, refs_per_pair = distinct_texts(completions, references)
        if self.lowercase:
            texts = [t.lower() for t in texts]
        if self.tokenize in EXTERNAL_TOKENIZERS and self._external is None:
            self._external = external_tokenizer(self.tokenize)
        ids, lengths, n_symbols = bleu_encode(texts, self.tokenize, self._external)
        flat, seq_len = gather_sequences(ids, lengths, seq_text)
        stats = encoded_match_stats(flat, seq_len, refs_per_pair, n_symbols, order=self.max_ngram_order,
                                    want="clipped")
        score = bleu_from_stats(stats, self.max_ngram_order, self.smooth_method, self.smooth_value,
                                self.effective_order)
        # exp(log(100)) / 100 can exceed 1 by a rounding error (sacreBLEU's too): clip to the range
        return np.clip(score / 100, 0.0, 1.0)

    def __repr__(self) -> str:
        text = f"BleuReward({_options_repr(self, self._DEFAULTS)})"
        return text if self.path == "batched" else f"{text} [{self.path}]"


_CHRF_PUNCTUATION = frozenset('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~')


def _chrf_words(text: str) -> list[str]:
    """Split ``text`` into chrF++'s words.

    Split on whitespace, then one ASCII punctuation mark split off the end of a word, or else off
    its start (sacreBLEU's ``CHRF._remove_punctuation``).
    """
    out = []
    for w in text.split():
        if len(w) > 1 and w[-1] in _CHRF_PUNCTUATION:
            out += [w[:-1], w[-1]]
        elif len(w) > 1 and w[0] in _CHRF_PUNCTUATION:
            out += [w[0], w[1:]]
        else:
            out.append(w)
    return out


class ChrfReward(Reward):
    """Sentence chrF in ``[0, 1]``: ``sacrebleu.CHRF(**options).sentence_score(completion, references).score / 100``.

    With the default options this is ``sacrebleu.sentence_chrf(...)``: character n-grams of orders
    1-6 with whitespace removed, no word n-grams, ``beta = 2``, averaged over the orders both
    sides have ("effective order"); the best reference counts.

    Args:
        char_order: Highest character n-gram order (default 6).
        word_order: Highest word n-gram order; 2 gives chrF++ (default 0).
        beta: Weight of recall against precision (default 2).
        lowercase: Lower-case both sides first.
        whitespace: Keep whitespace inside character n-grams.
        eps_smoothing: Average the F-scores of all orders with chrF++.py's epsilon smoothing
            instead of the effective-order average.

    >>> ChrfReward()(["the cat sat", "xyz"], [["the cat sat"], ["abc"]])
    array([1., 0.])
    >>> ChrfReward(word_order=2)(["the cat sat."], [["the cat sat ."]]).round(6)
    array([1.])
    """

    name = "chrf"
    path = "batched"
    _DEFAULTS: dict[str, Any] = {"char_order": 6, "word_order": 0, "beta": 2, "lowercase": False,
                                 "whitespace": False, "eps_smoothing": False}

    def __init__(
        self,
        char_order: int = 6,
        word_order: int = 0,
        beta: float = 2,
        lowercase: bool = False,
        whitespace: bool = False,
        eps_smoothing: bool = False,
    ) -> None:
        self.char_order = check_int("chrF option char_order", char_order, 0)
        self.word_order = check_int("chrF option word_order", word_order, 0)
        if self.char_order + self.word_order == 0:
            raise ConfigError("chrF needs char_order + word_order >= 1; got 0 and 0. The defaults are 6 and 0.")
        self.beta = check_finite("chrF option beta", beta, 0)  # kept as given: sacreBLEU computes with it as is
        self.lowercase = _check_bool("chrF", "lowercase", lowercase)
        self.whitespace = _check_bool("chrF", "whitespace", whitespace)
        self.eps_smoothing = _check_bool("chrF", "eps_smoothing", eps_smoothing)

    def _order_stats(self, completions: list[str], references: list[tuple[str, ...]]):
        """Per order, ``(hypothesis n-grams (P, 1), reference n-grams (P, R), matches (P, R))``."""
        out = []
        if self.char_order:
            strip = (lambda t: t) if self.whitespace else (lambda t: "".join(t.split()))
            hyps = [strip(c) for c in completions]
            refs = [[strip(r) for r in rs] for rs in references]
            stats = match_stats(hyps, refs, order=self.char_order)
            for n in range(1, self.char_order + 1):
                out.append((np.maximum(stats.hyp_len[:, None] - n + 1, 0), np.maximum(stats.ref_len - n + 1, 0),
                            stats.match[:, :, n - 1], stats.ref_len))
        if self.word_order:
            words = {t: tuple(_chrf_words(t)) for t in chain(completions, chain.from_iterable(references))}
            stats = match_stats([words[c] for c in completions], [[words[r] for r in rs] for rs in references],
                                order=self.word_order)
            for n in range(1, self.word_order + 1):
                out.append((np.maximum(stats.hyp_len[:, None] - n + 1, 0), np.maximum(stats.ref_len - n + 1, 0),
                            stats.match[:, :, n - 1], stats.ref_len))
        return out

    def _score(self, completions: list[str], references: list[tuple[str, ...]], **kwargs: Any) -> np.ndarray:
        if self.lowercase:
            completions = [c.lower() for c in completions]
            references = [tuple(r.lower() for r in rs) for rs in references]
        orders = self._order_stats(completions, references)
        factor = self.beta**2
        shape = orders[0][1].shape  # (P, R)
        padding = orders[0][3] < 0  # pairs with fewer references
        if self.eps_smoothing:
            eps = 1e-16
            total = np.zeros(shape)
            for n_hyp, n_ref, matches, _ in orders:
                n_hyp = np.where(n_ref > 0, n_hyp, 0)  # sacreBLEU counts no hypothesis n-grams then
                prec = np.where(n_hyp > 0, matches / np.maximum(n_hyp, 1), eps)
                rec = np.where(n_ref > 0, matches / np.maximum(n_ref, 1), eps)
                denom = factor * prec + rec
                total += np.where(denom > 0, (1 + factor) * prec * rec / np.where(denom > 0, denom, 1.0), eps)
            score = 100 * total / len(orders)
        else:
            avg_prec = np.zeros(shape)
            avg_rec = np.zeros(shape)
            effective = np.zeros(shape, dtype=np.int64)
            for n_hyp, n_ref, matches, _ in orders:
                both = (n_hyp > 0) & (n_ref > 0)  # orders without n-grams on either side are skipped
                avg_prec += np.where(both, matches / np.where(both, n_hyp, 1), 0.0)
                avg_rec += np.where(both, matches / np.where(both, n_ref, 1), 0.0)
                effective += both
            some = effective > 0
            avg_prec = np.where(some, avg_prec / np.maximum(effective, 1), 0.0)
            avg_rec = np.where(some, avg_rec / np.maximum(effective, 1), 0.0)
            positive = (avg_prec + avg_rec) > 0
            denom = np.where(positive, factor * avg_prec + avg_rec, 1.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                score = np.where(positive, 100 * ((1 + factor) * avg_prec * avg_rec / denom), 0.0)
        score[padding] = -1.0
        return np.clip(score.max(axis=1) / 100, 0.0, 1.0)

    def __repr__(self) -> str:
        return f"ChrfReward({_options_repr(self, self._DEFAULTS)})"
