"""instruct_env.wrappers: text observations, reward scaling, KL penalty, curriculum."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import instruct_env  # noqa: F401  (registers the ids)
from instruct_env.error import ConfigError
from instruct_env.tasks import Sample
from instruct_env.wrappers import (
    AnyText,
    CompactTokens,
    Curriculum,
    KLPenalty,
    NormalizeReward,
    ScaleReward,
    TextObservation,
)

TOKEN = {"tasks": ["copy"], "max_prompt_tokens": 64, "max_new_tokens": 4}


def test_import_does_not_load_torch():
    code = "import sys, instruct_env.wrappers; print(any(m in sys.modules for m in ('torch', 'transformers')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- TextObservation --------------------------------------------------------------------------


def test_text_observation_on_the_token_env_is_prompt_plus_completion():
    env = TextObservation(gym.make("InstructEnv/Token-v0", **TOKEN))
    obs, info = env.reset(seed=0)
    assert obs == info["prompt"] and isinstance(env.action_space, gym.spaces.Discrete)
    token = env.unwrapped.tokenizer.encode(" word", add_special_tokens=False)[0]
    obs, _, _, _, info = env.step(token)
    assert obs == info["prompt"] + info["completion"] and info["completion"] != ""
    obs, _, terminated, _, info = env.step(env.unwrapped.eos_token_id)
    assert terminated and obs == info["prompt"] + info["completion"]
    assert env.observation_space.contains(obs)


def test_text_observation_on_the_completion_env_takes_text_answers():
    env = TextObservation(gym.make("InstructEnv/Completion-v0", tasks=["reverse_words"]))
    obs, info = env.reset(seed=3)
    assert isinstance(env.action_space, AnyText) and env.action_space.contains(info["references"][0])
    obs, reward, terminated, _, info = env.step(info["references"][0])
    assert (reward, terminated) == (1.0, True) and obs == info["prompt"] + info["references"][0]


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")
@pytest.mark.parametrize("env_id", ["InstructEnv/Token-v0", "InstructEnv/Completion-v0"])
def test_text_observation_passes_the_gymnasium_checker(env_id):
    from gymnasium.utils.env_checker import check_env

    check_env(TextObservation(gym.make(env_id, **TOKEN).unwrapped), skip_render_check=True)


def test_any_text_holds_every_string_and_samples_printable_text():
    space = AnyText(max_length=8, seed=0)
    assert space.contains("ünïcödé\n\t and far longer than eight") and not space.contains(b"bytes")
    assert all(space.contains(space.sample()) and len(space.sample()) <= 8 for _ in range(5))


def test_text_observation_rejects_other_envs():
    with pytest.raises(ConfigError, match="Token-v0 or InstructEnv/Completion-v0"):
        TextObservation(gym.make("CartPole-v1"))


# --- reward scaling ---------------------------------------------------------------------------


def test_scale_reward_multiplies_and_pickles():
    env = ScaleReward(gym.make("InstructEnv/Completion-v0", tasks=["copy"]), scale=0.5)
    _, info = env.reset(seed=0)
    assert env.step(info["references"][0])[1] == 0.5
    clone = pickle.loads(pickle.dumps(env))
    assert clone.scale == 0.5
    for bad in (0, -1.0, math.inf, "2"):
        with pytest.raises(ConfigError, match="scale must be a finite number > 0"):
            ScaleReward(env, scale=bad)


def test_normalize_reward_is_gymnasiums():
    assert NormalizeReward is gym.wrappers.NormalizeReward
    env = NormalizeReward(gym.make("InstructEnv/Completion-v0", tasks=["copy"]), gamma=0.9)
    _, info = env.reset(seed=0)
    assert np.isfinite(env.step(info["references"][0])[1])


# --- KLPenalty --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lms(tokenizer):
    from agents.common.model import DefaultModelConfig, build_default_model

    config = DefaultModelConfig(n_layer=1, n_embd=32, n_head=2, n_positions=80)
    return build_default_model(tokenizer, config, seed=0).eval(), build_default_model(tokenizer, config, seed=1).eval()


def _direct_logprob(model, ids, token):
    import torch

    with torch.no_grad():
        return float(torch.log_softmax(model(input_ids=torch.as_tensor(ids)[None]).logits[0, -1], -1)[token])


def test_kl_penalty_with_the_agents_logprob(tiny_lms):
    ref, _ = tiny_lms
    env = KLPenalty(gym.make("InstructEnv/Token-v0", **TOKEN), ref, beta=0.5)
    obs, _ = env.reset(seed=0)
    total_kl = 0.0
    for step, token in enumerate([40, 41, 42, 43]):
        ids = obs["input_ids"][obs["attention_mask"] == 1]
        env.set_policy_logprob(-1.5)
        obs, reward, terminated, truncated, info = env.step(token)
        expected_ref = _direct_logprob(ref, ids, token)
        assert info["ref_logprob"] == pytest.approx(expected_ref, abs=1e-5)
        assert info["kl"] == pytest.approx(-1.5 - expected_ref, abs=1e-5)
        task_reward = reward - info["kl_penalty"]
        assert info["kl_penalty"] == pytest.approx(-0.5 * info["kl"])
        assert task_reward == pytest.approx(info.get("reward_components", {}).get("task", 0.0) if step == 3 else 0.0)
        total_kl += info["kl"]
    assert truncated and info["episode_kl"] == pytest.approx(total_kl)


def test_kl_penalty_is_zero_when_the_policy_is_the_reference(tiny_lms):
    ref, _ = tiny_lms
    plain = gym.make("InstructEnv/Token-v0", **TOKEN)
    wrapped = KLPenalty(gym.make("InstructEnv/Token-v0", **TOKEN), ref, beta=1.0, policy_model=ref)
    plain.reset(seed=2)
    wrapped.reset(seed=2)
    for token in (50, 51, 1):
        expected = plain.step(token)
        got = wrapped.step(token)
        assert got[4]["kl"] == 0.0 and got[1] == expected[1]


def test_kl_penalty_with_a_policy_model(tiny_lms):
    ref, policy = tiny_lms
    env = KLPenalty(gym.make("InstructEnv/Token-v0", **TOKEN), ref, beta=0.1, policy_model=policy)
    obs, _ = env.reset(seed=0)
    ids = obs["input_ids"][obs["attention_mask"] == 1]
    _, _, _, _, info = env.step(60)
    assert info["policy_logprob"] == pytest.approx(_direct_logprob(policy, ids, 60), abs=1e-5)
    assert info["kl"] != 0.0


def test_kl_penalty_errors(tiny_lms, tokenizer):
    ref, _ = tiny_lms
    env = KLPenalty(gym.make("InstructEnv/Token-v0", **TOKEN), ref)
    env.reset(seed=0)
    with pytest.raises(ConfigError, match="call set_policy_logprob"):
        env.step(5)
    assert env.unwrapped._slots.num_generated[0] == 0  # the env did not advance
    with pytest.raises(ConfigError, match="finite and <= 0"):
        env.set_policy_logprob(0.5)
    with pytest.raises(ConfigError, match="needs InstructEnv/Token-v0"):
        KLPenalty(gym.make("InstructEnv/Completion-v0", **TOKEN), ref)
    with pytest.raises(ConfigError, match="beta must be"):
        KLPenalty(gym.make("InstructEnv/Token-v0", **TOKEN), ref, beta=-1)
    from agents.common.model import DefaultModelConfig, build_default_model

    small = build_default_model(tokenizer, DefaultModelConfig(n_layer=1, n_embd=16, n_head=1, n_positions=80))
    small.resize_token_embeddings(100)
    with pytest.raises(ConfigError, match="ref_model predicts 100 tokens but the env's vocabulary has 512"):
        KLPenalty(gym.make("InstructEnv/Token-v0", **TOKEN), small)


# --- Curriculum -------------------------------------------------------------------------------


def _episode(env, correct, seed=None):
    _, info = env.reset(seed=seed)
    return env.step(info["references"][0] if correct else "")


def _max_len_seen(env, n=20):
    return max(len(env.reset()[1]["context"].split()) for _ in range(n))


def test_curriculum_promotes_with_hysteresis_and_demotes():
    env = Curriculum(gym.make("InstructEnv/Completion-v0", tasks=["sort_numbers"]),
                     levels=[{"min_len": 2, "max_len": 2}, {"min_len": 2, "max_len": 3}, {"min_len": 5, "max_len": 5}],
                     threshold=0.8, demote_below=0.3, window=4)
    env.reset(seed=0)
    assert env.level == 0 and _max_len_seen(env) == 2
    for _ in range(3):
        assert _episode(env, correct=True)[4]["curriculum_level"] == 0  # window not full yet
    assert _episode(env, correct=True)[4]["curriculum_level"] == 1
    assert _max_len_seen(env) == 3
    # The window restarted at level 1; mixed results between the thresholds change nothing.
    assert env.level == 1 and math.isnan(env.running_mean)
    for correct in (True, False, True, False, True, False):
        _episode(env, correct)
    assert env.level == 1
    for _ in range(4):
        _episode(env, correct=True)
    assert env.level == 2 and _max_len_seen(env) == 5
    for _ in range(4):
        _episode(env, correct=True)
    assert env.level == 2  # the last level stays
    for _ in range(4):
        _episode(env, correct=False)
    assert env.level == 1


def test_curriculum_keeps_the_envs_split_seed_and_size():
    env = gym.make("InstructEnv/Token-v0", tasks=["sort_numbers", "copy"], split="validation",
                   dataset_kwargs={"size_per_task": 7, "seed": 3, "max_value": 9})
    Curriculum(env, levels=[{"max_len": 4}], threshold=0.5)
    data = env.unwrapped.setup.dataset
    assert (data.split, data.size_per_task, data.seed, len(data)) == ("validation", 7, 3, 14)
    numbers = [int(x) for i in range(0, 14, 2) for x in data[i].context.split()]
    assert max(numbers) <= 9 and all(f.max_len == 4 for f in data.families if hasattr(f, "max_len"))


def test_curriculum_errors():
    env = gym.make("InstructEnv/Completion-v0", tasks=["sort_numbers"])
    with pytest.raises(ConfigError, match="Unknown knob.*'max_words'"):
        Curriculum(env, levels=[{"max_words": 3}], threshold=0.5)
    with pytest.raises(ConfigError, match="must be lower than threshold"):
        Curriculum(env, levels=[{}], threshold=0.5, demote_below=0.5)
    with pytest.raises(ConfigError, match="non-empty list of knob dicts"):
        Curriculum(env, levels={"max_len": 3}, threshold=0.5)
    with pytest.raises(ConfigError, match="start_level"):
        Curriculum(env, levels=[{}], threshold=0.5, start_level=1)
    own = gym.make("InstructEnv/Completion-v0", dataset=[Sample(id="a", task="t", instruction="Say a.", references="a")])
    with pytest.raises(ConfigError, match="made with tasks="):
        Curriculum(own, levels=[{}], threshold=0.5)


# --- CompactTokens ----------------------------------------------------------------------------


def test_compact_tokens_keeps_the_values_in_small_types():
    plain = gym.make("InstructEnv/Token-v0", **TOKEN)
    env = CompactTokens(gym.make("InstructEnv/Token-v0", **TOKEN))
    expected, _ = plain.reset(seed=4)
    obs, _ = env.reset(seed=4)
    for token in (30, 31):
        assert obs["input_ids"].dtype == np.int16 and obs["attention_mask"].dtype == np.uint8
        assert all(np.array_equal(obs[k], expected[k]) for k in obs) and env.observation_space.contains(obs)
        expected, obs = plain.step(token)[0], env.step(token)[0]


class _BigVocab(gym.Env):
    observation_space = gym.spaces.Dict({"input_ids": gym.spaces.Box(0, 50_256, (4,), dtype=np.int64),
                                         "attention_mask": gym.spaces.Box(0, 1, (4,), dtype=np.int64)})
    action_space = gym.spaces.Discrete(50_257)

    def reset(self, *, seed=None, options=None):
        return {"input_ids": np.array([0, 0, 50_000, 7]), "attention_mask": np.array([0, 0, 1, 1])}, {}


def test_compact_tokens_uses_int32_for_large_vocabularies():
    env = CompactTokens(_BigVocab())
    obs, _ = env.reset()
    assert obs["input_ids"].dtype == np.int32 and obs["input_ids"][2] == 50_000
    with pytest.raises(ConfigError, match="Dict observation of 'input_ids' and 'attention_mask'"):
        CompactTokens(gym.make("CartPole-v1"))
