"""The iterative loop end to end: a tiny model, two rounds of simulated feedback and RL with the proxy reward."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from rl_utils import say_dataset, tiny_policy, tiny_tokenizer

from agents.feedback_loop import FeedbackLoopConfig, run_feedback_loop
from agents.rl import default_config
from instruct_env.error import ConfigError
from instruct_env.feedback.reward_model import RewardModelConfig

WORDS = ("yes", "no", "maybe", "cat", "dog", "red")


def test_two_rounds_of_simulated_feedback_run_end_to_end(tmp_path):
    torch.set_num_threads(1)
    tokenizer = tiny_tokenizer()
    policy = tiny_policy(tokenizer, seed=0, n_embd=32)
    config = FeedbackLoopConfig(kind="rating", queries_per_round=12, pool_prompts=6, samples_per_prompt=4,
                                per_instruction=3, evaluators=2, rl_updates=3, min_holdout=2, max_prompt_tokens=16,
                                reward_model=RewardModelConfig(n_heads=2, hidden=8, epochs=50), seed=0)
    rl_config = default_config("grpo", num_envs=8, group_size=4, max_new_tokens=3, lr=1e-3, total_updates=1000)
    logged = []
    records = run_feedback_loop(policy, tokenizer, rounds=2, feedback="simulated", algo="grpo", config=config,
                                rl_config=rl_config, train_data=say_dataset(WORDS), val_data=say_dataset(WORDS),
                                workdir=tmp_path, log_fn=logged.append)
    assert [r.round for r in records] == [0, 1, 2]
    assert records[0].labels_used == 0 and math.isnan(records[0].rm_heldout_accuracy)
    for record in records[1:]:
        assert record.answers > 0 and record.rm_version >= 1 and record.rl_updates == 3
        assert 0 <= record.val_task <= 1 and not math.isnan(record.rl_reward)
        assert record.refit is not None
    assert records[2].labels_used > records[1].labels_used  # labels accumulate across rounds
    assert {m["phase"] for m in logged} == {"rl", "round"}
    assert sum(m["phase"] == "rl" for m in logged) == 6
    assert (tmp_path / "feedback.db").exists() and (tmp_path / "reward_model" / "state.json").exists()


def test_loop_arguments_are_checked():
    with pytest.raises(ConfigError, match="samples_per_prompt must be >= 2"):
        FeedbackLoopConfig(kind="pairwise", samples_per_prompt=1)
    with pytest.raises(Exception, match="Did you mean 'simulated'"):
        run_feedback_loop(None, None, feedback="simulate")
    with pytest.raises(ConfigError, match="feedback='human' needs store_url="):
        run_feedback_loop(None, None, feedback="human")
    with pytest.raises(ConfigError, match="FeedbackLoopConfig.evaluators must be an integer >= 1; got True"):
        FeedbackLoopConfig(evaluators=True)  # a bool is not a count
    with pytest.raises(ConfigError, match="FeedbackLoopConfig.rl_updates must be an integer >= 0; got -1"):
        FeedbackLoopConfig(rl_updates=-1)
    assert FeedbackLoopConfig(queries_per_round=np.int64(8), seed=np.int64(0)).queries_per_round == 8


def test_direct_mode_rewards_rl_with_the_evaluators_answers(tmp_path):
    torch.set_num_threads(1)
    tokenizer = tiny_tokenizer()
    policy = tiny_policy(tokenizer, seed=0, n_embd=32)
    config = FeedbackLoopConfig(kind="rating", queries_per_round=12, pool_prompts=6, samples_per_prompt=4,
                                per_instruction=3, evaluators=2, rl_updates=2, min_holdout=2, max_prompt_tokens=16, rl_reward="direct",
                                direct_kind="thumbs", noise=0.0,
                                reward_model=RewardModelConfig(n_heads=2, hidden=8, epochs=20), seed=0)
    rl_config = default_config("rloo", num_envs=8, group_size=4, max_new_tokens=3, lr=1e-3, total_updates=1000)
    logged = []
    records = run_feedback_loop(policy, tokenizer, rounds=1, feedback="simulated", algo="rloo", config=config,
                                rl_config=rl_config, train_data=say_dataset(WORDS), val_data=say_dataset(WORDS),
                                workdir=tmp_path, log_fn=logged.append)
    record = records[1]
    # Every completion RL sampled was judged by both evaluators: 2 updates x 8 completions x 2 answers.
    assert record.rl_updates == 2 and record.rl_judgements == 2 * 8 * 2
    # Noiseless thumbs are the verifier's pass/fail, so the mean reward is a multiple of 1/16 in [0, 1].
    assert 0 <= record.rl_reward <= 1 and (record.rl_reward * 16) == pytest.approx(round(record.rl_reward * 16))
    rl_logs = [m for m in logged if m["phase"] == "rl"]
    assert len(rl_logs) == 2 and record.answers > 0 and record.rm_version >= 1  # the reward model still learns
    assert records[0].rl_judgements == 0


def test_direct_mode_options_are_checked():
    with pytest.raises(Exception, match="Did you mean 'direct'"):
        FeedbackLoopConfig(rl_reward="directly")
    with pytest.raises(ConfigError, match="direct_kind must be 'rating' or 'thumbs'"):
        FeedbackLoopConfig(direct_kind="pairwise")
    with pytest.raises(ConfigError, match="promotion_tolerance must be in"):
        FeedbackLoopConfig(promotion_tolerance=1.5)
