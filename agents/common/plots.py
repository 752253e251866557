"""PNG plots of a run's logged metrics (matplotlib, Agg backend: no display needed).

Each plot is one metric against the training step, read from the records that
:class:`agents.common.logging.RunLogger` wrote. A metric nobody logged is skipped, so the same
call works for every algorithm (PPO logs a value loss, GRPO does not).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PANELS", "plot_metrics"]

#: ``(file stem, title, kind, keys)``: the first key present in the ``kind`` records is plotted.
PANELS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("reward", "Training reward (mean per update)", "train", ("reward", "reward_mean", "mean_reward")),
    ("kl", "KL to the reference policy", "train", ("kl", "kl_ref", "approx_kl")),
    ("entropy", "Policy entropy (nats/token)", "train", ("entropy",)),
    ("value_loss", "Value loss", "train", ("value_loss", "vf_loss")),
    ("loss", "Training loss", "train", ("loss", "train_loss")),
    ("heldout", "Held-out metric (validation split)", "eval", ("task", "val_task", "exact_match")),
    ("val_loss", "Validation loss", "eval", ("val_loss",)),
)


def _series(records: Sequence[Mapping[str, Any]], stage: str, kind: str, keys: Sequence[str]):
    rows = [r for r in records if r.get("stage") == stage and r.get("kind", "train") == kind]
    for key in keys:
        points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))
                  and not isinstance(r.get(key), bool)]
        if points:
            return key, points
    return None, []


def plot_metrics(
    records: Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike,
    *,
    stages: Sequence[str] = ("sft", "rl"),
) -> dict[str, Path]:
    """Write one PNG per (stage, metric) found in ``records``; return ``{"rl/reward": path, ...}``.

    Args:
        records: Logged records (e.g. :func:`agents.common.logging.read_metrics`).
        out_dir: Folder for the PNGs (created).
        stages: Stages to plot, each in its own files (``rl_reward.png``...).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    written: dict[str, Path] = {}
    for stage in stages:
        for stem, title, kind, keys in PANELS:
            key, points = _series(records, stage, kind, keys)
            if not points:
                continue
            out.mkdir(parents=True, exist_ok=True)
            steps, values = zip(*points)
            fig, ax = plt.subplots(figsize=(5.0, 3.2), dpi=100)
            if len(points) >= 20:  # noisy per-update values: faint raw curve, bold moving average
                window = max(5, len(points) // 20)
                ax.plot(steps, values, linewidth=0.8, alpha=0.35, color="tab:blue")
                smooth = np.convolve(values, np.ones(window) / window, mode="valid")
                ax.plot(steps[window - 1:], smooth, linewidth=1.6, color="tab:blue",
                        label=f"moving average of {window}")
                ax.legend(fontsize=8)
            else:
                ax.plot(steps, values, marker="o", markersize=3, linewidth=1.4)
            ax.set_title(f"{stage.upper()}: {title}", fontsize=10)
            ax.set_xlabel("update" if stage == "rl" else "step")
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            path = out / f"{stage}_{stem}.png"
            fig.savefig(path)
            plt.close(fig)
            written[f"{stage}/{stem}"] = path
    return written
