"""The Markdown report of a run: held-out results per stage, warnings, pre-training note, plots, config.

>>> from agents.common.evaluation import EvalResult
>>> r = EvalResult(per_task={"copy": {"task": 0.5, "exact_match": 0.25, "bleu": 0.4, "rougeL": 0.6,
...     "length": 3.0}}, overall={"task": 0.5, "exact_match": 0.25, "bleu": 0.4, "rougeL": 0.6, "length": 3.0},
...     counts={"copy": 4})
>>> text = render_report({"zero-shot": r, "SFT": r}, config={"seed": 0})
>>> "| copy | 4 | 0.500 | 0.250 | 0.500 | 0.250 |" in text
True
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "render_report",
    "write_report",
    "results_table",
    "window_means",
    "rl_effect_section",
    "sft_section",
    "rl_stop_reason",
    "rl_section",
    "kept_starting_model_warning",
    "feedback_rounds_section",
    "adapter_note",
    "interrupted_message",
    "run_summary",
    "pretrain_note",
]


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def results_table(stages: Mapping[str, Any], metrics: Sequence[str] = ("task", "exact_match")) -> str:
    """A Markdown table: one row per task family (and overall), ``metric`` columns per stage."""
    names = list(stages)
    tasks: list[str] = []
    for result in stages.values():
        tasks.extend(t for t in result.per_task if t not in tasks)
    header = ["task family", "n"] + [f"{stage} {_short(m)}" for stage in names for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    first = stages[names[0]]
    for task in tasks:
        cells = [task, str(first.counts.get(task, "–"))]
        for stage in names:
            per = stages[stage].per_task.get(task, {})
            cells += [_fmt(per.get(m)) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["**overall** (mean over families)", str(first.num_samples)]
    for stage in names:
        cells += [f"**{_fmt(stages[stage].overall.get(m))}**" for m in metrics]
    lines.append("| " + " | ".join(cells) + " |")
    for label, attr in (("held-out phrasing (unseen in pre-training)", "heldout_phrasing"),
                        ("seen phrasings", "seen_phrasing")):
        if all(getattr(stages[s], attr) is None for s in names):
            continue
        cells = [label, ""]
        for stage in names:
            part = getattr(stages[stage], attr) or {}
            cells += [_fmt(part.get(m)) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _short(metric: str) -> str:
    return {"task": "task score", "exact_match": "exact match", "rougeL": "ROUGE-L", "bleu": "BLEU"}.get(metric, metric)


def _overall_table(stages: Mapping[str, Any]) -> str:
    metrics = ("task", "exact_match", "bleu", "rougeL", "length")
    lines = ["| stage | " + " | ".join(_short(m) if m != "length" else "mean length (tokens)" for m in metrics) + " |",
             "|" + "---|" * (len(metrics) + 1)]
    for stage, result in stages.items():
        lines.append(f"| {stage} | " + " | ".join(_fmt(result.overall.get(m)) for m in metrics) + " |")
    return "\n".join(lines)


def window_means(values: Sequence[float], share: float = 0.1) -> tuple[float, float]:
    """Means of the first and the last ``share`` of ``values`` (at least one value each; NaNs skipped).

    >>> window_means([0.0] * 5 + [1.0] * 5, share=0.2)
    (0.0, 1.0)
    """
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not finite:
        return math.nan, math.nan
    k = max(1, int(len(finite) * share))
    return sum(finite[:k]) / k, sum(finite[-k:]) / k


def rl_effect_section(*, updates: int, reward_name: str, train: tuple[float, float],
                      per_family: Mapping[str, tuple[float, float]], heldout: tuple[float, float] | None,
                      change: tuple[float, float, float] | None, before: str, after: str,
                      samples: int = 0) -> str:
    """Markdown answering "did RL improve the model?": training reward and held-out score, before and after.

    Args:
        updates: RL updates run.
        reward_name: The training reward.
        train: Mean training reward over the first and the last 10% of updates.
        per_family: ``family -> (first 10%, last 10%)`` training reward.
        heldout: Held-out task score before and after RL (``None``: not evaluated).
        change: ``(change, low, high)`` of the held-out task score with its 95% bootstrap interval.
        before: Name of the stage evaluated before RL (e.g. ``"SFT"``).
        after: Name of the stage evaluated after RL (e.g. ``"SFT+RL"``).
        samples: Number of held-out samples.
    """
    first, last = train
    lines = []
    if heldout is not None and change is not None:
        delta, low, high = change
        if low > 0:
            verdict = (f"**Yes: RL improved the held-out task score**, {heldout[0]:.3f} ({before}) -> "
                       f"{heldout[1]:.3f} ({after}), {delta:+.3f} (95% bootstrap interval {low:+.3f} to {high:+.3f}).")
        elif high < 0:
            verdict = (f"**No: RL made the held-out task score worse**, {heldout[0]:.3f} ({before}) -> "
                       f"{heldout[1]:.3f} ({after}), {delta:+.3f} (95% bootstrap interval {low:+.3f} to {high:+.3f}).")
        else:
            verdict = (f"**Not shown: RL did not change the held-out task score measurably**, {heldout[0]:.3f} "
                       f"({before}) -> {heldout[1]:.3f} ({after}), {delta:+.3f} (95% bootstrap interval {low:+.3f} "
                       f"to {high:+.3f} includes 0).")
        lines += [verdict, "", f"The interval comes from a paired bootstrap over the {samples} test samples "
                  "(resampled within each task family, 2000 resamples): it measures how much the change "
                  "depends on which test samples were drawn, not run-to-run variation.", ""]
    lines += [f"Training reward (`{reward_name}`, on sampled answers, {updates} updates): {first:.3f} over the first "
              f"10% of updates -> {last:.3f} over the last 10% ({last - first:+.3f}).", ""]
    if per_family:
        lines += ["| task family | training reward, first 10% | last 10% | change |", "|---|---:|---:|---:|"]
        for family, (a, b) in sorted(per_family.items(), key=lambda kv: -(kv[1][1] - kv[1][0])):
            lines.append(f"| {family} | {_fmt(a)} | {_fmt(b)} | {_fmt_signed(b - a)} |")
    return "\n".join(lines)


def sft_section(result: Any, per_family: int) -> str:
    """The report's SFT section from the trainer's result (an :class:`~agents.sft.trainer.SFTResult`).

    Args:
        result: What :meth:`SFTTrainer.train` returned.
        per_family: Training examples asked for per task family (``sft.num_examples``).
    """
    return (
        f"{result.num_train} training examples ({per_family} per task family), {result.steps} steps "
        f"({result.epochs:.1f} epochs) in {result.elapsed_s:.0f} s, stopped by {result.stopped_by.replace('_', ' ')}. "
        f"Validation loss per response token: {result.initial_val_loss:.3f} before, {result.best_val_loss:.3f} "
        f"best (step {result.best_step}{', whose weights were restored' if result.restored else ''})."
    )


def rl_stop_reason(algo: str, updates: int, total_updates: int, time_budget_s: float | None) -> str:
    """Why an RL stage stopped after ``updates`` updates: its time budget or its update count.

    >>> rl_stop_reason("grpo", 40, 40, None)
    'the update count rl.grpo.total_updates=40'
    """
    if time_budget_s is not None and updates < total_updates:
        return (f"stopped by the time budget of {time_budget_s:.0f} s (rl.{algo}.time_budget_s), so the number of "
                "updates depends on the machine's speed; --updates N fixes it")
    return f"the update count rl.{algo}.total_updates={total_updates}"


def rl_section(*, algo: str, updates: int, stopped_by: str, elapsed_s: float, reward_name: Any,
               train: tuple[float, float], metric: str, val_samples: int, eval_every: int, best_value: float,
               best_step: int | None, restored: bool) -> str:
    """The report's RL section: updates, training reward and the validation checks.

    Args:
        algo: The RL algorithm (``rl.algo``).
        updates: Updates run.
        stopped_by: Why it stopped (see :func:`rl_stop_reason`).
        elapsed_s: Seconds of training.
        reward_name: The training reward as configured (a name or a mapping).
        train: Mean training reward over the first and the last 10% of updates.
        metric: The validation metric the best weights were chosen by.
        val_samples: Validation samples per check.
        eval_every: Updates between validation checks.
        best_value: The best validation value.
        best_step: The update it was reached at (0: the weights RL started from).
        restored: The best weights were restored at the end.
    """
    first, last = train
    return (
        f"{algo.upper()}, {updates} updates ({stopped_by}) in {elapsed_s:.0f} s, training "
        f"reward `{reward_name}` {first:.3f} (first 10% of updates) -> {last:.3f} (last 10%). Validation {metric} "
        f"({val_samples} samples) checked every {eval_every} updates; best "
        f"{best_value:.3f} at update {best_step}"
        + (" (the SFT model: RL did not improve on it)" if best_step == 0 else "")
        + (", whose weights were restored." if restored else ".")
    )


def kept_starting_model_warning(metric: str, best_value: float, updates: int) -> str:
    """The warning when ``eval.keep_best`` ended RL with the weights it started from."""
    return (f"The final model is the STARTING model, unchanged by RL: no validation check after update 0 "
            f"beat its {metric} {best_value:.3f}, so eval.keep_best restored its weights after "
            f"{updates} updates. Set eval.keep_best=false to keep RL's last weights.")


def feedback_rounds_section(records: Sequence[Any], *, mode: str | None, algo: str, direct: bool,
                            direct_kind: str) -> str:
    """The report's section on the feedback + RL rounds: one table row per round.

    Args:
        records: The per-round records of :func:`agents.feedback_loop.run_feedback_loop` (round 0 first).
        mode: ``feedback.mode`` (``"simulated"`` or ``"human"``).
        algo: The RL algorithm.
        direct: RL was rewarded by the evaluators' answers themselves (``loop.rl_reward="direct"``).
        direct_kind: What those answers are (``loop.direct_kind``).
    """
    rows = ["| round | answers | labels | reward-model version | RM held-out accuracy | "
            + ("answers used as RL rewards | " if direct else "") + "validation task score |",
            "|---:|---:|---:|---:|---:|" + ("---:|" if direct else "") + "---:|"]
    for r in records:
        rows.append(f"| {r.round} | {r.answers} | {r.labels_used} | {r.rm_version} | {r.rm_heldout_accuracy:.3f} | "
                    + (f"{r.rl_judgements} | " if direct else "") + f"{r.val_task:.3f} |")
    how = (f": {algo.upper()} rewarded by their {direct_kind} of every completion it samples (the "
           "online reward model is refitted and measured alongside)" if direct else
           f" through an online reward model ({algo.upper()} on its proxy reward)")
    return (f"Rewards from {mode} evaluators{how}. {len(records) - 1} rounds; round 0 is the starting policy.\n\n"
            + "\n".join(rows))


def adapter_note(*, r: int, alpha: float, targets: Sequence[str], trained: int, total: int) -> str:
    """The report's note on a LoRA adapter: its shape and how many parameters train.

    >>> adapter_note(r=4, alpha=16.0, targets=["c_attn"], trained=10, total=1000)[:42]
    "LoRA adapter r=4, alpha=16 on ['c_attn']: "
    """
    return (f"LoRA adapter r={r}, alpha={alpha:g} on {sorted(targets)}: "
            f"{trained:,} of {total:,} parameters train; model/ holds the weights with the adapter merged in.")


def interrupted_message(*, signal_name: str, where: str, subcommand: str, out: str | os.PathLike) -> str:
    """What a run stopped by a signal says: where it stopped, what it saved, how to resume."""
    return (f"Stopped by {signal_name} {where}; the model so far is in model/, the checkpoint in "
            f"checkpoint/. Resume with: instruct-env {subcommand} --resume {out}")


def run_summary(*, command: str, out: Path, model_dir: Path | None, model_name: str | None, device: Any,
                threads: int, threads_why: str, seed: int, wall_s: float, seconds: Mapping[str, float],
                metric_options: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The bullet points at the top of the report: command, folder, model, device, time, metric options.

    Args:
        command: The command line that started the run.
        out: The run folder (its ``tensorboard/`` is named when it exists).
        model_dir: The saved final model (``None``: none was saved).
        model_name: ``model.name`` (``None``: the embedded default).
        device: The torch device used.
        threads: CPU threads torch used.
        threads_why: Why that many.
        seed: The training seed.
        wall_s: Seconds from start to report.
        seconds: Seconds per part of the run.
        metric_options: Options the evaluation metrics were computed with (``metric -> options``).
    """
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
    summary = [
        f"Command: `{command}`",
        f"Run folder: `{out}`; metrics: `metrics.jsonl`"
        + (", TensorBoard: `tensorboard/`" if (out / "tensorboard").is_dir() else "")
        + (f"; final model: `{model_dir.name}/`" if model_dir else ""),
        f"Model: {model_name or 'embedded default (pre-trained on the task suite, see below)'}; "
        f"device {device}, {threads} CPU thread(s) ({threads_why}); seed {seed}",
        f"Wall time {wall_s:.0f} s ({timing})",
    ]
    if metric_options:  # the report's bleu / rougeL / exact match were computed with these
        summary.append("Evaluation metric options: " + "; ".join(
            f"{name}({', '.join(f'{k}={v!r}' for k, v in opts.items())})"
            for name, opts in metric_options.items()))
    return summary


def pretrain_note(info: Any) -> str | None:
    """How the model was pre-trained: ``info.describe()``, or a note from a saved ``pretrain_info.json``.

    Args:
        info: A pre-training record with ``describe()``, the dict a saved model keeps, or ``None``
            (the model was not pre-trained by instruct-env: no note).
    """
    if info is None:
        return None
    if hasattr(info, "describe"):
        return info.describe()
    return (f"The model descends from the embedded default, pre-trained by instruct-env on the task suite's "
            f"TRAIN split with one phrasing per family held out ({info.get('steps')} steps).")


def _fmt_signed(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:+.3f}"


def render_report(
    stages: Mapping[str, Any],
    *,
    config: Mapping[str, Any],
    title: str = "instruct-env run report",
    summary: Sequence[str] = (),
    pretrain_note: str | None = None,
    sections: Mapping[str, str] | None = None,
    warnings: Sequence[str] = (),
    plots: Mapping[str, str | os.PathLike] | None = None,
    base_dir: str | os.PathLike | None = None,
) -> str:
    """The report as Markdown text.

    Args:
        stages: ``stage name -> EvalResult`` in table order (e.g. zero-shot, SFT, SFT+RL), all on
            the same held-out samples.
        config: The run's configuration (written as YAML at the end).
        title: First heading.
        summary: Bullet points under the title (run directory, wall time, device...).
        pretrain_note: How the model was pre-trained (``None``: not the embedded default).
        sections: Extra ``heading -> Markdown`` sections (e.g. per-stage training details).
        warnings: Lines for the warnings section (e.g. the reward-hacking guard's).
        plots: ``name -> PNG path``; linked relative to ``base_dir`` when given.
        base_dir: Folder the report is written to.
    """
    import yaml

    out = [f"# {title}", ""]
    out += [f"- {line}" for line in summary]
    if summary:
        out.append("")
    sections = dict(sections or {})
    effect = sections.pop("Did RL improve the model?", None)
    if effect:
        out += ["## Did RL improve the model?", "", effect.rstrip(), ""]
    if stages:
        split = next(iter(stages.values())).split
        out += [f"## Held-out results ({split} split)", "",
                "Greedy decoding. *task score* is each task's own verifier (partial credit in [0, 1]); "
                "*exact match* compares the stripped answer with the reference. Neither is the training reward "
                "unless the configuration says so.", "",
                results_table(stages), "", "All metrics, averaged over task families:", "",
                _overall_table(stages), ""]
    out += ["## Warnings", ""]
    out += [f"- {w}" for w in warnings] if warnings else ["- None: the held-out metric never fell while the "
                                                         "training reward rose."]
    out.append("")
    for heading, body in sections.items():
        out += [f"## {heading}", "", body.rstrip(), ""]
    out += ["## Model pre-training", "", pretrain_note or "The model was not the embedded default, so it was not "
            "pre-trained by instruct-env; it was used as loaded.", ""]
    if plots:
        out += ["## Plots", ""]
        for name, path in plots.items():
            rel = os.path.relpath(path, base_dir) if base_dir is not None else os.fspath(path)
            rel = Path(rel).as_posix()
            out += [f"- `{rel}` ({name})", "", f"  ![{name}]({rel})", ""]
    out += ["## Configuration", "", "```yaml", yaml.safe_dump(dict(config), sort_keys=False).rstrip(), "```", ""]
    return "\n".join(out)


def write_report(path: str | os.PathLike, stages: Mapping[str, Any], **kwargs: Any) -> Path:
    """Render the report (see :func:`render_report`) and write it to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("base_dir", path.parent)
    path.write_text(render_report(stages, **kwargs), encoding="utf-8")
    return path
