"""HumanReward: the evaluators' answers as the reward, waited for (the direct mode)."""

from __future__ import annotations

import threading
import time

import gymnasium as gym
import numpy as np
import pytest

import instruct_env  # noqa: F401  (registers the environments)
from instruct_env.error import ConfigError, RewardError
from instruct_env.feedback import FeedbackStore, HumanReward, OraclePool
from instruct_env.feedback.oracle import HumanOracle, SimulatedOracle
from instruct_env.tasks import BuiltinDataset


@pytest.fixture
def samples():
    return list(BuiltinDataset(["copy", "count_words"], split="validation", size_per_task=3, seed=0))


def perfect_pool(n=3):
    return OraclePool([SimulatedOracle(noise=0.0, seed=i, name=f"sim-{i}") for i in range(n)])


def test_values_are_the_evaluators_mean_answer(samples):
    reward = HumanReward(perfect_pool(), "rating")
    completions = [s.references[0] for s in samples[:3]] + ["zzz"] * 3
    values, components, infos = reward.compute_with_info(completions, [[]] * 6, samples=samples[:3] * 2)
    # Noiseless evaluators rate by the verifier: a right answer gets 5 of 5 (1.0), a wrong one 1 of 5 (0.0).
    np.testing.assert_allclose(values, [1, 1, 1, 0, 0, 0])
    np.testing.assert_allclose(components["human"], values)
    assert [i["reward_source"] for i in infos] == ["human"] * 6
    assert [i["human_answers"] for i in infos] == [3] * 6
    assert [i["ticket_index"] for i in infos] == list(range(6))
    assert len({i["ticket"].id for i in infos}) == 1 and infos[0]["reward_model_version"] is None
    assert reward.judgements == 18


def test_partial_credit_and_thumbs(samples):
    count = next(s for s in samples if s.task == "count_words")
    truth = int(count.references[0])
    off_by_one = str(truth + 1)
    rating = HumanReward(perfect_pool(1), "rating", low=1, high=5)
    thumbs = HumanReward(perfect_pool(1), "thumbs")
    r, _, _ = rating.compute_with_info([off_by_one], [[]], samples=[count])
    t, _, _ = thumbs.compute_with_info([off_by_one, str(truth)], [[]] * 2, samples=[count] * 2)
    quality = count.score(off_by_one)
    assert 0 < quality < 1
    # A rating keeps the partial credit (rounded to the 1..5 scale); thumbs keep only up or down.
    expected = (round(1 + 4 * quality) - 1) / 4
    assert r[0] == pytest.approx(expected)
    assert t.tolist() == [float(quality >= 0.5), 1.0]


def test_in_an_environment_the_step_returns_the_human_reward(samples):
    env = gym.make("InstructEnv/Completion-v0", tasks=["copy"], reward=HumanReward(perfect_pool(), "thumbs"))
    _, info = env.reset(seed=0)
    _, value, terminated, _, info = env.step(info["references"][0])
    assert terminated and value == 1.0
    assert info["reward_source"] == "human" and info["human_answers"] == 3


def test_waits_for_people_answering_through_the_store(tmp_path, samples):
    path = tmp_path / "f.db"
    store = FeedbackStore(path, min_evaluators=1, gold_rate=0.0)
    reward = HumanReward(HumanOracle(store), "rating", timeout=30)
    by_id = {s.id: s for s in samples}

    def evaluator():
        time.sleep(0.5)  # the reward is already waiting
        other = FeedbackStore(path, min_evaluators=1, gold_rate=0.0)
        SimulatedOracle(noise=0.0, seed=0, name="person").answer_store(other, by_id)
        other.close()

    thread = threading.Thread(target=evaluator)
    thread.start()
    started = time.perf_counter()
    values, _, infos = reward.compute_with_info([samples[0].references[0], "zzz"], [[]] * 2, samples=samples[:2])
    thread.join()
    assert time.perf_counter() - started >= 0.4
    assert values.tolist() == [1.0, 0.0] and [i["human_answers"] for i in infos] == [1, 1]
    store.close()


def test_nobody_answers_in_time_is_an_error_or_the_fallback(tmp_path, samples):
    store = FeedbackStore(tmp_path / "f.db", min_evaluators=1, gold_rate=0.0)
    strict = HumanReward(HumanOracle(store), "rating", timeout=0.3)
    with pytest.raises(RewardError, match=r"2 of 2 completions got no rating answer within 0.3 s.*fallback="):
        strict.compute_with_info([samples[0].references[0], "zzz"], [[]] * 2, samples=samples[:2])
    lenient = HumanReward(HumanOracle(store), "rating", timeout=0.3, fallback="task")
    values, _, infos = lenient.compute_with_info([samples[0].references[0], "zzz"], [[]] * 2, samples=samples[:2])
    assert values.tolist() == [1.0, 0.0]
    assert [i["reward_source"] for i in infos] == ["fallback:task"] * 2 and infos[0]["human_answers"] == 0
    # Nothing is lost: both batches' queries stay in the store for people to answer later.
    assert len(store.queries()) == 4
    store.close()


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="needs an Oracle"):
        HumanReward(object())
    with pytest.raises(ConfigError, match="kind must be 'rating' or 'thumbs'"):
        HumanReward(perfect_pool(), "pairwise")
    with pytest.raises(ConfigError, match="timeout must be"):
        HumanReward(perfect_pool(), timeout=0)
    with pytest.raises(RewardError, match="needs samples="):
        HumanReward(perfect_pool())(["a"], [[]])


def test_pickles_like_the_other_feedback_rewards(samples):
    import pickle

    reward = HumanReward(perfect_pool(2), "thumbs", fallback="task")
    copy = pickle.loads(pickle.dumps(reward))
    assert (copy.kind, copy.timeout, copy.fallback.name) == ("thumbs", 600.0, "task")
    values, _, _ = copy.compute_with_info([samples[0].references[0], "zzz"], [[]] * 2, samples=samples[:2])
    assert values.tolist() == [1.0, 0.0]
