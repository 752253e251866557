"""Contract tests for InstructEnv/Token-v0 and InstructEnv/Completion-v0 (and vector versions)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import instruct_env  # noqa: F401  (registers the ids)
from instruct_env.envs.completion_env import CompletionEnv, CompletionVectorEnv
from instruct_env.envs.token_env import TokenEnv, TokenVectorEnv
from instruct_env.error import EmptyDatasetError, InvalidAction, InvalidOption, ResetNeeded, UnknownNameError
from instruct_env.tasks import BuiltinDataset, Sample

IDS = ["InstructEnv/Token-v0", "InstructEnv/Completion-v0"]
SMALL = {"tasks": ["copy", "reverse_words", "sort_numbers"], "max_new_tokens": 12}


def _random_rollout(env, seed, steps=40):
    """Run a seeded random policy; return a list of comparable per-step records."""
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    out = [("reset", obs["input_ids"].tolist(), info["sample_id"])]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        out.append((obs["input_ids"].tolist(), reward, terminated, truncated))
        if terminated or truncated:
            out.append(("end", info["completion"], info["sample_id"]))
            obs, info = env.reset()
            out.append(("reset", obs["input_ids"].tolist(), info["sample_id"]))
    return out


def test_import_is_light():
    code = "import sys, instruct_env, instruct_env.rewards, instruct_env.tasks; " \
           "print(any(m in sys.modules for m in ('torch', 'transformers', 'sacrebleu', 'rouge_score')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("env_id", IDS)
def test_make_without_arguments(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    for key in ("task", "instruction", "context", "prompt", "references", "sample_id"):
        assert key in info
    assert info["task"] in instruct_env.tasks.task_names()
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_env_checker(env_id):
    from gymnasium.utils.env_checker import check_env

    env = gym.make(env_id, **SMALL).unwrapped
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize("env_id", IDS)
def test_sb3_env_checker(env_id):
    from stable_baselines3.common.env_checker import check_env

    check_env(gym.make(env_id, **SMALL).unwrapped, warn=True)


@pytest.mark.parametrize("env_id", IDS)
def test_seeded_determinism_and_pickle(env_id):
    env_a, env_b = gym.make(env_id, **SMALL), gym.make(env_id, **SMALL)
    assert _random_rollout(env_a, 3) == _random_rollout(env_b, 3)
    assert _random_rollout(env_a, 4) != _random_rollout(env_b, 5)
    # A pickled environment continues exactly like the original.
    env_a.reset(seed=11)
    env_b = pickle.loads(pickle.dumps(env_a))
    for _ in range(3):
        a = env_a.action_space.sample()
        ra, rb = env_a.step(a), env_b.step(a)
        assert np.array_equal(ra[0]["input_ids"], rb[0]["input_ids"]) and ra[1:4] == rb[1:4]
        if ra[2] or ra[3]:
            assert env_a.reset()[1]["sample_id"] == env_b.reset()[1]["sample_id"]


def test_make_vec_is_native_and_matches_single_envs():
    n, seed = 3, 7
    venv = gym.make_vec("InstructEnv/Token-v0", num_envs=n, vectorization_mode="vector_entry_point", **SMALL)
    assert isinstance(venv.unwrapped, TokenVectorEnv)
    singles = [TokenEnv(**SMALL) for _ in range(n)]
    vobs, _ = venv.reset(seed=seed)
    for i, env in enumerate(singles):
        env.reset(seed=seed + i)
    rng = np.random.default_rng(0)
    eos = singles[0].eos_token_id
    episodes = 0
    for _ in range(60):
        actions = rng.integers(0, singles[0].action_space.n, size=n)
        actions[rng.random(n) < 0.15] = eos
        vobs, vrew, vterm, vtrunc, vinfo = venv.step(actions)
        for i, env in enumerate(singles):
            obs, rew, term, trunc, info = env.step(int(actions[i]))
            assert rew == pytest.approx(vrew[i], abs=1e-12)
            assert (term, trunc) == (vterm[i], vtrunc[i])
            if term or trunc:
                episodes += 1
                assert vinfo["_final_info"][i]
                assert vinfo["final_info"]["completion"][i] == info["completion"]
                assert np.array_equal(vinfo["final_obs"][i]["input_ids"], obs["input_ids"])
                obs, _ = env.reset()  # SameStep: the vector env already holds the next episode
            assert np.array_equal(vobs["input_ids"][i], obs["input_ids"])
            assert np.array_equal(vobs["attention_mask"][i], obs["attention_mask"])
    assert episodes > 5
    assert venv.observation_space.contains(vobs)


def test_vector_next_step_autoreset():
    venv = TokenVectorEnv(2, autoreset_mode="NextStep", **SMALL)
    venv.reset(seed=0)
    eos = venv.eos_token_id
    _, rew, term, _, _ = venv.step(np.array([eos, 5]))
    assert term.tolist() == [True, False]
    obs, rew, term, trunc, info = venv.step(np.array([7, 6]))
    assert rew[0] == 0 and not term[0] and not trunc[0]  # slot 0 was reset, its action ignored
    assert obs["attention_mask"][0, venv.setup.max_prompt_tokens:].sum() == 0
    assert obs["attention_mask"][1, venv.setup.max_prompt_tokens:].sum() == 2


def test_token_episode_end_and_rewards(tokenizer):
    env = TokenEnv(tasks=["copy"], max_new_tokens=40)
    obs, info = env.reset(seed=0)
    P = env.setup.max_prompt_tokens
    prompt_ids = obs["input_ids"][:P][obs["attention_mask"][:P] == 1]
    assert env.tokenizer.decode(prompt_ids.tolist()) == info["prompt"]
    answer = env.tokenizer.encode(info["references"][0], add_special_tokens=False) + [env.eos_token_id]
    total = 0.0
    for t, tok in enumerate(answer):
        obs, reward, terminated, truncated, info = env.step(tok)
        total += reward
        assert obs["attention_mask"][P:].sum() == t + 1
        if t < len(answer) - 1:
            assert reward == 0.0 and not terminated
    assert terminated and not truncated
    assert total == 1.0 and info["completion"] == info["references"][0]
    assert info["reward_components"] == {"task": 1.0} and info["reward_source"] == "task"
    with pytest.raises(ResetNeeded, match="call reset"):
        env.step(0)


def test_truncation_at_budget():
    env = TokenEnv(tasks=["copy"], max_new_tokens=3)
    env.reset(seed=0)
    flags = [env.step(10)[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]


def test_invalid_actions_have_clear_errors():
    env = TokenEnv(**SMALL)
    env.reset(seed=0)
    V = env.action_space.n
    with pytest.raises(InvalidAction, match=rf"token id in \[0, {V}\); got {V}"):
        env.step(V)
    with pytest.raises(InvalidAction, match="integer token id"):
        env.step(1.5)
    with pytest.raises(InvalidAction, match="integer token id"):
        env.step("a")
    venv = TokenVectorEnv(2, **SMALL)
    venv.reset(seed=0)
    with pytest.raises(InvalidAction, match="array of 2 token ids"):
        venv.step(np.array([1, 2, 3]))
    with pytest.raises(InvalidAction, match="integer token ids"):
        venv.step(np.array([1.0, 2.0]))
    cenv = CompletionEnv(**SMALL)
    cenv.reset(seed=0)
    with pytest.raises(InvalidAction, match="str or a 1-D sequence"):
        cenv.step(3.5)
    with pytest.raises(InvalidAction, match="max_new_tokens is 12"):
        cenv.step(np.ones(13, dtype=np.int64))


def test_reset_options():
    env = TokenEnv(**SMALL)
    dataset = env.setup.dataset
    _, info = env.reset(options={"index": 4})
    assert info["sample_id"] == dataset[4].id
    _, info = env.reset(options={"sample_id": dataset[2].id})
    assert info["sample_id"] == dataset[2].id
    mine = Sample(id="mine", task="copy", instruction="Say hi.", references=("hi",))
    _, info = env.reset(options={"sample": mine})
    assert info["instruction"] == "Say hi."
    with pytest.raises(InvalidOption, match="Unknown reset option 'indx'. Did you mean 'index'"):
        env.reset(options={"indx": 1})
    with pytest.raises(InvalidOption, match=r"integer in \[0, "):
        env.reset(options={"index": 10**9})


def test_empty_dataset_and_unknown_names():
    with pytest.raises(EmptyDatasetError, match="dataset is empty"):
        TokenEnv(dataset=[])
    with pytest.raises(UnknownNameError, match="Did you mean 'rougeL'"):
        TokenEnv(reward="rougel", **SMALL)
    with pytest.raises(UnknownNameError, match="task"):
        TokenEnv(tasks=["sortt_numbers"])


def test_completion_env_text_and_ids():
    env = CompletionEnv(reward={"exact_match": 0.5, "rougeL": 0.5}, **SMALL)
    _, info = env.reset(seed=2)
    ref = info["references"][0]
    _, reward, terminated, truncated, info = env.step(ref)
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["reward_components"]["exact_match"] == 1.0
    assert info["reward_source"] == "exact_match+rougeL"
    ids = env.tokenizer.encode(ref, add_special_tokens=False)
    env.reset(seed=2)
    _, reward_ids, terminated, _, info = env.step(np.array(ids + [env.eos_token_id, 5, 6]))
    assert reward_ids == 1.0 and terminated and info["completion_tokens"] == len(ids)
    env.reset(seed=2)
    _, _, terminated, truncated, info = env.step("word " * 50)
    assert terminated and not truncated and info["length_limited"] and info["completion_tokens"] == 12


def test_completion_vector_groups_and_rewards():
    venv = gym.make_vec("InstructEnv/Completion-v0", num_envs=6, vectorization_mode="vector_entry_point",
                        group_size=3, **SMALL)
    obs, info = venv.reset(seed=0)
    assert isinstance(venv.unwrapped, CompletionVectorEnv)
    assert info["sample_id"][0] == info["sample_id"][1] == info["sample_id"][2]
    answers = [info["references"][i][0] if i % 2 == 0 else "" for i in range(6)]
    obs2, rewards, terminated, truncated, info2 = venv.step(answers)
    assert rewards.dtype == np.float64 and rewards.shape == (6,)
    assert all(rewards[::2] == 1.0) and terminated.all() and not truncated.any()
    assert list(info2["final_info"]["completion"]) == answers
    assert pickle.loads(pickle.dumps(venv.unwrapped)).num_envs == 6


def test_callable_reward_and_shaping():
    def length_reward(completions, references, **kwargs):
        return np.array([float(len(c)) for c in completions])

    bonus = []

    def shaping(tokens, generated, samples):
        bonus.append(len(tokens))
        return np.full(len(tokens), 0.25)

    env = TokenEnv(reward=length_reward, shaping=shaping, **SMALL)
    env.reset(seed=0)
    tok = env.tokenizer.encode("ab", add_special_tokens=False)[0]
    _, r1, *_ = env.step(tok)
    _, r2, terminated, _, info = env.step(env.eos_token_id)
    assert r1 == 0.25 and terminated and r2 == 0.25 + len(info["completion"])
    assert bonus == [1, 1]


def test_caller_tokenizer_not_mutated(tokenizer):
    before = (tokenizer.padding_side, tokenizer.pad_token, tokenizer.eos_token, len(tokenizer))
    env = TokenEnv(tokenizer=tokenizer, **SMALL)
    env.reset(seed=0)
    env.step(env.eos_token_id)
    assert (tokenizer.padding_side, tokenizer.pad_token, tokenizer.eos_token, len(tokenizer)) == before


def test_dataset_kwarg_with_own_samples():
    data = [Sample(id=f"s{i}", task="mine", instruction="Repeat the word.", context=w, references=(w,))
            for i, w in enumerate(["apple", "pear", "plum"])]
    env = CompletionEnv(dataset=data)
    assert env.setup.reward.name == "rougeL"  # no verifier: reference metric by default
    _, info = env.reset(seed=0)
    _, reward, *_ = env.step(info["context"])
    assert reward == 1.0


def test_builtin_dataset_default_split_is_train():
    env = TokenEnv()
    assert env.setup.split == "train"
    assert isinstance(env.setup.dataset, BuiltinDataset)


def test_batch_infos_matches_gymnasium_layout():
    from instruct_env.envs.core import batch_infos

    entries = [(0, {"task": "copy", "n": 3, "ok": True, "r": 0.5, "refs": ("a", "b"), "sub": {"x": 1.0}}),
               (2, {"task": "dedup", "n": 4, "ok": False, "r": 1.0, "refs": ("c",)})]
    expected: dict = {}
    venv = TokenVectorEnv(3, **SMALL)
    for slot, info in entries:
        expected = venv._add_info(expected, info, slot)
    got = batch_infos(entries, 3)
    assert sorted(got) == sorted(expected)
    for key in ("task", "n", "ok", "r", "refs", "_task", "_sub"):
        assert got[key].dtype == expected[key].dtype, key
        assert list(got[key]) == list(expected[key]), key
    assert list(got["sub"]["x"]) == list(expected["sub"]["x"]) and list(got["sub"]["_x"]) == [True, False, False]
