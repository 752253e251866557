"""Hyperparameter search: Optuna over an RL algorithm's config, scored on the VALIDATION split.

The pipeline's SFT runs once; every trial then trains the chosen algorithm from those SFT weights
for a fixed number of updates (the pipeline's defaults, with the trial's values for the searched
fields) and is scored by the held-out task score of its final weights on the validation split.
The test split is never built, so the numbers the suite reports stay untouched by the search.

Writes under ``out``: ``best.yaml`` (a pipeline configuration: ``instruct-env pipeline --config
best.yaml``), ``trials.csv`` (every trial's values and score).

Needs Optuna: ``pip install 'instruct-env[bench]'``.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import time
from pathlib import Path
from typing import Any

from agents.pipeline import (
    DataConfig,
    ModelConfig,
    PipelineConfig,
    RLSection,
    load_policy_model,
    rl_env_kwargs,
    split_samples,
)
from instruct_env.error import ConfigError, require

__all__ = ["SEARCH_SPACE", "search_space", "run_tune"]

#: Searched fields, used for every algorithm whose config has them: (kind, low, high) for floats
#: (``log``: log-uniform) or ("choice", options).
SEARCH_SPACE: dict[str, tuple] = {
    "lr": ("log", 3e-6, 3e-4),
    "kl_coef": ("float", 0.0, 0.1),
    "temperature": ("float", 0.7, 1.3),
    "group_size": ("choice", (4, 8, 16)),
    "clip_range": ("float", 0.1, 0.3),
    "ent_coef": ("float", 0.0, 0.01),
}


def search_space(algo: str) -> dict[str, tuple]:
    """The fields of :data:`SEARCH_SPACE` that ``algo``'s config has (``group_size`` only where it groups)."""
    section = RLSection(algo=algo)
    fields = {f.name for f in dataclasses.fields(section.selected)}
    space = {name: spec for name, spec in SEARCH_SPACE.items() if name in fields}
    if algo not in ("grpo", "rloo"):  # REINFORCE samples one completion per prompt
        space.pop("group_size", None)
    return space


def _suggest(trial: Any, space: dict[str, tuple]) -> dict[str, Any]:
    values = {}
    for name, (kind, *args) in space.items():
        if kind == "choice":
            values[name] = trial.suggest_categorical(name, list(args[0]))
        else:
            values[name] = trial.suggest_float(name, args[0], args[1], log=kind == "log")
    return values


def _quick_model() -> ModelConfig:
    from agents.common.model import DefaultModelConfig
    from agents.common.pretrain import PretrainConfig

    return ModelConfig(default=DefaultModelConfig(n_layer=1, n_embd=32, n_head=2, n_positions=256),
                       pretrain=PretrainConfig(steps=5, batch_size=8, n_per_task=20, time_budget_s=None))


def run_tune(algo: str = "grpo", trials: int = 20, updates: int = 40, seed: int = 0,
             out: str = "benchmarks/results/tune", tasks: list[str] | None = None, threads: int | None = None,
             quick: bool = False, log=print) -> dict[str, Any]:
    """Run the search; returns the best trial's values (also written to ``<out>/best.yaml``).

    Args:
        algo: RL algorithm whose config is searched.
        trials: Optuna trials.
        updates: Fixed RL updates per trial (no time budget, so trials compare like with like).
        seed: Training seed of every trial and the TPE sampler's seed.
        out: Output folder.
        tasks: Built-in task families (``None``: all).
        threads: torch CPU threads (``None``: the pipeline's automatic choice).
        quick: A tiny model, data and batch: a smoke test of the command.
    """
    optuna = require("optuna", "bench")
    import yaml

    from agents.common.device import configure_threads
    from agents.common.evaluation import evaluate
    from agents.common.model import ActorCritic
    from agents.pipeline import auto_threads
    from agents.rl import make_trainer
    from agents.sft import SFTTrainer
    from instruct_env.tasks import PromptFormatter

    if trials < 1 or updates < 1:
        raise ConfigError(f"trials and updates must be >= 1; got {trials} and {updates}.")
    sizes = {"test_size_per_task": 1, "val_size_per_task": 4, "train_size_per_task": 64} if quick else {}
    config = PipelineConfig(seed=seed, threads=threads, progress=False, data=DataConfig(tasks=tasks, **sizes),
                            rl=RLSection(algo=algo), model=_quick_model() if quick else ModelConfig())
    if quick:
        config.sft.num_examples, config.sft.epochs, config.sft.val_examples = 4, 1, 2
    configure_threads(config.threads if config.threads is not None else auto_threads()[0])
    data = config.data
    space = search_space(algo)
    sft_config, rl_config = config.stage_configs()
    if quick and "group_size" in space:
        space["group_size"] = ("choice", (2, 4))
        rl_config = dataclasses.replace(rl_config, num_envs=8)
    model, tokenizer, _ = load_policy_model(config)
    formatter = PromptFormatter(template=data.template)
    start = time.perf_counter()
    SFTTrainer(model, tokenizer, sft_config, formatter=formatter,
               train_data=split_samples(data, "train", sft_config.num_examples, seed=sft_config.seed),
               val_data=split_samples(data, "validation", sft_config.val_examples, seed=sft_config.seed)).train()
    log(f"SFT done in {time.perf_counter() - start:.0f} s")
    sft_state = copy.deepcopy(model.state_dict())
    val = list(split_samples(data, "validation", data.val_size_per_task))
    env_kwargs = rl_env_kwargs(data)
    metric = config.eval.metric

    def objective(trial: Any) -> float:
        values = _suggest(trial, space)
        model.load_state_dict(sft_state)
        policy = ActorCritic(model)
        policy.freeze_reference()
        rl = dataclasses.replace(rl_config, total_updates=updates, time_budget_s=None, eval_every=0, **values)
        make_trainer(algo, rl, policy, tokenizer, env_kwargs).train()
        result = evaluate(model, tokenizer, val, formatter=formatter, max_prompt_tokens=data.max_prompt_tokens,
                          max_new_tokens=data.max_new_tokens, batch_size=config.eval.batch_size, split="validation",
                          keep_records=False)
        log(f"trial {trial.number}: {values} -> validation {metric} {result.overall[metric]:.4f}")
        return float(result.overall[metric])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    best = dict(study.best_params)
    document = {"data": {"tasks": tasks}, "rl": {"algo": algo, algo: best}}
    header = (f"# Best of {trials} Optuna trials ({updates} {algo} updates each from the SFT model, seed {seed}),\n"
              f"# validation {metric} {study.best_value:.4f}. Use: instruct-env pipeline --config {out_dir / 'best.yaml'}\n")
    (out_dir / "best.yaml").write_text(header + yaml.safe_dump(document, sort_keys=False))
    with open(out_dir / "trials.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["trial", *space, f"validation_{metric}"])
        for t in study.trials:
            writer.writerow([t.number, *(t.params.get(name) for name in space), t.value])
    log(f"best: {best} (validation {metric} {study.best_value:.4f}); written to {out_dir / 'best.yaml'}")
    return best
