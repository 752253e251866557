"""Translation edit rate as a reward (higher is better), identical to sacreBLEU's ``TER`` sentence scores.

The edit counts come from :func:`instruct_env.rewards._ter.ter_edits`, which runs sacreBLEU's
shift search for the whole batch at once.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np

from instruct_env.rewards._ter import ter_edits
from instruct_env.rewards._tokenizers import tercom_words
from instruct_env.rewards.base import Reward

__all__ = ["TerReward"]


class TerReward(Reward):
    """``max(0, 1 - TER / 100)`` with ``TER = sacrebleu.TER(**options).sentence_score(completion, references).score``.

    TER is the number of word edits (insertions, deletions, substitutions and shifts of word
    blocks) needed to turn the completion into its closest reference, divided by the average
    reference length, times 100. With the default options (``sacrebleu.sentence_ter``) words are
    lower-cased and split on whitespace, nothing else. It is 0 for a perfect match and can exceed
    100, so the reward is clipped at 0. Range ``[0, 1]``. The options only change the words
    compared (see :func:`~instruct_env.rewards._tokenizers.tercom_words`).

    Args:
        normalized: Tercom's normalisation: punctuation split off as in 13a, lines joined, XML
            escapes undone (and CJK characters split one by one with ``asian_support``).
        no_punct: Delete punctuation (with ``asian_support`` also CJK and full-width punctuation).
        asian_support: The CJK parts of ``normalized`` and ``no_punct``; alone it does nothing.
        case_sensitive: Keep case (default: lower-case both sides).

    >>> TerReward()(["the cat sat on the mat", "on the mat the cat sat", "dog"],
    ...             [["The cat sat on the mat"]] * 3)
    array([1.        , 0.83333333, 0.        ])
    >>> TerReward(normalized=True, asian_support=True)(["我爱北京"], [["我爱北京天安门"]]).round(4)
    array([0.5714])
    """

    name = "ter"
    path = "batched"

    def __init__(
        self, normalized: bool = False, no_punct: bool = False, asian_support: bool = False,
        case_sensitive: bool = False,
    ) -> None:
        from instruct_env.rewards.bleu import _check_bool

        self.normalized = _check_bool("TER", "normalized", normalized)
        self.no_punct = _check_bool("TER", "no_punct", no_punct)
        self.asian_support = _check_bool("TER", "asian_support", asian_support)
        self.case_sensitive = _check_bool("TER", "case_sensitive", case_sensitive)

    def _words(self, text: str) -> list[str]:
        if not (self.normalized or self.no_punct or self.case_sensitive):
            return text.lower().split()  # the defaults, without the general function's checks
        return tercom_words(text, self.normalized, self.no_punct, self.asian_support, self.case_sensitive)

    def _score(self, completions: list[str], references: list[tuple[str, ...]], **kwargs: Any) -> np.ndarray:
        split = {t: self._words(t) for t in chain(completions, chain.from_iterable(references))}
        vocab = {w: i for i, w in enumerate(dict.fromkeys(chain.from_iterable(split.values())))}
        words = {t: list(map(vocab.__getitem__, ws)) for t, ws in split.items()}
        # distinct (hypothesis, reference) word sequences that need the search
        todo: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
        for completion, refs in zip(completions, references):
            hyp = tuple(words[completion])
            for r in refs:
                ref = tuple(words[r])
                if hyp and ref and hyp != ref:
                    todo.setdefault((hyp, ref), len(todo))
        found = ter_edits([h for h, _ in todo], [r for _, r in todo])
        out = np.empty(len(completions))
        for p, (completion, refs) in enumerate(zip(completions, references)):
            hyp = tuple(words[completion])
            best, ref_total = None, 0
            for r in refs:
                ref = tuple(words[r])
                if hyp and ref and hyp != ref:
                    edits = found[todo[hyp, ref]]
                else:  # identical: nothing to edit; one side empty: every word of the other is an edit
                    edits = 0 if hyp == ref else len(hyp) + len(ref)
                best = edits if best is None else min(best, edits)
                ref_total += len(ref)
            avg_ref_len = ref_total / len(refs)
            assert best is not None  # refs is not empty (the division above)
            if avg_ref_len > 0:
                ratio = best / avg_ref_len
            else:
                ratio = 1.0 if best > 0 else 0.0  # empty references: any word is an error
            out[p] = max(0.0, 1.0 - (100 * ratio) / 100)
        return out

    def __repr__(self) -> str:
        options = ("normalized", "no_punct", "asian_support", "case_sensitive")
        return f"TerReward({', '.join(f'{k}=True' for k in options if getattr(self, k))})"
