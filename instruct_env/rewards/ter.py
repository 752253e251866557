"""Translation edit rate as a reward (higher is better), identical to sacreBLEU's ``sentence_ter``.

The edit counts come from :func:`instruct_env.rewards._ter.ter_edits`, which runs sacreBLEU's
shift search for the whole batch at once.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np

from instruct_env.rewards._ter import ter_edits
from instruct_env.rewards.base import Reward

__all__ = ["TerReward"]


class TerReward(Reward):
    """``max(0, 1 - TER / 100)`` with ``TER = sacrebleu.sentence_ter(completion, references).score``.

    TER is the number of word edits (insertions, deletions, substitutions and shifts of word
    blocks) needed to turn the completion into its closest reference, divided by the average
    reference length, times 100 (sacreBLEU defaults: case-insensitive, no punctuation handling).
    It is 0 for a perfect match and can exceed 100, so the reward is clipped at 0. Range ``[0, 1]``.

    >>> TerReward()(["the cat sat on the mat", "on the mat the cat sat", "dog"],
    ...             [["The cat sat on the mat"]] * 3)
    array([1.        , 0.83333333, 0.        ])
    """

    name = "ter"

    def _score(self, completions: list[str], references: list[tuple[str, ...]], **kwargs: Any) -> np.ndarray:
        # sacreBLEU's TER tokenisation with its defaults: lower-case, split on whitespace
        split = {t: t.lower().split() for t in chain(completions, chain.from_iterable(references))}
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
            if avg_ref_len > 0:
                ratio = best / avg_ref_len
            else:
                ratio = 1.0 if best > 0 else 0.0  # empty references: any word is an error
            out[p] = max(0.0, 1.0 - (100 * ratio) / 100)
        return out

    def __repr__(self) -> str:
        return "TerReward()"
