"""Short, cached language-model pre-training of the embedded default model on the task suite's text.

A randomly initialised model knows nothing, so SFT on a few dozen examples per task would have to
teach it the language, the format and the tasks at once. The default model is therefore first
pre-trained, as a plain next-token predictor on every token, on solved examples of the built-in
suite (:func:`~instruct_env.tasks.pretraining_corpus`): TRAIN split only, and with one instruction
phrasing per task family held out, so that evaluation can still measure how the model copes with
wording it has never seen. The SFT that follows is then genuinely few-shot.

Pre-training is bounded by a number of steps (so it is reproducible) and cached: the weights are
stored under ``instruct_env.tokenizer.cache_dir()/pretrained/`` in a folder named by a hash of
everything that decides them -- the model shape, the tokenizer file, the corpus (its settings and
its text), the optimisation settings, the steps and the seed. Later runs load the folder.
``time_budget_s`` is only a safety stop: a run cut short by it is used as it is, and its state
(weights, optimizer, step) is kept next to the cache folder, so the next run with the same settings
resumes it -- the data order and learning-rate schedule continue where they stopped -- until the
planned steps are done and the weights are cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import pickle
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instruct_env.error import ConfigError

__all__ = ["PretrainConfig", "PretrainInfo", "pretrained_default_model", "pretrain_cache_path"]

logger = logging.getLogger(__name__)
_FORMAT_VERSION = 1
#: Steps whose losses the manifest of shipped weights records one by one (a reproduction check).
LOGGED_FIRST_STEPS = 20


@dataclass
class PretrainConfig:
    """Pre-training of the embedded default model.

    The defaults are the settings of the weights shipped with the project
    (``agents/assets/default_model``, made by ``instruct-env pretrain``): with them, and the
    default model shape, the shipped weights are loaded and nothing is trained. Any other
    setting pre-trains (about 0.2 s per step on 2 idle CPU cores at the default shape) and caches.

    Attributes:
        steps: Optimizer steps (the run's length; part of the cache key).
        batch_size: Examples per step.
        lr: Peak AdamW learning rate (linear warm-up, cosine decay to 10%).
        warmup_steps: Warm-up steps.
        weight_decay: AdamW weight decay on weight matrices.
        n_per_task: Corpus examples per task family (about 5.3 epochs at the default steps).
        tasks: Task families of the corpus (``None``: the default families, see
            :func:`~instruct_env.tasks.default_task_names`).
        seed: Seed of the initial weights, the corpus and the data order.
        time_budget_s: Safety stop in seconds (``None``: none); a run it cuts short is resumed by the
            next run with the same settings.
        cache: Load from / save to the cache.
        shipped: Use the shipped weights when they were made with exactly these settings, this
            model shape and this tokenizer (see :mod:`agents.common.shipped`).
    """

    steps: int = 6000
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    n_per_task: int = 6000
    tasks: list[str] | None = None
    seed: int = 0
    time_budget_s: float | None = 240.0
    cache: bool = True
    shipped: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "n_per_task"):
            if getattr(self, name) < 1:
                raise ConfigError(f"PretrainConfig.{name} must be >= 1; got {getattr(self, name)}.")
        if self.warmup_steps < 0 or self.seed < 0 or self.weight_decay < 0:
            raise ConfigError(
                "PretrainConfig.warmup_steps, seed and weight_decay must be >= 0; got "
                f"{self.warmup_steps}, {self.seed} and {self.weight_decay}."
            )
        if not self.lr > 0:
            raise ConfigError(f"PretrainConfig.lr must be > 0; got {self.lr}.")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError(f"PretrainConfig.time_budget_s must be > 0 or None; got {self.time_budget_s}.")


@dataclass
class PretrainInfo:
    """How the returned default model was pre-trained.

    Attributes:
        path: The cache folder (``None`` when not cached).
        from_cache: The weights were loaded, not trained, in this call.
        steps: Steps completed; ``planned_steps``: steps configured.
        final_loss: Mean next-token loss over the last 50 steps.
        elapsed_s: Training seconds in this call (0 when loaded from the cache).
        train_seconds: Seconds the whole training took (over resumed runs too).
        resumed_from_step: The step this call resumed from (0: it started from scratch).
        shipped: The weights are the ones shipped with the project.
        corpus_examples: Number of corpus texts; ``heldout_phrasings``: what was held out.
        config: The :class:`PretrainConfig` as a dict.
    """

    path: str | None
    from_cache: bool
    steps: int
    planned_steps: int
    final_loss: float
    elapsed_s: float
    train_seconds: float
    corpus_examples: int
    config: dict[str, Any]
    model_config: dict[str, Any]
    resumed_from_step: int = 0
    shipped: bool = False

    @property
    def complete(self) -> bool:
        """Whether every planned step ran."""
        return self.steps >= self.planned_steps

    def describe(self) -> str:
        """One paragraph for a report."""
        if self.shipped:
            source = (f"shipped with instruct-env (made by `instruct-env pretrain` in {self.train_seconds:.0f} s, "
                      "see `manifest.json`; sha256 verified at load), so this run did not pre-train")
        elif self.from_cache:
            source = f"loaded from the cache at `{self.path}`"
        else:
            source = f"trained in this run in {self.elapsed_s:.0f} s"
            if self.resumed_from_step:
                source += f" (resuming an earlier run's interrupted pre-training at step {self.resumed_from_step})"
            if self.path:
                source += f" and cached at `{self.path}`"
        shape = ", ".join(f"{k}={v}" for k, v in self.model_config.items())
        text = (
            f"The embedded default model (GPT-2 architecture, {shape}) was pre-trained from random initialisation "
            f"as a next-token predictor on {self.corpus_examples} solved examples generated from the TRAIN split of "
            f"the built-in task suite, with one instruction phrasing per task family held out of that corpus "
            f"(the 'held-out phrasing' rows measure those). It ran {self.steps} steps of batch "
            f"{self.config['batch_size']} (final loss {self.final_loss:.3f}); the weights were {source}. "
            "The SFT that follows is therefore few-shot: it teaches a model that already knows the format."
        )
        if not self.complete:
            text += (f" Warning: the time budget stopped pre-training after {self.steps} of {self.planned_steps} "
                     "steps, so this model is weaker than the default; the next run resumes the pre-training "
                     "and caches it once complete.")
        return text


def _tokenizer_digest(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def pretrain_cache_path(model_config: Any, tokenizer: Any, config: PretrainConfig, corpus: list[str]) -> Path:
    """The cache folder for these settings (it may not exist yet)."""
    from instruct_env.tokenizer import cache_dir

    digest = hashlib.sha256()
    settings = {
        "version": _FORMAT_VERSION,
        "model": dataclasses.asdict(model_config),
        "tokenizer": _tokenizer_digest(tokenizer),
        "pretrain": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("time_budget_s", "cache")},
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for text in corpus:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return cache_dir() / "pretrained" / f"default-v{_FORMAT_VERSION}-{digest.hexdigest()[:16]}"


def _batches(lengths: list[int], batch_size: int, seed: int):
    """Endless batches of example indices: a new permutation every epoch, grouped by length.

    Each run of 32 batches' worth of shuffled examples is sorted by length before it is cut into
    batches (whose order is then shuffled), so a batch pads little while the data stay mixed.
    """
    import numpy as np

    epoch = 0
    chunk = 32 * batch_size
    while True:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(lengths))
        batches = []
        for start in range(0, len(order) - batch_size + 1, chunk):
            part = order[start:start + chunk]
            part = part[np.argsort([lengths[i] for i in part], kind="stable")]
            batches += [part[i:i + batch_size] for i in range(0, len(part) - batch_size + 1, batch_size)]
        yield from (batches[i] for i in rng.permutation(len(batches)))
        epoch += 1


def _lr_multiplier(step: int, config: PretrainConfig) -> float:
    """Learning-rate factor at ``step``: linear warm-up, then cosine decay to 10% at ``config.steps``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _optimizer(model, config: PretrainConfig):
    """AdamW (weight decay on weight matrices only) and its warm-up + cosine schedule."""
    import torch

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.98))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_multiplier(step, config))
    return optimizer, scheduler


def _restore(resume: dict[str, Any], optimizer, scheduler,
             batches) -> tuple[int, list[float], list[float], list[list[float]]]:
    """Load an interrupted run's optimizer and schedule, skip the batches it used; its step and loss records."""
    optimizer.load_state_dict(resume["optimizer"])
    scheduler.load_state_dict(resume["scheduler"])
    step, losses = resume["step"], list(resume["losses"])
    first_losses = list(resume.get("first_losses", []))
    curve = list(resume.get("curve", []))
    for _ in range(step):  # the data order continues where the interrupted run stopped
        next(batches)
    return step, losses, first_losses, curve


def _train_step(model, optimizer, scheduler, rows: list[list[int]], pad_id: int, device) -> float:
    """One optimizer step of next-token prediction on every token of ``rows``; returns the loss."""
    import torch
    import torch.nn.functional as F

    from agents.common.device import autocast
    from agents.common.model import lm_forward

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T), right-padded
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r)
        mask[b, : len(r)] = 1
    ids, mask = ids.to(device), mask.to(device)
    with autocast(device):
        logits = lm_forward(model, ids, mask).logits[:, :-1]  # (B, T-1, V)
    targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)  # (B, T-1)
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    return float(loss.detach())


def _report(step: int, losses: list[float], scheduler, progress, run_logger) -> None:
    """Advance the progress bar; every 25 steps show and log the mean loss of the last 25."""
    import numpy as np

    if progress is not None:
        progress.update(1)
        if step % 25 == 0:
            progress.set_postfix(loss=f"{np.mean(losses[-25:]):.3f}")
    if run_logger is not None and step % 25 == 0:
        run_logger.log({"loss": float(np.mean(losses[-25:])), "lr": scheduler.get_last_lr()[0]},
                       step=step, stage="pretrain")


def _train(model, corpus_ids: list[list[int]], pad_id: int, config: PretrainConfig, device, run_logger,
           resume: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``model`` in place up to ``config.steps`` (or the time budget), from ``resume`` if given.

    Returns the state needed to report or resume: ``step``, ``losses``, ``seconds`` (this call),
    ``optimizer`` and ``scheduler`` state dicts.
    """
    import numpy as np
    import torch

    torch.manual_seed(config.seed)
    model.to(device)
    model.train()
    optimizer, scheduler = _optimizer(model, config)
    batch_size = min(config.batch_size, len(corpus_ids))
    batches = _batches([len(r) for r in corpus_ids], batch_size, config.seed)
    if resume is not None:
        step, losses, first_losses, curve = _restore(resume, optimizer, scheduler, batches)
    else:
        step, losses, first_losses, curve = 0, [], [], []
    start = time.perf_counter()
    progress = run_logger.progress(total=config.steps, desc="pre-training", unit="step",
                                   initial=step) if run_logger else None
    while step < config.steps:
        rows = [corpus_ids[i] for i in next(batches)]
        losses.append(_train_step(model, optimizer, scheduler, rows, pad_id, device))
        step += 1
        if step <= LOGGED_FIRST_STEPS:
            first_losses.append(losses[-1])
        if step % 250 == 0:
            curve.append([step, float(np.mean(losses[-250:]))])
        _report(step, losses, scheduler, progress, run_logger)
        if config.time_budget_s is not None and time.perf_counter() - start >= config.time_budget_s:
            logger.warning("Pre-training stopped by its time budget (%.0f s) after %d of %d steps; the next run "
                           "resumes from there.", config.time_budget_s, step, config.steps)
            break
    if progress is not None:
        progress.close()
    model.eval()
    return {"step": step, "losses": losses[-50:], "first_losses": first_losses, "curve": curve,
            "seconds": time.perf_counter() - start,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}


def encode_corpus(tokenizer: Any, corpus: list[str], limit: int) -> tuple[list[list[int]], int]:
    """Token ids of every corpus text followed by EOS (cut at ``limit``), and the padding id."""
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    encoded = tokenizer(list(corpus), add_special_tokens=False)["input_ids"]  # one batched call
    return [(list(ids) + [eos])[:limit] for ids in encoded], pad


def _save_atomically(path: Path, write) -> None:
    """Run ``write(tmp)`` on a fresh temporary folder, then move it to ``path`` in one step."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    shutil.rmtree(path, ignore_errors=True)
    try:
        os.replace(tmp, path)  # atomic: a concurrent run never sees a half-written folder
    except OSError:  # another process wrote the same folder first
        shutil.rmtree(tmp, ignore_errors=True)


def pretrained_default_model(
    tokenizer: Any = None,
    model_config: Any = None,
    config: PretrainConfig | None = None,
    *,
    device: Any = "auto",
    refresh: bool = False,
    run_logger: Any = None,
):
    """The embedded default model, pre-trained on the task suite's text (from the cache when possible).

    Args:
        tokenizer: The tokenizer (default: :func:`~instruct_env.tokenizer.builtin_tokenizer`).
        model_config: A :class:`~agents.common.model.DefaultModelConfig` (default shape if ``None``).
        config: A :class:`PretrainConfig`.
        device: Where to train (``"auto"``: CUDA, then MPS, then CPU). The model is returned there.
        refresh: Retrain even when the cache has these weights.
        run_logger: Optional :class:`~agents.common.logging.RunLogger` (stage ``"pretrain"``).

    Returns:
        ``(model, info)``: a ``GPT2LMHeadModel`` in eval mode and a :class:`PretrainInfo`.
    """
    from agents.common.device import select_device
    from agents.common.model import DefaultModelConfig
    from instruct_env.tasks import pretraining_corpus

    if tokenizer is None:
        from instruct_env.tokenizer import builtin_tokenizer

        tokenizer = builtin_tokenizer()
    model_config = model_config if model_config is not None else DefaultModelConfig()
    config = config if config is not None else PretrainConfig()
    device = select_device(device)
    if not refresh:
        from agents.common.shipped import load_shipped

        shipped = load_shipped(tokenizer, model_config, config, device)
        if shipped is not None:
            return shipped
    corpus = pretraining_corpus(n_per_task=config.n_per_task, seed=config.seed, tasks=config.tasks)
    path = pretrain_cache_path(model_config, tokenizer, config, corpus)
    if config.cache and not refresh:
        cached = _load_cached(path, device)
        if cached is not None:
            return cached
    corpus_ids, pad = encode_corpus(tokenizer, corpus, model_config.n_positions)
    partial = path.with_name(path.name + ".partial")
    resumable = partial if config.cache and not refresh else None
    model, resume = _start_or_resume(tokenizer, model_config, config, resumable)
    state = _train(model, corpus_ids, pad, config, device, run_logger, resume)
    meta = _run_meta(state, resume, len(corpus), config, model_config)
    info_path = _save_run(model, state, meta, path, partial) if config.cache else None
    return model, PretrainInfo(path=info_path, from_cache=False, elapsed_s=state["seconds"], **meta)


def _run_meta(state: dict[str, Any], resume: dict[str, Any] | None, corpus_examples: int, config: PretrainConfig,
              model_config: Any) -> dict[str, Any]:
    """What :class:`PretrainInfo` and the cache's ``pretrain_info.json`` record of a run (and its resumed part)."""
    return {
        "steps": state["step"],
        "planned_steps": config.steps,
        "resumed_from_step": resume["step"] if resume is not None else 0,
        "final_loss": float(sum(state["losses"]) / max(1, len(state["losses"]))),
        "train_seconds": state["seconds"] + (resume["seconds"] if resume is not None else 0.0),
        "corpus_examples": corpus_examples,
        "config": dataclasses.asdict(config),
        "model_config": dataclasses.asdict(model_config),
    }


def _load_cached(path: Path, device) -> tuple[Any, PretrainInfo] | None:
    """``(model, info)`` from the cache folder ``path``; ``None`` if it has none or cannot be read."""
    from transformers import GPT2LMHeadModel

    meta_file = path / "pretrain_info.json"
    if not meta_file.exists():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        model = GPT2LMHeadModel.from_pretrained(path).to(device).eval()
    except (OSError, ValueError) as exc:  # a damaged cache entry: train again
        logger.warning("Ignoring the unreadable pre-trained model cache at %s (%s).", path, exc)
        return None
    meta.update(path=str(path), from_cache=True, elapsed_s=0.0)
    return model, PretrainInfo(**meta)


def _start_or_resume(tokenizer: Any, model_config: Any, config: PretrainConfig,
                     partial: Path | None) -> tuple[Any, dict[str, Any] | None]:
    """A freshly initialised model, or the interrupted run kept in ``partial`` with its saved state."""
    import torch

    from agents.common.model import build_default_model

    model = build_default_model(tokenizer, model_config, seed=config.seed)
    if partial is None or not (partial / "state.pt").exists():
        return model, None
    try:
        resume = torch.load(partial / "state.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(resume["model"])
    except (OSError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as exc:
        logger.warning("Ignoring the unreadable partial pre-training at %s (%s).", partial, exc)
        return build_default_model(tokenizer, model_config, seed=config.seed), None
    logger.info("Resuming pre-training at step %d of %d from %s.", resume["step"], config.steps, partial)
    return model, resume


def _save_run(model, state: dict[str, Any], meta: dict[str, Any], path: Path, partial: Path) -> str | None:
    """Cache a finished run at ``path`` (returned), or keep an unfinished one in ``partial`` to resume."""
    import torch

    if state["step"] >= meta["planned_steps"]:

        def write_model(tmp: Path) -> None:
            model.save_pretrained(tmp)
            (tmp / "pretrain_info.json").write_text(json.dumps(meta, indent=2))

        _save_atomically(path, write_model)
        shutil.rmtree(partial, ignore_errors=True)
        return str(path)
    # cut short by the time budget: keep everything needed to resume
    snapshot = {**state, "seconds": meta["train_seconds"],
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    _save_atomically(partial, lambda tmp: torch.save(snapshot, tmp / "state.pt"))
    return None
