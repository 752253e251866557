"""Offline episodes: JSONL round trip, validation messages, feedback records as rewards, env writers."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from rl_utils import say_env_kwargs, tiny_tokenizer

from agents.q.data import (
    Episode,
    TransitionDataset,
    episodes_from_completion_env,
    episodes_from_feedback,
    episodes_from_store,
    episodes_from_token_env,
    pack_episodes,
)
from instruct_env.error import ConfigError, DataFormatError


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _write(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_jsonl_round_trip_and_pack(tmp_path):
    episodes = [Episode(np.array([3, 4]), np.array([10, 1]), np.array([0.0, 1.0], dtype=np.float32)),
                Episode(np.array([5]), np.array([11, 12, 13]), np.array([0.0, 0.5, 0.25], dtype=np.float32), False)]
    path = TransitionDataset(episodes).save(tmp_path / "d.jsonl")
    back = TransitionDataset.load(path)
    assert len(back) == 2 and back.num_transitions == 5
    assert back[1].rewards.tolist() == [0.0, 0.5, 0.25] and back[1].done is False
    batch = pack_episodes(back.episodes, pad_id=0)
    assert batch.context_ids.tolist() == [[3, 4], [0, 5]]  # prompts right-aligned
    assert batch.tokens.tolist() == [[10, 1, 0], [11, 12, 13]]  # completions left-aligned
    assert batch.dones.tolist() == [[0, 1, 0], [0, 0, 0]]  # only a done episode's last token ends it
    assert batch.rewards.tolist() == [[0.0, 1.0, 0.0], [0.0, 0.5, 0.25]]


def test_text_records_get_eos_and_final_reward(tmp_path, tok):
    path = _write(tmp_path / "t.jsonl", [{"prompt": "Say yes .", "completion": "yes", "reward": 0.75}])
    (episode,) = TransitionDataset.load(path, tok).episodes
    assert episode.tokens.tolist() == [tok.convert_tokens_to_ids("yes"), tok.eos_token_id]
    assert episode.rewards.tolist() == [0.0, 0.75]


@pytest.mark.parametrize("line,message", [
    ("{not json", "d.jsonl:2: not valid JSON"),
    ('["a"]', "d.jsonl:2: expected a JSON object"),
    ({"prompt_ids": [1], "completion_ids": [2, 3], "rewards": [1.0]}, "d.jsonl:2: field 'rewards' has 1 values"),
    ({"prompt_ids": [1], "completion_ids": [], "reward": 1.0}, "d.jsonl:2: field 'completion_ids' must be a non-empty"),
    ({"prompt_ids": [1], "completion_ids": [2], "reward": "high"}, "d.jsonl:2: field 'reward' must be int or float"),
    ({"prompt_ids": [1], "completion_ids": [2], "reward": 1.0, "done": "yes"}, "d.jsonl:2: field 'done' must be"),
    ({"prompt": "Say yes .", "completion": "yes", "rating": 9}, "d.jsonl:2: field 'rating' must be in"),
    ({"prompt": "Say yes .", "chosen": "yes"}, "d.jsonl:2: missing field 'rejected'"),
])
def test_bad_lines_name_file_line_and_field(tmp_path, tok, line, message):
    good = {"prompt_ids": [1], "completion_ids": [2], "reward": 1.0}
    path = _write(tmp_path / "d.jsonl", [good, line])
    with pytest.raises(DataFormatError, match=message.replace("(", r"\(")):
        TransitionDataset.load(path, tok)


def test_text_without_tokenizer_and_missing_file(tmp_path):
    path = _write(tmp_path / "t.jsonl", [{"prompt": "a", "completion": "b", "reward": 1.0}])
    with pytest.raises(ConfigError, match="t.jsonl:1: a text record needs a tokenizer"):
        TransitionDataset.load(path)
    with pytest.raises(ConfigError, match="does not exist"):
        TransitionDataset.load(tmp_path / "nope.jsonl")


def test_feedback_kinds_become_rewards(tok):
    records = [
        {"prompt": "Say yes .", "completion": "yes", "label": True},           # thumbs up: 1
        {"prompt": "Say yes .", "completion": "no", "label": False},           # thumbs down: 0
        {"prompt": "Say no .", "completion": "no", "rating": 4},               # (4 - 1) / 4 = 0.75
        {"prompt": "Say no .", "completion": "no", "rating": 2},               # same pair: mean with 0.25
        {"prompt": "Say cat .", "chosen": "cat", "rejected": "dog"},
        {"prompt": "Say cat .", "chosen": "cat", "rejected": "red"},
        {"prompt": "Say cat .", "chosen": "dog", "rejected": "red"},           # cat 2/2, dog 1/2, red 0/2
        {"prompt": "Say red .", "completion": "red"},                          # an edit: 1
    ]
    data = episodes_from_feedback(records, tok)
    got = {(tok.decode(e.prompt_ids), tok.decode(e.tokens[:-1])): e.rewards[-1] for e in data.episodes}
    assert got == {("Say yes .", "yes"): 1.0, ("Say yes .", "no"): 0.0, ("Say no .", "no"): 0.5,
                   ("Say cat .", "cat"): 1.0, ("Say cat .", "dog"): 0.5, ("Say cat .", "red"): 0.0,
                   ("Say red .", "red"): 1.0}
    assert all(e.rewards[:-1].sum() == 0 and e.tokens[-1] == tok.eos_token_id for e in data.episodes)


def test_store_ratings_use_the_query_scale(tmp_path, tok):
    from instruct_env.feedback import FeedbackStore

    store = FeedbackStore(str(tmp_path / "fb.db"))
    evaluator, _ = store.add_evaluator("ann")
    store.add_queries([{"kind": "rating", "instruction": "Say yes.", "completions": ["yes"],
                        "options": {"low": 1, "high": 3}}])
    store.submit(evaluator.id, store.next_query(evaluator.id).id, {"rating": 3})
    store.close()
    (episode,) = episodes_from_store(str(tmp_path / "fb.db"), tok).episodes
    assert episode.rewards[-1] == pytest.approx(1.0)  # the top of a 1..3 scale


def test_env_writers_score_with_the_env(tok):
    kwargs = {**say_env_kwargs(("yes",)), "tokenizer": tok, "max_new_tokens": 3}
    yes, eos = tok.convert_tokens_to_ids("yes"), tok.eos_token_id
    token_env = gym.make_vec("InstructEnv/Token-v0", num_envs=2, vectorization_mode="vector_entry_point", **kwargs)
    step = {"n": 0}

    def act(obs):  # "yes" then EOS
        step["n"] += 1
        return np.full(2, yes if step["n"] % 2 else eos)

    data = episodes_from_token_env(token_env, act, 3, seed=0)
    assert len(data) == 3 and all(e.tokens.tolist() == [yes, eos] and e.rewards.tolist() == [0.0, 1.0]
                                  for e in data.episodes)
    completion_env = gym.make_vec("InstructEnv/Completion-v0", num_envs=2, vectorization_mode="vector_entry_point",
                                  **kwargs)
    data = episodes_from_completion_env(completion_env, lambda obs: np.array([[yes, eos, 0], [yes, yes, yes]]), 2)
    assert [e.tokens.tolist() for e in data.episodes] == [[yes, eos], [yes, yes, yes]]
    assert [e.rewards[-1] for e in data.episodes] == [1.0, 0.25]
