"""Suite methods around the Q-learners that are not trainers of the algorithm table.

- ``rft``: rejection-sampling fine-tuning, the offline baseline of ILQL: sample ``group_size``
  answers per training prompt from the SFT model (the same number of reward calls as ILQL's
  offline set), keep the best answer of each prompt (if it scored above 0) and run SFT on those.
- ``sb3-dqn``: stock ``stable_baselines3.DQN`` with :class:`agents.q.sb3.LMQPolicy` from the SFT
  weights, given the rollout size of our soft Q-learner per "update".
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["best_of_samples", "run_rft", "run_sb3_dqn", "run_method", "offline_samples", "settings"]


@torch.no_grad()
def best_of_samples(lm: Any, tokenizer: Any, env_kwargs: dict[str, Any], num_samples: int, group_size: int,
                    temperature: float, max_new_tokens: int, seed: int) -> tuple[list[Any], float]:
    """The best of ``group_size`` sampled answers to each prompt, as samples whose reference is that answer.

    Returns ``(samples, mean reward of all the answers)``; prompts whose best answer scored 0 are left out.
    """
    import gymnasium as gym

    from agents.common.generation import SamplingConfig, generate

    batch = group_size * max(1, 128 // group_size)
    env = gym.make_vec("InstructEnv/Completion-v0", num_envs=batch, vectorization_mode="vector_entry_point",
                       group_size=group_size, **{**env_kwargs, "tokenizer": tokenizer, "max_new_tokens": max_new_tokens})
    device = next(lm.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    best, rewards, drawn = [], [], 0
    while drawn < num_samples:
        samples = env.samples
        gen = generate(lm, torch.as_tensor(obs["input_ids"], device=device),
                       torch.as_tensor(obs["attention_mask"], device=device), max_new_tokens,
                       env.setup.eos_token_id, env.setup.pad_token_id, SamplingConfig(temperature=temperature),
                       generator)
        obs, reward, _, _, infos = env.step(gen.tokens.cpu().numpy())
        texts = infos["final_info"]["completion"]
        rewards.extend(reward.tolist())
        drawn += batch
        for g in range(0, batch, group_size):
            i = g + int(np.argmax(reward[g: g + group_size]))
            if reward[i] > 0:
                best.append(dataclasses.replace(samples[i], references=(texts[i],)))
    env.close()
    return best, float(np.mean(rewards))


def run_rft(config: Any, sft_dir: Path, num_samples: int, group_size: int, temperature: float,
            epochs: int = 3) -> tuple[Any, dict]:
    """RFT from the SFT model in ``sft_dir``: returns the fine-tuned model and what was done.

    SFT runs ``epochs`` passes over the kept answers and ends with its final weights: no early
    stopping or restoring on the validation loss, which is measured on the references and would
    otherwise undo fine-tuning on the model's own (differently worded) answers.
    """
    from agents.pipeline import load_policy_model, rl_env_kwargs, split_samples
    from agents.sft import SFTTrainer
    from instruct_env.tasks import PromptFormatter

    data = config.data
    model, tokenizer, _ = load_policy_model(config)
    model.eval()
    best, mean_reward = best_of_samples(model, tokenizer, rl_env_kwargs(data), num_samples, group_size, temperature,
                                        data.max_new_tokens, config.seed)
    sft = dataclasses.replace(config.sft, num_examples=max(1, len(best)), seed=config.seed, epochs=epochs,
                              max_steps=None, patience=0, keep_best=False, time_budget_s=None)
    trainer = SFTTrainer(model, tokenizer, sft, train_data=best,
                         val_data=split_samples(data, "validation", sft.val_examples, seed=config.seed),
                         formatter=PromptFormatter(template=data.template))
    result = trainer.train()
    return model, {"samples": num_samples, "kept": len(best), "sample_reward": mean_reward, "sft_steps": result.steps}


def run_sb3_dqn(config: Any, sft_dir: Path, out: Path, updates: int, num_envs: int, n_steps: int, lr: float,
                temperature_eps: float = 0.05) -> Any:
    """Stock SB3 DQN with ``LMQPolicy`` from the SFT weights: ``updates x num_envs x n_steps`` env steps.

    One gradient step per ``num_envs`` env steps (one per vector step), replay of the last
    ``20 * num_envs * n_steps`` transitions, target network copied every ``num_envs * n_steps`` steps,
    epsilon from 0.3 to ``temperature_eps`` over the first half. Returns the trained LM.
    """
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure

    import instruct_env  # noqa: F401  (registers the environments)
    from agents.pipeline import load_policy_model, rl_env_kwargs
    from agents.q.sb3 import LMQPolicy

    data = config.data
    model, tokenizer, _ = load_policy_model(config)
    env_kwargs = {**rl_env_kwargs(data), "tokenizer": tokenizer, "max_new_tokens": data.max_new_tokens}
    env = make_vec_env(lambda: gym.make("InstructEnv/Token-v0", **env_kwargs), n_envs=num_envs, seed=config.seed)
    rollout = num_envs * n_steps
    agent = DQN(LMQPolicy, env, learning_rate=lr, buffer_size=20 * rollout, learning_starts=rollout, batch_size=64,
                train_freq=1, gradient_steps=1, target_update_interval=rollout, exploration_initial_eps=0.3,
                exploration_fraction=0.5, exploration_final_eps=temperature_eps, gamma=1.0,
                max_grad_norm=1.0, seed=config.seed, device=next(model.parameters()).device,
                policy_kwargs={"model": model, "tokenizer": tokenizer})
    agent.set_logger(configure(str(out / "sb3_log"), ["csv"]))
    agent.learn(total_timesteps=updates * rollout)
    env.close()
    return agent.policy.q_net.lm




def offline_samples(updates: dict[str, int]) -> int:
    """Reward calls of the offline methods (ILQL's data, RFT's samples): GRPO's over its updates (1024 without GRPO)."""
    from agents.pipeline import RLSection

    return RLSection().grpo.num_envs * updates["grpo"] if "grpo" in updates else 1024


def settings(algo: str, updates: dict[str, int]) -> dict[str, Any]:
    """What an ``rft`` or ``sb3-dqn`` result depends on besides the SFT model (its fingerprint's settings)."""
    from agents.pipeline import RLSection

    if algo == "rft":
        ilql = RLSection().ilql
        return {"samples": offline_samples(updates), "group_size": ilql.rollout_group_size,
                "temperature": ilql.temperature, "epochs": 3, "keep_best": False}
    sql = RLSection().sql
    return {"num_envs": sql.num_envs, "n_steps": sql.n_steps, "lr": sql.lr}


def run_method(suite: Any, seed: int, algo: str, sft_dir: Path, out: Path) -> tuple[dict[str, float], dict]:
    """``rft`` or ``sb3-dqn`` from the SFT model: per-task test scores and a two-point curve (start, end)."""
    from agents.common.evaluation import evaluate
    from agents.pipeline import ModelConfig, split_samples
    from benchmarks.suite import _per_task
    from instruct_env.tasks import PromptFormatter

    config = suite.pipeline_config(seed, out, model=ModelConfig(name=str(sft_dir)))
    out.mkdir(parents=True, exist_ok=True)
    s = settings(algo, suite.updates)
    updates = suite.updates[algo]
    if algo == "rft":
        model, info = run_rft(config, sft_dir, s["samples"], s["group_size"], s["temperature"], s["epochs"])
        (out / "rft.json").write_text(json.dumps(info, indent=1))
        train_reward = info["sample_reward"]
    else:
        model = run_sb3_dqn(config, sft_dir, out, updates, s["num_envs"], s["n_steps"], s["lr"])
        train_reward = math.nan
    from agents.pipeline import load_policy_model

    _, tokenizer, _ = load_policy_model(config)
    data = config.data
    formatter = PromptFormatter(template=data.template)

    def score(split: str, size: int):
        return evaluate(model, tokenizer, list(split_samples(data, split, size)), formatter=formatter,
                        max_prompt_tokens=data.max_prompt_tokens, max_new_tokens=data.max_new_tokens, split=split,
                        keep_records=False)

    curve = {"update": [updates], "val_task": [score("validation", data.val_size_per_task).overall["task"]],
             "train_reward": [train_reward]}
    return _per_task(score("test", data.test_size_per_task)), curve
