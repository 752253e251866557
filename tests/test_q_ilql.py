"""ILQL: the loss terms against hand-computed values, decoding, checkpoints, and learning from a mixed dataset."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from rl_utils import SaysWord, say_dataset, say_env_kwargs, tiny_policy, tiny_tokenizer

from agents.common.generation import SamplingConfig, generate
from agents.q.config import ILQLConfig
from agents.q.data import EpisodeBatch
from agents.q.ilql import ILQLHeads, bellman_targets, cql_term, expectile_loss, ilql_loss
from agents.rl import default_config, load_trainer, make_trainer
from instruct_env.error import ConfigError
from instruct_env.tasks.prompts import PromptFormatter

pytestmark = pytest.mark.usefixtures("single_thread")

THRESHOLD = 0.8


# ----------------------------------------------------------------- hand-computed terms
def test_bellman_targets_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    next_values = torch.tensor([[0.5, 0.8, 0.3]])
    dones = torch.tensor([[0.0, 0.0, 1.0]])
    # y = r + 0.9 * (1 - d) * V(s'): 0.45, 0.72, and 1.0 at the end (nothing bootstrapped past it)
    assert torch.allclose(bellman_targets(rewards, next_values, dones, 0.9), torch.tensor([[0.45, 0.72, 1.0]]))


def test_expectile_loss_by_hand():
    # tau = 0.8: a positive residual weighs 0.8, a negative one 0.2
    out = expectile_loss(torch.tensor([0.5, -0.5, 0.0]), 0.8)
    assert torch.allclose(out, torch.tensor([0.8 * 0.25, 0.2 * 0.25, 0.0]))


def test_cql_term_by_hand():
    q_all = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)]]])  # (1, 2, 2)
    actions = torch.tensor([[0, 1]])
    # logsumexp = log(1 + 3) = log 4; minus Q of the data action
    assert torch.allclose(cql_term(q_all, actions), torch.tensor([[math.log(4.0), math.log(4.0 / 3.0)]]))


def test_ilql_loss_by_hand():
    """One episode of two tokens, vocabulary of two; every term computed on paper."""
    cfg = ILQLConfig(gamma=1.0, tau=0.7, cql_coef=0.5, v_coef=1.0, awac_coef=1.0, awac_beta=0.0)
    batch = EpisodeBatch(context_ids=torch.tensor([[3]]), context_mask=torch.tensor([[1]]),
                         tokens=torch.tensor([[1, 0]]), token_mask=torch.tensor([[1, 1]]),
                         rewards=torch.tensor([[0.0, 1.0]]), dones=torch.tensor([[0.0, 1.0]]))
    q1 = torch.tensor([[[0.0, 0.4], [0.6, 0.0]]])  # Q1(s0, a1) = 0.4, Q1(s1, a0) = 0.6
    q2 = torch.tensor([[[0.0, 0.2], [1.0, 0.0]]])  # Q2(s0, a1) = 0.2, Q2(s1, a0) = 1.0
    values = torch.tensor([[0.1, 0.5, 9.0]])  # V(s0), V(s1), V(s2) (terminal: not used)
    logits = torch.zeros(1, 2, 2)  # uniform behaviour: log pi = log 1/2
    out = ilql_loss((q1, q2), (q1, q2), values, logits, batch, cfg)
    # targets: y0 = 0 + V(s1) = 0.5, y1 = 1 (done)
    q_loss = ((0.4 - 0.5) ** 2 + (0.6 - 1.0) ** 2) / 2 + ((0.2 - 0.5) ** 2 + (1.0 - 1.0) ** 2) / 2
    # q_hat = min(Q1, Q2) on data actions: 0.2, 0.6; residuals vs V: 0.1, 0.1 (both >= 0: weight tau)
    v_loss = (0.7 * 0.1 ** 2 + 0.7 * 0.1 ** 2) / 2
    lse = lambda a, b: math.log(math.exp(a) + math.exp(b))  # noqa: E731
    cql = ((lse(0, 0.4) - 0.4) + (lse(0.6, 0) - 0.6)) / 2 + ((lse(0, 0.2) - 0.2) + (lse(1.0, 0) - 1.0)) / 2
    awac = math.log(2.0)
    for name, expected in (("q_loss", q_loss), ("v_loss", v_loss), ("cql_loss", cql), ("awac_loss", awac),
                           ("loss", q_loss + v_loss + 0.5 * cql + awac)):
        assert float(getattr(out, name)) == pytest.approx(expected, abs=1e-6), name  # float32 on O(1) values


def test_awac_weights_favour_positive_advantages():
    batch = EpisodeBatch(torch.tensor([[3]]), torch.tensor([[1]]), torch.tensor([[1, 0]]), torch.tensor([[1, 1]]),
                         torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 1.0]]))
    q = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])  # advantage of token 0: 1 - 0 = 1; of token 1: 0 - 0 = 0
    values = torch.zeros(1, 3)
    logits = torch.zeros(1, 2, 2)
    cfg = ILQLConfig(awac_beta=2.0, awac_max_weight=5.0)
    out = ilql_loss((q, q), (q, q), values, logits, batch, cfg)
    # weights min(e^2, 5) = 5 and e^0 = 1, times -log 1/2
    assert float(out.awac_loss) == pytest.approx((5.0 + 1.0) / 2 * math.log(2.0), abs=1e-6)


@pytest.mark.parametrize("field,value,match", [
    ("tau", 1.0, "tau"), ("polyak", 0.0, "polyak"), ("batch_size", 0, "batch_size"), ("data", " ", "data"),
    ("kl_coef", 0.1, "no KL penalty"),
])
def test_config_errors(field, value, match):
    with pytest.raises(ConfigError, match=match):
        ILQLConfig(**{field: value})


# ----------------------------------------------------------------- the trainer
def _mixed_dataset(path, tokenizer, n=300, seed=0):
    """Answers to "Say yes."/"Say no.": mostly wrong, often the word plus junk, rarely exactly the word."""
    rng = np.random.default_rng(seed)
    formatter, verifier = PromptFormatter(), SaysWord()
    with open(path, "w") as f:
        for i in range(n):
            sample = say_dataset()[i % 2]
            word = sample.references[0]
            u = rng.random()
            if u < 0.1:
                completion = word  # the best answer (reward 1): 10% of the data
            elif u < 0.45:
                completion = f"{word} red"  # the word and more (0.25)
            else:
                completion = "maybe"  # wrong (0): the behaviour model's favourite
            reward = verifier(completion, sample)
            f.write(json.dumps({"prompt": formatter.format(sample), "completion": completion, "reward": reward}) + "\n")
    return path


def _greedy_reward(model, tokenizer):
    """Task score of greedy answers to "Say yes." and "Say no." through the held-out evaluation (the pipeline's path)."""
    from agents.common.evaluation import evaluate

    return evaluate(model, tokenizer, say_dataset(), max_prompt_tokens=16, max_new_tokens=3, split="test",
                    keep_records=False).overall["task"]


def _trainer(tmp_path, tokenizer, **overrides):
    data = _mixed_dataset(tmp_path / "mixed.jsonl", tokenizer)
    base = dict(data=str(data), batch_size=32, lr=1e-3, max_new_tokens=3, tau=0.9, cql_coef=0.1, polyak=0.05,
                beta=8.0, monitor_envs=4, seed=0)
    base.update(overrides)
    config = default_config("ilql", **base)
    return make_trainer("ilql", config, tiny_policy(tokenizer, seed=0), tokenizer, say_env_kwargs())


def test_ilql_learns_rare_best_answer_offline(tmp_path):
    """The data's best answer is rare (10%); BC imitates the common junk, ILQL's decoding finds the best."""
    tokenizer = tiny_tokenizer()
    trainer = _trainer(tmp_path, tokenizer)
    assert trainer.dataset.rewards().mean() < 0.25
    ilql = 0.0
    for _ in range(6):  # at most 300 updates, checked every 50
        for _ in range(50):
            trainer.update_step()
        ilql = _greedy_reward(trainer.decoder(), tokenizer)
        if ilql >= THRESHOLD:
            break
    behaviour = _greedy_reward(trainer.decoder(beta=0.0), tokenizer)  # says "maybe", the data's mode
    assert ilql >= THRESHOLD, (behaviour, ilql)
    assert behaviour < 0.3


def test_beta_zero_decoding_is_the_behaviour_model(tmp_path):
    tokenizer = tiny_tokenizer()
    trainer = _trainer(tmp_path, tokenizer)
    for _ in range(3):
        trainer.update_step()  # the Q and V heads are non-zero now
    ids = torch.tensor([tokenizer.encode("### Instruction : Say yes . ### Response :")])
    mask = torch.ones_like(ids)
    lm_logits = trainer.policy.lm(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(trainer.decoder(beta=0.0)(ids, mask).logits, lm_logits)
    assert not torch.equal(trainer.decoder(beta=1.0)(ids, mask).logits, lm_logits)
    sampled = [generate(m, ids, mask, 3, tokenizer.eos_token_id, tokenizer.pad_token_id,
                        SamplingConfig(temperature=1.0), torch.Generator().manual_seed(1)).tokens
               for m in (trainer.decoder(beta=0.0), trainer.policy.lm)]
    assert torch.equal(*sampled)


def test_every_trainable_parameter_changes_and_targets_follow(tmp_path):
    tokenizer = tiny_tokenizer()
    trainer = _trainer(tmp_path, tokenizer)
    params = trainer.trainable_parameters()
    before = [p.detach().clone() for p in params]
    targets = [p.detach().clone() for p in trainer.heads.q_target.parameters()]
    trainer.update_step()
    assert all(not torch.equal(b, p) for b, p in zip(before, params))
    assert all(not torch.equal(t, p) for t, p in zip(targets, trainer.heads.q_target.parameters()))


def test_twin_heads_start_apart():
    heads = ILQLHeads(8, 5)
    assert not torch.equal(heads.q[0].weight, heads.q[1].weight)  # equal heads would stay equal
    assert all(torch.equal(t, o) for t, o in zip(heads.q_target.parameters(), heads.q.parameters()))
    assert float(heads.q[0].weight.detach().abs().max()) < 0.01  # near zero: the decoding starts near the behaviour


def test_checkpoint_resume_continues_identically(tmp_path):
    tokenizer = tiny_tokenizer()
    trainer = _trainer(tmp_path, tokenizer, monitor_every=2)
    trainer.update_step()
    trainer.save(tmp_path / "ckpt")
    expected = [trainer.update_step() for _ in range(2)]
    resumed = load_trainer(tmp_path / "ckpt", tiny_policy(tokenizer, seed=5), tokenizer, say_env_kwargs())
    got = [resumed.update_step() for _ in range(2)]
    for e, g in zip(expected, got):
        for key in ("loss", "q_loss", "v_loss", "cql_loss", "reward_mean"):
            assert g[key] == pytest.approx(e[key], rel=1e-5, nan_ok=True), key
    assert len(resumed.dataset) == len(trainer.dataset)


def test_rollouts_data_collects_from_the_policy():
    tokenizer = tiny_tokenizer()
    config = default_config("ilql", data="rollouts", rollout_episodes=24, rollout_group_size=4, max_new_tokens=3,
                            batch_size=4, monitor_envs=4)
    trainer = make_trainer("ilql", config, tiny_policy(tokenizer), tokenizer, say_env_kwargs())
    assert len(trainer.dataset) == 24 == trainer.data_reward_calls
    assert all(1 <= len(e.tokens) <= 3 and e.done for e in trainer.dataset.episodes)
    assert np.isfinite(trainer.update_step()["loss"])
