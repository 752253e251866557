"""Learning tests: tiny models reach a known optimum within a test-sized budget.

Task: "Say yes." -> "yes" (and "Say no." -> "no" for the prompt-dependent variant) with a
16-token vocabulary; reward 1 for exactly the word, 0.25 for an answer that starts with it.
A random policy scores ~0.02. Each test stops as soon as the mean reward of the last five
updates reaches the threshold, and fails if the update budget runs out first.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rl_utils import say_env_kwargs, tiny_policy, tiny_tokenizer

from agents.rl import default_config, make_trainer

THRESHOLD = 0.8


def _train_until(algo, config, words, max_updates):
    torch.set_num_threads(1)
    tokenizer = tiny_tokenizer()
    trainer = make_trainer(algo, config, tiny_policy(tokenizer, seed=config.seed), tokenizer, say_env_kwargs(words))
    rewards = []
    for _ in range(max_updates):
        rewards.append(trainer.update_step()["reward_mean"])
        if len(rewards) >= 5 and np.mean(rewards[-5:]) >= THRESHOLD:
            break
    return rewards


def test_ppo_learns_prompt_dependent_answer():
    config = default_config("ppo", num_envs=16, n_steps=8, num_minibatches=2, update_epochs=4, max_new_tokens=3,
                            lr=1e-3, kl_coef=0.01, seed=0)
    rewards = _train_until("ppo", config, ("yes", "no"), max_updates=80)
    assert np.mean(rewards[:3]) < 0.2
    assert np.mean(rewards[-5:]) >= THRESHOLD, rewards


def test_a2c_learns_fixed_answer():
    config = default_config("a2c", num_envs=16, n_steps=8, max_new_tokens=3, lr=3e-3, kl_coef=0.0, seed=0)
    rewards = _train_until("a2c", config, ("yes",), max_updates=150)
    assert np.mean(rewards[-5:]) >= THRESHOLD, rewards


def test_grpo_learns_prompt_dependent_answer():
    config = default_config("grpo", num_envs=32, group_size=8, max_new_tokens=3, lr=1e-3, kl_coef=0.01, seed=0)
    rewards = _train_until("grpo", config, ("yes", "no"), max_updates=400)
    assert np.mean(rewards[:3]) < 0.2
    assert np.mean(rewards[-5:]) >= THRESHOLD, rewards


@pytest.mark.parametrize("algo", ["rloo", "reinforce"])
def test_reinforce_family_learns_fixed_answer(algo):
    config = default_config(algo, num_envs=32, group_size=8 if algo == "rloo" else 1, max_new_tokens=3, lr=2e-3,
                            kl_coef=0.0, seed=0)
    rewards = _train_until(algo, config, ("yes",), max_updates=150)
    assert np.mean(rewards[-5:]) >= THRESHOLD, rewards
