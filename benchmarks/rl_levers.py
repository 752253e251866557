"""Which levers make the main job's RL learn: GRPO variants from one SFT model, scored on the VALIDATION split.

Every variant starts from the same SFT model of its seed (the main job's SFT on the shipped default
model) and runs a FIXED number of GRPO updates (so machine load does not change the result) with
the main job's GRPO settings changed only as the variant says. It is then scored, greedily, on the
validation split (never the test split: this is how the main job's defaults are chosen). Each run
records the training reward over the first and last 10% of updates (overall and per family), the
KL to the SFT model, the entropy, the gradient norm, and the share of groups with mixed rewards,
so the table doubles as a diagnosis of what RL does.

    python -m benchmarks.rl_levers --seeds 0 --updates 120 --variants defaults,group_std --jobs 2

Results: ``<out>/<variant>-seed<N>.json`` (reused when present; ``--fresh`` recomputes) and a table
in the "RL levers" section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import provenance, write_section

__all__ = ["VARIANTS", "run_variant", "main"]

#: Variant name -> changes to the main job's settings (``rl.grpo.*`` fields, and ``sampling`` for
#: ``data.sampling``). "defaults" is the main job as configured.
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    # the GRPO of the paper, as the main job had it before these levers
    "paper_grpo": {"advantage_scale": "group", "loss_aggregation": "grpo", "sampling": "uniform",
                   "dynamic_sampling": False, "lr": 5e-5},
    # one lever changed at a time
    "group_std": {"advantage_scale": "group"},
    "family_std": {"advantage_scale": "family"},
    "batch_std": {"advantage_scale": "batch"},
    "no_std": {"advantage_scale": "none"},
    "dr_grpo": {"advantage_scale": "none", "loss_aggregation": "dr_grpo"},
    "dapo_tokens": {"loss_aggregation": "dapo"},
    "gspo": {"importance_ratio": "sequence"},
    "uniform": {"sampling": "uniform"},
    "stratified": {"sampling": "stratified"},
    "dynamic": {"dynamic_sampling": True},
    "overlong": {"overlong_buffer": 8},
    "lr_1e-4": {"lr": 1e-4},
    "lr_2e-4": {"lr": 2e-4},
    "lr_2.5e-5": {"lr": 2.5e-5},
    "kl_0.05": {"kl_coef": 0.05},
    "kl_0.005": {"kl_coef": 0.005},
    "temp_1.0": {"temperature": 1.0},
    "group_4x32": {"group_size": 4, "num_envs": 128},
    "group_16x8": {"group_size": 16, "num_envs": 128},
    "prompts_32x8": {"num_envs": 256},
    "family_lr_1e-4": {"advantage_scale": "family", "lr": 1e-4},
    "lr_5e-5": {"lr": 5e-5},
}


#: ``--model legacy``: the default model as pre-trained before weights were shipped (1000 steps of
#: 64 examples on 2000 per family, about 3 minutes on 2 idle cores), for the diagnosis of that setup.
LEGACY_PRETRAIN = {"steps": 1000, "n_per_task": 2000, "warmup_steps": 50, "time_budget_s": None}


def _pipeline_config(seed: int, out: Path, threads: int, val_size: int, model: str = "shipped"):
    from agents.common.pretrain import PretrainConfig
    from agents.pipeline import PipelineConfig

    config = PipelineConfig(out=str(out), seed=seed, threads=threads, progress=False)
    config.data.val_size_per_task = val_size
    if model == "legacy":
        config.model.pretrain = PretrainConfig(**LEGACY_PRETRAIN)
    return config


def _sft_model(seed: int, root: Path, threads: int, val_size: int, model: str = "shipped") -> Path:
    """The seed's SFT model (the main job's SFT), trained once and reused."""
    from agents.pipeline import run_pipeline

    folder = root / f"sft-seed{seed}"
    if not (folder / "model" / "config.json").exists():
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        run_pipeline(_pipeline_config(seed, folder, threads, val_size, model), stages=("sft",),
                     command="python -m benchmarks.rl_levers")
    return folder / "model"


def run_variant(name: str, seed: int, updates: int, root: Path, threads: int = 1, val_size: int = 32,
                model: str = "shipped") -> dict[str, Any]:
    """Train variant ``name`` from the seed's SFT model for ``updates`` updates; score it on validation."""
    from transformers import AutoTokenizer

    from agents.common.device import configure_threads
    from agents.common.evaluation import evaluate
    from agents.common.model import ActorCritic, load_model
    from agents.common.report import window_means
    from agents.pipeline import rl_env_kwargs, split_samples
    from agents.rl import make_trainer

    configure_threads(threads)
    changes = dict(VARIANTS[name])
    base = _pipeline_config(seed, root / "unused", threads, val_size)
    data = dataclasses.replace(base.data, sampling=changes.pop("sampling", base.data.sampling))
    rl_config = dataclasses.replace(base.rl.grpo, **changes, total_updates=updates, time_budget_s=None, eval_every=0,
                                    seed=seed, device="cpu", max_new_tokens=data.max_new_tokens)
    model_dir = _sft_model(seed, root, threads, val_size, model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    val = list(split_samples(data, "validation", val_size))

    def score(lm) -> float:
        return float(evaluate(lm, tokenizer, val, max_prompt_tokens=data.max_prompt_tokens,
                              max_new_tokens=data.max_new_tokens, batch_size=128, split="validation").overall["task"])

    policy = ActorCritic(load_model(str(model_dir)))
    policy.freeze_reference()
    val_sft = score(policy.lm)
    trainer = make_trainer("grpo", rl_config, policy, tokenizer, rl_env_kwargs(data))
    start = time.perf_counter()
    history = [trainer.update_step() for _ in range(updates)]
    seconds = time.perf_counter() - start
    families = sorted({k.split("/", 1)[1] for h in history for k in h if k.startswith("reward/")})

    def series(key: str) -> list[float]:
        return [float(h.get(key, math.nan)) for h in history]

    tail = max(1, updates // 10)
    return {
        "variant": name, "seed": seed, "updates": updates, "seconds": round(seconds, 1),
        "changes": VARIANTS[name],
        "train": window_means(series("reward_mean")),
        "per_family": {f: window_means(series(f"reward/{f}")) for f in families},
        "val_sft": val_sft, "val_rl": score(policy.lm),
        "kl_end": float(np.nanmean(series("kl")[-tail:])),
        "entropy": window_means(series("entropy")),
        "grad_norm": float(np.nanmean(series("grad_norm"))),
        "frac_groups_mixed": float(np.nanmean(series("frac_groups_mixed"))),
        "reward_std": float(np.nanmean(series("reward_std"))),
        "group_reward_std": float(np.nanmean(series("group_reward_std"))),
        "completion_len": window_means(series("completion_len")),
    }


def _table(results: list[dict[str, Any]]) -> str:
    rows = ["| variant | seeds | train reward first 10% -> last 10% | change | validation SFT -> SFT+RL | change | "
            "KL (last 10%) | mixed groups | s/update |",
            "|---|---:|---|---:|---|---:|---:|---:|---:|"]
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_variant.setdefault(r["variant"], []).append(r)
    order = sorted(by_variant, key=lambda v: -np.mean([r["val_rl"] - r["val_sft"] for r in by_variant[v]]))
    for v in order:
        rs = by_variant[v]
        first, last = np.mean([r["train"][0] for r in rs]), np.mean([r["train"][1] for r in rs])
        sft, rl = np.mean([r["val_sft"] for r in rs]), np.mean([r["val_rl"] for r in rs])
        rows.append(f"| `{v}` | {len(rs)} | {first:.3f} -> {last:.3f} | {last - first:+.3f} | {sft:.3f} -> {rl:.3f} | "
                    f"{rl - sft:+.3f} | {np.mean([r['kl_end'] for r in rs]):.3f} | "
                    f"{np.mean([r['frac_groups_mixed'] for r in rs]):.2f} | "
                    f"{np.mean([r['seconds'] / r['updates'] for r in rs]):.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rl_levers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="defaults", help=f"Comma-separated, from: {', '.join(VARIANTS)}.")
    parser.add_argument("--seeds", default="0", help="Comma-separated training seeds.")
    parser.add_argument("--updates", type=int, default=120, help="GRPO updates per run.")
    parser.add_argument("--val-size", type=int, default=32, help="Validation samples per family.")
    parser.add_argument("--jobs", type=int, default=2, help="Runs side by side (one torch thread each).")
    parser.add_argument("--out", default="benchmarks/results/levers", help="Result folder.")
    parser.add_argument("--fresh", action="store_true", help="Recompute results that exist.")
    parser.add_argument("--model", choices=("shipped", "legacy"), default="shipped",
                        help="Start from the shipped default model (default) or the legacy 1000-step pre-training.")
    parser.add_argument("--no-readme", action="store_true", help="Do not write benchmarks/README.md.")
    parser.add_argument("--one", nargs=2, metavar=("VARIANT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    if args.one:  # a single run, in its own process
        name, seed = args.one[0], int(args.one[1])
        result = run_variant(name, seed, args.updates, root, threads=1, val_size=args.val_size, model=args.model)
        (root / f"{name}-seed{seed}.json").write_text(json.dumps(result, indent=1))
        return 0
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            from instruct_env.error import unknown_name

            raise unknown_name("RL lever variant", v, VARIANTS)
    seeds = [int(s) for s in args.seeds.split(",")]
    for seed in seeds:  # SFT models first, one at a time (the runs then only read them)
        _sft_model(seed, root, max(1, args.jobs), args.val_size, args.model)
    todo = [(v, s) for v in variants for s in seeds
            if args.fresh or not (root / f"{v}-seed{s}.json").exists()]

    def launch(job: tuple[str, int]) -> int:
        cmd = [sys.executable, "-m", "benchmarks.rl_levers", "--one", job[0], str(job[1]), "--updates",
               str(args.updates), "--val-size", str(args.val_size), "--out", str(root), "--model", args.model]
        code = subprocess.run(cmd).returncode
        print(f"[rl_levers] {job[0]} seed {job[1]}: exit {code}", flush=True)
        return code

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        codes = list(pool.map(launch, todo))
    results = [json.loads(p.read_text()) for p in sorted(root.glob("*-seed*.json"))
               if p.name.split("-seed")[0] in variants and int(p.stem.split("-seed")[1]) in seeds]
    table = _table(results)
    print(table)
    if not args.no_readme:
        write_section(f"RL levers (validation split, {args.model} model)", (
            f"`python -m benchmarks.rl_levers --variants {args.variants} --seeds {args.seeds} --updates {args.updates}`"
            f" ({provenance()}). Each variant: GRPO for a fixed {args.updates} updates from the seed's SFT model "
            f"(the main job's SFT on the shipped default model), one torch thread, {args.jobs} runs side by side; "
            f"scored greedily on {args.val_size} validation samples per family (the test split is not used to "
            "choose). Training reward: mean over the first and last 10% of updates, on sampled answers.\n\n" + table))
    return max(codes, default=0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
