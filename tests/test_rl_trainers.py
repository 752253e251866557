"""Trainer mechanics: KL at the start, parameters move, env steps, log-prob consistency, hooks, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rl_utils import count_env_kwargs, small_config, tiny_policy, tiny_tokenizer

from agents.common.generation import SamplingConfig, generate
from agents.common.scoring import score_tokens
from agents.rl import load_trainer, make_trainer
from instruct_env.error import ConfigError

ALGOS = ["ppo", "a2c", "reinforce", "grpo", "rloo"]


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def _trainer(algo, tokenizer, seed=0, **overrides):
    policy = tiny_policy(tokenizer, seed=seed)
    return make_trainer(algo, small_config(algo, seed=seed, **overrides), policy, tokenizer, count_env_kwargs())


@pytest.mark.parametrize("algo", ALGOS)
def test_kl_to_reference_is_zero_at_first_update(algo, tokenizer):
    trainer = _trainer(algo, tokenizer, kl_coef=0.1)
    metrics = trainer.update_step()
    assert abs(metrics["kl"]) < 1e-5
    assert metrics["kl_estimator"] == trainer.config.kl_estimator
    assert trainer.update_step()["kl"] != 0.0  # the policy moved away from the reference


@pytest.mark.parametrize("algo", ALGOS)
def test_every_trainable_parameter_changes(algo, tokenizer):
    trainer = _trainer(algo, tokenizer)
    params = dict(trainer.policy.named_parameters())
    trainable = {id(p) for p in trainer.trainable_parameters()}
    names = [n for n, p in params.items() if id(p) in trainable]
    if algo in ("ppo", "a2c"):
        assert {"value_head.weight", "value_head.bias"} <= set(names)
    assert not any(n.startswith("_reference") for n in names)
    before = {n: params[n].detach().clone() for n in names}
    ref_before = {n: p.detach().clone() for n, p in params.items() if n.startswith("_reference")}
    trainer.update_step()
    unchanged = [n for n in names if torch.equal(before[n], params[n])]
    assert unchanged == []
    assert all(torch.equal(v, params[n]) for n, v in ref_before.items())  # the reference stays frozen


def test_token_env_one_step_per_action(tokenizer):
    trainer = _trainer("ppo", tokenizer)
    calls = []
    step = trainer.env.step

    def counting_step(actions):
        calls.append(np.asarray(actions).shape)
        return step(actions)

    trainer.env.step = counting_step
    metrics = trainer.update_step()
    cfg, buf = trainer.config, trainer.buffer
    assert calls == [(cfg.num_envs,)] * cfg.n_steps
    assert metrics["tokens"] == cfg.n_steps * cfg.num_envs == buf.actions.numel()
    segments = buf.segments()
    assert sum(s.length for s in segments) == cfg.n_steps * cfg.num_envs  # every action in one segment
    assert metrics["episodes"] == int(buf.dones.sum())


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_rollout_logprobs_and_values_match_sequence_scoring(algo, tokenizer):
    """The KV-cached rollout and the one-forward-per-segment update see the same policy (also after an update)."""
    trainer = _trainer(algo, tokenizer, n_steps=6)
    trainer.update_step()  # weights change: the actor must re-read the running episodes
    trainer.collect_rollout()
    buf = trainer.buffer
    segments = buf.segments()
    assert any(len(s.context) > 9 and s.start == 0 for s in segments)  # an episode ran across the cut
    with torch.no_grad():
        batch = buf.pack(segments)
        scores = trainer.score(batch)
    real = batch.token_mask.bool()
    torch.testing.assert_close(scores.logprobs[real], buf.logprobs.view(-1)[batch.index[real]], atol=1e-4, rtol=0)
    torch.testing.assert_close(scores.values[real], buf.values.view(-1)[batch.index[real]], atol=1e-4, rtol=0)


@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_generation_logprobs_match_sequence_scoring(algo, tokenizer):
    """Log-probs of the KV-cached sampler equal those of the update's one forward over prompt + completion."""
    trainer = _trainer(algo, tokenizer)
    ids = torch.as_tensor(trainer._obs["input_ids"])  # (N, P) left-padded prompts
    mask = torch.as_tensor(trainer._obs["attention_mask"])
    gen = generate(trainer.policy.lm, ids, mask, 3, tokenizer.eos_token_id, tokenizer.pad_token_id,
                   SamplingConfig(), torch.Generator().manual_seed(0))
    with torch.no_grad():
        scores = score_tokens(trainer.policy.lm, ids, mask, gen.tokens, gen.mask, 1.0)
    real = gen.mask.bool()
    torch.testing.assert_close(scores.logprobs[real], gen.logprobs[real], atol=1e-4, rtol=0)
    batch = trainer.collect()
    trainer.score_old_and_reference(batch)
    assert batch.tokens.shape == batch.old_logprobs.shape == batch.ref_logprobs.shape
    torch.testing.assert_close(batch.old_logprobs, batch.ref_logprobs)  # policy == reference before any update


def test_log_eval_hooks_time_budget_and_adaptive_kl(tokenizer):
    logged, evaluated = [], []

    def eval_fn(policy):
        evaluated.append(policy)
        return {"eval/score": 0.5}

    policy = tiny_policy(tokenizer)
    config = small_config("grpo", total_updates=4, eval_every=2, kl_target=0.01, kl_coef=0.1, kl_horizon=10)
    trainer = make_trainer("grpo", config, policy, tokenizer, count_env_kwargs(), log_fn=logged.append,
                           eval_fn=eval_fn)
    history = trainer.train()
    assert [m["update"] for m in history] == [1, 2, 3, 4] and logged == history
    assert ["eval/score" in m for m in history] == [False, True, False, True] and evaluated == [policy, policy]
    for key in ("reward_mean", "kl", "entropy", "pg_loss", "approx_kl", "clip_fraction", "tokens_per_s", "time"):
        assert np.isfinite(history[-1][key]), key
    assert history[-1]["kl_coef"] != 0.1  # the adaptive controller moved beta
    budget = make_trainer("grpo", small_config("grpo", total_updates=50, time_budget_s=1e-6), tiny_policy(tokenizer),
                          tokenizer, count_env_kwargs())
    assert len(budget.train()) == 1


def test_env_kwargs_conflicts_are_reported(tokenizer):
    with pytest.raises(ConfigError, match=r"env_kwargs\['max_new_tokens'\]=8 conflicts with PPOConfig.max_new_tokens=3"):
        make_trainer("ppo", small_config("ppo"), tiny_policy(tokenizer), tokenizer,
                     {**count_env_kwargs(), "max_new_tokens": 8})


@pytest.mark.parametrize("algo", ALGOS)
def test_resume_equals_uninterrupted_run(algo, tokenizer, tmp_path):
    straight = _trainer(algo, tokenizer, total_updates=4, kl_coef=0.05)
    straight.train()

    first = _trainer(algo, tokenizer, total_updates=2, kl_coef=0.05)
    first.train()
    first.save(tmp_path / "ckpt")
    resumed = load_trainer(tmp_path / "ckpt", tiny_policy(tokenizer, seed=123), tokenizer, count_env_kwargs(),
                           total_updates=4)
    assert resumed.num_updates == 2
    resumed.train()

    assert [m["reward_mean"] for m in resumed.history] == [m["reward_mean"] for m in straight.history]
    a, b = dict(straight.policy.named_parameters()), dict(resumed.policy.named_parameters())
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0, msg=name)


def test_ppo_options_value_clipping_kl_in_loss_and_early_stop(tokenizer):
    trainer = _trainer("ppo", tokenizer, clip_range_vf=0.2, kl_in="loss", kl_estimator="k3", kl_coef=0.1,
                       ent_coef=0.01)
    metrics = trainer.update_step()
    assert metrics["early_stop_epoch"] == -1 and np.isfinite(metrics["value_loss"]) and metrics["kl_loss"] >= 0
    # A target KL far below what one optimizer step causes stops the update in the first epoch.
    stopped = _trainer("ppo", tokenizer, target_kl=1e-9).update_step()
    assert stopped["early_stop_epoch"] == 0
