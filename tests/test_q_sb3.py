"""Stock Stable-Baselines3 DQN with the LM as its Q-network (LMQPolicy)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("stable_baselines3")

from rl_utils import say_dataset, tiny_tokenizer  # noqa: E402
from stable_baselines3 import DQN  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402

import instruct_env  # noqa: E402,F401  (registers the ids)
from agents.common.model import DefaultModelConfig, build_default_model  # noqa: E402
from agents.q.sb3 import LMQPolicy  # noqa: E402
from instruct_env.error import ConfigError  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = DefaultModelConfig(n_layer=2, n_embd=32, n_head=2, n_positions=32)


def _env(tok, n_envs=4):
    kwargs = {"dataset": say_dataset(("yes",)), "tokenizer": tok, "reward": "auto", "max_prompt_tokens": 16,
              "max_new_tokens": 3, "render_mode": None}  # make_vec_env would ask for render_mode="rgb_array"
    return make_vec_env("InstructEnv/Token-v0", n_envs=n_envs, seed=0, env_kwargs=kwargs)


def _dqn(tok, env, **kwargs):
    return DQN(LMQPolicy, env, learning_rate=1e-3, buffer_size=5000, learning_starts=100, batch_size=32, train_freq=1,
               target_update_interval=100, exploration_fraction=0.3, exploration_final_eps=0.05, gamma=1.0, seed=0,
               policy_kwargs={"tokenizer": tok, "model_config": TINY, "seed": 0}, **kwargs)


def test_dqn_learns_fixed_answer():
    """ "Say yes." -> "yes" then EOS (reward 1; a random policy finds it once in 256 tries)."""
    tok = tiny_tokenizer()
    env = _env(tok)
    model = _dqn(tok, env)
    before = evaluate_policy(model, env, n_eval_episodes=16)[0]
    model.learn(2000)
    after = evaluate_policy(model, env, n_eval_episodes=16)[0]
    assert before < 0.3
    assert after >= 0.8, (before, after)


def test_q_values_are_the_lm_logits_and_zero_when_the_budget_is_used(tmp_path):
    tok = tiny_tokenizer()
    env = _env(tok, n_envs=1)
    model = _dqn(tok, env)
    obs = env.reset()
    obs_t = {k: torch.as_tensor(v) for k, v in obs.items()}
    q = model.policy.q_net(obs_t)  # (1, 16)
    mask = obs_t["attention_mask"][0].bool()
    ids = obs_t["input_ids"][0][mask][None]
    logits = model.policy.q_net.lm(input_ids=ids).logits[0, -1]
    assert torch.allclose(q[0], logits, atol=1e-5)
    full = {k: v.clone() for k, v in obs_t.items()}
    full["attention_mask"][:, -1] = 1  # the last column is a real token: the budget is used up
    assert torch.equal(model.policy.q_net(full), torch.zeros_like(q))
    # the target is a separate copy with the same weights
    assert model.policy.q_net_target.lm is not model.policy.q_net.lm
    assert torch.equal(model.policy.q_net_target(obs_t), q)
    model.save(tmp_path / "dqn")
    loaded = DQN.load(tmp_path / "dqn", env=env)
    assert torch.allclose(loaded.policy.q_net(obs_t), q)


def test_bad_arguments():
    tok = tiny_tokenizer()
    env = _env(tok, n_envs=1)
    with pytest.raises(ConfigError, match="not both"):
        DQN(LMQPolicy, env, policy_kwargs={"model": build_default_model(tok, TINY), "model_name_or_path": "x"})
    with pytest.raises(ConfigError, match="model_config= shapes the default model only"):
        DQN(LMQPolicy, env, policy_kwargs={"model": build_default_model(tok, TINY), "model_config": TINY})
