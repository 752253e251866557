"""Config validation: bad values and conflicts are rejected with messages that say what to do."""

from __future__ import annotations

import re

import pytest

from agents.ac import A2CConfig, PPOConfig
from agents.pg import GRPOConfig, ReinforceConfig, RLOOConfig
from agents.rl import default_config, make_trainer
from instruct_env.error import ConfigError, UnknownNameError


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (PPOConfig, {"clip_range": 1.5}, "PPOConfig.clip_range must be a number in (0, 1); got 1.5. Typical values are 0.1-0.3."),
        (PPOConfig, {"lr": -1e-4}, "PPOConfig.lr must be a number in (0, 1]; got -0.0001. Typical values are 1e-6 to 1e-3."),
        (PPOConfig, {"n_steps": 0}, "PPOConfig.n_steps must be an integer >= 1; got 0."),
        (PPOConfig, {"gamma": 1.1}, "PPOConfig.gamma must be a number in [0, 1]; got 1.1."),
        (PPOConfig, {"num_envs": 4, "num_minibatches": 8},
         "PPOConfig: num_minibatches=8 is more than num_envs=4; a rollout may hold only num_envs episode segments, "
         "one per slot. Lower num_minibatches to at most 4 or raise num_envs."),
        (PPOConfig, {"target_kl": 0.0}, "PPOConfig.target_kl must be a number in (0, inf]; got 0.0. Use None to never stop early."),
        (A2CConfig, {"temperature": 0.0},
         "A2CConfig.temperature must be a number in (0, inf]; got 0.0. RL needs a stochastic policy; for greedy "
         "decoding evaluate with temperature 0 instead."),
        (A2CConfig, {"kl_in": "both"}, "A2CConfig.kl_in must be 'reward' or 'loss'; got 'both'."),
        (PPOConfig, {"kl_in": "loss", "kl_estimator": "k1"},
         "PPOConfig: kl_in='loss' with kl_estimator='k1' does not penalise KL: the gradient of the sampled "
         "k1 = logp - logp_ref is zero in expectation. Use kl_estimator='k3' (as GRPO) or 'k2', or put k1 in "
         "the reward with kl_in='reward'."),
        (GRPOConfig, {"kl_target": 0.1, "kl_coef": 0.0},
         "GRPOConfig: kl_target=0.1 with kl_coef=0 cannot work: the adaptive controller scales beta "
         "multiplicatively, so it would stay 0. Set kl_coef to a starting value (e.g. 0.05) or kl_target=None."),
        (GRPOConfig, {"num_envs": 12, "group_size": 8},
         "GRPOConfig: num_envs=12 is not a multiple of group_size=8 (each prompt is answered group_size times). "
         "Use num_envs=8 or another multiple of 8."),
        (GRPOConfig, {"group_size": 1, "num_envs": 8},
         "GRPOConfig.group_size must be >= 2 (advantages are relative to the other completions of the same "
         "prompt); got 1. Typical values are 4-16."),
        (RLOOConfig, {"group_size": 1, "num_envs": 8},
         "RLOOConfig.group_size must be >= 2 (the baseline of a completion is the mean reward of the others "
         "for its prompt); got 1. Typical values are 4-16."),
        (ReinforceConfig, {"baseline": "ema"},
         "ReinforceConfig.baseline must be 'moving_average', 'batch_mean' or 'none'; got 'ema'."),
        (ReinforceConfig, {"kl_estimator": "k5"}, "ReinforceConfig.kl_estimator must be one of ['k1', 'k2', 'k3']; got 'k5'."),
        (ReinforceConfig, {"time_budget_s": 0}, "ReinforceConfig.time_budget_s must be a number in (0, inf]; got 0. Use None for no time limit."),
    ],
)
def test_config_rejects_bad_values(cls, kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message) + "$"):
        cls(**kwargs)


def test_defaults_are_valid_and_follow_the_papers():
    for algo in ("ppo", "a2c", "reinforce", "grpo", "rloo"):
        default_config(algo)
    grpo = GRPOConfig()
    assert (grpo.kl_in, grpo.kl_estimator) == ("loss", "k3")
    assert (PPOConfig().kl_in, PPOConfig().kl_estimator) == ("reward", "k1")


def test_make_trainer_rejects_unknown_algo_and_wrong_config():
    with pytest.raises(UnknownNameError, match=r"Unknown RL algorithm 'ppo2'\. Did you mean 'ppo' or 'grpo'\? Known RL algorithms: a2c, grpo, ilql, ppo, reinforce, rloo, sql\."):
        make_trainer("ppo2", None, None, None, {})
    with pytest.raises(ConfigError, match=r"make_trainer\('ppo', \.\.\.\) needs a PPOConfig; got GRPOConfig"):
        make_trainer("ppo", GRPOConfig(), None, None, {})
