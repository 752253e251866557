"""Held-out evaluation, independent of whatever reward a trainer optimised.

:func:`evaluate` decodes greedily (one batched, KV-cached :func:`~agents.common.generation.generate`
call per batch; ``model.generate`` for encoder-decoder models) and :func:`score_completions`
measures the answers, per task family and overall:

- ``task``: the sample's own verifier (:meth:`~instruct_env.tasks.Sample.score`), in [0, 1] with
  partial credit (``nan`` for samples without a verifier);
- ``exact_match``, ``bleu``, ``rougeL``: the reference-based rewards of :mod:`instruct_env.rewards`
  (with their default options, or those given as ``metric_options``, e.g. ``{"bleu": {"tokenize": "zh"}}``);
- ``length``: mean completion length in tokens (the end-of-sequence token not counted).

"Overall" is the macro average over task families, so each family counts the same however many
samples it has. Samples whose ``metadata["heldout_phrasing"]`` is true (an instruction wording
left out of the default model's pre-training) are also scored apart, next to the other ones.

:class:`HeldOutTracker` watches a training run's evaluations: it keeps the best model state by
the held-out metric and warns when the training reward rises while the held-out metric falls
(a sign of reward hacking).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from instruct_env.error import ConfigError
from instruct_env.tasks.sample import Sample

if TYPE_CHECKING:  # torch is imported when generation runs, not with this module
    import torch

    from agents.common.generation import SamplingConfig

__all__ = [
    "METRICS",
    "EvalResult",
    "score_completions",
    "generate_completions",
    "generate_batched",
    "evaluate",
    "HeldOutTracker",
    "paired_bootstrap",
    "check_metric_options",
]

logger = logging.getLogger(__name__)

#: Metrics computed for every evaluation, in report order.
METRICS: tuple[str, ...] = ("task", "exact_match", "bleu", "rougeL", "length")
_REFERENCE_REWARDS = ("exact_match", "bleu", "rougeL")


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


@dataclass
class EvalResult:
    """Scores of one evaluation.

    Attributes:
        per_task: ``task -> metric -> mean`` over that family's samples.
        overall: ``metric -> mean over task families`` (macro average).
        counts: ``task -> number of samples``.
        heldout_phrasing: ``metric -> macro average`` over samples whose instruction wording was
            held out of pre-training; ``None`` when the samples carry no such marker.
        seen_phrasing: The same over the other samples (``None`` likewise).
        split: Name of the split evaluated (informational).
        records: One dict per sample (``id``, ``task``, ``heldout_phrasing``, ``completion``,
            ``reference`` and ``scores``, a ``metric -> value`` dict) when kept, else empty.
    """

    per_task: dict[str, dict[str, float]]
    overall: dict[str, float]
    counts: dict[str, int]
    heldout_phrasing: dict[str, float] | None = None
    seen_phrasing: dict[str, float] | None = None
    split: str = "test"
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def num_samples(self) -> int:
        """Number of samples scored."""
        return sum(self.counts.values())

    def to_dict(self, with_records: bool = False) -> dict[str, Any]:
        """Plain-Python form (for JSON); per-sample records only when asked."""
        out = {
            "split": self.split,
            "num_samples": self.num_samples,
            "overall": dict(self.overall),
            "per_task": {k: dict(v) for k, v in self.per_task.items()},
            "counts": dict(self.counts),
            "heldout_phrasing": self.heldout_phrasing,
            "seen_phrasing": self.seen_phrasing,
        }
        if with_records:
            out["records"] = list(self.records)
        return out

    def flat(self, prefix: str = "") -> dict[str, float]:
        """Overall metrics plus ``"<task>/<metric>"`` entries, for logging."""
        out = {f"{prefix}{k}": v for k, v in self.overall.items()}
        for task, metrics in self.per_task.items():
            for k, v in metrics.items():
                out[f"{prefix}{task}/{k}"] = v
        if self.heldout_phrasing is not None:
            out.update({f"{prefix}heldout_phrasing/{k}": v for k, v in self.heldout_phrasing.items()})
        return out


def paired_bootstrap(before: EvalResult, after: EvalResult, metric: str = "task", *, resamples: int = 2000,
                     seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """The change ``after - before`` of the macro-averaged ``metric`` and its bootstrap interval.

    Both results must hold per-sample records of the same samples (same ids). Each resample
    draws, within every task family, as many samples as the family has, with replacement, and
    takes the same samples in both results (a paired bootstrap, stratified by family), so the
    interval reflects which test samples happened to be drawn, not differences between runs.

    Returns:
        ``(change, low, high)``: the observed change and the ``level`` percentile interval.

    >>> rec = lambda i, t, v: {"id": str(i), "task": t, "scores": {"task": v}}
    >>> a = EvalResult({}, {}, {}, records=[rec(i, "x", 0.0) for i in range(10)])
    >>> b = EvalResult({}, {}, {}, records=[rec(i, "x", 1.0 if i < 5 else 0.0) for i in range(10)])
    >>> change, low, high = paired_bootstrap(a, b)
    >>> round(change, 3), low <= change <= high, 0.0 < low
    (0.5, True, True)
    """
    by_id = {r["id"]: r for r in after.records}
    if not before.records or set(by_id) != {r["id"] for r in before.records}:
        raise ConfigError("paired_bootstrap needs per-sample records of the same samples in both results.")
    families: dict[str, list[float]] = {}
    for row in before.records:
        diff = float(by_id[row["id"]]["scores"][metric]) - float(row["scores"][metric])
        if not math.isnan(diff):
            families.setdefault(row["task"], []).append(diff)
    if not families:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    observed = float(np.mean([np.mean(d) for d in families.values()]))
    means = np.zeros(resamples)
    for diffs in families.values():
        d = np.asarray(diffs)
        means += d[rng.integers(len(d), size=(resamples, len(d)))].mean(1)
    means /= len(families)
    tail = (1.0 - level) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return observed, float(low), float(high)


def check_metric_options(metric_options: Mapping[str, Mapping[str, Any]] | None) -> None:
    """Raise a clear error for options of a metric that is not reference-based or does not take them.

    >>> check_metric_options({"bleu": {"tokenize": "zh"}, "rougeL": {"tokenizer": "char"}})
    >>> check_metric_options({"blue": {}})
    Traceback (most recent call last):
    ...
    instruct_env.error.UnknownNameError: Options given for 'blue', which is not ... Did you mean 'bleu'? ...
    """
    from instruct_env import rewards
    from instruct_env.error import UnknownNameError, suggest

    for name, options in (metric_options or {}).items():
        if name not in _REFERENCE_REWARDS:
            raise UnknownNameError(
                f"Options given for {name!r}, which is not one of the evaluation's reference-based metrics."
                f"{suggest(str(name), _REFERENCE_REWARDS)} Metrics that take options: {', '.join(_REFERENCE_REWARDS)}."
            )
        if not isinstance(options, Mapping):
            raise ConfigError(f"The options of metric {name!r} must be a mapping of option -> value; got {options!r}.")
        rewards.make(name, **options)


def _reward_scores(completions: list[str], samples: Sequence[Sample],
                   metric_options: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, np.ndarray]:
    from instruct_env import rewards

    check_metric_options(metric_options)
    references = [s.references for s in samples]
    scores = {}
    for name in _REFERENCE_REWARDS:
        reward = rewards.make(name, **(metric_options or {}).get(name, {}))
        values = np.asarray(reward(completions, references, samples=list(samples)), dtype=np.float64)
        if values.shape != (len(completions),):
            raise ConfigError(f"Reward {name!r} returned shape {values.shape}; expected ({len(completions)},).")
        scores[name] = values
    return scores


def _summarise(rows: list[dict[str, Any]]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Per-family means and their macro average, from records holding a ``scores`` dict."""
    by_task: dict[str, list[dict[str, float]]] = {}
    for row in rows:
        by_task.setdefault(row["task"], []).append(row["scores"])
    per_task = {t: {m: _nanmean([s[m] for s in group]) for m in METRICS} for t, group in by_task.items()}
    overall = {m: _nanmean([per_task[t][m] for t in per_task]) for m in METRICS}
    return per_task, overall


def score_completions(
    samples: Sequence[Sample],
    completions: Sequence[str],
    lengths: Sequence[int] | None = None,
    *,
    split: str = "test",
    keep_records: bool = True,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> EvalResult:
    """Score given completions (one per sample) with every metric of :data:`METRICS`.

    Args:
        samples: The evaluated samples.
        completions: The answers, in the same order.
        lengths: Completion lengths in tokens; whitespace-separated words when not given.
        split: Recorded in the result.
        keep_records: Keep one record per sample in :attr:`EvalResult.records`.
        metric_options: ``metric -> options`` for ``bleu``, ``rougeL``, ``exact_match`` (e.g.
            ``{"bleu": {"tokenize": "zh"}}``); the others keep their defaults.

    >>> from instruct_env.tasks import BuiltinDataset
    >>> data = list(BuiltinDataset(["copy", "arithmetic"], split="test", size_per_task=4))
    >>> result = score_completions(data, [s.references[0] for s in data])
    >>> result.overall["task"], result.overall["exact_match"], result.per_task["copy"]["rougeL"]
    (1.0, 1.0, 1.0)
    """
    samples = list(samples)
    completions = [str(c) for c in completions]
    if len(samples) != len(completions):
        raise ConfigError(f"Got {len(completions)} completions for {len(samples)} samples; expected one per sample.")
    if not samples:
        raise ConfigError("Nothing to evaluate: the sample list is empty.")
    if lengths is None:
        lengths = [len(c.split()) for c in completions]
    if len(lengths) != len(samples):
        raise ConfigError(f"Got {len(lengths)} lengths for {len(samples)} samples; expected one per sample.")
    reference_scores = _reward_scores(completions, samples, metric_options)
    rows = []
    for i, (sample, completion) in enumerate(zip(samples, completions)):
        scores = {"task": sample.score(completion) if sample.verifier is not None else float("nan")}
        scores.update({m: float(reference_scores[m][i]) for m in _REFERENCE_REWARDS})
        scores["length"] = float(lengths[i])
        rows.append({
            "id": sample.id,
            "task": sample.task,
            "heldout_phrasing": bool(sample.metadata.get("heldout_phrasing", False)),
            "completion": completion,
            "reference": sample.references[0] if sample.references else "",
            "scores": scores,
        })
    per_task, overall = _summarise(rows)
    marked = any("heldout_phrasing" in s.metadata for s in samples)
    heldout = [r for r in rows if r["heldout_phrasing"]]
    seen = [r for r in rows if not r["heldout_phrasing"]]
    return EvalResult(
        per_task=per_task,
        overall=overall,
        counts={task: sum(r["task"] == task for r in rows) for task in per_task},
        heldout_phrasing=_summarise(heldout)[1] if marked and heldout else None,
        seen_phrasing=_summarise(seen)[1] if marked and seen else None,
        split=split,
        records=rows if keep_records else [],
    )


def generate_batched(
    lm: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    batch_size: int = 64,
    sampling: SamplingConfig | None = None,
    generator: torch.Generator | None = None,
    sort_by_length: bool = True,
    mixed_precision: bool = True,
    progress: Any = None,
) -> list[list[int]]:
    """Complete encoded prompts in left-padded batches; the completions' token ids, in the prompts' order.

    Each completion stops before its first end-of-sequence token and holds no padding. The model
    is put in eval mode and restored after.

    Args:
        lm: A causal LM, or an encoder-decoder LM (greedy decoding only, through ``lm.generate``).
        tokenizer: Its tokenizer (for the end-of-sequence and padding ids).
        prompts: Token ids of each prompt.
        max_new_tokens: Completion budget.
        batch_size: Prompts per :func:`~agents.common.generation.generate` call.
        sampling: How tokens are drawn (default: greedy).
        generator: Random source of the sampling; batches draw from it in order.
        sort_by_length: Batch the prompts sorted by length (little padding); else in the given order.
        mixed_precision: Run under :func:`~agents.common.device.autocast` (bf16 on CUDA).
        progress: Optional callable wrapping the batch iterator (e.g. ``RunLogger.progress``).
    """
    import torch

    from agents.common.device import autocast
    from agents.common.generation import SamplingConfig, generate

    sampling = sampling if sampling is not None else SamplingConfig(temperature=0.0)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1; got {batch_size}.")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("The tokenizer has no eos_token_id; generation could never stop.")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    encoder_decoder = bool(getattr(lm.config, "is_encoder_decoder", False))
    if encoder_decoder and sampling.temperature != 0:
        raise ConfigError(f"Encoder-decoder models are decoded greedily here; got temperature={sampling.temperature}. "
                          "Use a causal LM to sample, or temperature 0.")
    device = next(lm.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i])) if sort_by_length else range(len(prompts))
    batches = [list(order[i:i + batch_size]) for i in range(0, len(prompts), batch_size)]
    completions: list[list[int]] = [[] for _ in prompts]
    was_training = lm.training
    lm.eval()
    try:
        for batch in progress(batches) if progress is not None else batches:
            ids, mask = _left_padded([prompts[i] for i in batch], pad)
            ids, mask = ids.to(device), mask.to(device)
            with torch.no_grad(), autocast(device) if mixed_precision else contextlib.nullcontext():
                if encoder_decoder:
                    out = lm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                      do_sample=False, num_beams=1, eos_token_id=eos, pad_token_id=pad)
                    tokens = out[:, 1:].tolist()  # drop the decoder start token
                else:
                    tokens = generate(lm, ids, mask, max_new_tokens, eos, pad, sampling, generator).tokens.tolist()
            for row, i in enumerate(batch):
                seq = tokens[row]
                seq = seq[: seq.index(eos)] if eos in seq else seq
                completions[i] = [t for t in seq if t != pad]
    finally:
        lm.train(was_training)
    return completions


def _left_padded(prompts: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)``, both (B, P): the prompts right-aligned after ``pad`` tokens."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)  # (B, P)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)  # (B, P)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids, mask


def generate_completions(
    model: Any,
    tokenizer: Any,
    samples: Sequence[Sample],
    *,
    formatter: Any = None,
    max_prompt_tokens: int = 128,
    max_new_tokens: int = 32,
    batch_size: int = 64,
    progress: Any = None,
) -> tuple[list[str], list[int]]:
    """Greedy completions for ``samples``; returns ``(texts, lengths in tokens without EOS)``.

    Prompts are encoded with ``formatter``, sorted by length so each batch has little padding,
    left-padded, and decoded with the model's own device (:func:`generate_batched`). The model is
    put in eval mode and restored after.

    Args:
        model: A causal LM, an encoder-decoder LM or an :class:`~agents.common.model.ActorCritic`.
        tokenizer: The model's tokenizer.
        samples: The samples to answer.
        formatter: Prompt template (default: :class:`~instruct_env.tasks.PromptFormatter`).
        max_prompt_tokens: Prompt budget.
        max_new_tokens: Completion budget.
        batch_size: Prompts per batch.
        progress: Optional callable wrapping the batch iterator (e.g. ``RunLogger.progress``).
    """
    from agents.common import distributed as dist
    from instruct_env.tasks import PromptFormatter

    formatter = formatter if formatter is not None else PromptFormatter()
    prompts = [formatter.encode(s, tokenizer, max_prompt_tokens, budget_name="max_prompt_tokens")[0] for s in samples]
    completions = generate_batched(dist.unwrap(model, lm=True), tokenizer, prompts, max_new_tokens=max_new_tokens,
                                   batch_size=batch_size, progress=progress)
    texts = [tokenizer.decode(seq, skip_special_tokens=True) for seq in completions]
    return texts, [len(seq) for seq in completions]


def evaluate(
    model: Any,
    tokenizer: Any,
    samples: Sequence[Sample],
    *,
    formatter: Any = None,
    max_prompt_tokens: int = 128,
    max_new_tokens: int = 32,
    batch_size: int = 64,
    split: str = "test",
    keep_records: bool = True,
    progress: Any = None,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> EvalResult:
    """Greedy-decode ``samples`` with ``model`` and score the answers (see :func:`score_completions`)."""
    samples = list(samples)
    texts, lengths = generate_completions(
        model, tokenizer, samples, formatter=formatter, max_prompt_tokens=max_prompt_tokens,
        max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress,
    )
    return score_completions(samples, texts, lengths, split=split, keep_records=keep_records,
                             metric_options=metric_options)


class HeldOutTracker:
    """Best-checkpoint keeping and a reward-hacking guard over a run's evaluations.

    Call :meth:`update` after every held-out evaluation with the training reward averaged since
    the previous evaluation. The model state with the best held-out metric so far is kept (on a
    tie, the later one; a CPU copy of the ``state_dict``, or saved with ``save_fn`` when given);
    :meth:`restore_best` loads it back. When the training reward went up while the held-out metric went down since
    the previous evaluation, a warning is logged and kept in :attr:`warnings`.

    Args:
        metric: Name of the held-out metric (for messages), higher is better.
        tolerance: Changes smaller than this count as "no change" in either direction.
        save_fn: Optional ``save_fn(model)`` called on every new best (e.g. to write a checkpoint).

    >>> tracker = HeldOutTracker("task")
    >>> tracker.update(step=1, heldout=0.5, train_reward=0.4)
    >>> tracker.update(step=2, heldout=0.4, train_reward=0.6)
    >>> tracker.best_step, len(tracker.warnings)
    (1, 1)
    """

    def __init__(self, metric: str = "task", tolerance: float = 0.005, save_fn: Any = None) -> None:
        self.metric = metric
        self.tolerance = tolerance
        self.save_fn = save_fn
        self.best_value = -math.inf
        self.best_step: int | None = None
        self.best_state: dict[str, Any] | None = None
        self.warnings: list[str] = []
        self.history: list[dict[str, float]] = []

    def update(self, step: int, heldout: float, train_reward: float | None = None, model: Any = None) -> None:
        """Record one evaluation; keep ``model``'s state if ``heldout`` is the best so far."""
        previous = self.history[-1] if self.history else None
        self.history.append({"step": step, "heldout": heldout,
                             "train_reward": float("nan") if train_reward is None else train_reward})
        if (previous is not None and train_reward is not None and not math.isnan(previous["train_reward"])
                and train_reward > previous["train_reward"] + self.tolerance
                and heldout < previous["heldout"] - self.tolerance):
            message = (
                f"Possible reward hacking between steps {previous['step']} and {step}: the training reward rose "
                f"({previous['train_reward']:.3f} -> {train_reward:.3f}) while the held-out {self.metric} fell "
                f"({previous['heldout']:.3f} -> {heldout:.3f})."
            )
            logger.warning(message)
            self.warnings.append(message)
        # A tie keeps the later weights: with equal held-out scores, the training since the
        # earlier check is kept rather than thrown away.
        if heldout >= self.best_value:
            self.best_value, self.best_step = heldout, step
            if model is not None:
                self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                if self.save_fn is not None:
                    self.save_fn(model)

    def restore_best(self, model: Any) -> bool:
        """Load the best state kept so far into ``model``; ``False`` if none was kept."""
        if self.best_state is None:
            return False
        model.load_state_dict(copy.copy(self.best_state))
        return True

    def summary(self) -> Mapping[str, Any]:
        """Best step and value, and the warnings raised."""
        return {"metric": self.metric, "best_step": self.best_step,
                "best_value": None if self.best_step is None else self.best_value, "warnings": list(self.warnings)}
