"""GRPO's options (Dr. GRPO, DAPO, GSPO, per-family scaling, dynamic sampling, overlong penalty) and
the environments' stratified prompt sampling: hand-computed values on tiny tensors, and learning."""

from __future__ import annotations

import collections

import gymnasium as gym
import numpy as np
import pytest
import torch
from rl_utils import count_env_kwargs, say_env_kwargs, tiny_policy, tiny_tokenizer

import instruct_env  # noqa: F401  (registers the environments)
from agents.pg.base import CompletionBatch, family_means
from agents.pg.grpo import concat_batches, overlong_penalty
from agents.rl import default_config, make_trainer
from instruct_env.error import ConfigError
from instruct_env.tasks.sample import Sample


def _trainer(**overrides):
    torch.set_num_threads(1)
    tokenizer = tiny_tokenizer()
    base = {"num_envs": 8, "group_size": 4, "max_new_tokens": 3, "lr": 1e-3, "seed": 0}
    base.update(overrides)
    config = default_config("grpo", **base)
    return make_trainer("grpo", config, tiny_policy(tokenizer), tokenizer, say_env_kwargs())


REWARDS = torch.tensor([1.0, 0.0, 0.5, 0.5, 0.2, 0.2, 0.2, 0.6])  # two groups of 4
# The trainer computes in fp32 (a mean, a std of <= 8 values and one division: a few ulps of ~1,
# under 1e-6) and the expectations in fp64; 1e-5 leaves a 10x margin on any CPU.
TOL = {"rtol": 1e-5, "atol": 1e-5}
TASKS = ["a"] * 4 + ["b"] * 4


@pytest.mark.parametrize("scale", ["group", "batch", "family", "none"])
def test_advantage_scales_match_hand_computed_values(scale):
    trainer = _trainer(advantage_scale=scale, adv_eps=1e-4)
    adv = trainer.advantages(REWARDS, TASKS).double()
    r = REWARDS.double().view(2, 4)
    centred = (r - r.mean(1, keepdim=True)).reshape(-1)
    expected = {
        "group": centred / (r.std(1).repeat_interleave(4) + 1e-4),
        "batch": centred / (REWARDS.double().std() + 1e-4),
        # family "a" is group 0 and family "b" group 1 here, so family std == group std
        "family": centred / (r.std(1).repeat_interleave(4) + 1e-4),
        "none": centred,
    }[scale]
    torch.testing.assert_close(adv, expected, **TOL)


def test_family_scale_pools_groups_of_one_family():
    trainer = _trainer(advantage_scale="family", adv_eps=1e-4)
    tasks = ["a"] * 8  # both groups belong to one family: one std over all 8 rewards
    adv = trainer.advantages(REWARDS, tasks).double()
    r = REWARDS.double().view(2, 4)
    expected = ((r - r.mean(1, keepdim=True)) / (REWARDS.double().std() + 1e-4)).reshape(-1)
    torch.testing.assert_close(adv, expected, **TOL)
    # a family whose rewards barely differ keeps small advantages (group scaling would blow them up to ~1)
    tiny = torch.tensor([0.50, 0.51, 0.50, 0.51, 0.0, 1.0, 0.0, 1.0])
    adv = trainer.advantages(tiny, ["a"] * 4 + ["b"] * 4)
    assert adv[:4].abs().max() > 0.5  # family "a" alone: its own (tiny) std
    adv_mixed = trainer.advantages(tiny, ["a"] * 8)
    assert adv_mixed[:4].abs().max() < 0.02  # pooled with family members that differ a lot


def test_loss_aggregations_match_hand_computed_values():
    per_token = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    values = {}
    for how in ("grpo", "dapo", "dr_grpo"):
        values[how] = float(_trainer(loss_aggregation=how, max_new_tokens=4).aggregate(per_token, mask))
    assert values["grpo"] == pytest.approx((2.0 + 4.0) / 2)  # mean of per-completion means
    assert values["dapo"] == pytest.approx((1 + 2 + 3 + 4) / 4)  # one mean over the 4 tokens
    assert values["dr_grpo"] == pytest.approx(((1 + 2 + 3) / 4 + 4 / 4) / 2)  # sums / max_new_tokens


def test_overlong_penalty_is_daposs_linear_ramp():
    lengths = torch.tensor([0, 23, 24, 26, 30, 32])
    got = overlong_penalty(lengths, max_tokens=32, buffer=8, penalty=0.5)
    torch.testing.assert_close(got, torch.tensor([0.0, 0.0, 0.0, -0.125, -0.375, -0.5]))
    assert torch.equal(overlong_penalty(lengths, 32, 0), torch.zeros(6))


def test_overlong_penalty_shapes_advantages_not_logged_rewards():
    trainer = _trainer(overlong_buffer=2, overlong_penalty=1.0, advantage_scale="none")
    batch = CompletionBatch(context_ids=torch.zeros(8, 2, dtype=torch.long), context_mask=torch.ones(8, 2),
                            tokens=torch.zeros(8, 3, dtype=torch.long),
                            token_mask=torch.tensor([[1, 0, 0]] * 4 + [[1, 1, 1]] * 4), rewards=torch.ones(8))
    shaped = trainer.shaped_rewards(batch)
    torch.testing.assert_close(shaped, torch.tensor([1.0] * 4 + [0.0] * 4))  # length 3 = max: full penalty
    assert torch.equal(batch.rewards, torch.ones(8))


def test_sequence_ratio_is_one_number_per_completion():
    trainer = _trainer(importance_ratio="sequence", update_epochs=2, num_minibatches=1)
    stats = trainer.update_step()
    assert np.isfinite(stats["pg_loss"]) and np.isfinite(stats["approx_kl"])
    # after the first epoch the ratio moved; GSPO clips whole completions, so the clip
    # fraction (over tokens) is a share of completions' token counts, in [0, 1]
    assert 0.0 <= stats["clip_fraction"] <= 1.0


@pytest.mark.parametrize("bad", [{"advantage_scale": "std"}, {"loss_aggregation": "sum"},
                                 {"importance_ratio": "seq"}, {"overlong_buffer": -1},
                                 {"overlong_buffer": 4, "max_new_tokens": 3}, {"max_sampling_rounds": 0}])
def test_bad_variant_options_are_refused_with_the_choices(bad):
    with pytest.raises(ConfigError, match="GRPOConfig"):
        default_config("grpo", **bad)


def test_concat_batches_pads_completions_to_one_length():
    a = CompletionBatch(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3), torch.ones(2, 2, dtype=torch.long),
                        torch.ones(2, 2), torch.tensor([1.0, 0.0]), tasks=["x", "x"])
    b = CompletionBatch(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3), torch.ones(2, 4, dtype=torch.long),
                        torch.ones(2, 4), torch.tensor([0.5, 0.5]), tasks=["y", "y"])
    c = concat_batches([a, b], pad_id=7)
    assert c.tokens.shape == (4, 4) and c.tokens[0].tolist() == [1, 1, 7, 7]
    assert c.token_mask[0].tolist() == [1, 1, 0, 0] and c.tasks == ["x", "x", "y", "y"]
    assert c.rewards.tolist() == [1.0, 0.0, 0.5, 0.5]


def test_dynamic_sampling_trains_only_on_informative_groups():
    torch.set_num_threads(1)
    tokenizer = tiny_tokenizer()
    config = default_config("grpo", num_envs=16, group_size=4, max_new_tokens=3, lr=1e-3, seed=0,
                            dynamic_sampling=True, max_sampling_rounds=4)
    trainer = make_trainer("grpo", config, tiny_policy(tokenizer), tokenizer, count_env_kwargs())
    batch = trainer.collect()
    G = 4
    groups = batch.rewards.view(-1, G)
    assert len(batch.rewards) <= 16 and len(batch.rewards) % G == 0
    assert bool((groups.max(1).values > groups.min(1).values).all())  # no all-equal group kept
    assert batch.sampled_rewards is not None and len(batch.sampled_rewards) >= len(batch.rewards)
    assert len(batch.sampled_rewards) == 16 * trainer._sampling_rounds
    stats = trainer.update_step()
    assert 1 <= stats["sampling_rounds"] <= 4 and 0.0 <= stats["frac_groups_mixed"] <= 1.0


def test_update_logs_per_family_rewards():
    assert family_means(torch.tensor([1.0, 0.0, 0.5]), ["copy", "copy", "dedup"], prefix="r/") == \
        {"r/copy": 0.5, "r/dedup": 0.5}
    stats = _trainer().update_step()
    assert "reward/say" in stats and stats["reward/say"] == pytest.approx(stats["reward_mean"])


@pytest.mark.parametrize("variant", [
    {"loss_aggregation": "dr_grpo", "advantage_scale": "none", "lr": 3e-3},
    {"loss_aggregation": "dapo", "dynamic_sampling": True},
    {"importance_ratio": "sequence", "update_epochs": 2},
    {"advantage_scale": "family"},
])
def test_grpo_variants_learn_prompt_dependent_answer(variant):
    """Each variant reaches the optimum of "Say yes." / "Say no." (random policy ~0.02)."""
    torch.set_num_threads(1)
    tokenizer = tiny_tokenizer()
    settings = {"num_envs": 32, "group_size": 8, "max_new_tokens": 3, "lr": 1e-3, "kl_coef": 0.01, "seed": 0}
    settings.update(variant)
    config = default_config("grpo", **settings)
    trainer = make_trainer("grpo", config, tiny_policy(tokenizer), tokenizer, say_env_kwargs(("yes", "no")))
    rewards = []
    for _ in range(400):
        rewards.append(trainer.update_step()["reward_mean"])
        if len(rewards) >= 5 and np.mean(rewards[-5:]) >= 0.8:
            break
    assert np.mean(rewards[:3]) < 0.2
    assert np.mean(rewards[-5:]) >= 0.8, rewards[-10:]


# ----------------------------------------------------------------------------- stratified sampling
def _families(env_samples):
    return [s.task for s in env_samples]


def test_stratified_sampling_covers_every_family_in_each_round():
    venv = gym.make_vec("InstructEnv/Completion-v0", num_envs=48, vectorization_mode="vector_entry_point",
                        group_size=4, sampling="stratified")
    venv.reset(seed=3)
    counts = collections.Counter(_families(venv.unwrapped.samples))
    assert len(counts) == 12 and set(counts.values()) == {4}  # 12 groups = one round over 12 families
    venv.step([""] * 48)  # the next 12 prompts: another full round
    assert set(collections.Counter(_families(venv.unwrapped.samples)).values()) == {4}


def test_stratified_sampling_is_deterministic_under_a_seed_and_groups_files_by_task():
    samples = [Sample(id=f"{t}{i}", task=t, instruction=f"Say {t} {i}.", references=("x",))
               for t, n in (("big", 30), ("small", 2)) for i in range(n)]
    runs = []
    for _ in range(2):
        env = gym.make("InstructEnv/Completion-v0", dataset=samples, reward="exact_match", sampling="stratified")
        picked = []
        for k in range(6):
            _, info = env.reset(seed=5 if k == 0 else None)
            picked.append(info["task"])
        runs.append(picked)
    assert runs[0] == runs[1]
    for pair in (runs[0][0:2], runs[0][2:4], runs[0][4:6]):  # the rare family is drawn as often as the big one
        assert sorted(pair) == ["big", "small"]
    uniform = gym.make("InstructEnv/Completion-v0", dataset=samples, reward="exact_match")
    assert uniform.unwrapped.setup.sampling == "uniform"


def test_unknown_sampling_mode_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match="stratified"):
        gym.make("InstructEnv/Completion-v0", tasks=["copy"], sampling="stratifed")


# ----------------------------------------------------------------------------- threads
def test_auto_threads_follow_the_idle_cores_not_the_load_average(monkeypatch):
    from agents.common.device import idle_cores
    from agents.pipeline import auto_threads

    monkeypatch.delenv("INSTRUCT_ENV_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr("agents.common.device.usable_cores", lambda: 2)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert auto_threads(idle=1.96)[0] == 2
    assert auto_threads(idle=0.9)[0] == 1
    assert auto_threads(idle=0.0)[0] == 1  # at least one
    threads, why = auto_threads(idle=1.96)
    assert "idle" in why
    monkeypatch.setenv("INSTRUCT_ENV_THREADS", "3")
    assert auto_threads(idle=0.0) == (3, "set by $INSTRUCT_ENV_THREADS")
    # the counters: (idle, total) jiffies before and after; 2 cores, 150 of 200 jiffies idle -> 1.5 cores
    readings = iter([(1000.0, 4000.0), (1150.0, 4200.0)])
    assert idle_cores(0.5, read=lambda: next(readings), sleep=lambda s: None, cores=2) == pytest.approx(1.5)
    assert idle_cores(0.5, read=lambda: None, sleep=lambda s: None, cores=2) is None
