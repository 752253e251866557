"""The Q-learning comparisons of the quality suite at a size that fits a shared 2-core machine.

Same machinery as ``python -m benchmarks run --suite small`` (:mod:`benchmarks.suite`: per seed one
SFT model, every method from it, fixed update counts, the test split scored, IQM with stratified
bootstrap CIs), on 6 built-in families, with budgets matched as the issue asks:

- offline vs online, the same number of reward calls (2048): ILQL on 2048 samples of the SFT model
  (8 per prompt), RFT (SFT on the best of the same kind of 2048 samples), GRPO for 16 updates of 128;
- online Q-learning vs PPO, the same tokens: soft Q-learning and PPO 20 updates of 64 envs x 16
  tokens each; SB3-DQN 2 such rollouts (it re-reads the whole observation at every step).

Run: ``python -m benchmarks.q_suite [--seeds 0,1,2] [--out DIR]``; writes the README section
"Q-learning in the quality suite (reduced)".
"""

from __future__ import annotations

import argparse

from benchmarks._common import write_section
from benchmarks.suite import SuiteConfig, run_suite

TASKS = ["copy", "change_case", "pick_word", "arithmetic", "sort_numbers", "reverse_words"]
METHODS = ["grpo", "ilql", "rft", "ppo", "sql", "sb3-dqn"]
UPDATES = {"grpo": 16, "ilql": 200, "rft": 1, "ppo": 20, "sql": 20, "sb3-dqn": 2}


def reduced_config(out: str, seeds: list[int], methods: list[str]) -> SuiteConfig:
    return SuiteConfig(seeds=seeds, tasks=TASKS, reasoning_gym=[], rl_methods=methods, updates=dict(UPDATES),
                       eval_checks=2, test_size_per_task=50, val_size_per_task=8, sft_time_budget_s=90.0, threads=1,
                       out=out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="benchmarks/results/q_small")
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    command = f"python -m benchmarks.q_suite --seeds {args.seeds}"
    written = run_suite(reduced_config(args.out, seeds, methods), readme=False, command=command)
    body = written["summary"].read_text().split("\n", 2)[2]  # without the "# Quality suite" title
    preface = (
        "Budgets matched as the issue asks. Offline vs online at the same number of reward calls (2048): "
        "SFT+ILQL learns from 2048 samples of the SFT model (8 per prompt, temperature 0.7, scored once) for "
        f"{UPDATES['ilql']} updates of 32 episodes; SFT+RFT fine-tunes (3 epochs, final weights) on the best of "
        "each prompt's 8 answers among 2048 such samples (answers scoring 0 dropped); SFT+GRPO runs "
        f"{UPDATES['grpo']} updates of 128 completions. Online Q-learning vs PPO at the same tokens: SFT+SQL and "
        f"SFT+PPO {UPDATES['ppo']} updates of 64 envs x 16 tokens; SFT+SB3-DQN {UPDATES['sb3-dqn']} such "
        "rollouts (stock DQN re-reads the whole observation at every step and every gradient step, so it "
        "gets fewer). 6 built-in families, 50 test samples each, 1 torch thread; the SFT model of each "
        "seed is shared by all its methods.\n\n")
    write_section("Q-learning in the quality suite (reduced)", preface + body)


if __name__ == "__main__":
    main()
