"""Bring your own agent: REINFORCE with a tiny GRU, in plain PyTorch, on the native vector env.

What a researcher writes to try an idea without our trainers: a policy over token ids,
``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")`` for 16 episodes
stepped as arrays, and a loss that reads like the paper (Williams, 1992: reward-to-go times
log-probability, a batch-mean baseline, plus an entropy bonus). The task is
tiny -- "Say the word X." for three words that are one token each, chrF reward (partial
credit for shared characters, so a random policy gets a signal) -- and the mean episode
reward climbs from ~0.1 to ~0.9 within a minute or two on one CPU thread.

Run: ``python -m benchmarks.own_agent`` (``--iterations``, ``--seed``).
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import instruct_env  # noqa: F401  (registers the ids)
from instruct_env.tasks import Sample

WORDS = ("one", "red", "green")  # one token each in the built-in tokenizer
DATASET = [Sample(id=w, task="say_word", instruction=f"Say the word {w}.", references=(w,)) for w in WORDS]


class GRUPolicy(nn.Module):
    """Embed the observed ids, run a GRU, read the next-token logits off its last state."""

    def __init__(self, vocab_size: int, width: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.gru = nn.GRU(width, width, batch_first=True)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        W = input_ids.shape[1]
        cols = torch.arange(W)
        last = (attention_mask * cols).amax(-1)  # (B,) column of the last real token
        index = (cols - (W - 1 - last)[:, None]) % W  # roll each row so that token is in the last column
        hidden, _ = self.gru(self.embed(input_ids.gather(1, index)))  # (B, W, width)
        return self.head(hidden[:, -1])  # (B, V)


def train(iterations: int = 150, num_envs: int = 16, steps: int = 8, lr: float = 1e-2, ent_coef: float = 0.05,
          seed: int = 0, log_every: int = 10) -> list[float]:
    """Train and return the mean episode reward of every iteration."""
    torch.manual_seed(seed)
    envs = gym.make_vec("InstructEnv/Token-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                        dataset=DATASET, reward="chrf", max_prompt_tokens=24, max_new_tokens=2)
    policy = GRUPolicy(int(envs.single_action_space.n))
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    obs, _ = envs.reset(seed=seed)
    history = []
    for it in range(iterations):
        logps, entropies, rewards, dones = [], [], [], []
        for _ in range(steps):
            logits = policy(torch.as_tensor(obs["input_ids"]), torch.as_tensor(obs["attention_mask"]))
            dist = torch.distributions.Categorical(logits=logits)
            action = dist.sample()  # (N,)
            obs, reward, terminated, truncated, _ = envs.step(action.numpy())  # autoreset in the same step
            logps.append(dist.log_prob(action))
            entropies.append(dist.entropy())
            rewards.append(reward)
            dones.append(terminated | truncated)
        # Reward-to-go within each episode, G_t = r_t + G_{t+1} unless step t ended the episode; steps
        # of an episode still running at the end of the batch have no return yet and are left out.
        returns = np.zeros((steps, num_envs))
        finished = np.zeros((steps, num_envs), dtype=bool)
        G, ended = np.zeros(num_envs), np.zeros(num_envs, dtype=bool)
        for t in reversed(range(steps)):
            G = rewards[t] + np.where(dones[t], 0.0, G)
            ended |= dones[t]
            returns[t], finished[t] = G, ended
        returns_t, finished_t = torch.as_tensor(returns, dtype=torch.float32), torch.as_tensor(finished)
        advantage = returns_t - returns_t[finished_t].mean()  # batch-mean baseline
        pg_loss = -(advantage * torch.stack(logps))[finished_t].mean()  # (steps, N) -> scalar
        entropy = torch.stack(entropies).mean()
        loss = pg_loss - ent_coef * entropy
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        episode_rewards = np.stack(rewards)[np.stack(dones)]  # the reward comes at the end of an episode
        history.append(float(episode_rewards.mean()) if episode_rewards.size else float("nan"))
        if log_every and (it % log_every == 0 or it == iterations - 1):
            print(f"iter {it:4d}  episodes {episode_rewards.size:3d}  mean reward {history[-1]:.3f}", flush=True)
    envs.close()
    return history


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a tiny model: more threads only contend
    start = time.perf_counter()
    history = train(iterations=args.iterations, seed=args.seed)
    k = max(1, len(history) // 10)
    print(f"mean reward, first {k} iterations: {np.nanmean(history[:k]):.3f}; last {k}: "
          f"{np.nanmean(history[-k:]):.3f}; {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
