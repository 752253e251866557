"""Stable-Baselines3 with the LM policy: PPO learns a tiny task, A2C runs, log-probs are the LM's."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

from stable_baselines3 import A2C, PPO  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402
from stable_baselines3.common.utils import obs_as_tensor  # noqa: E402

import instruct_env  # noqa: E402,F401  (registers the ids)
from agents.common.model import DefaultModelConfig, build_default_model  # noqa: E402
from agents.sb3 import LMActorCriticPolicy, align_right  # noqa: E402
from instruct_env.error import ConfigError  # noqa: E402
from instruct_env.tasks import Sample  # noqa: E402
from instruct_env.wrappers import CompactTokens, KLPenalty  # noqa: E402

#: A task with a known optimum: whatever the question, answer "one" (a single token of the
#: built-in tokenizer) and stop. chrF gives partial credit for shared characters, so a random
#: policy (reward ~0.08) gets a signal that exact match (1/512^2 at random) would not give.
QUESTIONS = ("How many moons has the Earth?", "What comes before two?", "Say the word one.", "Count the suns.")
DATASET = [Sample(id=f"one/{i}", task="one", instruction=q, references=("one",)) for i, q in enumerate(QUESTIONS)]
ENV_KWARGS = {"dataset": DATASET, "reward": "chrf", "max_prompt_tokens": 24, "max_new_tokens": 2,
              "render_mode": None}  # make_vec_env would ask for render_mode="rgb_array"
TINY = DefaultModelConfig(n_layer=2, n_embd=64, n_head=4, n_positions=32)


pytestmark = pytest.mark.usefixtures("single_thread")


def _vec_env(n_envs=16, seed=0):
    return make_vec_env("InstructEnv/Token-v0", n_envs=n_envs, seed=seed, env_kwargs=ENV_KWARGS)


def _mean_reward(model, env, episodes=96):
    return evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=False)[0]


def test_ppo_raises_the_reward():
    torch.manual_seed(0)
    env = _vec_env()
    model = PPO(LMActorCriticPolicy, env, n_steps=8, batch_size=64, n_epochs=4, learning_rate=3e-3, seed=0,
                policy_kwargs={"model_config": TINY, "seed": 0})
    before = _mean_reward(model, env)
    start = time.perf_counter()
    model.learn(total_timesteps=4096)
    seconds = time.perf_counter() - start
    after = _mean_reward(model, env)
    print(f"PPO+LMActorCriticPolicy: mean reward {before:.3f} -> {after:.3f} in {seconds:.1f}s")
    assert before < 0.3
    assert after >= 0.6 and after > before + 0.3


def test_a2c_runs_and_updates_every_parameter():
    env = _vec_env(n_envs=4)
    model = A2C(LMActorCriticPolicy, env, n_steps=4, seed=0, policy_kwargs={"model_config": TINY, "seed": 0})
    before = {name: p.detach().clone() for name, p in model.policy.actor_critic.named_parameters()}
    model.learn(total_timesteps=32)
    unchanged = [name for name, p in model.policy.actor_critic.named_parameters() if torch.equal(p, before[name])]
    assert unchanged == []
    obs = env.reset()
    actions, _ = model.predict(obs)
    assert actions.shape == (4,) and env.action_space.contains(int(actions[0]))


def _observations(n=3):
    """Token observations at different completion lengths, batched like SB3's buffer (float32)."""
    env = gym.make("InstructEnv/Token-v0", **ENV_KWARGS)
    rows = []
    for i in range(n):
        obs, _ = env.reset(options={"index": i})
        for token in range(i % 2):  # completions of length 0 and 1
            obs, *_ = env.step(100 + token)
        rows.append(obs)
    return {k: torch.tensor(np.stack([r[k] for r in rows]), dtype=torch.float32) for k in rows[0]}, env


def test_log_prob_and_value_match_a_direct_lm_forward():
    obs, env = _observations()
    policy = PPO(LMActorCriticPolicy, env, seed=0, policy_kwargs={"model_config": TINY, "seed": 0}).policy
    policy.set_training_mode(False)
    actions = torch.tensor([7, 123, env.unwrapped.eos_token_id])
    with torch.no_grad():
        values, log_prob, entropy = policy.evaluate_actions(obs, actions.float())
        for b in range(len(actions)):
            real = obs["attention_mask"][b] > 0
            ids = obs["input_ids"][b][real].long()[None]  # (1, n) the sequence without padding
            out = policy.actor_critic.lm(input_ids=ids, output_hidden_states=True)
            logp = torch.log_softmax(out.logits[0, -1], -1)
            assert log_prob[b].item() == pytest.approx(logp[actions[b]].item(), abs=1e-5)
            assert entropy[b].item() == pytest.approx(-(logp.exp() * logp).sum().item(), abs=1e-5)
            value = policy.actor_critic.value_head(out.hidden_states[-1][0, -1])
            assert values[b, 0].item() == pytest.approx(value.item(), abs=1e-5)
        sampled, forward_values, forward_logp = policy(obs)
        _, again, _ = policy.evaluate_actions(obs, sampled)
    assert torch.allclose(forward_logp, again, atol=1e-6) and torch.allclose(forward_values, values, atol=1e-6)


def test_predict_values_is_zero_when_the_budget_is_used_up():
    obs, env = _observations(2)
    policy = PPO(LMActorCriticPolicy, env, seed=0, policy_kwargs={"model_config": TINY, "seed": 0}).policy
    with torch.no_grad():
        policy.actor_critic.value_head.bias.fill_(0.5)
        full = {k: v.clone() for k, v in obs.items()}
        full["attention_mask"][0, -2:] = 1  # row 0 wrote max_new_tokens tokens: a terminal state
        values = policy.predict_values(full)
    assert values[0, 0].item() == 0.0 and values[1, 0].item() != 0.0


def test_align_right_keeps_every_row_and_trims_common_padding():
    ids = torch.tensor([[0, 0, 4, 5, 6, 0], [0, 3, 4, 5, 6, 7]])
    mask = (ids > 0).long()
    out_ids, out_mask = align_right(ids, mask)
    assert out_ids.tolist() == [[0, 0, 4, 5, 6], [3, 4, 5, 6, 7]]
    assert out_mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]


def test_a_model_passed_in_is_the_one_trained(tokenizer):
    env = gym.make("InstructEnv/Token-v0", **ENV_KWARGS)
    lm = build_default_model(tokenizer, TINY, seed=1)
    model = PPO(LMActorCriticPolicy, env, n_steps=4, batch_size=4, n_epochs=1, policy_kwargs={"model": lm})
    assert model.policy.actor_critic.lm is lm
    trainable = {id(p) for p in model.policy.optimizer.param_groups[0]["params"]}
    assert trainable == {id(p) for p in model.policy.actor_critic.parameters()}


def test_save_and_load_round_trip(tmp_path):
    obs, env = _observations(2)
    model = PPO(LMActorCriticPolicy, env, seed=0, policy_kwargs={"model_config": TINY, "seed": 0})
    model.save(tmp_path / "ppo")
    loaded = PPO.load(tmp_path / "ppo", env=env)
    numpy_obs = {k: v.numpy().astype(np.int64) for k, v in obs.items()}
    assert np.array_equal(model.predict(numpy_obs, deterministic=True)[0],
                          loaded.predict(numpy_obs, deterministic=True)[0])
    with torch.no_grad():
        a = model.policy.predict_values(obs_as_tensor(numpy_obs, model.device))
        b = loaded.policy.predict_values(obs_as_tensor(numpy_obs, loaded.device))
    assert torch.allclose(a, b)


def test_errors_name_the_fix(tokenizer):
    env = gym.make("InstructEnv/Token-v0", **ENV_KWARGS)
    with pytest.raises(ConfigError, match="either model= .* or model_name_or_path="):
        PPO(LMActorCriticPolicy, env, policy_kwargs={"model": build_default_model(tokenizer, TINY),
                                                     "model_name_or_path": "gpt2"})
    with pytest.raises(ConfigError, match="n_positions \\(8\\) is shorter than the observation width 26"):
        PPO(LMActorCriticPolicy, env, policy_kwargs={"model_config": DefaultModelConfig(n_positions=8)})
    completion_env = gym.make("InstructEnv/Completion-v0", **ENV_KWARGS)
    with pytest.raises(ConfigError, match="Discrete\\(vocab_size\\) action space"):
        LMActorCriticPolicy(completion_env.observation_space, completion_env.action_space, lambda _: 1e-3)
    with pytest.raises(ConfigError, match="needs a Dict observation"):
        LMActorCriticPolicy(gym.spaces.Box(0, 1, (3,)), gym.spaces.Discrete(3), lambda _: 1e-3)
    with pytest.raises(ConfigError, match="sized from the tokenizer \\(512 tokens\\) but the action space has 100"):
        LMActorCriticPolicy(env.observation_space, gym.spaces.Discrete(100), lambda _: 1e-3)
    small = build_default_model(tokenizer, TINY)
    small.resize_token_embeddings(100)
    with pytest.raises(ConfigError, match="predicts 100 tokens but the action space has 512"):
        PPO(LMActorCriticPolicy, env, policy_kwargs={"model": small})


def test_rollout_buffer_memory_is_as_documented():
    """docs/sb3.md: n_steps x n_envs x (P + T) x (bytes of input_ids + bytes of attention_mask)."""
    width = ENV_KWARGS["max_prompt_tokens"] + ENV_KWARGS["max_new_tokens"]
    kwargs = {"n_steps": 4, "batch_size": 8, "n_epochs": 1, "policy_kwargs": {"model_config": TINY, "seed": 0}}
    plain = PPO(LMActorCriticPolicy, _vec_env(n_envs=2), **kwargs)
    assert sum(a.nbytes for a in plain.rollout_buffer.observations.values()) == 4 * 2 * width * (8 + 8)
    compact_env = make_vec_env("InstructEnv/Token-v0", n_envs=2, seed=0, env_kwargs=ENV_KWARGS,
                               wrapper_class=CompactTokens)
    compact = PPO(LMActorCriticPolicy, compact_env, **kwargs)
    compact.learn(total_timesteps=8)  # the policy reads int16 ids and a uint8 mask
    assert sum(a.nbytes for a in compact.rollout_buffer.observations.values()) == 4 * 2 * width * (2 + 1)


def test_ppo_with_a_kl_penalty_to_the_starting_model(tokenizer):
    import copy

    lm = build_default_model(tokenizer, TINY, seed=0)
    ref = copy.deepcopy(lm).eval().requires_grad_(False)
    env = KLPenalty(gym.make("InstructEnv/Token-v0", **ENV_KWARGS), ref, beta=0.1, policy_model=lm)
    env.reset(seed=0)
    assert env.step(5)[4]["kl"] == 0.0  # the policy starts as the reference
    model = PPO(LMActorCriticPolicy, env, n_steps=8, batch_size=8, n_epochs=2, learning_rate=1e-2, seed=0,
                policy_kwargs={"model": lm})
    model.learn(total_timesteps=16)
    env.reset(seed=0)
    assert model.policy.actor_critic.lm is env.policy_model and env.step(5)[4]["kl"] != 0.0


def test_temperature_scales_the_action_distribution_and_survives_save_load(tmp_path):
    obs, env = _observations()
    plain = PPO(LMActorCriticPolicy, env, seed=0, policy_kwargs={"model_config": TINY, "seed": 0})
    warm = PPO(LMActorCriticPolicy, env, seed=0, policy_kwargs={"model_config": TINY, "seed": 0, "temperature": 0.5})
    actions = torch.tensor([7, 123, env.unwrapped.eos_token_id])
    with torch.no_grad():
        plain.policy.set_training_mode(False)
        warm.policy.set_training_mode(False)
        logits, _ = plain.policy._logits_and_values(obs)  # same weights (same seed) in both
        _, logp_warm, _ = warm.policy.evaluate_actions(obs, actions.float())
        _, logp_plain, _ = plain.policy.evaluate_actions(obs, actions.float())
    expected = torch.log_softmax(logits / 0.5, -1).gather(1, actions[:, None])[:, 0]
    assert torch.allclose(logp_warm, expected, atol=1e-5)
    assert not torch.allclose(logp_warm, logp_plain, atol=1e-3)
    numpy_obs = {k: v.numpy().astype(np.int64) for k, v in obs.items()}
    assert np.array_equal(plain.predict(numpy_obs, deterministic=True)[0], warm.predict(numpy_obs, deterministic=True)[0])
    warm.save(tmp_path / "warm")
    assert PPO.load(tmp_path / "warm", env=env).policy._temperature == 0.5
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="temperature must be a finite number > 0"):
            PPO(LMActorCriticPolicy, env, policy_kwargs={"model_config": TINY, "temperature": bad})
