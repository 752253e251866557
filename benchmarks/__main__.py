"""``python -m benchmarks``: the benchmark suites and hyperparameter search.

::

    python -m benchmarks run --suite small [--seeds 0,1,2] [--out DIR] [--quick]
    python -m benchmarks run --suite speed [--quick | --list]
    python -m benchmarks run --suite scaling [--quick]
    python -m benchmarks tune --algo grpo --trials 20 [--updates 40] [--out DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from instruct_env.error import ConfigError, MissingDependency, UnknownNameError

#: The speed benchmarks, each a module that writes its own README section; the second element is
#: the argument list of a quick run (a smoke test that leaves the README alone), or ``None`` for
#: scripts that always write it (skipped by ``--quick``).
SPEED = (
    ("benchmarks.bench_rewards", ["--batch-size", "16", "--repeats", "5", "--metrics", "bleu", "--no-write"]),
    ("benchmarks.bench_env", None),
    ("benchmarks.bench_rl_speed", None),
    ("benchmarks.bench_distributed", ["--updates", "1", "--num-envs", "4", "--no-readme"]),
)


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,1,2; got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("expected at least one seed, e.g. --seeds 0")
    return seeds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("::")[0].strip())
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a benchmark suite")
    run.add_argument("--suite", choices=("small", "speed", "scaling"), required=True,
                     help="small: quality (methods x tasks x seeds); speed: the speed benchmarks; "
                          "scaling: throughput against parallel envs and answer length")
    run.add_argument("--seeds", type=_seeds, default=None, help="training seeds of the small suite (default 0,1,2)")
    run.add_argument("--out", default=None, help="output folder of the small suite (default benchmarks/results/small)")
    run.add_argument("--methods", default=None,
                     help="RL methods of the small suite, comma-separated (default ppo,grpo,reinforce,sb3-ppo; "
                          "add rloo for RLOO)")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the idle cores)")
    run.add_argument("--quick", action="store_true",
                     help="tiny counts: a smoke test of the command, numbers not written to benchmarks/README.md")
    run.add_argument("--list", action="store_true", help="list what the suite runs, run nothing")
    tune = commands.add_parser("tune", help="Optuna search of an RL algorithm's config on the validation split")
    tune.add_argument("--algo", default="grpo", help="RL algorithm (ppo, a2c, grpo, reinforce, rloo)")
    tune.add_argument("--trials", type=int, default=20, help="Optuna trials")
    tune.add_argument("--updates", type=int, default=40, help="fixed RL updates per trial")
    tune.add_argument("--tasks", default=None, help="built-in task families, comma-separated (default: all)")
    tune.add_argument("--seed", type=int, default=0, help="training seed of every trial (and the sampler's seed)")
    tune.add_argument("--out", default="benchmarks/results/tune", help="output folder (best.yaml, trials.csv)")
    tune.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the idle cores)")
    tune.add_argument("--quick", action="store_true", help="tiny model and counts: a smoke test")
    return parser


def _run_speed(quick: bool, listing: bool) -> None:
    for module, quick_args in SPEED:
        command = [sys.executable, "-m", module] + (quick_args or [] if quick else [])
        if listing:
            print(" ".join(command[1:]))
            continue
        if quick and quick_args is None:
            print(f"skipped in --quick mode (no quick arguments): {module}")
            continue
        print(f"running {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=Path(__file__).resolve().parents[1])
        print(f"{module} done in {time.perf_counter() - start:.0f} s", flush=True)


def _run_small(args: argparse.Namespace) -> None:
    from benchmarks.suite import SuiteConfig, quick_config, run_suite

    out = args.out or ("benchmarks/results/small-quick" if args.quick else "benchmarks/results/small")
    suite = quick_config(out) if args.quick else SuiteConfig(out=out)
    changes = {}
    if args.seeds is not None:
        changes["seeds"] = args.seeds
    if args.methods is not None:
        changes["rl_methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.threads is not None:
        changes["threads"] = args.threads
    suite = type(suite)(**{**suite.__dict__, **changes}) if changes else suite
    if args.list:
        print(f"seeds {suite.seeds}; methods {suite.methods}; updates {suite.updates}; out {suite.out}")
        return
    command = "python -m benchmarks run --suite small" + "".join(
        f" {flag} {value}" for flag, value in (("--seeds", args.seeds and ",".join(map(str, args.seeds))),
                                               ("--methods", args.methods), ("--out", args.out)) if value)
    run_suite(suite, readme=not args.quick, command=command + (" --quick" if args.quick else ""))


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` and run the chosen command."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "tune":
            from benchmarks.tune import run_tune

            run_tune(algo=args.algo, trials=args.trials, updates=args.updates, seed=args.seed, out=args.out,
                     tasks=args.tasks.split(",") if args.tasks else None, threads=args.threads, quick=args.quick)
        elif args.suite == "speed":
            _run_speed(args.quick, args.list)
        elif args.suite == "scaling":
            from benchmarks.bench_scaling import main as scaling

            scaling(["--quick"] if args.quick else [])
        else:
            _run_small(args)
    except (ConfigError, UnknownNameError, MissingDependency) as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
