"""The ``instruct-env`` command line. It only parses; :mod:`agents.pipeline` does the work.

Subcommands::

    instruct-env pipeline            # SFT -> RL -> evaluation -> report (the main job, < 10 min on 2 CPUs)
    instruct-env sft                 # SFT only, evaluated before and after
    instruct-env rl --algo ppo --model runs/<sft run>/model
    instruct-env eval --model runs/<run>/model

Every subcommand reads an optional YAML file (``--config``) shaped like
:class:`agents.pipeline.PipelineConfig` (``instruct-env <cmd> --print-config`` shows it with
every default), then the dedicated flags, then ``--set section.field=value`` overrides. Each
value is converted to its field's declared type; unknown fields get "did you mean" hints.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]

_DESCRIPTIONS = {
    "pipeline": "Pre-trained default model (cached) -> SFT -> RL -> held-out evaluation -> Markdown report.",
    "sft": "Supervised fine-tuning only, evaluated on the test split before and after.",
    "rl": "RL only (from --model, e.g. an SFT run's model/ folder), evaluated before and after.",
    "eval": "Evaluate a model on the held-out test split and write a report.",
}
_STAGES = {"pipeline": ("sft", "rl"), "sft": ("sft",), "rl": ("rl",), "eval": ()}
_ALGOS = ("ppo", "a2c", "reinforce", "grpo", "rloo")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (all subcommands)."""
    parser = argparse.ArgumentParser(
        prog="instruct-env",
        description="Instruction tuning as reinforcement learning: SFT warm start, RL, held-out evaluation.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{pipeline,sft,rl,eval}", required=True)
    for name in ("pipeline", "sft", "rl", "eval"):
        sub = commands.add_parser(name, help=_DESCRIPTIONS[name], description=_DESCRIPTIONS[name])
        sub.add_argument("--config", metavar="FILE.yaml", help="YAML configuration file (see --print-config).")
        sub.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                         help="Override one configuration field, e.g. --set sft.lr=1e-4 (repeatable).")
        sub.add_argument("--model", metavar="NAME_OR_PATH",
                         help="Hugging Face model name or local folder (default: the embedded default model, "
                              "pre-trained on the task suite and cached).")
        sub.add_argument("--out", metavar="DIR", help="Output folder (default: runs/<name or timestamp>).")
        sub.add_argument("--name", help="Run name (the default output folder is runs/<name>).")
        sub.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps.")
        sub.add_argument("--threads", type=int, help="CPU threads for torch (default: the cores other processes leave idle).")
        sub.add_argument("--seed", type=int, help="Training seed.")
        sub.add_argument("--tasks", help="Comma-separated built-in task families (default: all).")
        if name in ("pipeline", "sft"):
            sub.add_argument("--num-examples", type=int, metavar="N",
                             help="SFT training examples per task family (few-shot; default 64).")
        if name in ("pipeline", "rl"):
            sub.add_argument("--algo", choices=_ALGOS, help="RL algorithm (default: grpo).")
        sub.add_argument("--no-progress", action="store_true", help="No progress bars.")
        sub.add_argument("--print-config", action="store_true",
                         help="Print the resolved configuration as YAML and exit.")
    return parser


def _overrides(args: argparse.Namespace) -> list[str]:
    pairs = []
    for flag, path in (("model", "model.name"), ("out", "out"), ("name", "name"), ("device", "device"),
                       ("threads", "threads"), ("seed", "seed"), ("tasks", "data.tasks"),
                       ("num_examples", "sft.num_examples"), ("algo", "rl.algo")):
        value = getattr(args, flag, None)
        if value is not None:
            pairs.append(f"{path}={value}")
    if args.no_progress:
        pairs.append("progress=false")
    return pairs + list(args.overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``instruct-env`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[instruct-env] %(message)s")
    for noisy in ("httpx", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars; our own bars stay

    from agents.common.config import build_config, load_yaml, to_dict
    from agents.pipeline import PipelineConfig, run_pipeline
    from instruct_env.error import InstructEnvError

    try:
        data = load_yaml(args.config) if args.config else {}
        config = build_config(PipelineConfig, data, _overrides(args))
        if args.command == "rl" and config.model.name is None:
            logging.getLogger(__name__).warning(
                "rl without --model starts from the pre-trained default model, with no SFT warm start; "
                "pass --model <sft run>/model, or run 'instruct-env pipeline'.")
        if args.print_config:
            import yaml

            print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
            return 0
        command = "instruct-env " + " ".join(sys.argv[1:] if argv is None else argv)
        result = run_pipeline(config, stages=_STAGES[args.command], command=command.strip())
    except InstructEnvError as exc:
        print(f"instruct-env: error: {exc}", file=sys.stderr)
        return 2
    print(f"Report:  {result.report}")
    print(f"Metrics: {result.metrics}")
    if result.plots:
        print("Plots:   " + ", ".join(str(p) for p in result.plots.values()))
    if result.model_dir is not None:
        print(f"Model:   {result.model_dir}")
    for stage, res in result.results.items():
        print(f"  {stage:>10}: task score {res.overall['task']:.3f}, exact match {res.overall['exact_match']:.3f}")
    print(f"Done in {result.wall_time_s:.0f} s.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
