"""Every built-in verifier returns a float in [0, 1] for any completion, however malformed."""

from __future__ import annotations

import numpy as np
import pytest

from instruct_env.tasks import BuiltinDataset, task_names

NASTY = ["", " ", "\n\n", "--6", "-", "+3", "3.5", "1e999", "9" * 400, "٣", "１２", "NaN", "inf", "-0",
         "None", "[]", "[1,,2]", "sum(", "sum(x", ")))", "x" * 5000, "🙂🙂", "\x00", "a\tb\nc", "- - -",
         "sort(x, desc)", "take(x, -1)", "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20"]


@pytest.mark.parametrize("task", task_names())
def test_verifiers_never_raise(task):
    data = BuiltinDataset(tasks=[task], split="validation", size_per_task=12, seed=3)
    rng = np.random.default_rng(0)
    alphabet = list("abc xyz-+0123456789()[],.\n") + ["sum", "filter_gt", " x", "--", "١"]
    for i in range(len(data)):
        sample = data[i]
        candidates = list(NASTY) + [sample.references[0] + junk for junk in ("-", " 0", "()", "\n")]
        candidates += ["".join(rng.choice(alphabet, size=int(rng.integers(1, 30)))) for _ in range(40)]
        for completion in candidates:
            score = sample.score(completion)
            assert isinstance(score, float) and 0.0 <= score <= 1.0, (task, completion, score)
