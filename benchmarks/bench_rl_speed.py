"""RL speed against plain-PyTorch floors, measured side by side in one run.

(a) Rollout throughput: PPO's rollout through the ``InstructEnv/Token-v0`` vector env
    (one env step per token, a KV cache per env slot) against a plain KV-cached decode loop
    (``agents.common.generation.generate``) on the same model and batch.
(b) One GRPO update against a plain-PyTorch floor on the same batch: sample with the same
    KV-cached ``generate``, one forward/backward of ``-A * log p``, one optimizer step.

Both use the embedded default model's shape (4 layers, width 128) from a random init, fp32,
a fixed number of torch threads, medians over repeats.

Run: ``python -m benchmarks.bench_rl_speed``
"""

from __future__ import annotations

import argparse

import torch

from benchmarks._common import median_time, provenance, write_section


def _policy(tokenizer, seed: int = 0):
    from agents.common.model import ActorCritic, DefaultModelConfig, build_default_model

    lm = build_default_model(tokenizer, DefaultModelConfig(n_layer=4, n_embd=128, n_head=4, n_positions=256), seed=seed)
    return ActorCritic(lm).eval()


def rollout_ratio(tokenizer, num_envs: int, T: int, repeats: int) -> tuple[float, float]:
    from agents.common.generation import SamplingConfig, generate
    from agents.rl import default_config, make_trainer

    policy = _policy(tokenizer)
    config = default_config("ppo", num_envs=num_envs, n_steps=T, max_new_tokens=T, seed=0)
    # Steady state: a 600-sample dataset, generated and tokenised during the warm-up rollouts.
    trainer = make_trainer("ppo", config, policy, tokenizer,
                           {"max_prompt_tokens": 64, "dataset_kwargs": {"size_per_task": 50}})
    obs = trainer._obs
    ids = torch.as_tensor(obs["input_ids"][:, :64])
    mask = torch.as_tensor(obs["attention_mask"][:, :64])
    gen = torch.Generator().manual_seed(0)
    eos, pad = trainer.env.setup.eos_token_id, trainer.env.setup.pad_token_id

    def plain():
        generate(policy.lm, ids, mask, T, eos, pad, SamplingConfig(), gen)

    env_s = median_time(trainer.collect_rollout, repeats=repeats, warmup=3)
    plain_s = median_time(plain, repeats=repeats)
    tokens = num_envs * T
    return tokens / env_s, tokens / plain_s


def grpo_ratio(tokenizer, prompts: int, group: int, T: int, repeats: int) -> tuple[float, float, float]:
    from agents.common.generation import SamplingConfig, generate
    from agents.common.scoring import score_tokens
    from agents.rl import default_config, make_trainer

    N = prompts * group
    ours = {}
    for beta in (0.0, 0.02):
        policy = _policy(tokenizer)
        config = default_config("grpo", num_envs=N, group_size=group, max_new_tokens=T, kl_coef=beta, lr=1e-5,
                                total_updates=10_000, seed=0)
        trainer = make_trainer("grpo", config, policy, tokenizer, {"max_prompt_tokens": 64})
        ours[beta] = median_time(trainer.update_step, repeats=repeats)

    policy = _policy(tokenizer)
    optimizer = torch.optim.AdamW(policy.lm.parameters(), lr=1e-5)
    obs = trainer._obs
    ids = torch.as_tensor(obs["input_ids"])
    mask = torch.as_tensor(obs["attention_mask"])
    eos, pad = trainer.env.setup.eos_token_id, trainer.env.setup.pad_token_id
    gen_rng = torch.Generator().manual_seed(0)

    def floor():
        out = generate(policy.lm, ids, mask, T, eos, pad, SamplingConfig(), gen_rng)
        advantages = torch.randn(N)
        scores = score_tokens(policy.lm, ids, mask, out.tokens, out.mask)
        loss = -(advantages[:, None] * scores.logprobs * out.mask).sum() / N
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    floor_s = median_time(floor, repeats=repeats)
    return ours[0.0], ours[0.02], floor_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from instruct_env.tokenizer import builtin_tokenizer

    tokenizer = builtin_tokenizer()
    env_tps, plain_tps = rollout_ratio(tokenizer, num_envs=64, T=32, repeats=args.repeats)
    print(f"rollout: env {env_tps:.0f} tok/s, plain {plain_tps:.0f} tok/s, ratio {env_tps / plain_tps:.2f}")
    grpo0, grpo_kl, floor = grpo_ratio(tokenizer, prompts=8, group=8, T=32, repeats=args.repeats)
    print(f"grpo: beta=0 {grpo0:.3f}s, beta=0.02 {grpo_kl:.3f}s, floor {floor:.3f}s")
    body = (
        f"Embedded default model shape (4 layers, width 128, random init), fp32, {args.threads} torch threads, "
        f"medians of {args.repeats} repeats, both sides in one process one after the other.\n\n"
        "| measurement | ours | plain-PyTorch floor | ratio | target |\n|---|---:|---:|---:|---|\n"
        f"| rollout, 64 envs x 32 tokens, warm data (tokens/s; PPO rollout through the Token env with a "
        f"per-slot KV cache vs `generate`) | "
        f"{env_tps:,.0f} | {plain_tps:,.0f} | {env_tps / plain_tps:.2f} | >= 0.9 |\n"
        f"| GRPO update, 8 prompts x 8 samples x 32 tokens, KL weight 0 (s) | {grpo0:.3f} | {floor:.3f} | "
        f"{grpo0 / floor:.2f} | <= 1.15 |\n"
        f"| GRPO update, same, KL weight 0.02 (reference forward included) (s) | {grpo_kl:.3f} | {floor:.3f} | "
        f"{grpo_kl / floor:.2f} | - |\n\n"
        "The floor samples with the same KV-cached `generate`, then does one forward/backward and one "
        "optimizer step. Our GRPO update additionally steps the Completion env (rewards) and, with a KL "
        "weight, scores the batch under the reference model; with one epoch and one minibatch its old "
        "log-probs come from the update's own forward pass. Still short of its target: the rollout pays "
        "for prefilling each new episode's prompt in a separate forward (the plain loop prefills its "
        "batch once) and for growing the cache row by row.\n\n"
        f"Command: `python -m benchmarks.bench_rl_speed`. Measured on {provenance()}."
    )
    write_section("RL speed against plain-PyTorch floors", body)


if __name__ == "__main__":
    main()
