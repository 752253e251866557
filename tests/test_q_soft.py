"""Online soft Q-learning: path-consistency terms by hand, one forward per token, learning, resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from rl_utils import say_env_kwargs, tiny_policy, tiny_tokenizer

from agents.q.config import SoftQConfig
from agents.q.data import EpisodeBatch
from agents.q.soft_q import discounted_suffix_sums, soft_q_loss, soft_values
from agents.rl import default_config, load_trainer, make_trainer
from instruct_env.error import ConfigError

pytestmark = pytest.mark.usefixtures("single_thread")

THRESHOLD = 0.8
LOG2, LOG3, LOG4 = math.log(2), math.log(3), math.log(4)


def test_soft_values_and_suffix_sums_by_hand():
    q = torch.tensor([[0.0, LOG3]])
    assert torch.allclose(soft_values(q, 1.0), torch.tensor([LOG4]))
    assert torch.allclose(soft_values(q, 0.5), torch.tensor([0.5 * math.log(1 + 9)]))  # 0.5 * logsumexp(2q)
    x = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.allclose(discounted_suffix_sums(x, torch.ones_like(x), 0.5), torch.tensor([[2.75, 3.5, 3.0]]))
    assert torch.allclose(discounted_suffix_sums(x, torch.tensor([[1.0, 1.0, 0.0]]), 1.0),
                          torch.tensor([[3.0, 2.0, 0.0]]))


def _batch(done: bool) -> EpisodeBatch:
    return EpisodeBatch(context_ids=torch.tensor([[3]]), context_mask=torch.tensor([[1]]),
                        tokens=torch.tensor([[1, 0]]), token_mask=torch.tensor([[1, 1]]),
                        rewards=torch.tensor([[0.0, 1.0]]), dones=torch.tensor([[0.0, float(done)]]))


# Q(s0) = [0, log 3] -> V(s0) = log 4, A(s0, 1) = log 3 - log 4; Q(s1) = [0, 0] -> V(s1) = log 2; Q(s2) = [0, 0]
Q = torch.tensor([[[0.0, LOG3], [0.0, 0.0], [0.0, 0.0]]])


@pytest.mark.parametrize("done", [True, False])
def test_path_consistency_by_hand(done):
    batch = _batch(done)
    out = soft_q_loss(Q.clone().requires_grad_(True), Q, batch, batch.rewards, gamma=1.0, alpha=1.0, pcl="both")
    v_end = 0.0 if done else LOG2  # V_bar(s2) bootstraps an unfinished answer
    # single step: delta_t = r_t + V_bar(s_{t+1}) - Q(s_t, a_t)
    delta = [0.0 + LOG2 - LOG3, 1.0 + v_end - 0.0]
    # multi step: Delta_t = sum_{l >= t} (r_l - A_l) + V_bar(s_K) - V(s_t)
    A = [LOG3 - LOG4, 0.0 - LOG2]
    Delta = [(0 - A[0]) + (1 - A[1]) + v_end - LOG4, (1 - A[1]) + v_end - LOG2]
    single = sum(d * d for d in delta) / 4
    multi = sum(d * d for d in Delta) / 4
    assert float(out.single_loss) == pytest.approx(single, abs=1e-6)
    assert float(out.multi_loss) == pytest.approx(multi, abs=1e-6)
    assert float(out.loss.detach()) == pytest.approx((single + multi) / 2, abs=1e-6)


def test_gamma_discounts_the_path():
    batch = _batch(True)
    out = soft_q_loss(Q, Q, batch, batch.rewards, gamma=0.5, alpha=1.0, pcl="multi")
    A = [LOG3 - LOG4, -LOG2]
    Delta = [(0 - A[0]) + 0.5 * (1 - A[1]) - LOG4, (1 - A[1]) - LOG2]
    assert float(out.loss) == pytest.approx(sum(d * d for d in Delta) / 4, abs=1e-6)


@pytest.mark.parametrize("field,value,match", [
    ("pcl", "double", "pcl must be"), ("alpha", 0.0, "alpha"), ("learning_starts", 10_000, "never start"),
    ("reward_scale", -1.0, "reward_scale"),
])
def test_config_errors(field, value, match):
    with pytest.raises(ConfigError, match=match):
        SoftQConfig(**{field: value})


def _config(**overrides):
    base = dict(num_envs=16, n_steps=8, max_new_tokens=3, lr=3e-3, kl_coef=0.0, batch_size=32, gradient_steps=4,
                learning_starts=16, polyak=0.1, reward_scale=30.0, seed=0)
    base.update(overrides)
    return default_config("sql", **base)


def test_soft_q_learns_fixed_answer():
    tokenizer = tiny_tokenizer()
    trainer = make_trainer("sql", _config(), tiny_policy(tokenizer, seed=0), tokenizer, say_env_kwargs(("yes",)))
    rewards = []
    for _ in range(150):
        rewards.append(trainer.update_step()["reward_mean"])
        if len(rewards) >= 5 and np.nanmean(rewards[-5:]) >= THRESHOLD:
            break
    assert np.nanmean(rewards[:3]) < 0.2
    assert np.nanmean(rewards[-5:]) >= THRESHOLD, rewards


def test_one_forward_per_token_and_kl_starts_at_zero():
    tokenizer = tiny_tokenizer()
    trainer = make_trainer("sql", _config(num_envs=4, n_steps=4, kl_coef=0.1, learning_starts=1, batch_size=4,
                                          gradient_steps=1),
                           tiny_policy(tokenizer), tokenizer, say_env_kwargs())
    calls = {"forward": 0, "step": 0}
    forward, step = trainer.actor._forward, trainer.env.step

    def counted_forward(ids, *args, **kwargs):
        calls["forward"] += ids.shape[1] == 1  # one-token forwards (prefills of new prompts are extra)
        return forward(ids, *args, **kwargs)

    def counted_step(actions):
        calls["step"] += 1
        return step(actions)

    trainer.actor._forward, trainer.env.step = counted_forward, counted_step
    metrics = trainer.update_step()
    assert calls == {"forward": 4, "step": 4}
    assert abs(metrics["kl"]) < 1e-5  # the policy is the reference before the first step
    assert trainer.update_step()["kl"] != 0.0


def test_every_parameter_changes_and_the_target_follows():
    tokenizer = tiny_tokenizer()
    trainer = make_trainer("sql", _config(num_envs=4, n_steps=4, learning_starts=1, batch_size=4),
                           tiny_policy(tokenizer), tokenizer, say_env_kwargs())
    params = trainer.trainable_parameters()
    before = [p.detach().clone() for p in params]
    target = [p.detach().clone() for p in trainer.target_lm.parameters()]
    trainer.update_step()
    assert all(not torch.equal(b, p) for b, p in zip(before, params))
    assert all(not torch.equal(t, p) for t, p in zip(target, trainer.target_lm.parameters()))


def test_checkpoint_resume_continues_identically(tmp_path):
    tokenizer = tiny_tokenizer()
    config = _config(num_envs=4, n_steps=4, learning_starts=1, batch_size=4, gradient_steps=1)
    trainer = make_trainer("sql", config, tiny_policy(tokenizer), tokenizer, say_env_kwargs())
    trainer.update_step()
    trainer.save(tmp_path / "ckpt")
    expected = [trainer.update_step() for _ in range(2)]
    resumed = load_trainer(tmp_path / "ckpt", tiny_policy(tokenizer, seed=3), tokenizer, say_env_kwargs())
    got = [resumed.update_step() for _ in range(2)]
    for e, g in zip(expected, got):
        for key in ("loss", "reward_mean", "q_mean", "replay_episodes"):
            assert g[key] == pytest.approx(e[key], rel=1e-5, nan_ok=True), key


@pytest.mark.parametrize("algo", ["ilql", "sql"])
def test_q_learners_refuse_data_parallel_runs(algo, monkeypatch):
    monkeypatch.setattr("agents.common.distributed.world_size", lambda: 2)
    tokenizer = tiny_tokenizer()
    with pytest.raises(ConfigError, match="single process; this run has 2 ranks"):
        make_trainer(algo, default_config(algo), tiny_policy(tokenizer), tokenizer, say_env_kwargs())
