"""The quality suite: zero-shot, SFT and SFT+RL methods over several seeds, scored on the test split.

For each seed, the pipeline (:func:`agents.pipeline.run_pipeline`) loads the cached pre-trained
default model, evaluates it (zero-shot), runs SFT once and evaluates again; every RL method then
starts from that SFT model and trains for a FIXED number of updates (not a time budget, so the
numbers do not depend on machine load) with the hyperparameters of :class:`agents.pipeline.RLSection`
(tuning there carries over here), and the final weights are evaluated on the test split.
``sb3-ppo`` is stock ``stable_baselines3.PPO`` with :class:`agents.sb3.LMActorCriticPolicy`, given
the same rollout size, epochs, learning rate and clipping as our PPO (``RLSection().ppo``), so one
update of either is one batch of ``num_envs x n_steps`` tokens.

Outputs under ``out``: ``scores_<method>.json`` (a ``seeds x tasks`` matrix of the test task
score), ``curves.json`` and ``curves_<metric>.png`` (validation task score and training reward
against updates), ``summary.md`` (IQM with a stratified-bootstrap 95% interval, per-family
mean +- std), and ``runs/`` (every pipeline run's own folder and report).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.pipeline import (
    DataConfig,
    EvalConfig,
    ModelConfig,
    PipelineConfig,
    ReasoningGymTask,
    RLSection,
    load_policy_model,
    rl_env_kwargs,
    run_pipeline,
    split_samples,
)
from agents.rl import ALGORITHMS, GRPO, ILQL, PPO, REINFORCE, RLOO, SOFT_Q
from benchmarks import q_methods
from benchmarks._common import commit_id, provenance, write_section
from benchmarks.stats import summarize
from instruct_env.error import ConfigError, unknown_name

__all__ = ["RL_METHODS", "SMALL_REASONING_GYM", "SMALL_UPDATES", "SuiteConfig", "run_suite", "quick_config", "method_name"]

#: RL methods the suite can run after SFT: every trainer of the algorithm table, Stable-Baselines3's PPO
#: (``sb3-ppo``) and DQN (``sb3-dqn``), and rejection-sampling fine-tuning (``rft``, ILQL's offline baseline).
RL_METHODS = (*ALGORITHMS, "sb3-ppo", "sb3-dqn", "rft")

#: reasoning-gym tasks of the small suite: small numbers, short answers, so a tiny model can learn part.
SMALL_REASONING_GYM = (
    ReasoningGymTask("basic_arithmetic", {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1,
                                          "operators": ["+", "-"], "allow_parentheses": False,
                                          "allow_negation": False}),
    ReasoningGymTask("gcd", {"min_numbers": 2, "max_numbers": 2, "min_value": 1, "max_value": 60}),
)


#: Fixed RL updates of the small suite. Each seed is one process (1 torch thread); with the seeds
#: run side by side on 2 cores the suite takes about an hour (the measured wall time is written with
#: the results). SB3-PPO's updates cost several times ours (it re-reads the whole observation at
#: every token and in every epoch), hence fewer of them.
SMALL_UPDATES = {PPO.name: 60, GRPO.name: 150, REINFORCE.name: 100, RLOO.name: 100, "sb3-ppo": 12,
                 # Q-learning: ILQL and RFT learn from GRPO's number of reward calls (samples of the SFT model);
                 # soft Q-learning and SB3-DQN roll out as many tokens per update as PPO.
                 ILQL.name: 300, "rft": 1, SOFT_Q.name: 60, "sb3-dqn": 12}


def method_name(method: str) -> str:
    """Display name of a method id: ``"sft+grpo"`` -> ``"SFT+GRPO"``."""
    return method if method == "zero-shot" else method.upper()


@dataclass
class SuiteConfig:
    """What the suite runs.

    Attributes:
        seeds: Training seeds (the data seed is fixed, so every seed is scored on the same test set).
        tasks: Built-in task families (``None``: all 12).
        reasoning_gym: reasoning-gym tasks added to them.
        rl_methods: RL methods, each trained from the seed's SFT model.
        updates: Fixed RL updates per method (``sb3-ppo``: PPO rollouts of ``num_envs x n_steps``).
        eval_checks: Validation checks per RL run (besides the one at update 0), for learning curves.
        keep_best: End RL with its best validation checkpoint (the pipeline's default) instead of the
            final weights. Off by default: the suite reports what a fixed number of updates produced.
        test_size_per_task: Test samples per family.
        val_size_per_task: Validation samples per family (learning curves).
        sft_time_budget_s: SFT's time limit (``None``: none, SFT ends by epochs or early stopping).
        threads: torch CPU threads (``None``: the pipeline's automatic choice).
        model: The model section (the cached default model unless changed).
        out: Output folder.
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    tasks: list[str] | None = None
    reasoning_gym: list[ReasoningGymTask] = field(default_factory=lambda: list(SMALL_REASONING_GYM))
    rl_methods: list[str] = field(default_factory=lambda: [PPO.name, GRPO.name, REINFORCE.name, "sb3-ppo",
                                                           ILQL.name, "rft", SOFT_Q.name, "sb3-dqn"])
    updates: dict[str, int] = field(default_factory=lambda: dict(SMALL_UPDATES))
    eval_checks: int = 5
    keep_best: bool = False
    test_size_per_task: int = 100
    val_size_per_task: int = 16
    sft_time_budget_s: float | None = None
    threads: int | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    out: str = "benchmarks/results/small"

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ConfigError(f"seeds must be distinct non-negative integers, at least one; got {self.seeds}.")
        for method in self.rl_methods:
            if method not in RL_METHODS:
                raise unknown_name("RL method", method, RL_METHODS)
            if self.updates.get(method, 0) < 1:
                raise ConfigError(f"updates[{method!r}] must be >= 1; got {self.updates.get(method)}. "
                                  f"Give every RL method a fixed number of updates.")
        if self.eval_checks < 1:
            raise ConfigError(f"eval_checks must be >= 1; got {self.eval_checks}.")

    @property
    def methods(self) -> list[str]:
        """Every scored method, in table order."""
        return ["zero-shot", "sft"] + [f"sft+{m}" for m in self.rl_methods]

    def pipeline_config(self, seed: int, out: Path, **changes: Any) -> PipelineConfig:
        """The pipeline configuration of one run (defaults everywhere else)."""
        data = DataConfig(tasks=self.tasks, reasoning_gym=list(self.reasoning_gym),
                          test_size_per_task=self.test_size_per_task, val_size_per_task=self.val_size_per_task)
        config = PipelineConfig(out=str(out), seed=seed, threads=self.threads, progress=False, data=data,
                                model=self.model, eval=EvalConfig(keep_best=self.keep_best))
        config.sft.time_budget_s = self.sft_time_budget_s
        return dataclasses.replace(config, **changes)

    def rl_section(self, algo: str) -> RLSection:
        """The pipeline's RL defaults for ``algo``, with a fixed number of updates instead of a time budget."""
        section = RLSection(algo=algo)
        updates = self.updates[algo]
        fixed = dataclasses.replace(section.selected, total_updates=updates, time_budget_s=None,
                                    eval_every=max(1, updates // self.eval_checks))
        if algo == ILQL.name:  # the reward calls are its offline samples only (no monitoring rollouts)
            fixed = dataclasses.replace(fixed, rollout_episodes=q_methods.offline_samples(self.updates),
                                        monitor_every=0)
        return dataclasses.replace(section, **{algo: fixed})


def quick_config(out: str) -> SuiteConfig:
    """A smoke-test configuration: one seed, two tasks, a tiny model, a few updates of every method."""
    from agents.common.model import DefaultModelConfig
    from agents.common.pretrain import PretrainConfig

    model = ModelConfig(default=DefaultModelConfig(n_layer=1, n_embd=32, n_head=2, n_positions=256),
                        pretrain=PretrainConfig(steps=5, batch_size=8, n_per_task=20, time_budget_s=None))
    return SuiteConfig(seeds=[0], tasks=["copy"], reasoning_gym=[SMALL_REASONING_GYM[1]],
                       rl_methods=[PPO.name, GRPO.name, REINFORCE.name, "sb3-ppo"],
                       updates={PPO.name: 2, GRPO.name: 2, REINFORCE.name: 2, "sb3-ppo": 2, RLOO.name: 2, ILQL.name: 2,
                                "rft": 1, SOFT_Q.name: 2, "sb3-dqn": 1}, eval_checks=1,
                       test_size_per_task=4, val_size_per_task=4, sft_time_budget_s=None, threads=1, model=model,
                       out=out)


# -- one seed ------------------------------------------------------------------------------------------


def _curve(metrics_file: Path) -> dict[str, list]:
    """Validation checks of an RL run: update, validation task score, training reward since the last check."""
    from agents.common.logging import read_metrics

    rows = [r for r in read_metrics(metrics_file) if r.get("stage") == "rl" and r.get("kind") == "eval"]
    return {"update": [int(r["step"]) for r in rows], "val_task": [float(r["task"]) for r in rows],
            "train_reward": [_number(r.get("train_reward")) for r in rows]}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan


def _nan_to_none(value: Any) -> Any:
    """Strict JSON: NaN (no training reward yet at update 0) becomes null."""
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def _per_task(result: Any) -> dict[str, float]:
    return {task: float(metrics["task"]) for task, metrics in result.per_task.items()}


def _run_sb3_ppo(suite: SuiteConfig, seed: int, sft_dir: Path, out: Path) -> tuple[dict[str, float], dict]:
    """Stock SB3 PPO from the SFT weights; returns per-task test scores and the learning curve."""
    import gymnasium as gym
    import numpy as np
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure

    import instruct_env  # noqa: F401  (registers the environments)
    from agents.common.device import configure_threads
    from agents.common.evaluation import evaluate
    from agents.pipeline import auto_threads
    from agents.sb3 import LMActorCriticPolicy
    from instruct_env.tasks import PromptFormatter

    config = suite.pipeline_config(seed, out, model=ModelConfig(name=str(sft_dir)))
    configure_threads(config.threads if config.threads is not None else auto_threads()[0])
    data, ppo = config.data, RLSection().ppo
    model, tokenizer, _ = load_policy_model(config)
    formatter = PromptFormatter(template=data.template)
    val = list(split_samples(data, "validation", data.val_size_per_task))
    test = list(split_samples(data, "test", data.test_size_per_task))

    def score(samples: list, split: str) -> Any:
        return evaluate(model, tokenizer, samples, formatter=formatter, max_prompt_tokens=data.max_prompt_tokens,
                        max_new_tokens=data.max_new_tokens, split=split, keep_records=False)

    updates = suite.updates["sb3-ppo"]
    every = max(1, updates // suite.eval_checks)
    curve: dict[str, list] = {"update": [0], "val_task": [score(val, "validation").overall["task"]],
                              "train_reward": [math.nan]}

    class Curve(BaseCallback):
        """Validation task score every ``every`` PPO updates and the mean episode reward since the last check."""

        def __init__(self) -> None:
            super().__init__()
            self.rollouts, self.rewards = 0, []

        def check(self) -> None:
            curve["update"].append(self.rollouts)
            curve["val_task"].append(score(val, "validation").overall["task"])
            curve["train_reward"].append(float(np.mean(self.rewards)) if self.rewards else math.nan)
            self.rewards = []

        def _on_step(self) -> bool:
            self.rewards += [info["episode"]["r"] for info in self.locals["infos"] if "episode" in info]
            return True

        def _on_rollout_start(self) -> None:  # SB3 has run ``self.rollouts`` updates so far
            if self.rollouts and self.rollouts % every == 0:
                self.check()

        def _on_rollout_end(self) -> None:
            self.rollouts += 1

    env_kwargs = {**rl_env_kwargs(data), "tokenizer": tokenizer, "max_new_tokens": data.max_new_tokens}
    env = make_vec_env(lambda: gym.make("InstructEnv/Token-v0", **env_kwargs), n_envs=ppo.num_envs, seed=seed)
    batch = ppo.num_envs * ppo.n_steps
    agent = PPO(LMActorCriticPolicy, env, n_steps=ppo.n_steps, batch_size=batch // ppo.num_minibatches,
                n_epochs=ppo.update_epochs, learning_rate=ppo.lr, gamma=ppo.gamma, gae_lambda=ppo.lam,
                clip_range=ppo.clip_range, ent_coef=ppo.ent_coef, vf_coef=ppo.vf_coef,
                max_grad_norm=math.inf if ppo.max_grad_norm is None else ppo.max_grad_norm,
                normalize_advantage=ppo.normalize_advantage, seed=seed, device=next(model.parameters()).device,
                policy_kwargs={"model": model, "tokenizer": tokenizer, "temperature": ppo.temperature})
    agent.set_logger(configure(str(out / "sb3_log"), ["csv"]))  # SB3 logs in the run folder, not the temp dir
    callback = Curve()
    agent.learn(total_timesteps=updates * batch, callback=callback)
    if curve["update"][-1] != updates:  # the final weights
        callback.check()
    env.close()
    return _per_task(score(test, "test")), curve


def _base_fingerprint(suite: SuiteConfig, seed: int) -> dict[str, Any]:
    """What a seed's zero-shot and SFT results depend on (besides the code)."""
    fields = dataclasses.asdict(suite)
    for name in ("seeds", "out", "threads", "rl_methods", "updates"):
        fields.pop(name)
    return json.loads(json.dumps({"seed": seed, **fields}, default=str))


def _sb3_settings(temperature: float | None = None) -> dict[str, Any]:
    """SB3-PPO's settings: our PPO's, sampling at our PPO's temperature (``temperature`` overrides it)."""
    ppo = dataclasses.asdict(RLSection().ppo)
    if temperature is not None:
        ppo["temperature"] = temperature
    return ppo


def _fingerprint(suite: SuiteConfig, seed: int, method: str = "sft", *, sb3_temperature: float | None = None
                 ) -> dict[str, Any]:
    """What one method's results for one seed depend on (besides the code): reused only when all of it matches.

    ``"sft"`` stands for the zero-shot and SFT results; an RL method's results also depend on its
    updates and settings (and on the SFT model they start from, which the saved record names).
    """
    base = _base_fingerprint(suite, seed)
    if method == "sft":
        return base
    algo = method.removeprefix("sft+")
    if algo in ("rft", "sb3-dqn"):
        settings = q_methods.settings(algo, suite.updates)
    else:
        settings = _sb3_settings(sb3_temperature) if algo == "sb3-ppo" else dataclasses.asdict(suite.rl_section(algo))
    return json.loads(json.dumps({**base, "method": algo, "updates": suite.updates[algo], "settings": settings},
                                 default=str))


def _legacy_fingerprint(suite: SuiteConfig, seed: int) -> dict[str, Any]:
    """The whole-seed fingerprint of ``seed_results.json`` files written before results were kept per method."""
    rl = {"rl_methods": suite.rl_methods, "updates": suite.updates, "rl": dataclasses.asdict(RLSection())}
    return {**_base_fingerprint(suite, seed), **json.loads(json.dumps(rl, default=str))}


def _load_results(suite: SuiteConfig, seed: int, runs: Path, log=print) -> dict[str, Any]:
    """The seed's saved per-method results (``results.json``), converting an older ``seed_results.json``."""
    path = runs / "results.json"
    if path.exists():
        return json.loads(path.read_text())
    legacy = runs / "seed_results.json"
    if not legacy.exists():
        return {}
    record = json.loads(legacy.read_text())
    if record.get("fingerprint") != _legacy_fingerprint(suite, seed):
        return {}
    # Those runs sampled SB3-PPO at temperature 1 (LMActorCriticPolicy's default then), whatever our PPO used.
    log(f"seed {seed}: converting {legacy} to per-method results")
    sft_id = "legacy"
    results: dict[str, Any] = {"sft": {"fingerprint": _fingerprint(suite, seed), "sft_id": sft_id,
                                       "model_dir": str(runs / "sft" / "model"),
                                       "scores": {m: record["scores"][m] for m in ("zero-shot", "sft")}}}
    for method, scores in record["scores"].items():
        if method in ("zero-shot", "sft"):
            continue
        results[method] = {"fingerprint": _fingerprint(suite, seed, method, sb3_temperature=1.0)
                           if method == "sft+sb3-ppo" else _fingerprint(suite, seed, method),
                           "sft_id": sft_id, "scores": scores, "curve": record["curves"].get(method)}
    return results


def run_seed(suite: SuiteConfig, seed: int, log=print,
             reused: list[tuple[int, str]] | None = None) -> tuple[dict[str, dict[str, float]], dict[str, dict]]:
    """All methods for one seed: ``({method: {task: score}}, {method: curve})``.

    Each method's results are saved in ``runs/seed<N>/results.json`` with what they depend on, and
    reused by a later run where that matches: seeds can run as separate processes (``--seeds 0``,
    ``--seeds 1``, ... with the same ``--out``) and be merged by one run over all of them, and a
    change to one method's settings re-runs that method only (from the same SFT model). Reused
    results are appended to ``reused`` as ``(seed, method)``.
    """
    runs = Path(suite.out) / "runs" / f"seed{seed}"
    runs.mkdir(parents=True, exist_ok=True)
    results = _load_results(suite, seed, runs, log)

    def save() -> None:
        tmp = runs / "results.json.tmp"
        tmp.write_text(json.dumps(_nan_to_none(results), indent=1))
        tmp.replace(runs / "results.json")

    def fresh(folder: Path) -> Path:
        """The run folder of a result being (re)computed: what an earlier run left there is superseded."""
        if folder.exists():
            log(f"seed {seed}: removing {folder} (superseded)")
            shutil.rmtree(folder)
        return folder

    sft_entry = results.get("sft")
    needed = [f"sft+{algo}" for algo in suite.rl_methods
              if not (method_entry := results.get(f"sft+{algo}"))
              or method_entry["fingerprint"] != _fingerprint(suite, seed, f"sft+{algo}")
              or sft_entry is None or method_entry.get("sft_id") != sft_entry.get("sft_id")]
    sft_usable = sft_entry is not None and sft_entry["fingerprint"] == _fingerprint(suite, seed) and \
        (not needed or Path(sft_entry["model_dir"]).is_dir())
    if not sft_usable:
        if sft_entry is not None:
            log(f"seed {seed}: the saved SFT results have other settings (or lost their model); running SFT again")
        start = time.perf_counter()
        sft = run_pipeline(suite.pipeline_config(seed, fresh(runs / "sft")), stages=("sft",),
                           command="python -m benchmarks run")
        results = {"sft": {"fingerprint": _fingerprint(suite, seed), "sft_id": uuid.uuid4().hex[:12],
                           "model_dir": str(sft.model_dir),
                           "scores": {"zero-shot": _per_task(sft.results["zero-shot"]),
                                      "sft": _per_task(sft.results["SFT"])}}}
        save()
        log(f"seed {seed}: zero-shot and SFT done in {time.perf_counter() - start:.0f} s")
        needed = [f"sft+{algo}" for algo in suite.rl_methods]  # every RL result starts from this SFT model
    elif reused is not None:
        reused += [(seed, "zero-shot"), (seed, "sft")]
    sft_entry, model_dir = results["sft"], Path(results["sft"]["model_dir"])
    for algo in suite.rl_methods:
        method = f"sft+{algo}"
        if method not in needed:
            log(f"seed {seed}: reusing the saved {method} results (same settings, same SFT model)")
            if reused is not None:
                reused.append((seed, method))
            continue
        start = time.perf_counter()
        if algo == "sb3-ppo":
            scores, curve = _run_sb3_ppo(suite, seed, model_dir, fresh(runs / algo))
        elif algo in ("rft", "sb3-dqn"):
            scores, curve = q_methods.run_method(suite, seed, algo, model_dir, fresh(runs / algo))
        else:
            config = suite.pipeline_config(seed, fresh(runs / algo), model=ModelConfig(name=str(model_dir)),
                                           rl=suite.rl_section(algo))
            result = run_pipeline(config, stages=("rl",), command="python -m benchmarks run")
            scores, curve = _per_task(result.results["RL"]), _curve(result.metrics)
        results[method] = {"fingerprint": _fingerprint(suite, seed, method), "sft_id": sft_entry["sft_id"],
                           "scores": scores, "curve": curve}
        save()
        log(f"seed {seed}: SFT+{algo} ({suite.updates[algo]} updates) done in {time.perf_counter() - start:.0f} s")
    scores = dict(results["sft"]["scores"])
    curves = {}
    for algo in suite.rl_methods:
        entry = results[f"sft+{algo}"]
        scores[f"sft+{algo}"] = entry["scores"]
        curves[f"sft+{algo}"] = {k: [math.nan if v is None else v for v in vs] for k, vs in entry["curve"].items()}
    return scores, curves


# -- outputs -------------------------------------------------------------------------------------------


def machine() -> str:
    """CPU count and kind, and the torch threads in use."""
    import torch

    return (f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
            f"{torch.get_num_threads()} torch thread(s), Python {platform.python_version()}")


def write_scores(out: Path, method: str, seeds: list[int], tasks: list[str], matrix: list[list[float]],
                 tags: dict[str, str]) -> Path:
    """``scores_<method>.json``: the ``seeds x tasks`` matrix of test task scores and its provenance."""
    path = out / f"scores_{method.replace('+', '_').replace('-', '_')}.json"
    path.write_text(json.dumps({"method": method, "metric": "task (test split)", "seeds": seeds, "tasks": tasks,
                                "scores": matrix, **tags}, indent=1))
    return path


def plot_curves(curves: dict[str, list[dict]], out: Path) -> dict[str, Path]:
    """``curves_<metric>.png``: per method, the mean over seeds (bold) and each seed (faint)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    written = {}
    for metric, label in (("val_task", "validation task score"), ("train_reward", "training reward")):
        fig, ax = plt.subplots(figsize=(6.0, 3.8), dpi=100)
        for i, (method, runs) in enumerate(curves.items()):
            color = f"C{i}"
            for run in runs:
                ax.plot(run["update"], run[metric], color=color, alpha=0.25, linewidth=0.8)
            length = min(len(run["update"]) for run in runs)
            with warnings.catch_warnings():  # update 0 has no training reward yet: an all-NaN column
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean([run[metric][:length] for run in runs], axis=0) if length else []
            ax.plot(runs[0]["update"][:length], mean, color=color, linewidth=2.0, label=method_name(method),
                    marker="o", markersize=3)
        ax.set_xlabel("RL update")
        ax.set_ylabel(label)
        ax.set_title(f"{label} (mean over seeds; faint: each seed)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"curves_{metric}.png"
        fig.savefig(path)
        plt.close(fig)
        written[metric] = path
    return written


def summary_table(summaries: dict[str, Any], tasks: list[str]) -> str:
    """The Markdown tables: IQM, 95% CI and mean per method; per-family mean +- std over seeds."""
    lines = ["| method | IQM | 95% CI | mean |", "|---|---:|---|---:|"]
    for method, s in summaries.items():
        lines.append(f"| {method_name(method)} | {s.iqm:.3f} | [{s.ci[0]:.3f}, {s.ci[1]:.3f}] | {s.mean:.3f} |")
    lines += ["", "| family | " + " | ".join(method_name(m) for m in summaries) + " |",
              "|---|" + "---:|" * len(summaries)]
    for j, task in enumerate(tasks):
        cells = [f"{s.task_mean[j]:.3f} ± {s.task_std[j]:.3f}" for s in summaries.values()]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(matrices: dict[str, list[list[float]]], tasks: list[str], seeds: list[int]) -> str:
    """Each RL method against SFT on the same seed: per-seed means over families and their differences.

    Every RL run of a seed starts from that seed's SFT model and is scored on the same test set, so
    the per-seed difference is the effect of RL alone.
    """
    import numpy as np

    sft = np.asarray(matrices["sft"], dtype=float)  # (seeds, tasks)
    lines = ["| method | " + " | ".join(f"seed {s}: SFT -> SFT+RL" for s in seeds)
             + " | mean difference ± std over seeds | seeds improved | families improved (mean over seeds) |",
             "|---|" + "---|" * len(seeds) + "---:|---:|---:|"]
    for method, matrix in matrices.items():
        if not method.startswith("sft+"):
            continue
        rl = np.asarray(matrix, dtype=float)
        diff = rl.mean(axis=1) - sft.mean(axis=1)  # (seeds,)
        spread = diff.std(ddof=1) if len(diff) > 1 else 0.0
        per_family = (rl - sft).mean(axis=0)  # (tasks,)
        cells = [f"{a:.3f} -> {b:.3f}" for a, b in zip(sft.mean(axis=1), rl.mean(axis=1))]
        lines.append(f"| {method_name(method)} | " + " | ".join(cells) + f" | {diff.mean():+.3f} ± {spread:.3f} | "
                     f"{int((diff > 0).sum())}/{len(diff)} | {int((per_family > 0).sum())}/{len(tasks)} |")
    return "\n".join(lines)


def run_suite(suite: SuiteConfig, *, readme: bool = True, command: str = "python -m benchmarks run --suite small",
              log=print) -> dict[str, Path]:
    """Run every seed and method, write the outputs (and the README section); returns ``name -> path``."""
    out = Path(suite.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    reused: list[tuple[int, str]] = []
    per_seed = [run_seed(suite, seed, log=log, reused=reused) for seed in suite.seeds]
    wall = time.perf_counter() - start
    tasks = list(per_seed[0][0]["sft"])
    tags = {"commit": commit_id(), "machine": machine(), "command": command, "date": time.strftime("%Y-%m-%d")}
    written: dict[str, Path] = {}
    summaries, matrices = {}, {}
    for method in suite.methods:
        matrix = [[scores[method][t] for t in tasks] for scores, _ in per_seed]
        written[f"scores_{method}"] = write_scores(out, method, list(suite.seeds), tasks, matrix, tags)
        summaries[method], matrices[method] = summarize(matrix), matrix
    curves = {m: [c[m] for _, c in per_seed] for m in suite.methods if m in per_seed[0][1]}
    (out / "curves.json").write_text(json.dumps(_nan_to_none(curves), indent=1))
    written["curves"] = out / "curves.json"
    if curves:
        written.update({f"curves_{k}": v for k, v in plot_curves(curves, out).items()})
    body = _summary_body(suite, summaries, tasks, wall, command, paired_table(matrices, tasks, list(suite.seeds)),
                         reused)
    (out / "summary.md").write_text(f"# Quality suite\n\n{body}\n")
    written["summary"] = out / "summary.md"
    if readme:
        write_section("Quality suite (small)", body)
    log(f"suite done in {wall:.0f} s; summary: {out / 'summary.md'}")
    return written


def _summary_body(suite: SuiteConfig, summaries: dict, tasks: list[str], wall: float, command: str,
                  paired: str, reused: list[tuple[int, str]] | None = None) -> str:
    by_seed: dict[int, list[str]] = {}
    for seed, method in reused or []:
        by_seed.setdefault(seed, []).append(method_name(method))
    reused_text = "; ".join(f"seed {seed}: {', '.join(names)}" for seed, names in by_seed.items())
    updates = ", ".join(f"{method_name('sft+' + m)} {suite.updates[m]}" for m in suite.rl_methods)
    rl = RLSection()
    sizes = (f"one update is one batch: PPO and SB3-PPO {rl.ppo.num_envs} envs x {rl.ppo.n_steps} tokens, GRPO "
             f"{rl.grpo.num_envs} completions ({rl.grpo.num_envs // rl.grpo.group_size} prompts x {rl.grpo.group_size}), "
             f"REINFORCE {rl.reinforce.num_envs} completions, RLOO {rl.rloo.num_envs} completions")
    rg = ", ".join(f"`{t.name}` ({', '.join(f'{k}={v}' for k, v in t.options.items())})" for t in suite.reasoning_gym)
    return (
        f"Test-split task score (each family's verifier, partial credit; {suite.test_size_per_task} samples per "
        f"family, greedy decoding) of each method over seeds {suite.seeds} and {len(tasks)} task families "
        f"({'the 12 built-in families' if suite.tasks is None else 'built-in ' + ', '.join(suite.tasks)}"
        f"{' and reasoning-gym ' + rg if rg else ''}). IQM: interquartile mean of all seed x task "
        f"scores; 95% CI: stratified bootstrap (seeds resampled within each task, 2000 resamples).\n\n"
        f"Every RL method starts from the same seed's SFT model and runs a fixed number of updates ({updates}; "
        f"{sizes}) with "
        f"the pipeline's default hyperparameters; the {'best validation checkpoint' if suite.keep_best else 'final weights'}"
        f" are scored. SB3-PPO is stock Stable-Baselines3 PPO with `LMActorCriticPolicy` and our PPO's rollout size, "
        f"optimisation settings and sampling temperature ({rl.ppo.temperature:g}).\n\n"
        + summary_table(summaries, tasks)
        + "\n\nRL against SFT, seed by seed (mean test task score over the families; every RL run of a seed starts "
        "from that seed's SFT model):\n\n" + paired
        + f"\n\nLearning curves: `curves_val_task.png`, `curves_train_reward.png` in `{suite.out}`; "
        f"score matrices: `scores_<method>.json`.\n\n"
        f"Command: `{command}`. Wall time {wall / 60:.1f} min"
        + (f" (results saved by earlier runs with the same settings were reused, their time not included: "
           f"{reused_text})" if reused else "")
        + f". Measured on {provenance()}."
    )
