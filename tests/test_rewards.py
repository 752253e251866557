"""Tests of instruct_env.rewards: equality with the reference packages, contract, registry, errors."""

from __future__ import annotations

import pickle
import random
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from instruct_env import rewards
from instruct_env.error import ConfigError, RewardError, UnknownNameError
from instruct_env.rewards import (
    CallableReward,
    ExactMatchReward,
    LengthPenaltyReward,
    Reward,
    RougeReward,
    TokenF1Reward,
    WeightedReward,
)
from instruct_env.rewards._ngrams import match_stats
from instruct_env.rewards.bleu import tokenize_13a
from instruct_env.rewards.rouge import _bit_masks, _lcs_length, rouge_tokenize
from instruct_env.tasks.sample import Sample

METRICS = ["bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL", "rougeLsum"]

# ---------------------------------------------------------------------------------------------
# Seeded generator of (completion, references) pairs with awkward text
# ---------------------------------------------------------------------------------------------

WORDS = (
    "the a cat cats sat sitting runs running ran quickly generously organization organizations on mat "
    "of and to is was were be being been model models answer answers question generalization "
    "relational happily happiness connect connected connection"
).split()
ODD = [
    ",", ".", "!", "?", "(x)", "x)", "(y", "'s", "don't", "-", "--", "3.50", "1,000", "2-3", "10-20", "3.",
    ".5", "e.g.", "U.S.A.", "end.", "list,", "&amp;", "&quot;hi&quot;", "&lt;b&gt;", "<skipped>", "a/b",
    "x=1", "[ref]", "{k}", "50%", "#tag", "@user", "$5", "~", "^", "_x_", "`code`", "|", "\\", "*",
    "—", "–", "“quoted”", "‘single’", "…",
    "Größe", "Straße", "über", "ÄRGER", "naïve", "café", "İstanbul", "\u212a", "ǅ", "ß",
    "我们", "今天", "天气很好。", "東京", "日本語",
    "🙂", "🚀🚀", "👍🏽", "x̧",
]
SEPARATORS = [" "] * 12 + ["  ", "\t", "\u00a0", "\n", " \n ", "\u2028", "\r\n"]


def _text(rng: random.Random, n_words: int) -> str:
    parts = []
    for i in range(n_words):
        parts.append(rng.choice(ODD) if rng.random() < 0.25 else rng.choice(WORDS))
        if i < n_words - 1:
            parts.append(rng.choice(SEPARATORS))
    text = "".join(parts)
    if rng.random() < 0.1:
        text = rng.choice([" ", "\n", "-\n"]) + text + rng.choice([" ", "\n", "  \t"])
    return text


def _perturb(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(words))
        op = rng.random()
        if op < 0.35 and len(words) > 1:
            del words[i]
        elif op < 0.7:
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
        else:
            words.insert(i, rng.choice(WORDS + ODD))
    return " ".join(words)


def make_pairs(seed: int, n: int, max_words: int = 14) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    completions, references = [], []
    for _ in range(n):
        base = _text(rng, rng.randint(1, max_words))
        refs = [base] + [_perturb(rng, base) for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.1:
            refs.append(rng.choice(["", " ", "\n"]))
        rng.shuffle(refs)
        r = rng.random()
        if r < 0.2:
            completion = rng.choice(refs)
        elif r < 0.6:
            completion = _perturb(rng, base)
        elif r < 0.85:
            completion = _text(rng, rng.randint(1, max_words))
        else:
            completion = rng.choice(["", " ", "\t\n", "🙂", "我们今天", "."])
        completions.append(completion)
        references.append(refs)
    return completions, references


EDGE_PAIRS = [
    ("", [""]),
    ("", ["the cat"]),
    ("the cat", [""]),
    ("   ", ["   "]),
    (" \t\n", ["the cat", "\n"]),
    ("the cat sat", ["the cat sat"]),
    ("The Cat Sat", ["the cat sat"]),
    ("Die Größe der Straße über alles.", ["Die Größe der Straße ist über alles."]),
    ("我们今天天气很好。", ["今天天气很好。", "我们"]),
    ("🙂 🚀🚀 👍🏽", ["🚀🚀 🙂", "👍🏽"]),
    ("a", ["a", "a a", "b"]),
    ("cat", ["dog"]),
    ("It costs $3.50 (2-3 days), e.g. U.S.A.", ["It costs $3.50, e.g. in the U.S.A."]),
    ("&quot;hi&quot; &amp; <skipped> bye", ['"hi" & bye']),
    ("line one\nline two\nline three", ["line two\nline one", "line three"]),
    ("first sentence.\n\nsecond one here", ["second one here.\nfirst sentence"]),
    ("running quickly", ["\n\nrun quick\n"]),
    ("İstanbul \u212aelvin", ["istanbul kelvin"]),
]


# ---------------------------------------------------------------------------------------------
# Reference implementations (the conventions the rewards promise to match)
# ---------------------------------------------------------------------------------------------


def reference_values(name: str, completions, references) -> np.ndarray:
    import sacrebleu
    from rouge_score import rouge_scorer

    if name == "bleu":
        return np.array([sacrebleu.sentence_bleu(c, list(r)).score / 100 for c, r in zip(completions, references)])
    if name == "chrf":
        return np.array([sacrebleu.sentence_chrf(c, list(r)).score / 100 for c, r in zip(completions, references)])
    if name == "ter":
        return np.array(
            [max(0.0, 1 - sacrebleu.sentence_ter(c, list(r)).score / 100) for c, r in zip(completions, references)]
        )
    scorer = rouge_scorer.RougeScorer([name], use_stemmer=True)
    return np.array([max(scorer.score(r, c)[name].fmeasure for r in rs) for c, rs in zip(completions, references)])


# ---------------------------------------------------------------------------------------------
# Equality with the reference packages
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", METRICS)
def test_metric_equals_reference_package_on_random_pairs(name):
    completions, references = make_pairs(seed=METRICS.index(name), n=120)
    got = rewards.make(name)(completions, references)
    expected = reference_values(name, completions, references)
    assert got.dtype == np.float64 and got.shape == (len(completions),)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert ((got >= 0) & (got <= 1)).all()


@pytest.mark.parametrize("name", METRICS)
def test_metric_equals_reference_package_on_edge_cases(name):
    completions = [c for c, _ in EDGE_PAIRS]
    references = [r for _, r in EDGE_PAIRS]
    got = rewards.make(name)(completions, references)
    np.testing.assert_allclose(got, reference_values(name, completions, references), rtol=0, atol=1e-9)
    # one pair at a time gives the same values as the batch
    single = [rewards.make(name)([c], [r])[0] for c, r in EDGE_PAIRS]
    np.testing.assert_allclose(got, single, rtol=0, atol=0)


def test_perfect_and_disjoint_scores():
    for name in METRICS:
        values = rewards.make(name)(["the cat sat on the mat", "xyzzy"], [["the cat sat on the mat"], ["qwert"]])
        assert values[0] == pytest.approx(1.0, abs=1e-12), name
        assert values[1] == pytest.approx(0.0, abs=1e-12), name


def test_ter_reward_formula():
    import sacrebleu

    completions, references = make_pairs(seed=11, n=40)
    got = rewards.make("ter")(completions, references)
    for value, c, r in zip(got, completions, references):
        ter = sacrebleu.sentence_ter(c, r).score
        assert value == max(0.0, 1.0 - ter / 100)


def test_13a_tokenizer_matches_sacrebleu():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    tokenizer = Tokenizer13a()
    rng = random.Random(3)
    alphabet = "ab1.,-()'\"&$ ü中?!:;/\\[]{}<>=+*#@%^_`|~\t\n09 "
    lines = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    lines += [c for c, _ in EDGE_PAIRS] + make_pairs(seed=4, n=100)[0]
    for line, tokens in zip(lines, tokenize_13a(lines)):
        assert tokens == tokenizer(line.rstrip()).split(), repr(line)


def test_rouge_tokenizer_matches_rouge_score():
    from rouge_score.tokenizers import DefaultTokenizer

    tokenizer = DefaultTokenizer(use_stemmer=True)
    texts = make_pairs(seed=5, n=150)[0] + [c for c, _ in EDGE_PAIRS]
    for text, tokens in zip(texts, rouge_tokenize(texts)):
        assert list(tokens) == tokenizer.tokenize(text), repr(text)


def test_bit_parallel_lcs_matches_dynamic_programming():
    rng = random.Random(6)

    def lcs(a, b):
        row = [0] * (len(b) + 1)
        for x in a:
            prev_diag, row[0] = 0, 0
            for j, y in enumerate(b, 1):
                prev_diag, row[j] = row[j], prev_diag + 1 if x == y else max(row[j], row[j - 1])
        return row[-1]

    for _ in range(500):
        a = tuple(rng.choice("abcd") for _ in range(rng.randint(0, 70)))
        b = tuple(rng.choice("abcde") for _ in range(rng.randint(0, 70)))
        assert _lcs_length(_bit_masks(a), len(a), b) == lcs(a, b)


def _random_edit(rng: random.Random, words: list[int], vocab: int) -> list[int]:
    words = list(words)
    for _ in range(rng.randint(1, 5)):
        i = rng.randrange(len(words))
        op = rng.random()
        if op < 0.25 and len(words) > 1:
            del words[i]
        elif op < 0.5:
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
        elif op < 0.7:
            words.insert(i, rng.randrange(vocab))
        else:  # move a block of words elsewhere
            block = words[i : i + rng.randint(1, 4)]
            del words[i : i + len(block)]
            at = rng.randint(0, len(words))
            words[at:at] = block
    return words


def test_ter_search_matches_sacrebleu_on_random_word_ids():
    from sacrebleu.metrics.lib_ter import translation_edit_rate

    from instruct_env.rewards._ter import ter_edits

    rng = random.Random(9)
    hyps, refs = [], []
    for _ in range(150):
        vocab = rng.choice([2, 4, 8, 30])
        ref = [rng.randrange(vocab) for _ in range(rng.randint(1, 30))]
        hyp = _random_edit(rng, ref, vocab) if rng.random() < 0.7 else [rng.randrange(vocab) for _ in range(rng.randint(1, 30))]
        hyps.append(hyp or [0])
        refs.append(ref)
    # the 1000-candidate cap (many repeated words) and a beam wider than 25 (reference 65x longer)
    hyps += [[rng.randrange(2) for _ in range(40)], [1, 2]]
    refs += [[rng.randrange(2) for _ in range(40)], [rng.randrange(5) for _ in range(130)]]
    assert ter_edits(hyps, refs) == [translation_edit_rate(h, r)[0] for h, r in zip(hyps, refs)]


def _brute_stats(hyp, refs, order):
    match, clipped = [], []
    for n in range(1, order + 1):
        h = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
        best, row = Counter(), []
        for ref in refs:
            r = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
            row.append(sum((h & r).values()))
            best |= r
        match.append(row)
        clipped.append(sum((h & best).values()))
    return match, clipped


@pytest.mark.parametrize(
    "key_bits, chunk",
    [(63, 8192), (63, 5), (12, 8192), (6, 3)],  # small key_bits force splitting and the Counter fallback,
)  # small chunks force several sorted chunks per batch
def test_ngram_statistics_match_counters(key_bits, chunk, monkeypatch):
    from instruct_env.rewards import _ngrams

    monkeypatch.setattr(_ngrams, "_CHUNK", chunk)
    rng = random.Random(key_bits + chunk)
    for _ in range(150):
        n_pairs = rng.randint(1, 6)
        alphabet = "abcdefgh"[: rng.randint(1, 8)]
        hyps = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9))) for _ in range(n_pairs)]
        refs = [
            ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9))) for _ in range(rng.randint(1, 3))]
            for _ in range(n_pairs)
        ]
        order = rng.randint(1, 6)
        if rng.random() < 0.5:  # token sequences instead of strings
            hyps, refs = [list(h) for h in hyps], [[list(r) for r in rs] for rs in refs]
        match = match_stats(hyps, refs, order, key_bits=key_bits)
        clipped = match_stats(hyps, refs, order, want="clipped", key_bits=key_bits)
        for p in range(n_pairs):
            expected_match, expected_clipped = _brute_stats(hyps[p], refs[p], order)
            assert match.match[p, : len(refs[p])].T.tolist() == expected_match
            assert clipped.clipped[p].tolist() == expected_clipped


# ---------------------------------------------------------------------------------------------
# Contract: pickling, kwargs, light import
# ---------------------------------------------------------------------------------------------


class ContainsContext:
    """A picklable verifier: 1.0 if the completion contains the sample's context."""

    def __call__(self, completion: str, sample: Sample) -> float:
        return float(sample.context in completion)


class Overconfident:
    """A verifier that returns values outside [0, 1]."""

    def __call__(self, completion: str, sample: Sample) -> float:
        return 3.0 if completion else -2.0


def _samples(n: int, verifier=None) -> list[Sample]:
    verifier = verifier or ContainsContext()
    return [
        Sample(id=f"s{i}", task="demo", instruction="Repeat.", context="cat", references=("the cat",), verifier=verifier)
        for i in range(n)
    ]


@pytest.mark.parametrize("name", rewards.names())
def test_every_registered_reward_pickles_and_is_pure(name):
    completions, references = make_pairs(seed=7, n=12)
    samples = _samples(len(completions))
    reward = rewards.make(name)
    assert isinstance(reward, Reward) and reward.name == name
    before = reward(completions, references, samples=samples, unused_kwarg=1)
    clone = pickle.loads(pickle.dumps(reward))
    after = clone(completions, references, samples=samples)
    again = reward(completions, references, samples=samples)
    assert before.dtype == np.float64 and before.shape == (12,)
    np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(before, again)
    total, components = reward.compute(completions, references, samples=samples)
    assert list(components) == [name]
    np.testing.assert_array_equal(total, components[name])


def test_import_does_not_load_heavy_packages():
    code = (
        "import sys, instruct_env.rewards as r; r.make({'bleu': 1, 'rougeL': 1, 'ter': 1}); "
        "print(sorted(m for m in ('sacrebleu', 'rouge_score', 'nltk', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_inputs_are_not_mutated_and_bare_string_reference_is_accepted():
    completions = ["the cat", "a dog"]
    references = ["the cat", ("a dog", "the dog")]
    snapshot = pickle.dumps((completions, references))
    values = rewards.make("rougeL")(completions, references)
    np.testing.assert_allclose(values, [1.0, 1.0])
    assert pickle.dumps((completions, references)) == snapshot
    # also numpy arrays and generators of references
    np.testing.assert_allclose(rewards.make("bleu")(np.array(["the cat"]), [iter(["the cat"])]), [1.0])


# ---------------------------------------------------------------------------------------------
# Registry and composition
# ---------------------------------------------------------------------------------------------


def test_names_lists_the_registered_rewards():
    expected = {"bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match", "token_f1",
                "length_penalty", "task"}
    assert expected <= set(rewards.names())
    assert rewards.names() == sorted(rewards.names())


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownNameError) as info:
        rewards.make("rougel")
    message = str(info.value)
    assert message.startswith("Unknown reward 'rougel'. Did you mean 'rougeL'")
    assert "Known rewards: bleu, chrf," in message
    with pytest.raises(UnknownNameError, match="Did you mean 'bleu'"):
        rewards.make({"blue": 1.0})


def test_make_accepts_instances_callables_and_kwargs():
    instance = ExactMatchReward()
    assert rewards.make(instance) is instance
    exact = rewards.make("exact_match", normalize=True)
    assert exact(["The  CAT "], [["the cat"]])[0] == 1.0

    def shout(completions, references, **kwargs):
        return [float(c.isupper()) for c in completions]

    wrapped = rewards.make(shout)
    assert isinstance(wrapped, CallableReward) and wrapped.name == "shout"
    np.testing.assert_array_equal(wrapped(["HI", "hi"], [[], []]), [1.0, 0.0])
    assert rewards.make(shout, name="caps").name == "caps"
    assert pickle.loads(pickle.dumps(rewards.make(_module_level_reward)))(["ab"], [["x"]])[0] == 2.0


def _module_level_reward(completions, references, **kwargs):
    return np.array([float(len(c)) for c in completions])


def test_make_rejects_bad_specifications():
    with pytest.raises(ConfigError, match="unexpected argument.*'normalise'.*accepts: normalize"):
        rewards.make("exact_match", normalise=True)
    with pytest.raises(ConfigError, match="expected a reward name"):
        rewards.make(42)
    with pytest.raises(ConfigError, match="empty dict"):
        rewards.make({})
    with pytest.raises(ConfigError, match="finite number"):
        rewards.make({"bleu": float("nan")})
    with pytest.raises(ConfigError, match="existing Reward instance"):
        rewards.make(ExactMatchReward(), normalize=True)
    with pytest.raises(ConfigError, match="Unknown ROUGE type 'rougeX'"):
        RougeReward("rougeX")


def test_weighted_reward_total_and_components():
    completions, references = make_pairs(seed=8, n=30)
    reward = rewards.make({"bleu": 0.3, "rougeL": 0.7, "exact_match": -0.5})
    assert isinstance(reward, WeightedReward)
    total, components = reward.compute(completions, references)
    assert list(components) == ["bleu", "rougeL", "exact_match"]
    for name in components:
        np.testing.assert_array_equal(components[name], rewards.make(name)(completions, references))
    expected = 0.3 * components["bleu"] + 0.7 * components["rougeL"] - 0.5 * components["exact_match"]
    np.testing.assert_allclose(total, expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(reward(completions, references), total)
    with pytest.raises(ConfigError, match="distinct"):
        WeightedReward([(ExactMatchReward(), 1.0), (ExactMatchReward(normalize=True), 1.0)])


def test_weighted_reward_with_task_passes_samples_through():
    reward = rewards.make({"task": 0.5, "rougeL": 0.5})
    total, components = reward.compute(["the cat", "dog"], [["the cat"], ["the cat"]], samples=_samples(2))
    np.testing.assert_allclose(total, [1.0, 0.0])
    np.testing.assert_allclose(components["task"], [1.0, 0.0])


# ---------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------


def test_length_mismatch_message():
    with pytest.raises(RewardError, match=r"Got 2 completions but 1 reference entries; expected one entry per"):
        rewards.make("bleu")(["a", "b"], [["a"]])


def test_non_string_inputs_are_rejected():
    with pytest.raises(RewardError, match=r"completions\[1\] is a int, expected str"):
        rewards.make("bleu")(["a", 3], [["a"], ["b"]])
    with pytest.raises(RewardError, match=r"single str. Wrap it in a list"):
        rewards.make("bleu")("a", ["a"])
    with pytest.raises(RewardError, match=r"references\[0\]\[1\] is a NoneType, expected str"):
        rewards.make("rougeL")(["a"], [["a", None]])
    with pytest.raises(RewardError, match=r"references\[0\] is a int"):
        rewards.make("chrf")(["a"], [5])


def test_missing_references_are_rejected_by_reference_metrics():
    for name in METRICS + ["exact_match", "token_f1", "length_penalty"]:
        with pytest.raises(RewardError, match=r"completions\[1\] has no reference.*'task' reward"):
            rewards.make(name)(["a", "b"], [["a"], []])
    assert LengthPenaltyReward(target=3)(["a b c"], [[]])[0] == 1.0


def test_callable_reward_output_is_checked():
    def wrong_shape(completions, references, **kwargs):
        return [1.0]

    def not_finite(completions, references, **kwargs):
        return [0.0, float("inf")]

    def not_numbers(completions, references, **kwargs):
        return ["high", "low"]

    for fn, pattern in [
        (wrong_shape, r"'wrong_shape' returned shape \(1,\); expected \(2,\)"),
        (not_finite, r"'not_finite' returned a non-finite value \(inf\) for completion 1"),
        (not_numbers, r"'not_numbers' returned list .* not a sequence of floats"),
    ]:
        with pytest.raises(RewardError, match=pattern):
            rewards.make(fn)(["a", "b"], [["a"], ["b"]])


# ---------------------------------------------------------------------------------------------
# Simple rewards and the task reward
# ---------------------------------------------------------------------------------------------


def test_exact_match_normalisation():
    assert ExactMatchReward()([" Paris\n"], [["Paris"]])[0] == 1.0
    assert ExactMatchReward()(["paris"], [["Paris"]])[0] == 0.0
    assert ExactMatchReward()(["New  York"], [["New York"]])[0] == 0.0
    assert ExactMatchReward(normalize=True)(["new  YORK"], [["New York"]])[0] == 1.0
    assert ExactMatchReward()([""], [["", "x"]])[0] == 1.0
    assert ExactMatchReward()(["我们"], [["我们 "]])[0] == 1.0


def test_token_f1_is_squad_style():
    f1 = TokenF1Reward()
    assert f1(["The cat, sat!"], [["cat sat"]])[0] == 1.0  # punctuation and articles dropped
    assert f1(["cat cat dog"], [["cat dog dog"]])[0] == pytest.approx(2 / 3)
    assert f1([""], [["", "x"]])[0] == 1.0 and f1([""], [["x"]])[0] == 0.0
    assert f1(["x"], [["y", "x z"]])[0] == pytest.approx(2 / 3)  # best reference
    assert TokenF1Reward(normalize=False)(["The cat"], [["the cat"]])[0] == 0.5


def test_length_penalty_formula():
    lp = LengthPenaltyReward()
    np.testing.assert_allclose(lp(["a b", "a b c d", "", ""], [["a b c d"], ["a b"], [""], ["a"]]), [0.5, 0.5, 1.0, 0.0])
    assert LengthPenaltyReward(unit="chars")(["abc"], [["abcdef", "abcd"]])[0] == 0.75
    with pytest.raises(ConfigError, match="unit must be 'words' or 'chars'"):
        LengthPenaltyReward(unit="tokens")
    with pytest.raises(ConfigError, match="non-negative integer"):
        LengthPenaltyReward(target=-1)


def test_task_reward_scores_with_the_verifier_and_clips():
    task = rewards.make("task")
    np.testing.assert_array_equal(task(["a cat", "dog"], [[], []], samples=_samples(2)), [1.0, 0.0])
    np.testing.assert_array_equal(task(["x", ""], [[], []], samples=_samples(2, Overconfident())), [1.0, 0.0])


def test_task_reward_explains_missing_samples():
    task = rewards.make("task")
    with pytest.raises(RewardError, match=r"needs samples=\[\.\.\.\].*pass samples automatically.*samples=samples"):
        task(["a"], [[]])
    with pytest.raises(RewardError, match=r"got 2 completions but 1 samples"):
        task(["a", "b"], [[], []], samples=_samples(1))
    with pytest.raises(RewardError, match=r"samples\[0\] is a str, expected a Sample"):
        task(["a"], [[]], samples=["not a sample"])
    no_verifier = Sample(id="q1", task="qa", instruction="?", references=("x",))
    with pytest.raises(RewardError, match="has no task verifier"):
        task(["a"], [[]], samples=[no_verifier])
