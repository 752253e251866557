"""reasoning-gym as a task source: the real package's API, its scorers' quirks and our guards.

Tests marked ``needs_reasoning_gym`` skip when the optional package is missing; the verifier's
own contract (clamping, NaN, exceptions) is also tested on a stand-in module, so it runs always.
Scorer behaviour pinned here is that of reasoning-gym 0.1.25 (the pinned ``reasoning`` extra).
"""

from __future__ import annotations

import importlib.util
import math
import os
import pickle
import sys
import types

import gymnasium as gym
import pytest

import instruct_env  # noqa: F401  (registers the environments)
from instruct_env.error import ConfigError, MissingDependency, RewardError, UnknownNameError
from instruct_env.tasks import Sample, from_reasoning_gym
from instruct_env.tasks.reasoning import _GUARDS, ReasoningGymVerifier

needs_reasoning_gym = pytest.mark.skipif(
    importlib.util.find_spec("reasoning_gym") is None,
    reason="reasoning-gym is not installed; pip install 'instruct-env[reasoning]' to run these tests",
)

#: The datasets whose scorers are probed with bad answers below.
PROBED = ["basic_arithmetic", "chain_sum", "number_sorting", "gcd", "base_conversion", "leg_counting"]
#: Datasets using reasoning-gym's default scorer: exact match, else substring credit.
DEFAULT_SCORER = ["basic_arithmetic", "gcd", "base_conversion", "leg_counting"]

_CACHE: dict[tuple, list[Sample]] = {}


def samples_of(name: str, size: int = 20, **kwargs) -> list[Sample]:
    """Samples of a dataset, built once per test session (generation is the slow part)."""
    key = (name, size, tuple(sorted(kwargs.items())))
    if key not in _CACHE:
        _CACHE[key] = from_reasoning_gym(name, size=size, seed=0, **kwargs)
    return _CACHE[key]


def raw_score(sample: Sample, answer: str) -> float:
    """reasoning-gym's own scorer, without our normalisation or guards."""
    return sample.verifier.dataset.score_answer(answer=answer, entry=sample.metadata["entry"])


# -- the verifier's contract, on a stand-in module (always runs) ---------------------------------------


class ScriptedDataset:
    """One entry; ``score_answer`` returns whatever the answer names (or raises)."""

    scores = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "big": 7.0, "neg": -0.5, "none": None,
              "text": "0.5", "list": [1.0], "half": 0.5, "true": True}

    def __init__(self):
        self.seen: list[str] = []

    def __iter__(self):
        return iter([{"question": "Say yes.", "answer": "yes", "metadata": {}}])

    def score_answer(self, answer, entry):
        self.seen.append(answer)
        if answer == "boom":
            raise RuntimeError("scorer crashed")
        return self.scores.get(answer, 1.0 if answer == entry["answer"] else 0.0)


@pytest.fixture
def scripted(monkeypatch):
    module = types.ModuleType("reasoning_gym")
    module.datasets = []
    module.calls = []

    def create_dataset(name, **config):
        module.calls.append((name, config))
        module.datasets.append(ScriptedDataset())
        return module.datasets[-1]

    module.create_dataset = create_dataset
    monkeypatch.setitem(sys.modules, "reasoning_gym", module)
    return module


@pytest.mark.parametrize(
    "answer, expected",
    [("yes", 1.0), ("no", 0.0), ("boom", 0.0), ("nan", 0.0), ("inf", 0.0), ("-inf", 0.0), ("big", 1.0),
     ("neg", 0.0), ("none", 0.0), ("text", 0.5), ("list", 0.0), ("half", 0.5), ("true", 1.0)],
)
def test_verifier_always_returns_a_float_in_unit_interval(scripted, answer, expected):
    (sample,) = from_reasoning_gym("anything", size=1)
    score = sample.score(answer)
    assert type(score) is float and score == expected


def test_verifier_strips_padding_and_partial_credit_switch(scripted):
    (sample,) = from_reasoning_gym("anything", size=1)
    assert sample.score(" \n yes \t\n") == 1.0
    assert scripted.datasets[-1].seen[-1] == "yes"
    assert sample.score("half") == 0.5
    (strict,) = from_reasoning_gym("anything", size=1, partial_credit=False)
    assert strict.score("half") == 0.0 and strict.score("yes\n") == 1.0 and strict.score("big") == 1.0
    assert scripted.calls[-1] == ("anything", {"size": 1, "seed": 0})  # not passed on to reasoning-gym
    assert repr(strict.verifier).endswith("partial_credit=False)")


def test_verifier_rejects_non_text_and_bad_options(scripted):
    (sample,) = from_reasoning_gym("anything", size=1)
    with pytest.raises(RewardError, match=r"got a completion of type list for sample 'anything/0'"):
        sample.verifier([1, 2], sample)
    with pytest.raises(ConfigError, match=r"partial_credit must be True or False, got 'no'"):
        from_reasoning_gym("anything", size=1, partial_credit="no")


def test_verifier_pickles_without_its_dataset(scripted):
    (sample,) = from_reasoning_gym("anything", size=3, seed=4, partial_credit=False)
    restored = pickle.loads(pickle.dumps(sample))
    assert restored.verifier == sample.verifier and restored.verifier._dataset is None
    assert restored.verifier.partial_credit is False and restored.score("half") == 0.0
    assert restored.verifier != ReasoningGymVerifier("anything", {"size": 3, "seed": 4})


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)
    with pytest.raises(MissingDependency, match=r"pip install 'instruct-env\[reasoning\]'"):
        from_reasoning_gym("gcd", size=1)


# -- the real package: API and samples -----------------------------------------------------------------


@needs_reasoning_gym
@pytest.mark.parametrize("name", PROBED)
def test_samples_follow_the_entries(name):
    import reasoning_gym

    samples = samples_of(name)
    entries = list(reasoning_gym.create_dataset(name, size=20, seed=0))
    assert [s.id for s in samples] == [f"{name}/{i}" for i in range(20)]
    for sample, entry in zip(samples, entries):
        assert sample.task == name and sample.instruction == entry["question"] and sample.context == ""
        assert sample.references == (entry["answer"],) and sample.metadata["entry"] == entry
        assert sample.verifier is samples[0].verifier
    assert [s.instruction for s in from_reasoning_gym(name, size=20, seed=0)] == [s.instruction for s in samples]
    assert [s.instruction for s in from_reasoning_gym(name, size=20, seed=1)] != [s.instruction for s in samples]


@needs_reasoning_gym
def test_dataset_options_reach_the_generator():
    samples = from_reasoning_gym("basic_arithmetic", size=10, seed=3, min_terms=2, max_terms=2, operators=("+",))
    assert all(s.instruction.count("+") == 1 and s.metadata["entry"]["metadata"]["num_terms"] == 2 for s in samples)


@needs_reasoning_gym
def test_dataset_errors_explain_themselves():
    with pytest.raises(UnknownNameError, match=r"Unknown reasoning-gym dataset 'basic_arithmetc'\. Did you mean 'basic_arithmetic'"):
        from_reasoning_gym("basic_arithmetc", size=1)
    with pytest.raises(ConfigError, match=r"'gcd' rejected its options .*'bogus'.* Its options are: min_numbers, max_numbers"):
        from_reasoning_gym("gcd", size=1, bogus=1)
    with pytest.raises(ConfigError, match=r"'basic_arithmetic' rejected its options .*: min_terms must be positive"):
        from_reasoning_gym("basic_arithmetic", size=1, min_terms=0)


@needs_reasoning_gym
def test_every_guard_names_a_real_dataset():
    from reasoning_gym.factory import DATASETS

    assert set(_GUARDS) <= set(DATASETS)


# -- the real package: scorers on bad answers -------------------------------------------------------------

BAD_ANSWERS = {
    "empty": "",
    "whitespace": " \n\t  ",
    "non-numeric": "banana",
    "10k letters": "x" * 10_000,
    "10k digits": "0123456789" * 1_000,
    "nan": "NaN",
    "infinity": "-Infinity",
    "code": "__import__('os').getcwd()",
}


@needs_reasoning_gym
@pytest.mark.parametrize("name", PROBED)
@pytest.mark.parametrize("case", list(BAD_ANSWERS))
def test_bad_answers_score_a_float_in_unit_interval(name, case):
    for sample in samples_of(name)[:5]:
        score = sample.score(BAD_ANSWERS[case])
        assert type(score) is float and 0.0 <= score <= 1.0
        if case != "10k digits":  # substring credit: see test_default_scorer_gives_substring_credit
            assert score == 0.0, (sample.id, case, score)


@needs_reasoning_gym
@pytest.mark.parametrize("name", PROBED)
@pytest.mark.parametrize("padding", [("  ", "  "), ("\n", "\n"), ("", "\n"), (" \t\n", "\n\n ")])
def test_padded_reference_scores_one(name, padding):
    before, after = padding
    assert all(s.score(before + s.references[0] + after) == 1.0 for s in samples_of(name))


@needs_reasoning_gym
@pytest.mark.parametrize("name", DEFAULT_SCORER)
def test_raw_default_scorer_penalises_padding(name):
    """The quirk our strip undoes: reasoning-gym scores "answer\\n" len(answer) / len(answer + 1)."""
    sample = samples_of(name)[0]
    answer = sample.references[0]
    assert raw_score(sample, answer + "\n") == pytest.approx(len(answer) / (len(answer) + 1))
    assert sample.score(answer + "\n") == 1.0


@needs_reasoning_gym
@pytest.mark.parametrize("name", DEFAULT_SCORER + ["chain_sum"])
def test_default_scorer_gives_substring_credit(name):
    sample = samples_of(name)[1]
    answer = sample.references[0]
    completion = f"I think the answer is {answer} but I am not sure"
    assert sample.score(completion) == pytest.approx(len(answer) / len(completion))
    strict = samples_of(name, partial_credit=False)[1]
    assert strict.score(completion) == 0.0 and strict.score(answer) == 1.0


@needs_reasoning_gym
def test_digit_spam_gets_credit_on_one_digit_answers():
    one_digit = [s for s in samples_of("gcd", size=40) if len(s.references[0]) == 1]
    assert one_digit and all(s.score("0123456789") == pytest.approx(0.1) for s in one_digit)
    assert all(s.score("0123456789") == 0.0 for s in samples_of("gcd", size=40, partial_credit=False))


@needs_reasoning_gym
def test_format_floor_for_garbage_and_partial_credit_switch():
    sample = samples_of("fraction_simplification", size=3)[0]
    assert sample.score("") == 0.01 and sample.score("banana") == 0.01  # credit for any answer
    strict = samples_of("fraction_simplification", size=3, partial_credit=False)[0]
    assert strict.score("banana") == 0.0 and strict.score(strict.references[0]) == 1.0


@needs_reasoning_gym
def test_number_formatting_is_not_normalised_by_the_default_scorer():
    arithmetic = next(s for s in samples_of("basic_arithmetic") if s.references[0] == "-4")
    assert arithmetic.score("-4.0") == 0.5
    chain = next(s for s in samples_of("chain_sum") if s.references[0] == "-4")
    assert chain.score("-4.0") == 1.0 and chain.score("-004") == 1.0


@needs_reasoning_gym
def test_number_sorting_nan_list_is_guarded_and_tolerance_kept():
    import json

    for sample in samples_of("number_sorting"):
        expected = json.loads(sample.references[0].replace("'", '"'))
        nan_list = json.dumps(["NaN"] * len(expected))
        assert raw_score(sample, nan_list) == 1.0  # the quirk
        assert sample.score(nan_list) == 0.0
        assert sample.score("[" + ", ".join(["nan"] * len(expected)) + "]") == 0.0
        rounded = json.dumps([round(float(x)) for x in expected])  # within the scorer's tolerance of 1
        assert sample.score(rounded) == 1.0
        assert sample.score(json.dumps(list(reversed(expected)))) == 0.0


@needs_reasoning_gym
def test_game_of_life_halting_accepts_only_its_reference():
    samples = samples_of("game_of_life_halting", size=10)
    for sample in samples:
        right = sample.references[0]
        wrong = "False" if right == "True" else "True"
        assert raw_score(sample, "banana") == 1.0 and raw_score(sample, wrong) == 1.0  # the quirk
        assert sample.score("banana") == 0.0 and sample.score(wrong) == 0.0
        assert sample.score(right) == 1.0 and sample.score(f" {right.lower()}\n") == 1.0


@needs_reasoning_gym
def test_coin_flip_prefix_credit_and_hang_are_guarded():
    samples = samples_of("coin_flip")
    below_one = [s for s in samples if 1e-4 < float(s.references[0]) < 1]  # "0" is within 1e-4 of smaller ones
    assert below_one and all(raw_score(s, "0") == 1.0 for s in below_one)  # the quirk
    assert all(s.score("0") == 0.0 for s in below_one)
    assert all(s.score(s.references[0]) == 1.0 and s.score(" " + s.references[0] + "\n") == 1.0 for s in samples)
    assert samples[0].score("1e999999999") == 0.0  # Fraction() of this would not finish


@needs_reasoning_gym
def test_prime_factorization_crash_scores_zero():
    sample = samples_of("prime_factorization", size=3)[0]
    with pytest.raises(ValueError):
        raw_score(sample, "banana")
    assert sample.score("banana") == 0.0 and sample.score(sample.references[0]) == 1.0


@needs_reasoning_gym
def test_raw_binary_matrix_scorer_runs_completions_as_code(monkeypatch):
    monkeypatch.delenv("INSTRUCT_ENV_EVAL_PROBE", raising=False)
    sample = samples_of("binary_matrix", size=1)[0]
    raw_score(sample, "__import__('os').environ.__setitem__('INSTRUCT_ENV_EVAL_PROBE', '1')")
    assert os.environ.get("INSTRUCT_ENV_EVAL_PROBE") == "1"


@needs_reasoning_gym
@pytest.mark.parametrize("name", ["binary_matrix", "n_queens", "spiral_matrix", "string_insertion"])
def test_eval_scorers_never_run_completions(name, monkeypatch):
    monkeypatch.delenv("INSTRUCT_ENV_EVAL_PROBE", raising=False)
    for sample in samples_of(name, size=3):
        code = "__import__('os').environ.__setitem__('INSTRUCT_ENV_EVAL_PROBE', '1') or " + repr(["x"])
        assert sample.score(code) == 0.0
        assert os.environ.get("INSTRUCT_ENV_EVAL_PROBE") is None
        assert sample.score(sample.references[0]) == 1.0 and sample.score(sample.references[0] + "\n") == 1.0


SYMPY_SCORED = ["countdown", "puzzle24", "simple_integration", "intermediate_integration", "polynomial_multiplication"]
#: Completions the sympy-parsing scorers would run (the second spells "import os; os.environ[...]=..." in chr()).
CODE = [
    "__import__('os').environ.__setitem__('INSTRUCT_ENV_EVAL_PROBE', '1') or 1",
    "exec(" + "+".join(f"chr({ord(c)})" for c in "import os; os.environ['INSTRUCT_ENV_EVAL_PROBE']='1'") + ")",
]


@needs_reasoning_gym
@pytest.mark.parametrize("name", SYMPY_SCORED)
def test_sympy_scorers_never_run_completions_nor_power_towers(name, monkeypatch):
    monkeypatch.delenv("INSTRUCT_ENV_EVAL_PROBE", raising=False)
    for sample in samples_of(name, size=10):
        for completion in CODE + ["9**9**9**9", "(9**99)**99", "2**(10**10)", "1e999999999", "99999999!"]:
            assert sample.score(completion) == 0.0
        assert os.environ.get("INSTRUCT_ENV_EVAL_PROBE") is None
        assert sample.score(" " + sample.references[0] + "\n") == 1.0


@needs_reasoning_gym
def test_raw_countdown_scorer_runs_completions_as_code(monkeypatch):
    monkeypatch.delenv("INSTRUCT_ENV_EVAL_PROBE", raising=False)
    raw_score(samples_of("countdown", size=1)[0], CODE[1])
    assert os.environ.get("INSTRUCT_ENV_EVAL_PROBE") == "1"


@needs_reasoning_gym
def test_sympy_scorers_keep_equivalent_answers():
    sample = next(s for s in samples_of("polynomial_multiplication", size=10) if "+" in s.references[0])
    terms = sample.references[0].replace(" - ", " + -").split(" + ")
    assert sample.score(" + ".join(reversed(terms))) == 1.0  # same polynomial, other order


@needs_reasoning_gym
def test_eval_scorers_keep_their_literal_credit():
    sample = samples_of("binary_matrix", size=1)[0]
    rows = [[int(x) for x in line.split()] for line in sample.references[0].splitlines()]
    assert sample.score(repr(rows)) == pytest.approx(0.1)


# -- the real package in the environment ----------------------------------------------------------------


@needs_reasoning_gym
@pytest.mark.parametrize("reward", ["task", "auto"])
def test_completion_env_uses_the_dataset_scorer(reward):
    samples = samples_of("basic_arithmetic", size=50)
    env = gym.make("InstructEnv/Completion-v0", dataset=samples, reward=reward)
    obs, info = env.reset(seed=0)
    sample = next(s for s in samples if s.id == info["sample_id"])
    _, r, terminated, truncated, info = env.step(sample.references[0] + "\n")
    assert (r, terminated, truncated) == (1.0, True, False) and info["reward_components"] == {"task": 1.0}
    env.reset(options={"index": 1})
    _, r, *_ = env.step("banana")
    assert r == 0.0
    env.close()


@needs_reasoning_gym
def test_completion_env_token_actions_and_pickle(tokenizer):
    samples = samples_of("gcd", size=20)
    env = gym.make("InstructEnv/Completion-v0", dataset=samples, tokenizer=tokenizer)
    _, info = env.reset(options={"index": 2})
    ids = tokenizer.encode(samples[2].references[0], add_special_tokens=False) + [tokenizer.eos_token_id]
    assert env.step(ids)[1] == 1.0
    clone = pickle.loads(pickle.dumps(env.unwrapped))
    clone.reset(options={"index": 2})
    assert clone.step(samples[2].references[0])[1] == 1.0
