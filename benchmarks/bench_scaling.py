"""How cost grows with work: throughput against parallel environments and answer length.

For ``num_envs`` in 1, 4, 16, 64 and ``max_new_tokens`` in 32, 128, 512:

- *env steps/s*: the ``InstructEnv/Token-v0`` vector env alone, stepped with pre-drawn random
  valid tokens (never EOS, so every episode runs to ``max_new_tokens``: the observation is as
  wide as it gets and resets are as rare as they get);
- *Token-env rollout tokens/s*: our PPO's rollout (``trainer.collect_rollout``: one env step per
  token, a KV cache per env slot, :class:`agents.common.generation.SlotActor`) of ``max_new_tokens``
  steps per env with the embedded default model's shape (4 layers, width 128, random init);
- *Completion-env tokens/s*: whole answers sampled with the KV-cached
  :func:`agents.common.generation.generate` on the same model, decoded, and scored by one step of
  the ``InstructEnv/Completion-v0`` vector env; tokens = tokens actually generated.

The model's ``n_positions`` is 640, room for the 64-token prompts plus 512 new tokens. Medians of
repeats after a warm-up, one process, fixed torch threads. Writes the table and
``benchmarks/scaling.png`` into the README section "Scaling with parallel environments and answer length".

Run: ``python -m benchmarks.bench_scaling`` (or ``python -m benchmarks run --suite scaling``)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import instruct_env  # noqa: F401  (registers the environments)
from benchmarks._common import median_time, provenance, write_section

PROMPT = 64
ENVS = (1, 4, 16, 64)
LENGTHS = (32, 128, 512)
PLOT = Path(__file__).with_name("scaling.png")


def _policy(tokenizer):
    from agents.common.model import ActorCritic, DefaultModelConfig, build_default_model

    shape = DefaultModelConfig(n_layer=4, n_embd=128, n_head=4, n_positions=PROMPT + max(LENGTHS) + 64)
    return ActorCritic(build_default_model(tokenizer, shape, seed=0)).eval()


def env_steps_per_s(num_envs: int, T: int, repeats: int) -> float:
    """Vector-env steps per second (all envs) with random non-EOS tokens."""
    venv = gym.make_vec("InstructEnv/Token-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                        max_prompt_tokens=PROMPT, max_new_tokens=T, dataset_kwargs={"size_per_task": 50})
    venv.reset(seed=0)
    rng = np.random.default_rng(0)
    V, eos = venv.unwrapped.setup.vocab_size, venv.unwrapped.eos_token_id
    steps = 2 * T
    actions = rng.integers(0, V - 1, size=(steps, num_envs))
    actions[actions >= eos] += 1  # uniform over the vocabulary without EOS

    def run():
        for t in range(steps):
            venv.step(actions[t])

    seconds = median_time(run, repeats=repeats, warmup=1)
    venv.close()
    return steps * num_envs / seconds


def rollout_tokens_per_s(policy, tokenizer, num_envs: int, T: int, repeats: int) -> float:
    """Tokens per second of PPO's Token-env rollout (``num_envs x T`` env steps per rollout)."""
    from agents.rl import default_config, make_trainer

    config = default_config("ppo", num_envs=num_envs, n_steps=T, max_new_tokens=T, seed=0,
                            num_minibatches=min(4, num_envs))  # training is not timed; the config must be valid
    trainer = make_trainer("ppo", config, policy, tokenizer,
                           {"max_prompt_tokens": PROMPT, "dataset_kwargs": {"size_per_task": 50}})
    seconds = median_time(trainer.collect_rollout, repeats=repeats, warmup=1)
    trainer.env.close()
    return num_envs * T / seconds


def completion_tokens_per_s(policy, tokenizer, num_envs: int, T: int, repeats: int) -> float:
    """Tokens per second of sampling whole answers and scoring them in the Completion env."""
    import torch

    from agents.common.generation import SamplingConfig, generate

    venv = gym.make_vec("InstructEnv/Completion-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                        max_prompt_tokens=PROMPT, max_new_tokens=T, dataset_kwargs={"size_per_task": 50})
    obs, _ = venv.reset(seed=0)
    eos, pad = venv.unwrapped.setup.eos_token_id, venv.unwrapped.setup.pad_token_id
    generator = torch.Generator().manual_seed(0)
    produced: list[int] = []

    def episode():
        nonlocal obs
        ids, mask = torch.as_tensor(obs["input_ids"]), torch.as_tensor(obs["attention_mask"])
        out = generate(policy.lm, ids, mask, T, eos, pad, SamplingConfig(), generator)
        produced.append(int(out.lengths.sum()))
        texts = tokenizer.batch_decode(out.tokens.tolist(), skip_special_tokens=True)
        obs, *_ = venv.step(np.array(texts, dtype=object))

    episode()  # warm-up
    times, produced[:] = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        episode()
        times.append(time.perf_counter() - start)
    venv.close()
    return float(np.median(np.array(produced) / np.array(times)))


def plot(results: dict[str, dict[tuple[int, int], float]], path: Path) -> None:
    """One panel per measure: throughput against parallel envs, a line per answer length."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.4), dpi=100)
    for ax, (name, values) in zip(np.atleast_1d(axes), results.items()):
        for T in LENGTHS:
            envs = [n for n in ENVS if (n, T) in values]
            ax.plot(envs, [values[n, T] for n in envs], marker="o", label=f"max_new_tokens={T}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("parallel envs")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="1 and 4 envs, 32 tokens, 1 repeat; prints only (README and plot left alone)")
    args = parser.parse_args(argv)
    import torch

    from instruct_env.tokenizer import builtin_tokenizer

    torch.set_num_threads(args.threads)
    tokenizer = builtin_tokenizer()
    policy = _policy(tokenizer)
    envs, lengths = ((1, 4), (32,)) if args.quick else (ENVS, LENGTHS)
    repeats = 1 if args.quick else args.repeats
    results: dict[str, dict[tuple[int, int], float]] = {
        "env steps/s (Token env alone)": {}, "rollout tokens/s (Token env + PPO)": {},
        "tokens/s (generate + Completion env)": {}}
    env_sps, rollout, completion = results.values()
    rows = []
    start = time.perf_counter()
    for T in lengths:
        for n in envs:
            env_sps[n, T] = env_steps_per_s(n, T, repeats)
            rollout[n, T] = rollout_tokens_per_s(policy, tokenizer, n, T, repeats)
            completion[n, T] = completion_tokens_per_s(policy, tokenizer, n, T, repeats)
            rows.append(f"| {n} | {T} | {env_sps[n, T]:,.0f} | {rollout[n, T]:,.0f} | {completion[n, T]:,.0f} |")
            print(rows[-1], f"({time.perf_counter() - start:.0f} s)", flush=True)
    if args.quick:
        return
    plot(results, PLOT)
    body = (
        "Throughput against the number of parallel environments and the answer budget `max_new_tokens`: the "
        "Token env alone (random non-EOS tokens, so every episode runs to the budget), our PPO's Token-env rollout "
        "(a KV cache per env slot), and whole answers sampled with the KV-cached `generate` then scored by the "
        "Completion env. Model: the embedded default shape (4 layers, width 128, random init, `n_positions` 640), "
        f"64-token prompts, {args.threads} torch thread(s), medians of {repeats} repeats after a warm-up.\n\n"
        "| envs | max_new_tokens | env steps/s | Token-env rollout tokens/s | Completion-env tokens/s |\n"
        "|---:|---:|---:|---:|---:|\n" + "\n".join(rows) +
        f"\n\n![scaling](scaling.png)\n\nCommand: `python -m benchmarks run --suite scaling`. Measured on "
        f"{provenance()}; {time.perf_counter() - start:.0f} s."
    )
    write_section("Scaling with parallel environments and answer length", body)


if __name__ == "__main__":
    main()
