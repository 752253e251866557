"""ILQL learning from the feedback store, end to end, with simulated evaluators.

1. Sample answers from an SFT model (the reduced Q-learning suite's SFT model of ``--seed`` by default) to
   training prompts, 4 per prompt.
2. Post each answer as a ``rating`` query (1..5) to a fresh SQLite feedback store; three simulated
   evaluators (:class:`~instruct_env.feedback.SimulatedOracle` on the task verifier, noise 0.1,
   different seeds) answer their queues through the store like people at the rating page.
3. ``instruct-env rl --algo ilql --data <store>``, i.e. the pipeline's RL stage with
   ``rl.ilql.data`` = the store: every rating becomes the final token's reward
   ``(rating - 1) / 4``, the three ratings of an answer are averaged (see ``docs/q_learning.md``).
4. The held-out test score before and after.

Run: ``python -m benchmarks.bench_ilql_feedback [--seed N] [--sft-model DIR]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import provenance, write_section


def collect_answers(model, tokenizer, data, n: int, seed: int, temperature: float = 0.7):
    """``n`` sampled answers (4 per prompt) to training prompts: ``[(sample, text)]``."""
    import gymnasium as gym

    from agents.common.generation import SamplingConfig, generate
    from agents.pipeline import rl_env_kwargs

    env = gym.make_vec("InstructEnv/Completion-v0", num_envs=64, vectorization_mode="vector_entry_point", group_size=4,
                       **{**rl_env_kwargs(data), "tokenizer": tokenizer, "max_new_tokens": data.max_new_tokens})
    obs, _ = env.reset(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    out = []
    while len(out) < n:
        samples = env.samples
        gen = generate(model, torch.as_tensor(obs["input_ids"]), torch.as_tensor(obs["attention_mask"]),
                       data.max_new_tokens, env.setup.eos_token_id, env.setup.pad_token_id,
                       SamplingConfig(temperature=temperature), generator)
        obs, _, _, _, infos = env.step(gen.tokens.numpy())
        out += list(zip(samples, infos["final_info"]["completion"]))
    env.close()
    return out[:n]


def main() -> None:
    from agents.pipeline import ModelConfig, RLSection, load_policy_model, run_pipeline
    from benchmarks.q_suite import reduced_config
    from instruct_env.feedback import FeedbackStore, SimulatedOracle
    from instruct_env.feedback.oracle import FeedbackItem

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft-model", default=None,
                        help="SFT model folder (default: the reduced Q-learning suite's SFT model of --seed)")
    parser.add_argument("--answers", type=int, default=1024)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/ilql_feedback")
    args = parser.parse_args()
    if args.sft_model is None:
        args.sft_model = f"benchmarks/results/q_small/runs/seed{args.seed}/sft/model"
    torch.set_num_threads(1)
    out = Path(args.out)
    shutil.rmtree(out / "run", ignore_errors=True)  # this script's own run folder, from an earlier run
    out.mkdir(parents=True, exist_ok=True)
    suite = reduced_config(str(out), [args.seed], ["ilql"])
    config = suite.pipeline_config(args.seed, out / "run", model=ModelConfig(name=args.sft_model))
    start = time.perf_counter()
    model, tokenizer, _ = load_policy_model(config)
    model.eval()
    answers = collect_answers(model, tokenizer, config.data, args.answers, args.seed)
    db = out / "feedback.db"
    db.unlink(missing_ok=True)
    store = FeedbackStore(str(db), min_evaluators=3, gold_rate=0.0, seed=args.seed)
    store.add_queries([FeedbackItem.from_sample(s, [text]).to_query("rating") for s, text in answers])
    samples = {s.id: s for s, _ in answers}
    for i in range(3):
        SimulatedOracle("task", noise=0.1, seed=1000 * args.seed + i, name=f"simulated-{i}").answer_store(
            store, samples=samples)
    ratings = [a.answer["rating"] for a in store.current_answers(kind="rating")]
    store.close()
    collected = time.perf_counter() - start
    ilql = dataclasses.replace(RLSection().ilql, data=str(db), total_updates=args.updates, time_budget_s=None,
                               eval_every=max(1, args.updates // 2), monitor_every=0, seed=args.seed)
    config = dataclasses.replace(config, rl=RLSection(algo="ilql", ilql=ilql))
    result = run_pipeline(config, stages=("rl",), command="python -m benchmarks.bench_ilql_feedback")
    before, after = result.results["before RL"], result.results["RL"]
    print(f"test task score {before.overall['task']:.3f} -> {after.overall['task']:.3f}")
    body = (
        f"SFT model: `{args.sft_model}` (the reduced Q-learning suite's seed-{args.seed} SFT model, 6 built-in "
        f"families). {len(answers)} sampled answers (temperature 0.7, 4 per training prompt) posted as 1..5 "
        f"`rating` queries to a fresh SQLite store; 3 simulated evaluators (task verifier, noise 0.1) answered "
        f"{len(ratings)} of them through the store (mean rating {np.mean(ratings):.2f}); ILQL then trained on the "
        f"store (`rl.ilql.data=<store>`, each answer's mean rating as the final reward, {args.updates} updates of "
        f"32 episodes, the pipeline's other ILQL settings), with the pipeline's held-out test split "
        f"({after.num_samples} samples), final weights (`keep_best` off as in the suite).\n\n"
        "| model | test task score | exact match |\n|---|---:|---:|\n"
        f"| SFT | {before.overall['task']:.3f} | {before.overall['exact_match']:.3f} |\n"
        f"| SFT + ILQL on the store's ratings | {after.overall['task']:.3f} | {after.overall['exact_match']:.3f} |\n\n"
        f"Sampling and rating took {collected:.0f} s, the RL stage and evaluations {result.wall_time_s:.0f} s "
        f"(1 torch thread). Command: `python -m benchmarks.bench_ilql_feedback --seed {args.seed}` (after `python -m "
        f"benchmarks.q_suite`, which trains the SFT model). Measured on {provenance()}."
    )
    write_section("ILQL from the feedback store (simulated evaluators)", body)


if __name__ == "__main__":
    main()
