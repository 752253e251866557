"""Orchestration of the main job: load the model, run the stages, evaluate, save, write the report.

See :mod:`agents.pipeline` for what a run writes and how long it takes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from agents.pipeline.config import PipelineConfig
from agents.pipeline.data import rl_env_kwargs, split_samples
from instruct_env.error import ConfigError, unknown_name

__all__ = ["STAGES", "PipelineResult", "run_pipeline", "load_policy_model", "auto_threads"]

logger = logging.getLogger(__name__)

#: Training stages, in the order they run.
STAGES = ("sft", "rl")


@dataclass
class PipelineResult:
    """Where a run's outputs are, and its held-out numbers.

    Attributes:
        out_dir: The run folder.
        report: ``report.md``; ``metrics``: ``metrics.jsonl``; ``plots``: name -> PNG.
        results: ``stage -> EvalResult`` on the test split.
        model_dir: The saved final model (``None`` for ``eval`` runs).
        wall_time_s: Seconds from start to report.
        stage_seconds: Seconds per part of the run.
    """

    out_dir: Path
    report: Path
    metrics: Path
    plots: dict[str, Path]
    results: dict[str, Any]
    model_dir: Path | None
    wall_time_s: float
    stage_seconds: dict[str, float]
    warnings: list[str] = field(default_factory=list)


def _out_dir(config: PipelineConfig) -> Path:
    if config.out:
        path = Path(config.out)
        if (path / "metrics.jsonl").exists():
            raise ConfigError(
                f"The output folder {str(path)!r} already holds a run (metrics.jsonl); its records would mix with "
                "this run's. Choose another --out, or delete that folder."
            )
    else:
        path = Path("runs") / (config.name or datetime.now().strftime("%Y%m%d-%H%M%S"))
        base, n = path, 1
        while path.exists() and any(path.iterdir()):
            n += 1
            path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_policy_model(config: PipelineConfig, run_logger: Any = None):
    """Load ``config.model`` and its tokenizer; returns ``(model, tokenizer, pretrain_info or None)``."""
    from agents.common.device import select_device
    from agents.common.model import load_model

    device = select_device(config.device)
    if config.model.name is None:
        from agents.common.pretrain import pretrained_default_model
        from instruct_env.tokenizer import builtin_tokenizer

        tokenizer: Any = builtin_tokenizer()  # or a Hugging Face tokenizer below
        model, info = pretrained_default_model(tokenizer, config.model.default, config.model.pretrain,
                                               device=device, run_logger=run_logger)
        return model, tokenizer, info
    from transformers import AutoTokenizer

    from agents.common.model import check_local_path

    check_local_path(config.model.name)  # a misspelled folder: say so now, not after a hub look-up
    tokenizer = AutoTokenizer.from_pretrained(config.model.name)
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"The tokenizer of {config.model.name!r} has no EOS token; answers could never end.")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # our own fresh copy, nobody else holds it
    model = load_model(config.model.name, kind=config.model.kind).to(device)
    pretrain_info = None
    info_file = Path(config.model.name) / "pretrain_info.json"
    if info_file.exists():  # a model saved by an earlier run keeps its pre-training note
        pretrain_info = json.loads(info_file.read_text())
    return model, tokenizer, pretrain_info


def auto_threads(idle: float | None = None) -> tuple[int, str]:
    """Threads for torch when none are configured, and why (see :attr:`PipelineConfig.threads`).

    Args:
        idle: Idle cores (default: measured now with :func:`~agents.common.device.idle_cores`).
    """
    import os

    from agents.common.device import idle_cores, usable_cores

    if os.environ.get("INSTRUCT_ENV_THREADS"):
        return int(os.environ["INSTRUCT_ENV_THREADS"]), "set by $INSTRUCT_ENV_THREADS"
    # Processes of one data-parallel run on this machine share its cores.
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cores = max(1, usable_cores() // local)
    idle = idle_cores() if idle is None else idle
    if idle is None:
        return cores, f"all {cores} usable core(s); idle cores could not be measured here"
    threads = max(1, min(cores, round(idle / local)))
    return threads, (f"{idle:.1f} of {usable_cores()} usable cores were idle at start"
                     + (f", shared by {local} local processes" if local > 1 else ""))


class _Run:
    """One run's shared state: config, folder, logger, data, model, results."""

    def __init__(self, config: PipelineConfig, stages: Sequence[str], resume: str | Path | None = None) -> None:
        from agents.common import distributed as dist
        from agents.common.config import save_yaml
        from agents.common.device import configure_threads
        from agents.common.interrupt import StopSignals
        from agents.common.logging import RunLogger
        from instruct_env.tasks import PromptFormatter

        for stage in stages:
            if stage not in STAGES:
                raise unknown_name("pipeline stage", stage, STAGES)
        self.start = time.perf_counter()
        self.config = config
        self.stages = [s for s in STAGES if s in stages]
        self.threads, self.threads_why = ((config.threads, "set by threads/--threads") if config.threads is not None
                                          else auto_threads())
        configure_threads(self.threads)
        logger.info("torch uses %d CPU thread(s): %s.", self.threads, self.threads_why)
        # Data parallel (torchrun): rank 0 picks the folder and is the only rank that writes in it.
        self.stop = StopSignals()  # SIGINT / SIGTERM: checkpoint between RL updates, see run_pipeline
        self.resumed = _resume_state(Path(resume), self.stages) if resume is not None else None
        self.last_checkpoint = time.perf_counter()
        if resume is not None:
            self.out = Path(resume)
        else:
            # Rank 0's folder on every rank (the other ranks send None, which the broadcast replaces).
            self.out = cast(Path, dist.broadcast_object(_out_dir(config) if dist.is_main() else None))
        if dist.is_main() and resume is None:
            save_yaml(config, self.out / "config.yaml")
        if dist.is_main() and self.resumed is not None:
            _drop_unfinished_records(self.out / "metrics.jsonl", self.resumed)
        self.log = RunLogger(self.out, rank=dist.rank(), progress=config.progress)
        self.seconds: dict[str, float] = {}
        self.warnings: list[str] = []
        self.sections: dict[str, str] = {}
        self.results: dict[str, Any] = {}
        self.rl_training: dict[str, Any] | None = None  # training-reward summary of a (non-feedback) RL stage
        self.done: list[str] = []  # stages finished (and evaluated)
        self.interrupted_at: str | None = None
        self.model: Any = None
        self.tokenizer: Any = None
        data = config.data
        demos = split_samples(data, "train", data.train_size_per_task) \
            if data.num_shots else None
        self.formatter = PromptFormatter(template=data.template, use_chat_template=data.use_chat_template,
                                         num_shots=data.num_shots, demonstrations=demos)
        self.test = list(split_samples(data, "test", data.test_size_per_task))
        self.val = list(split_samples(data, "validation", data.val_size_per_task))
        #: The validation metric RL keeps the best weights by, and the metrics' options (see _check_own_data).
        self.metric, self.metric_options = config.eval.metric, dict(config.eval.metric_options)
        if data.dataset is not None:
            self._check_own_data(data.dataset)

    def _check_own_data(self, dataset: str) -> None:
        """Say how ``data.dataset`` was split and which reward RL uses; refuse to score trained inputs."""
        from agents.common.own_data import effective_reward, load_own_data
        from instruct_env.envs.core import auto_reward
        from instruct_env.tasks.splits import check_disjoint

        data = self.config.data
        own = load_own_data(dataset, data.fields, data.split_column)
        train = own.splits["train"]
        check_disjoint(train, self.test, f"the test split of {data.dataset!r}")
        check_disjoint(train, self.val, f"the validation split of {data.dataset!r}")
        lines = [own.describe() + "."]
        if self.config.eval.metric == "task" and getattr(self.val[0], "verifier", None) is None:
            # No task verifier to score with: validate on ROUGE-L, told how to split the data's script.
            reward, why = auto_reward(train)
            self.metric = "rougeL"
            if isinstance(reward, dict) and "rougeL" not in self.metric_options:
                self.metric_options["rougeL"] = dict(reward["rougeL"])
            lines.append(f"Validation metric rougeL{' (tokenizer=cjk)' if isinstance(reward, dict) else ''} instead "
                         f"of eval.metric='task': the samples have no task verifier ({why}).")
        if "rl" in self.stages:
            reward, note = effective_reward(data.reward, train)
            lines.append((note or f"RL reward {reward!r} (data.reward)") + ".")
        name = self.config.model.name
        trained = Path(name) / "trained_inputs.json" if name else None
        if trained is not None and trained.is_file():  # a model saved by an earlier run on this data
            check_disjoint(set(json.loads(trained.read_text())), self.test,
                           f"the test split of {data.dataset!r} (the model {name!r} was trained on them)")
            lines.append(f"None of the test inputs is among the {name!r} model's training inputs.")
        for line in lines:
            logger.info("%s", line)
        self.sections["Data"] = " ".join(lines)

    def timed(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    # -- checkpoints and resuming ------------------------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoint"

    def save_state(self, model: Any = None, rl: Any = "keep") -> None:
        """Write what a resumed run needs besides the RL trainer's own checkpoint (rank 0 only).

        ``checkpoint/pipeline.pkl`` holds the finished stages, their results and report sections;
        ``checkpoint/weights.pt`` the model after the last finished stage (given as ``model``);
        ``rl`` is the RL stage's own state (best-checkpoint tracker, rewards since the last check);
        ``"keep"`` keeps the one saved before (if any).
        """
        import pickle

        import torch

        from agents.common import distributed as dist

        if not dist.is_main():
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if isinstance(rl, str):  # "keep"
            rl = None
            if (self.checkpoint_dir / "pipeline.pkl").exists():
                with open(self.checkpoint_dir / "pipeline.pkl", "rb") as fh:
                    rl = pickle.load(fh).get("rl")
        if model is not None:
            torch.save(model.state_dict(), self.checkpoint_dir / "weights.pt")
        state = {"stages": self.stages, "done": list(self.done), "results": self.results, "sections": self.sections,
                 "seconds": self.seconds, "warnings": self.warnings, "rl": rl,
                 "finished": self.done == self.stages}
        tmp = self.checkpoint_dir / "pipeline.pkl.tmp"
        with open(tmp, "wb") as fh:
            pickle.dump(state, fh)
        tmp.replace(self.checkpoint_dir / "pipeline.pkl")
        self.last_checkpoint = time.perf_counter()

    def restore(self, model: Any, state: dict[str, Any]) -> None:
        """Take up a resumed run's finished stages (and their model weights)."""
        import torch

        self.done, self.results = list(state["done"]), dict(state["results"])
        self.sections, self.seconds, self.warnings = dict(state["sections"]), dict(state["seconds"]), \
            list(state["warnings"])
        if (self.checkpoint_dir / "weights.pt").exists():
            model.load_state_dict(torch.load(self.checkpoint_dir / "weights.pt", map_location="cpu"))
        logger.info("Resuming %s: finished stages %s; %s.", self.out, ", ".join(self.done) or "none",
                    f"RL continues from its checkpoint at update {state['rl']['updates']}" if state.get("rl")
                    else "the next stage starts from its beginning")

    def checkpoint_due(self, update: int) -> bool:
        """Whether ``checkpoint_every`` / ``checkpoint_minutes`` ask for a checkpoint after ``update``."""
        every, minutes = self.config.checkpoint_every, self.config.checkpoint_minutes
        return bool(every and update % every == 0) or \
            (minutes is not None and time.perf_counter() - self.last_checkpoint >= 60 * minutes)

    def evaluate(self, model: Any, tokenizer: Any, samples: list, split: str, desc: str):
        from agents.common.evaluation import evaluate

        return evaluate(model, tokenizer, samples, formatter=self.formatter,
                        max_prompt_tokens=self.config.data.max_prompt_tokens,
                        max_new_tokens=self.config.data.max_new_tokens, batch_size=self.config.eval.batch_size,
                        split=split, progress=lambda it: self.log.progress(it, desc=desc, unit="batch"),
                        metric_options=self.metric_options)

    def test_eval(self, stage: str, model: Any, tokenizer: Any) -> None:
        start = time.perf_counter()
        result = self.evaluate(model, tokenizer, self.test, "test", f"test eval ({stage})")
        self.results[stage] = result
        self.log.log(result.flat(), step=0, stage=f"test/{stage}", kind="eval")
        self.timed("evaluation", time.perf_counter() - start)
        logger.info("%s on test: task %.3f, exact match %.3f", stage, result.overall["task"],
                    result.overall["exact_match"])


def _run_sft(run: _Run, model: Any, tokenizer: Any) -> None:
    from agents.common.report import sft_section
    from agents.sft import SFTTrainer

    sft_config, _ = run.config.stage_configs()
    start = time.perf_counter()
    data = run.config.data
    own_data = {}
    if data.reasoning_gym or data.dataset:  # the trainer's own data is the built-in suite only
        own_data = {"train_data": split_samples(data, "train", sft_config.num_examples, seed=sft_config.seed),
                    "val_data": split_samples(data, "validation", sft_config.val_examples, seed=sft_config.seed)}
    trainer = SFTTrainer(model, tokenizer, sft_config, tasks=data.tasks, formatter=run.formatter,
                         run_logger=run.log, **own_data)
    result = trainer.train()
    run.timed("sft", time.perf_counter() - start)
    run.warnings.extend(result.notes)
    run.sections["SFT"] = sft_section(result, sft_config.num_examples)


class _RLStage:
    """One RL stage with the automatic reward: the trainer, its validation checks, checkpoints and summary.

    The trainer calls :meth:`on_update` after every update and :meth:`validate` every
    ``eval_every`` updates; each check feeds the tracker that keeps the best weights.
    """

    def __init__(self, run: _Run, policy: Any, tokenizer: Any, rl_config: Any) -> None:
        from agents.common.evaluation import HeldOutTracker
        from agents.rl import make_trainer

        self.run, self.policy, self.tokenizer, self.rl_config = run, policy, tokenizer, rl_config
        self.algo, self.metric = run.config.rl.algo, run.metric
        self.tracker = HeldOutTracker(self.metric)
        self.rewards_since_eval: list[float] = []
        self.trainer: Any = None
        self.env_kwargs = rl_env_kwargs(run.config.data)
        budget = rl_config.time_budget_s
        self.progress = run.log.progress(total=rl_config.total_updates if budget is None else None,
                                         desc=f"RL ({self.algo}, {budget:.0f} s)" if budget else f"RL ({self.algo})",
                                         unit="update")
        self.trainer = make_trainer(self.algo, rl_config, policy, tokenizer, self.env_kwargs,
                                    log_fn=self.on_update, eval_fn=self.validate)

    def decoding(self, policy: Any) -> Any:
        """What is evaluated, kept and returned: the LM, or ILQL's decoding (the LM perturbed by its Q and V heads)."""
        trainer = self.trainer
        return trainer.decoder() if trainer is not None and hasattr(trainer, "decoder") else policy.lm

    def validate(self, policy: Any) -> dict[str, float]:
        """The validation check: ``val_<metric>`` of the current decoding."""
        result = self.run.evaluate(self.decoding(policy), self.tokenizer, self.run.val, "validation",
                                   "validation check")
        return {f"val_{m}": result.overall[m] for m in dict.fromkeys(("task", "exact_match", "length", self.metric))}

    def on_update(self, metrics: dict[str, Any]) -> None:
        """Log an update; record a validation check; checkpoint when due; stop here on a signal."""
        import numpy as np

        run, step = self.run, int(metrics["update"])
        train = {k: v for k, v in metrics.items() if not k.startswith("val_") and k != "update"}
        run.log.log(train, step=step, stage="rl")
        self.rewards_since_eval.append(float(metrics.get("reward_mean", math.nan)))
        self.progress.update(1)
        self.progress.set_postfix(reward=f"{metrics.get('reward_mean', math.nan):.3f}")
        if f"val_{self.metric}" in metrics:
            self.check(step, metrics, float(np.nanmean(self.rewards_since_eval)))
            self.rewards_since_eval.clear()
        if run.checkpoint_due(step):
            self.save_checkpoint()
        run.stop.check()  # SIGINT/SIGTERM during this update: stop here, between updates

    def save_checkpoint(self) -> None:
        """The trainer's own checkpoint and the stage's state (tracker, rewards since the last check)."""
        self.trainer.save(self.run.checkpoint_dir / "rl")
        self.run.save_state(rl={"tracker": self.tracker, "rewards_since_eval": list(self.rewards_since_eval),
                                "updates": self.trainer.num_updates})

    def check(self, step: int, values: dict[str, Any], train_reward: float | None) -> None:
        """Log a validation check and let the tracker keep the weights if they are the best so far."""
        self.run.log.log({"task": values["val_task"], "exact_match": values["val_exact_match"],
                          "length": values["val_length"], "train_reward": train_reward},
                         step=step, stage="rl", kind="eval")
        self.tracker.update(step, float(values[f"val_{self.metric}"]), train_reward,
                            model=self.decoding(self.policy) if self.run.config.eval.keep_best else None)

    def begin(self) -> None:
        """Continue an interrupted stage from its checkpoint, or check the starting point."""
        run = self.run
        resumed = run.resumed.get("rl") if run.resumed is not None else None
        if resumed is not None:  # continue the interrupted stage from its checkpoint: weights, optimizer, RNGs, env
            self.trainer.load_state(run.checkpoint_dir / "rl")
            self.tracker.__dict__.update(resumed["tracker"].__dict__)
            self.rewards_since_eval[:] = resumed["rewards_since_eval"]
            self.progress.update(self.trainer.num_updates)
        else:
            # The starting point counts for the best checkpoint (checked once the trainer exists: ILQL's decoding
            # needs its heads, which start near zero, so it starts close to the SFT model).
            self.check(0, self.validate(self.policy), None)

    def train(self) -> list[dict[str, Any]]:
        """Train until the budget ends; on a signal, checkpoint and re-raise."""
        from agents.common.interrupt import Interrupted

        try:
            with self.run.stop.deferred():  # a signal lets the current update finish, then on_update stops the run
                return self.trainer.train()
        except Interrupted:
            self.save_checkpoint()
            self.run.interrupted_at = f"after RL update {self.trainer.num_updates}"
            raise
        finally:
            self.progress.close()

    def keep_best(self, history: list[dict[str, Any]]) -> bool:
        """Check the final weights (if the last update did not), then restore the best ones (``eval.keep_best``)."""
        import numpy as np

        from agents.common.report import kept_starting_model_warning

        tracker, updates = self.tracker, self.trainer.num_updates
        if history and f"val_{self.metric}" not in history[-1]:  # a last check on the final weights
            self.check(updates, self.validate(self.policy), float(np.nanmean(self.rewards_since_eval)))
        restored = bool(self.run.config.eval.keep_best and tracker.best_step != updates
                        and tracker.restore_best(self.decoding(self.policy)))
        if restored and tracker.best_step == 0:
            message = kept_starting_model_warning(self.metric, tracker.best_value, updates)
            logger.warning(message)
            self.run.warnings.append(message)
        return restored

    def summarize(self, history: list[dict[str, Any]], restored: bool) -> None:
        """Hand the training rewards to the report: ``run.rl_training`` and the RL section."""
        from agents.common.report import rl_section, rl_stop_reason, window_means

        run, trainer, rl_config = self.run, self.trainer, self.rl_config
        rewards = [h.get("reward_mean", math.nan) for h in history]
        families = sorted({k.split("/", 1)[1] for h in history for k in h if k.startswith("reward/")})
        training = {
            "reward": self.env_kwargs["reward"],
            "updates": trainer.num_updates,
            "train": window_means(rewards),
            "per_family": {f: window_means([h.get(f"reward/{f}", math.nan) for h in history]) for f in families},
        }
        run.rl_training = training
        stopped_by = rl_stop_reason(self.algo, trainer.num_updates, rl_config.total_updates, rl_config.time_budget_s)
        logger.info("RL ran %d updates: %s.", trainer.num_updates, stopped_by)
        run.sections["RL"] = rl_section(
            algo=self.algo, updates=trainer.num_updates, stopped_by=stopped_by, elapsed_s=trainer.elapsed,
            reward_name=training["reward"], train=training["train"], metric=self.metric, val_samples=len(run.val),
            eval_every=rl_config.eval_every, best_value=self.tracker.best_value, best_step=self.tracker.best_step,
            restored=restored)


def _run_rl(run: _Run, model: Any, tokenizer: Any) -> Any:
    """RL from ``model`` (trained in place); returns the trained policy's language model."""
    from agents.common.model import ActorCritic

    _, rl_config = run.config.stage_configs()
    policy = ActorCritic(model)
    policy.freeze_reference()  # the KL reference is the model RL starts from (the SFT model)
    if run.config.feedback.mode:
        return _run_feedback_rl(run, policy, tokenizer, rl_config)
    start = time.perf_counter()
    stage = _RLStage(run, policy, tokenizer, rl_config)
    stage.begin()
    history = stage.train()
    restored = stage.keep_best(history)
    run.timed("rl", time.perf_counter() - start)
    run.warnings.extend(stage.tracker.warnings)
    stage.summarize(history, restored)
    return stage.decoding(policy)


def _run_feedback_rl(run: _Run, policy: Any, tokenizer: Any, rl_config: Any):
    """The RL stage with rewards from (simulated) people: alternate feedback and RL rounds."""
    from agents.common.report import feedback_rounds_section
    from agents.feedback_loop import run_feedback_loop

    cfg, fb = run.config, run.config.feedback
    data = cfg.data
    train = split_samples(data, "train", data.train_size_per_task)
    start = time.perf_counter()
    # The loop section carries feedback.rounds, feedback.mode, feedback.store and rl.algo (see FeedbackSection).
    records = run_feedback_loop(
        policy, tokenizer, config=fb.loop, rl_config=rl_config, train_data=train, val_data=run.val,
        workdir=run.out / "feedback",
        log_fn=lambda record: run.log.log(record, step=int(record.get("round", 0)), stage="feedback"),
    )
    run.timed("rl (feedback rounds)", time.perf_counter() - start)
    run.sections["Feedback rounds"] = feedback_rounds_section(
        records, mode=fb.mode, algo=cfg.rl.algo, direct=fb.loop.rl_reward == "direct", direct_kind=fb.loop.direct_kind)
    return policy.lm


def _save_interrupted(run: _Run, exc: Any, command: str) -> None:
    """After a SIGINT/SIGTERM: the state to resume from, the model so far and the report so far."""
    from agents.common import distributed as dist
    from agents.common.config import to_dict
    from agents.common.report import interrupted_message, write_report

    exc.out = run.out
    exc.where = run.interrupted_at or "during " + next(
        (s.upper() for s in run.stages if s not in run.done), "the evaluation")
    if not dist.is_main():
        return
    run.save_state()  # finished stages and results; an RL checkpoint written before is kept
    if run.model is not None:
        _merged(run.model, copy_first=True).save_pretrained(run.out / "model")
        run.tokenizer.save_pretrained(run.out / "model")
    message = interrupted_message(signal_name=exc.signal_name, where=exc.where, subcommand=_subcommand(run.stages),
                                  out=run.out)
    exc.message = message
    run.warnings.append(message)
    if run.results:
        write_report(run.out / "report.md", run.results, config=to_dict(run.config),
                     summary=[f"Command: `{command}`", f"INTERRUPTED: {message}"], pretrain_note=None,
                     sections=run.sections, warnings=run.warnings, plots={})


def _subcommand(stages: Sequence[str]) -> str:
    return {("sft", "rl"): "pipeline", ("sft",): "sft", ("rl",): "rl"}.get(tuple(stages), "eval")


def _with_adapter(run: _Run, model: Any) -> Any:
    """``model`` with a LoRA adapter of ``model.lora_*`` (only the adapter trains)."""
    from agents.common.report import adapter_note
    from instruct_env.error import require

    peft = require("peft", "peft")
    m = run.config.model
    lora = peft.LoraConfig(r=m.lora_r, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout,
                           target_modules=m.lora_target_modules, task_type="CAUSAL_LM")
    try:
        model = peft.get_peft_model(model, lora)
    except ValueError as exc:
        raise ConfigError(f"model.lora_*: peft could not add the adapter: {exc} Set model.lora_target_modules to "
                          "module names of this model (e.g. [c_attn] for GPT-2, [q_proj, v_proj] for Llama).") from exc
    trained, total = model.get_nb_trainable_parameters()
    note = adapter_note(r=m.lora_r, alpha=m.lora_alpha, targets=model.peft_config["default"].target_modules,
                        trained=trained, total=total)
    logger.info("%s", note)
    run.sections["Adapter"] = note
    return model


def _merged(model: Any, copy_first: bool = False) -> Any:
    """A PEFT model with its adapter merged into the base weights (a plain model is returned as is)."""
    if not hasattr(model, "merge_and_unload"):
        return model
    import copy

    return (copy.deepcopy(model) if copy_first else model).merge_and_unload()


def _resume_state(out: Path, stages: Sequence[str]) -> dict[str, Any]:
    """The saved state of the interrupted run in ``out`` (see :meth:`_Run.save_state`)."""
    import pickle

    path = out / "checkpoint" / "pipeline.pkl"
    if not path.exists():
        raise ConfigError(f"--resume {str(out)!r}: no checkpoint there (expected {path}, written when a run is stopped "
                          "by Ctrl-C/SIGTERM or every checkpoint_every RL updates). Start a new run instead.")
    with open(path, "rb") as fh:
        state = pickle.load(fh)
    if list(state["stages"]) != list(stages):
        raise ConfigError(f"--resume {str(out)!r}: that run's stages were {state['stages']}, this command runs "
                          f"{list(stages)}. Resume it with the command that started it.")
    if state["finished"]:
        raise ConfigError(f"--resume {str(out)!r}: that run finished; there is nothing to resume.")
    return state


def _drop_unfinished_records(path: Path, state: dict[str, Any]) -> None:
    """Remove from ``metrics.jsonl`` what the resumed run will log again, so each step is logged once.

    An unfinished SFT starts again from its beginning, and so does an RL stage without a checkpoint;
    an RL stage with one continues after its checkpointed update. Evaluations of stages whose
    results were not saved are run again.
    """
    from agents.common.logging import read_metrics

    if not path.exists():
        return
    done, rl_updates = set(state["done"]), (state.get("rl") or {}).get("updates", 0)

    def logged_again(row: dict[str, Any]) -> bool:
        stage = str(row.get("stage", ""))
        if stage.startswith("test/"):
            return stage[len("test/"):] not in state["results"]
        if stage == "sft":
            return "sft" not in done
        if stage in ("rl", "feedback"):
            return "rl" not in done and int(row.get("step", 0)) > rl_updates
        return False

    kept = [row for row in read_metrics(path) if not logged_again(row)]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in kept), encoding="utf-8")
    tmp.replace(path)


def _train_and_evaluate(run: _Run):
    """Load the model, evaluate it, run the stages (each followed by an evaluation)."""
    from agents.common import distributed as dist
    start = time.perf_counter()
    if not dist.is_main():
        dist.barrier()  # rank 0 pre-trains / downloads into the cache first; the others then read it
    model, tokenizer, pretrain_info = load_policy_model(run.config, run.log)
    if dist.is_main():
        dist.barrier()
    run.timed("model (load or pre-train)", time.perf_counter() - start)
    if "rl" in run.stages and getattr(model.config, "is_encoder_decoder", False):
        raise ConfigError(
            "RL needs a causal (decoder-only) model, but this one is encoder-decoder. Run 'instruct-env sft' for it, "
            "or pass a causal model with --model."
        )
    labels = {"sft": "SFT", "rl": "SFT+RL" if "sft" in run.stages else "RL"}
    first = "zero-shot" if "sft" in run.stages else "before RL" if run.stages else "model"
    if run.config.model.lora_r:
        model = _with_adapter(run, model)
    run.model, run.tokenizer = model, tokenizer  # what an interruption saves
    if run.resumed is not None:
        run.restore(model, run.resumed)
    if first not in run.results:
        run.test_eval(first, model, tokenizer)
    for stage in run.stages:
        if stage in run.done:
            continue
        if stage == "sft":  # an interrupted SFT starts again from its beginning (same seed, same result)
            _run_sft(run, model, tokenizer)
        else:
            model = _run_rl(run, model, tokenizer)
        run.test_eval(labels[stage], model, tokenizer)
        run.done.append(stage)
        run.save_state(model)
    if run.rl_training is not None:
        run.sections["Did RL improve the model?"] = _rl_effect(run, run.rl_training, before=list(run.results)[-2],
                                                               after=list(run.results)[-1])
    return model, tokenizer, pretrain_info


def _rl_effect(run: _Run, training: dict[str, Any], before: str, after: str) -> str:
    """The report's answer to "did RL improve the model?" (training reward and held-out score)."""
    from agents.common.evaluation import paired_bootstrap
    from agents.common.report import rl_effect_section

    a, b = run.results[before], run.results[after]
    return rl_effect_section(updates=training["updates"], reward_name=training.get("reward", run.config.data.reward),
                             train=training["train"], per_family=training["per_family"],
                             heldout=(a.overall["task"], b.overall["task"]),
                             change=paired_bootstrap(a, b, "task", seed=run.config.seed), before=before, after=after,
                             samples=b.num_samples)


def run_pipeline(config: PipelineConfig | None = None, stages: Sequence[str] = STAGES,
                 command: str = "instruct-env pipeline", resume: str | Path | None = None) -> PipelineResult:
    """Run ``stages`` (``"sft"``, ``"rl"``, both, or none for a plain evaluation) and write the report.

    The test split is evaluated before training (``zero-shot``) and after every stage.

    SIGINT (Ctrl-C) or SIGTERM during RL lets the current update finish; anywhere else the run
    stops at once. Either way the run folder gets a resumable checkpoint (``checkpoint/``), the
    model so far (``model/``) and the report so far, and
    :class:`~agents.common.interrupt.Interrupted` is raised (its ``out`` is the run folder).
    ``resume=<run folder>`` continues such a run: finished stages are kept, an interrupted RL
    stage continues from its checkpoint (the same weights, optimizer, RNG and environment state,
    so the result equals an uninterrupted run's), an interrupted SFT starts again (same seed, same
    result). ``config`` should then be the run's own ``config.yaml``.
    """
    from agents.common import distributed as dist
    from agents.common.interrupt import Interrupted

    config = config if config is not None else PipelineConfig()
    run = _Run(config, stages, resume)
    try:
        with run.stop:
            model, tokenizer, pretrain_info = _train_and_evaluate(run)
    except Interrupted as exc:
        _save_interrupted(run, exc, command)
        raise
    finally:
        run.log.close()
    model = _merged(model)  # a LoRA adapter is merged in: model/ loads like any model
    # A sharded model (distributed.strategy="fsdp") is gathered whole for the save; every rank takes part.
    final_state = dist.full_state_dict(model) if run.stages and dist.is_sharded(model) else None
    if not dist.is_main():  # the model is rank 0's too; rank 0 writes the model, results and report
        return _result(run, report=run.out / "report.md", plots={},
                       model_dir=run.out / "model" if run.stages else None)
    model_dir = _save_model(run, model, tokenizer, final_state, pretrain_info) if run.stages else None
    return _write_outputs(run, model_dir, pretrain_info, command)


def _save_model(run: _Run, model: Any, tokenizer: Any, state_dict: Any, pretrain_info: Any) -> Path:
    """Save the final model in ``<out>/model`` with what a later run needs to know about it."""
    config, model_dir = run.config, run.out / "model"
    model.save_pretrained(model_dir, state_dict=state_dict)  # None: the model's own (whole) weights
    tokenizer.save_pretrained(model_dir)
    if config.data.dataset is not None:  # what it was trained on, so that a later eval can refuse those inputs
        from instruct_env.tasks.splits import input_key

        keys = {input_key(s) for s in split_samples(config.data, "train", config.data.train_size_per_task)}
        earlier = Path(config.model.name) / "trained_inputs.json" if config.model.name else None
        if earlier is not None and earlier.is_file():
            keys |= set(json.loads(earlier.read_text()))
        (model_dir / "trained_inputs.json").write_text(json.dumps(sorted(keys)))
    if pretrain_info is not None:
        info = pretrain_info if isinstance(pretrain_info, dict) else dataclasses.asdict(pretrain_info)
        (model_dir / "pretrain_info.json").write_text(json.dumps(info, indent=2))
    return model_dir


def _write_outputs(run: _Run, model_dir: Path | None, pretrain_info: Any, command: str) -> PipelineResult:
    """Write the final answers, ``results.json``, the plots and the report (rank 0)."""
    from agents.common.config import to_dict
    from agents.common.device import select_device
    from agents.common.logging import read_metrics
    from agents.common.plots import plot_metrics
    from agents.common.report import pretrain_note, run_summary, write_report

    config = run.config
    final = run.results[list(run.results)[-1]]
    with open(run.out / "completions.jsonl", "w", encoding="utf-8") as fh:
        for record in final.records:
            fh.write(json.dumps(record) + "\n")
    (run.out / "results.json").write_text(json.dumps({k: v.to_dict() for k, v in run.results.items()}, indent=2))
    plots = plot_metrics(read_metrics(run.log.path), run.out / "plots", stages=("pretrain", "sft", "rl"))
    summary = run_summary(command=command, out=run.out, model_dir=model_dir, model_name=config.model.name,
                          device=select_device(config.device), threads=run.threads, threads_why=run.threads_why,
                          seed=config.seed, wall_s=time.perf_counter() - run.start, seconds=run.seconds,
                          metric_options=run.metric_options)
    report = write_report(run.out / "report.md", run.results, config=to_dict(config), summary=summary,
                          pretrain_note=pretrain_note(pretrain_info), sections=run.sections, warnings=run.warnings,
                          plots=plots)
    return _result(run, report=report, plots=plots, model_dir=model_dir)


def _result(run: _Run, *, report: Path, plots: dict[str, Path], model_dir: Path | None) -> PipelineResult:
    return PipelineResult(out_dir=run.out, report=report, metrics=run.log.path, plots=plots, results=run.results,
                          model_dir=model_dir, wall_time_s=time.perf_counter() - run.start,
                          stage_seconds=dict(run.seconds), warnings=list(run.warnings))
