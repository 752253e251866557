"""``render()`` of the single environments and ``rewards.clear_caches``."""

from __future__ import annotations

import gymnasium as gym
import pytest

import instruct_env  # noqa: F401  (registers the environments)
from instruct_env.error import InvalidOption


@pytest.mark.parametrize("env_id", ["InstructEnv/Token-v0", "InstructEnv/Completion-v0"])
def test_ansi_render_shows_the_prompt_and_the_answer_so_far(env_id):
    env = gym.make(env_id, render_mode="ansi", max_new_tokens=4)
    assert env.unwrapped.render() is None  # nothing to show before the first reset
    _, info = env.reset(seed=0, options={"index": 0})
    assert env.render() == info["prompt"] and info["prompt"].endswith("### Response:\n")
    if env_id.startswith("InstructEnv/Token"):
        [token] = env.unwrapped.tokenizer.encode("hi", add_special_tokens=False)
        *_, info = env.step(token)
        assert env.render() == info["prompt"] + "hi"
    else:
        *_, info = env.step("hello there")  # cut to max_new_tokens=4 tokens
        assert env.render() == info["prompt"] + info["completion"] and "hello there".startswith(info["completion"])
        assert info["completion"].startswith("hello")
    quiet = gym.make(env_id, max_new_tokens=4)
    quiet.reset(seed=0)
    assert quiet.render() is None  # no render mode: nothing rendered
    with pytest.raises(InvalidOption, match=r"render_mode must be one of \['ansi'\] or None; got 'human'"):
        gym.make(env_id, render_mode="human")


def test_clear_caches_empties_the_stem_cache_and_changes_no_score():
    from instruct_env import rewards
    from instruct_env.rewards import rouge

    reward = rewards.make("rougeL")
    completions = ["the cats were running quickly", "a dog sat on the mat"]
    references = [["cats run quick"], ["the dogs sitting on mats"]]
    first = reward(completions, references)
    assert rouge._stem.cache_info().currsize > 0
    rewards.clear_caches()
    assert rouge._stem.cache_info().currsize == 0
    again = reward(completions, references)
    assert list(again) == list(first) and rouge._stem.cache_info().currsize > 0
