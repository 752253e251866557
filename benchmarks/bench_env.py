"""Environment cost alone: vector-env steps per second with a trivial policy.

Compares the Token vector env's per-step cost with one KV-cached forward of a tiny
model (2 layers, width 64) on the same batch, measured side by side in one run.

Run: ``python -m benchmarks.bench_env`` (``--envs 1 --steps 10 --no-write``: a smoke run that leaves the README alone)
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import instruct_env  # noqa: F401
from benchmarks._common import median_time, provenance, write_section


def _env_steps_per_s(num_envs: int, steps: int, warm: bool) -> float:
    # cold: a 12k-sample dataset, so most resets generate and tokenise a sample never seen before;
    # warm: 600 samples, every one generated and tokenised before timing (steady state of training).
    dataset_kwargs = {"size_per_task": 50} if warm else {}
    venv = gym.make_vec("InstructEnv/Token-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                        max_new_tokens=32, dataset_kwargs=dataset_kwargs)
    venv.reset(seed=0)
    if warm:  # touch all of them: a warm-up of a few hundred steps would reach only some with 1 env
        env = venv.unwrapped
        for i in range(len(env.setup.dataset)):
            env._slots.bank.get(env.setup.dataset[i])
    rng = np.random.default_rng(0)
    V, eos = venv.unwrapped.setup.vocab_size, venv.unwrapped.eos_token_id
    actions = rng.integers(0, V, size=(steps, num_envs))
    actions[rng.random((steps, num_envs)) < 1 / 12] = eos  # episodes of ~12 tokens on average

    def run():
        for t in range(steps):
            venv.step(actions[t])

    return steps * num_envs / median_time(run, repeats=5, warmup=3 if warm else 1)


def _forward_ms(num_envs: int) -> float:
    import torch

    from agents.common.model import DefaultModelConfig, build_default_model, lm_forward, output_cache
    from instruct_env.tokenizer import builtin_tokenizer

    model = build_default_model(builtin_tokenizer(), DefaultModelConfig(n_layer=2, n_embd=64, n_head=2), seed=0).eval()
    ids = torch.randint(0, 500, (num_envs, 48))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        cache = output_cache(lm_forward(model, ids, mask, use_cache=True))
        tok = torch.randint(0, 500, (num_envs, 1))
        full = torch.ones(num_envs, 49, dtype=torch.long)
        pos = torch.full((num_envs, 1), 48)

        def step():
            out = lm_forward(model, tok, full, pos, cache, use_cache=True)
            cache.crop(-1)  # drop the new token: keep the cache at the prompt so every repeat does the same work
            return out

        return 1000 * median_time(step, repeats=20, warmup=3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--envs", default="1,16,64", help="comma-separated numbers of envs (default 1,16,64)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/README.md alone")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for n in (int(part) for part in args.envs.split(",")):
        fwd = _forward_ms(n)
        for warm in (False, True):
            sps = _env_steps_per_s(n, args.steps, warm)
            per_step_ms = 1000 * n / sps
            rows.append(f"| {n} | {'warm' if warm else 'cold'} | {sps:,.0f} | {per_step_ms:.3f} | {fwd:.3f} | "
                        f"{per_step_ms / fwd:.2f} |")
            print(rows[-1], flush=True)
    body = (
        "Environment cost alone: `InstructEnv/Token-v0` vector env stepped with pre-drawn random actions "
        "(episodes of ~12 tokens, rewards from the task verifiers included), against one KV-cached "
        f"one-token forward of a tiny GPT-2 (2 layers, width 64) on the same batch; torch threads = {args.threads}, "
        "medians of 5 (env) and 20 (forward) repeats.\n\n"
        "*cold*: a 12,000-sample dataset, so most resets generate and tokenise a new sample; *warm*: "
        "600 samples, every one generated and tokenised before timing (the steady state of a training run).\n\n"
        "| envs | data | env steps/s (all envs) | env ms per vector step | tiny-model forward ms | env / forward |\n"
        "|---:|---|---:|---:|---:|---:|\n" + "\n".join(rows) +
        f"\n\nCommand: `python -m benchmarks.bench_env`. Measured on {provenance()}."
    )
    if not args.no_write:
        write_section("Environment throughput", body)


if __name__ == "__main__":
    main()
