"""Q-learning speed, measured side by side in one run.

(a) One ILQL update (one forward with hidden states, the twin Q heads, their targets and the V
    head; the ILQL loss; backward; optimizer step; Polyak step) against one SFT step (forward,
    response cross-entropy, backward, optimizer step) on the same batch of prompts and answers.
(b) The rollout of online soft Q-learning (``sql``: Boltzmann sampling through the Token vector
    env, finished episodes into the replay buffer) against PPO's rollout, same model, slots and steps.

Embedded default model shape (4 layers, width 128, random init), fp32, a fixed number of torch
threads, medians over repeats taken in turns.

Run: ``python -m benchmarks.bench_q_speed``
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks._common import provenance, write_section
from benchmarks.bench_rl_speed import _policy, interleaved_medians


def ilql_vs_sft(tokenizer, batch_size: int, repeats: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of one ILQL update ("ilql") and one SFT step ("sft") on the same batch."""
    from agents.q.data import Episode, pack_episodes
    from agents.rl import default_config, make_trainer
    from agents.sft.data import Example, collate_causal
    from agents.sft.trainer import response_loss
    from instruct_env.tasks import BuiltinDataset, PromptFormatter

    samples = list(BuiltinDataset(split="train", size_per_task=8))[:batch_size]
    formatter = PromptFormatter()
    prompts = [tokenizer.encode(formatter.format(s), add_special_tokens=False)[-64:] for s in samples]
    answers = [tokenizer.encode(s.references[0], add_special_tokens=False)[:31] + [tokenizer.eos_token_id]
               for s in samples]
    episodes = [Episode(np.array(p), np.array(a), np.r_[np.zeros(len(a) - 1), 1.0].astype(np.float32))
                for p, a in zip(prompts, answers)]

    ilql_policy, sft_policy = _policy(tokenizer), _policy(tokenizer)
    config = default_config("ilql", data="rollouts", rollout_episodes=1, rollout_group_size=1, max_new_tokens=32,
                            batch_size=batch_size, seed=0)
    trainer = make_trainer("ilql", config, ilql_policy, tokenizer, {"max_prompt_tokens": 64})
    batch = pack_episodes(episodes, tokenizer.pad_token_id)

    sft_batch = collate_causal([Example(tuple(p), tuple(a)) for p, a in zip(prompts, answers)],
                               tokenizer.pad_token_id)
    lm = sft_policy.lm
    optimizer = torch.optim.Adam(lm.parameters(), lr=1e-4)

    def sft_step() -> None:
        loss_sum, count = response_loss(lm, sft_batch)
        optimizer.zero_grad(set_to_none=True)
        (loss_sum / count).backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        optimizer.step()

    return interleaved_medians({"ilql": lambda: trainer.learn(batch), "sft": sft_step}, repeats=repeats, warmup=2)


def sql_vs_ppo_rollout(tokenizer, num_envs: int, T: int, repeats: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU) tokens/s of the soft Q-learning rollout ("sql") and of PPO's ("ppo")."""
    from agents.rl import default_config, make_trainer

    env_kwargs = {"max_prompt_tokens": 64, "dataset_kwargs": {"size_per_task": 50}}
    ppo = make_trainer("ppo", default_config("ppo", num_envs=num_envs, n_steps=T, max_new_tokens=T, seed=0),
                       _policy(tokenizer), tokenizer, env_kwargs)
    sql = make_trainer("sql", default_config("sql", num_envs=num_envs, n_steps=T, max_new_tokens=T, seed=0),
                       _policy(tokenizer), tokenizer, env_kwargs)
    t = interleaved_medians({"sql": sql.collect, "ppo": ppo.collect_rollout}, repeats=repeats, warmup=3)
    tokens = num_envs * T
    return {name: (tokens / wall, tokens / cpu) for name, (wall, cpu) in t.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from instruct_env.tokenizer import builtin_tokenizer

    tokenizer = builtin_tokenizer()
    update = ilql_vs_sft(tokenizer, batch_size=32, repeats=args.repeats)
    roll = sql_vs_ppo_rollout(tokenizer, num_envs=64, T=32, repeats=args.repeats)

    def row(label, ours, other, other_name, target, per_s=False):
        fmt = (lambda v: f"{v:,.0f}") if per_s else (lambda v: f"{v:.3f}")
        ratio = [o / f for o, f in zip(ours, other)]
        print(f"{label}: {fmt(ours[0])} (CPU {fmt(ours[1])}) vs {other_name} {fmt(other[0])} (CPU {fmt(other[1])}), "
              f"ratio {ratio[0]:.2f} wall / {ratio[1]:.2f} CPU")
        return (f"| {label} | {fmt(ours[0])} | {fmt(other[0])} ({other_name}) | {ratio[0]:.2f} | {ratio[1]:.2f} | "
                f"{target} |\n")

    rows = [
        row("ILQL update vs SFT step, 32 answers (s)", update["ilql"], update["sft"], "SFT", "<= 1.5"),
        row("soft Q-learning rollout vs PPO rollout, 64 envs x 32 tokens (tokens/s)", roll["sql"], roll["ppo"], "PPO",
            ">= 0.9", per_s=True),
    ]
    body = (
        f"Embedded default model shape (4 layers, width 128, random init), fp32, {args.threads} torch thread(s), "
        f"medians of {args.repeats} repeats, the two sides of each row in turns in every repeat, one process.\n\n"
        "| measurement | ours | compared with | ratio (wall) | ratio (CPU) | target |\n|---|---:|---:|---:|---:|---|\n"
        + "".join(rows) + "\n"
        "ILQL update: `ILQLTrainer.learn` on 32 built-in training samples (prompt up to 64 tokens, the reference "
        "answer + EOS, reward 1 at the end): one forward over prompt + answer returning the last hidden states, "
        "the two Q heads and their two targets (vocabulary-wide) and the V head on them, the ILQL loss (TD, "
        "expectile, CQL, behaviour cloning), backward, Adam, Polyak step. SFT step: `response_loss` (the SFT "
        "trainer's) on the same prompts and answers, backward, gradient clipping, Adam. Rollout: `SoftQTrainer."
        "collect` (one `env.step` and one one-token forward of the slot actor per token, Boltzmann sampling, "
        "finished episodes copied into the replay buffer) against `PPOTrainer.collect_rollout` (the same actor, "
        "plus the rollout buffer's per-step tensors).\n\n"
        f"Command: `python -m benchmarks.bench_q_speed`. Measured on {provenance()}."
    )
    write_section("Q-learning speed", body)


if __name__ == "__main__":
    main()
