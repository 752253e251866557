"""The ``instruct-env`` command line. It only parses; :mod:`agents.pipeline` does the work.

Subcommands::

    instruct-env pipeline            # SFT -> RL -> evaluation -> report (the main job, < 10 min on 2 CPUs)
    instruct-env sft                 # SFT only, evaluated before and after
    instruct-env rl --algo ppo --model runs/<sft run>/model
    instruct-env rl --algo ilql --data episodes.jsonl --model runs/<sft run>/model   # offline Q-learning
    instruct-env eval --model runs/<run>/model
    instruct-env pretrain --out DIR  # pre-train the embedded default model to the end, with a manifest

Every subcommand reads an optional YAML file (``--config``) shaped like
:class:`agents.pipeline.PipelineConfig` (``instruct-env <cmd> --print-config`` shows it with
every default), then the dedicated flags, then ``--set section.field=value`` overrides. Each
value is converted to its field's declared type; unknown fields get "did you mean" hints.

Data-parallel training: ``torchrun --nproc_per_node=N -m agents.cli rl ...`` (any torchrun
launch, multi-node included), or ``instruct-env rl --nproc N ...``, which re-launches the same
command through ``torch.distributed.run --standalone``. Only rank 0 writes the run folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Sequence

# The algorithm table only (no torch): each trainer is imported when used.
from agents.rl import ALGORITHMS, DEFAULT_ALGORITHM, ILQL

__all__ = ["main", "build_parser"]

_DESCRIPTIONS = {
    "pipeline": "Pre-trained default model (cached) -> SFT -> RL -> held-out evaluation -> Markdown report.",
    "sft": "Supervised fine-tuning only, evaluated on the test split before and after.",
    "rl": "RL only (from --model, e.g. an SFT run's model/ folder), evaluated before and after.",
    "eval": "Evaluate a model on the held-out test split and write a report.",
}
_STAGES = {"pipeline": ("sft", "rl"), "sft": ("sft",), "rl": ("rl",), "eval": ()}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (all subcommands)."""
    parser = argparse.ArgumentParser(
        prog="instruct-env",
        description="Instruction tuning as reinforcement learning: SFT warm start, RL, held-out evaluation.",
        epilog="examples:\n"
               "  instruct-env pipeline                       # the main job, < 10 min on 2 CPU cores\n"
               "  instruct-env pipeline --algo rloo --num-examples 16 --set rl.rloo.lr=1e-5\n"
               "  instruct-env sft --print-config > run.yaml   # every field with its default\n"
               "  instruct-env rl --algo ppo --model runs/<sft run>/model --config run.yaml\n"
               "  instruct-env eval --model runs/<run>/model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command",
                                     metavar="{pipeline,sft,rl,eval,pretrain,serve,add-evaluator}", required=True)
    _add_pretrain(commands)
    _add_feedback_commands(commands)
    for name in ("pipeline", "sft", "rl", "eval"):
        _add_run_command(commands, name)
    return parser


def _add_pretrain(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pretrain = commands.add_parser(
        "pretrain", help="Pre-train the embedded default model to the end and write it with a manifest.",
        description="Pre-train the embedded default model (model.default, model.pretrain settings) for all its "
                    "steps, with no time budget, and write config.json, model.safetensors and manifest.json to "
                    "--out. The weights shipped in agents/assets/default_model were made by this command with the "
                    "defaults.")
    pretrain.add_argument("--out", required=True, metavar="DIR", help="Folder to write.")
    pretrain.add_argument("--config", metavar="FILE.yaml", help="YAML configuration (model.* sections are used).")
    pretrain.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                          help="Override a field, e.g. --set model.pretrain.steps=2000 (repeatable).")
    pretrain.add_argument("--device", help="auto, cpu (default), cuda, cuda:N or mps.")
    pretrain.add_argument("--threads", type=int, help="CPU threads for torch (default: the idle cores).")


def _add_feedback_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    store_help = ("Feedback store: a SQLite file path, sqlite:///path.db, or postgresql://user:password@host/dbname "
                  "(pip install 'instruct-env[postgres]').")
    serve = commands.add_parser("serve", help="Run the human-feedback server and evaluator pages.",
                                description="Run the human-feedback server (REST API + evaluator pages) on a "
                                            "feedback store. Binds 127.0.0.1 unless --host says otherwise.")
    serve.add_argument("--store", required=True, metavar="URL_OR_PATH", help=store_help)
    serve.add_argument("--host", default="127.0.0.1", help="Interface to bind (default 127.0.0.1).")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000).")
    serve.add_argument("--min-evaluators", type=int, default=3, help="Answers wanted per item (default 3).")
    serve.add_argument("--gold-rate", type=float, default=0.1, help="Share of gold items served (default 0.1).")
    serve.add_argument("--policy", metavar="PATH", default=None,
                       help="Model folder (e.g. runs/<run>/model) the /chat page talks to; without it the page "
                            "says no policy is loaded.")
    serve.add_argument("--temperature", type=float, default=0.0,
                       help="Chat sampling temperature; 0 (default) is greedy.")
    serve.add_argument("--max-new-tokens", type=int, default=64, help="Longest chat reply in tokens (default 64).")
    serve.add_argument("--device", default="cpu", help="Device of the chat policy (default cpu).")
    serve.add_argument("--cookie-secure", action="store_true",
                       help="Mark the login cookie Secure: set it when the server is reached over HTTPS.")
    evaluator = commands.add_parser("add-evaluator", help="Create an evaluator (or admin) and print its token once.",
                                    description="Create an evaluator or admin on a feedback store and print the "
                                                "access token (stored only as a hash; it cannot be shown again).")
    evaluator.add_argument("--store", required=True, metavar="URL_OR_PATH", help="Feedback store.")
    evaluator.add_argument("name", help="Evaluator name.")
    evaluator.add_argument("--admin", action="store_true", help="Give the admin role.")
    revoke = commands.add_parser("revoke-token", help="Revoke an evaluator's token and end their sessions.",
                                 description="Revoke an evaluator's access token and end their logins; their "
                                             "answers stay in the store. Give them access again with a new token "
                                             "(FeedbackStore.reset_token).")
    revoke.add_argument("--store", required=True, metavar="URL_OR_PATH", help="Feedback store.")
    revoke.add_argument("name", help="Evaluator name.")


def _add_run_command(commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str) -> None:
    """``pipeline``, ``sft``, ``rl`` or ``eval``: the flags of the main job's stages ``name`` runs."""
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
    sub.add_argument("--tasks", help="Comma-separated built-in task families (default: the twelve English "
                                     "families; opt-in ones such as zh_chars must be named).")
    sub.add_argument("--dataset", metavar="FILE|FOLDER|hf:NAME",
                     help="Your own data instead of the built-in suite: a JSON/JSONL/CSV/TSV file, a folder saved "
                          "with datasets' save_to_disk, or hf:NAME[:CONFIG]; split 80/10/10 by a hash of each "
                          "input unless --set data.split_column=COLUMN (map columns with --set "
                          "'data.fields={instruction: q, references: a}').")
    if name in ("pipeline", "sft"):
        sub.add_argument("--num-examples", type=int, metavar="N",
                         help="SFT training examples per task family (few-shot; default 64).")
    if name in ("pipeline", "rl"):
        _add_rl_flags(sub)
    if name == "pipeline":
        sub.add_argument("--feedback", choices=("simulated", "human"),
                         help="Rewards from simulated evaluators or people (through an online reward "
                              "model, or directly with --set feedback.loop.rl_reward=direct) instead of the "
                              "automatic reward; see feedback.* settings.")
    if name in ("pipeline", "sft", "rl"):
        sub.add_argument("--resume", metavar="RUN_DIR",
                         help="Continue a run stopped by Ctrl-C/SIGTERM (or checkpointed with --set "
                              "checkpoint_every=N) from RUN_DIR/checkpoint, with RUN_DIR/config.yaml; the "
                              "result equals an uninterrupted run's.")
        sub.add_argument("--nproc", type=int, metavar="N",
                         help="Data-parallel processes on this machine: re-launches this command with "
                              "torch.distributed.run (for several nodes, call torchrun yourself).")
    sub.add_argument("--no-progress", action="store_true", help="No progress bars.")
    sub.add_argument("--print-config", action="store_true", help="Print the resolved configuration as YAML and exit.")


def _add_rl_flags(sub: argparse.ArgumentParser) -> None:
    """``--algo`` (the choices are :data:`agents.rl.ALGORITHMS`), ``--updates`` and ILQL's ``--data``."""
    sub.add_argument("--algo", choices=list(ALGORITHMS), help=f"RL algorithm (default: {DEFAULT_ALGORITHM}).")
    sub.add_argument("--updates", type=int, metavar="N",
                     help="Run exactly N RL updates, with no time budget (the default stops after "
                          "rl.<algo>.time_budget_s seconds, so how far it gets depends on the machine).")
    sub.add_argument("--data", metavar="FILE|STORE_URL|rollouts",
                     help=f"Offline data of --algo {ILQL.name}: a JSONL file (episodes or feedback export records), "
                          "a feedback store (sqlite:///..., postgresql://... or a .db path), or 'rollouts' "
                          "(the default: samples of the starting model, scored by the reward).")


def _overrides(args: argparse.Namespace) -> list[str]:
    pairs = []
    for flag, path in (("model", "model.name"), ("out", "out"), ("name", "name"), ("device", "device"),
                       ("threads", "threads"), ("seed", "seed"), ("tasks", "data.tasks"), ("dataset", "data.dataset"),
                       ("num_examples", "sft.num_examples"), ("algo", "rl.algo"), ("data", f"rl.{ILQL.name}.data"),
                       ("feedback", "feedback.mode")):
        value = getattr(args, flag, None)
        if value is not None:
            pairs.append(f"{path}={value}")
    if args.no_progress:
        pairs.append("progress=false")
    return pairs + list(args.overrides)


def _relaunch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``instruct-env argv`` (without ``--nproc``) in ``nproc`` processes via torch.distributed.run."""
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "agents.cli", *rest]
    return subprocess.run(cmd).returncode


def _feedback_command(args: argparse.Namespace) -> int:
    from instruct_env.error import InstructEnvError
    from instruct_env.feedback import FeedbackStore, serve

    try:
        if args.command == "serve":
            chat: dict = {}
            if args.policy is not None:
                from agents.common.responder import PolicyResponder

                responder = PolicyResponder.from_folder(args.policy, device=args.device, temperature=args.temperature,
                                                        max_new_tokens=args.max_new_tokens)
                chat = {"responder": responder, "policy_name": responder.name}
            serve(args.store, host=args.host, port=args.port, min_evaluators=args.min_evaluators,
                  gold_rate=args.gold_rate, cookie_secure=args.cookie_secure, **chat)
            return 0
        store = FeedbackStore(args.store)
        try:
            if args.command == "revoke-token":
                return _revoke_token(store, args.name)
            evaluator, token = store.add_evaluator(args.name, role="admin" if args.admin else "evaluator")
        finally:
            store.close()
    except InstructEnvError as exc:
        print(f"instruct-env: error: {exc}", file=sys.stderr)
        return 2
    print(f"{evaluator.role} {evaluator.name!r} created; token (shown once): {token}")
    return 0


def _revoke_token(store, name: str) -> int:
    from instruct_env.error import suggest

    names = {e.name: e for e in store.evaluators()}
    if name not in names:
        print(f"instruct-env: error: no evaluator is named {name!r}.{suggest(name, list(names))}", file=sys.stderr)
        return 2
    store.revoke_token(names[name].id)
    print(f"The token of {name!r} is revoked and their sessions ended; their answers stay in the store.")
    return 0


def _pretrain_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="[instruct-env] %(message)s")
    from agents.common.config import build_config, load_yaml
    from agents.common.device import configure_threads
    from agents.common.shipped import export_pretrained
    from agents.pipeline import PipelineConfig, auto_threads
    from instruct_env.error import InstructEnvError

    try:
        data = load_yaml(args.config) if args.config else {}
        config = build_config(PipelineConfig, data, list(args.overrides))
        threads, why = (args.threads, "--threads") if args.threads else auto_threads()
        configure_threads(threads)
        print(f"[instruct-env] {threads} torch thread(s) ({why})", flush=True)
        manifest = export_pretrained(args.out, config.model.default, config.model.pretrain,
                                     device=args.device or "cpu", command="instruct-env " + " ".join(argv))
    except InstructEnvError as exc:
        print(f"instruct-env: error: {exc}", file=sys.stderr)
        return 2
    print(f"Wrote {args.out}: {manifest['steps']} steps, final loss {manifest['final_loss']:.4f}, "
          f"{manifest['train_seconds']:.0f} s, weights sha256 {manifest['weights_sha256'][:16]}...")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``instruct-env`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command in ("serve", "add-evaluator", "revoke-token"):
        return _feedback_command(args)
    if args.command == "pretrain":
        return _pretrain_command(args, argv)
    nproc = getattr(args, "nproc", None)
    if nproc is not None and nproc < 1:
        print(f"instruct-env: error: --nproc must be >= 1; got {nproc}.", file=sys.stderr)
        return 2
    if nproc is not None and nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _relaunch(nproc, argv)
    logging.basicConfig(level=logging.INFO, format="[instruct-env] %(message)s")
    for noisy in ("httpx", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars; our own bars stay

    from agents.common import distributed as dist
    from agents.common.config import build_config, load_yaml, to_dict
    from agents.common.interrupt import Interrupted
    from agents.pipeline import PipelineConfig, run_pipeline
    from instruct_env.error import ConfigError, InstructEnvError

    try:
        resume = getattr(args, "resume", None)
        if resume is not None and args.config:
            raise ConfigError("--resume reads the run's own RUN_DIR/config.yaml; drop --config.")
        data = load_yaml(os.path.join(resume, "config.yaml")) if resume else load_yaml(args.config) if args.config \
            else {}
        config = build_config(PipelineConfig, data, _overrides(args))
        if getattr(args, "updates", None) is not None:  # the algorithm's own fields, known once the config is
            algo = config.rl.algo
            config = build_config(PipelineConfig, data, _overrides(args) + [
                f"rl.{algo}.total_updates={args.updates}", f"rl.{algo}.time_budget_s=none"])
        if getattr(args, "data", None) is not None and config.rl.algo != ILQL.name:
            raise ConfigError(f"--data is the offline data of --algo {ILQL.name}; this run's algorithm is "
                              f"{config.rl.algo!r}. Drop --data or pass --algo {ILQL.name}.")
        if args.command == "rl" and config.model.name is None:
            logging.getLogger(__name__).warning(
                "rl without --model starts from the pre-trained default model, with no SFT warm start; "
                "pass --model <sft run>/model, or run 'instruct-env pipeline'.")
        if args.print_config:
            import yaml

            print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
            return 0
        command = "instruct-env " + " ".join(argv)
        dist.init_distributed()  # a no-op unless launched by torchrun with WORLD_SIZE > 1
        try:
            result = run_pipeline(config, stages=_STAGES[args.command], command=command.strip(), resume=resume)
        finally:
            dist.destroy_distributed()
    except InstructEnvError as exc:
        print(f"instruct-env: error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"instruct-env: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return exc.exit_code
    if int(os.environ.get("RANK", 0)) != 0:  # rank 0 wrote the run and reports it
        return 0
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
