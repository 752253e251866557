"""ROUGE-N, ROUGE-L and ROUGE-Lsum F-measures, batched; identical to the ``rouge_score`` package.

Convention: the value for one completion is the best F-measure over its references of
``RougeScorer([rouge_type], use_stemmer=True).score(reference, completion)[rouge_type].fmeasure``
(with the reward's options: ``use_stemmer``, ``split_summaries`` and ``tokenizer``, the same
arguments of ``RougeScorer``).

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

from instruct_env.error import ConfigError, MissingDependency
from instruct_env.rewards._ngrams import match_stats
from instruct_env.rewards.base import Reward

__all__ = ["RougeReward", "CharTokenizer", "CJKTokenizer", "ROUGE_TOKENIZERS", "rouge_tokenize", "clear_caches"]

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


def rouge_tokenize(texts: list[str], stem: bool = True) -> list[tuple[str, ...]]:
    """``rouge_score``'s default tokenisation (with Porter stemming when ``stem``), for each text.

    >>> rouge_tokenize(["The cats were RUNNING, quickly!"])
    [('the', 'cat', 'were', 'run', 'quickli')]
    >>> rouge_tokenize(["The cats were RUNNING, quickly!"], stem=False)
    [('the', 'cats', 'were', 'running', 'quickly')]
    """
    words_of = [_WORD.findall(t.lower()) for t in texts]
    if not stem:
        return [tuple(words) for words in words_of]
    final = {w: _stem(w) for w in set(chain.from_iterable(words_of))}
    return [tuple(s for s in map(final.__getitem__, words) if s is not None) for words in words_of]


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


class _SettingFree:
    """Equality, hash and repr of a tokenizer without settings: all its instances are equal."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CharTokenizer(_SettingFree):
    """ROUGE tokens for text without spaces between words: every non-space character, lower-cased.

    The built-in ``tokenizer="char"`` of :class:`RougeReward`; it has ``rouge_score``'s tokenizer
    protocol, so ``RougeScorer([type], tokenizer=CharTokenizer())`` gives the same values.

    >>> CharTokenizer().tokenize("我爱 北京, OK")
    ['我', '爱', '北', '京', ',', 'o', 'k']
    """

    def tokenize(self, text: str) -> list[str]:
        """The lowercased characters of ``text``, whitespace dropped."""
        return list("".join(text.lower().split()))


_CJK_SCRIPTS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"


class CJKTokenizer(_SettingFree):
    """ROUGE tokens for any script: each CJK character on its own, other words whole, lower-cased.

    The built-in ``tokenizer="cjk"`` of :class:`RougeReward`. A Han, Hiragana, Katakana or Hangul
    character is one token (so Chinese, Japanese and Korean are compared character by character);
    a run of other letters, combining marks and digits (any script: Latin with accents, Cyrillic,
    Arabic, Devanagari...) is one token; punctuation, symbols and spaces separate tokens and are
    dropped. On ASCII text it gives ``rouge_score``'s default tokens without stemming. It has
    ``rouge_score``'s tokenizer protocol (``RougeScorer([type], tokenizer=CJKTokenizer())``).

    >>> CJKTokenizer().tokenize("我爱北京! Größe ţară, مرحبا")
    ['我', '爱', '北', '京', 'größe', 'ţară', 'مرحبا']
    """

    _pattern: Any = None  # a compiled ``regex`` pattern (that package has no type hints), built on first use

    def tokenize(self, text: str) -> list[str]:
        """The lowercased words of ``text``, each CJK character a word of its own."""
        if CJKTokenizer._pattern is None:
            import regex  # installed with sacreBLEU; knows Unicode scripts

            CJKTokenizer._pattern = regex.compile(
                rf"[{_CJK_SCRIPTS}]|(?:(?![{_CJK_SCRIPTS}])[\p{{L}}\p{{M}}\p{{N}}])+"
            )
        return CJKTokenizer._pattern.findall(text.lower())


#: The built-in ``tokenizer`` names of :class:`RougeReward`.
ROUGE_TOKENIZERS: dict[str, type] = {"char": CharTokenizer, "cjk": CJKTokenizer}


class RougeReward(Reward):
    """ROUGE F-measure in ``[0, 1]``, best reference, with ``rouge_score``'s options.

    Equals ``max(RougeScorer([rouge_type], use_stemmer=..., split_summaries=..., tokenizer=...)
    .score(ref, completion)[rouge_type].fmeasure for ref in references)`` from the ``rouge_score``
    package. Its default tokeniser lower-cases the text and keeps only ASCII letters and digits
    (so text without them, e.g. Chinese, has no tokens and scores 0): for such text pass
    ``tokenizer="cjk"`` or ``"char"``. ``rougeLsum`` splits texts into sentences at newlines (or
    with NLTK's sentence splitter when ``split_summaries=True``).

    Args:
        rouge_type: ``"rouge1"`` ... ``"rouge9"``, ``"rougeL"`` or ``"rougeLsum"``.
        use_stemmer: Porter-stem the words of the default tokeniser (words longer than 3
            characters). ``None`` (default) means ``True`` with the default tokeniser; as in
            ``rouge_score`` it has no effect with another tokeniser, so asking for it then is an error.
            Note that ``RougeScorer``'s own default is ``False``.
        split_summaries: ``rougeLsum`` only: split sentences with ``nltk.sent_tokenize`` (needs
            NLTK's ``punkt_tab`` data) instead of at newlines.
        tokenizer: ``None`` (``rouge_score``'s default tokeniser), ``"char"`` (:class:`CharTokenizer`),
            ``"cjk"`` (:class:`CJKTokenizer`), or any object with a ``tokenize(text) -> list[str]``
            method (it should pickle if the reward has to).

    Attributes:
        path: ``"batched"``; the tokenisation is done per distinct text (and per distinct sentence).

    >>> RougeReward("rougeL")(["The cats sat down."], [["the cat sat", "a dog"]])  # P = 3/4, R = 1
    array([0.85714286])
    >>> RougeReward("rougeL", tokenizer="char")(["我爱北京天安门"], [["我爱北京"]]).round(4)
    array([0.7273])
    """

    path = "batched"

    def __init__(
        self,
        rouge_type: str = "rougeL",
        use_stemmer: bool | None = None,
        split_summaries: bool = False,
        tokenizer: str | Any = None,
    ) -> None:
        from instruct_env.error import suggest
        from instruct_env.rewards.bleu import _check_bool

        if rouge_type not in _ROUGE_TYPES:
            raise ConfigError(
                f"Unknown ROUGE type {rouge_type!r}.{suggest(rouge_type, _ROUGE_TYPES)} "
                f"Valid types: {', '.join(_ROUGE_TYPES)}."
            )
        if isinstance(tokenizer, str):
            if tokenizer not in ROUGE_TOKENIZERS:
                raise ConfigError(
                    f"Unknown ROUGE tokenizer {tokenizer!r}.{suggest(tokenizer, ROUGE_TOKENIZERS)} Built-in "
                    f"tokenizers: {', '.join(ROUGE_TOKENIZERS)}; or pass an object with a tokenize(text) method."
                )
        elif tokenizer is not None and not callable(getattr(tokenizer, "tokenize", None)):
            raise ConfigError(
                f"A ROUGE tokenizer must be None, {' or '.join(map(repr, ROUGE_TOKENIZERS))}, or an object with a "
                f"tokenize(text) -> list[str] method (rouge_score's protocol); got {type(tokenizer).__name__}."
            )
        if use_stemmer is not None:
            use_stemmer = _check_bool("ROUGE", "use_stemmer", use_stemmer)
            if use_stemmer and tokenizer is not None:
                raise ConfigError(
                    f"ROUGE use_stemmer=True has no effect with tokenizer={tokenizer!r}: rouge_score stems only "
                    "in its default tokenizer. Drop use_stemmer, or stem inside your tokenizer."
                )
        split_summaries = _check_bool("ROUGE", "split_summaries", split_summaries)
        if split_summaries and rouge_type != "rougeLsum":
            raise ConfigError(
                f"ROUGE split_summaries applies to rougeLsum only (it splits summaries into sentences); got it "
                f"with {rouge_type!r}. Use 'rougeLsum' or drop the option."
            )
        if split_summaries:
            _check_punkt()
        self.rouge_type = rouge_type
        self.name = rouge_type
        self.use_stemmer = use_stemmer
        self.split_summaries = split_summaries
        self.tokenizer = tokenizer

    @property
    def _tokenizer(self) -> Any:
        """The tokenizer object, or None for rouge_score's default."""
        if isinstance(self.tokenizer, str):
            return ROUGE_TOKENIZERS[self.tokenizer]()
        return self.tokenizer

    def _tokenize(self, texts: list[str]) -> list[tuple]:
        tokenizer = self._tokenizer
        if tokenizer is None:
            return rouge_tokenize(texts, stem=self.use_stemmer is not False)
        return [tuple(tokenizer.tokenize(t)) for t in texts]

    def _sentences(self, text: str) -> list[str]:
        if self.split_summaries:
            import nltk

            return [s for s in nltk.sent_tokenize(text) if s]
        return [s for s in text.split("\n") if s]

    def _score(self, completions: list[str], references: list[tuple[str, ...]], **kwargs: Any) -> np.ndarray:
        n_refs = [len(rs) for rs in references]
        texts = list(dict.fromkeys(chain(completions, chain.from_iterable(references))))
        if self.rouge_type == "rougeLsum":
            return self._score_lsum(completions, references, texts)
        tokens = dict(zip(texts, self._tokenize(texts)))
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

    def _score_lsum(self, completions, references, texts) -> np.ndarray:
        sents = {t: self._sentences(t) for t in texts}
        simple = [len(sents[c]) <= 1 and all(len(sents[r]) <= 1 for r in rs) for c, rs in zip(completions, references)]
        out = np.zeros(len(completions))
        # One sentence per side: the union LCS is the plain LCS, so ROUGE-Lsum equals ROUGE-L.
        easy = [p for p, ok in enumerate(simple) if ok]
        if easy:
            easy_texts = list(dict.fromkeys(chain.from_iterable([completions[p], *references[p]] for p in easy)))
            tokens = dict(zip(easy_texts, self._tokenize(easy_texts)))
            out[easy] = self._lcs_fmeasures(
                [tokens[completions[p]] for p in easy], [[tokens[r] for r in references[p]] for p in easy]
            )
        hard = [p for p, ok in enumerate(simple) if not ok]
        if hard:
            hard_sents = list(dict.fromkeys(
                chain.from_iterable(sents[t] for p in hard for t in (completions[p], *references[p]))
            ))
            tokens = dict(zip(hard_sents, self._tokenize(hard_sents)))
            for p in hard:
                hyp = [tokens[s] for s in sents[completions[p]]]
                out[p] = max(_summary_lcs_fmeasure([tokens[s] for s in sents[r]], hyp) for r in references[p])
        return out

    def __repr__(self) -> str:
        options = [repr(self.rouge_type)]
        for key, default in (("use_stemmer", None), ("split_summaries", False), ("tokenizer", None)):
            if getattr(self, key) != default:
                options.append(f"{key}={getattr(self, key)!r}")
        return f"RougeReward({', '.join(options)})"


def _check_punkt() -> None:
    """Fail early, with the fix, when NLTK's sentence splitter has no model on this machine."""
    import nltk

    try:
        nltk.sent_tokenize("One. Two.")
    except LookupError as exc:
        raise MissingDependency(
            "ROUGE split_summaries=True splits sentences with nltk.sent_tokenize, whose 'punkt_tab' model is not "
            "installed. Install it once with: python -m nltk.downloader punkt_tab"
        ) from exc
