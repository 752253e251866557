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

__all__ = ["render_report", "write_report", "results_table", "window_means", "rl_effect_section"]


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
        before, after: Names of the two evaluated stages (e.g. ``"SFT"``, ``"SFT+RL"``).
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
