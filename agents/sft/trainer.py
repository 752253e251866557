"""The SFT trainer: response-only cross-entropy, warm-up + decay, early stopping on validation loss.

Data parallel under torchrun (see :mod:`agents.common.distributed`): each epoch's shuffled order
(the same on every rank) is split ``order[rank::world_size]`` after padding it by wrap-around to
a multiple of the world size (as ``torch.utils.data.DistributedSampler``), gradients are summed
over ranks and divided by the global response-token count, so a step equals one process's step
on the global batch (``world_size * batch_size * grad_accum`` examples). The averaging is done by
DDP's backward hooks, by one all-reduce after the backward passes, or by FSDP's reduce-scatter
(the model is then sharded in place), per ``config.distributed.strategy``. Only rank 0 saves,
and a sharded model is gathered first, so the saved model is whole.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.distributed.tensor import DTensor

from agents.common import distributed as dist
from agents.common.device import autocast, select_device
from agents.common.model import lm_forward
from agents.sft.config import SFTConfig
from agents.sft.data import (
    IGNORE_INDEX,
    Example,
    can_paraphrase,
    collate_causal,
    collate_seq2seq,
    encode_example,
    paraphrase,
    take_per_task,
)
from instruct_env.error import ConfigError, EmptyDatasetError
from instruct_env.tasks.sample import Sample, SampleSource

__all__ = ["SFTTrainer", "SFTResult", "response_loss", "lr_multiplier"]

logger = logging.getLogger(__name__)


def lr_multiplier(step: int, total: int, warmup: int, schedule: str) -> float:
    """Learning-rate factor at optimizer step ``step`` (0-based): linear warm-up, then the decay.

    >>> [round(lr_multiplier(s, 10, 2, "linear"), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    >>> round(lr_multiplier(6, 10, 2, "cosine"), 3)
    0.5
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def response_loss(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over the labelled (response) tokens and their count.

    ``model`` may be inside a :class:`~torch.nn.parallel.DistributedDataParallel` wrapper.
    Causal LMs: ``logits[:, t - 1]`` predicts ``labels[:, t]``. Encoder-decoder LMs: the decoder
    reads the labels shifted right (teacher forcing) and ``logits[:, t]`` predicts ``labels[:, t]``.
    """
    labels = batch["labels"]
    # The Hugging Face model itself when ``model`` is its DDP wrapper (causal or encoder-decoder, as ``model``).
    core: Any = dist.unwrap(model)
    if getattr(core.config, "is_encoder_decoder", False):
        decoder_inputs = core.prepare_decoder_input_ids_from_labels(labels=labels)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       decoder_input_ids=decoder_inputs).logits  # (B, T, V)
        targets = labels
    else:
        logits = lm_forward(model, batch["input_ids"], batch["attention_mask"]).logits[:, :-1]  # (B, T-1, V)
        targets = labels[:, 1:]  # (B, T-1)
    loss_sum = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=IGNORE_INDEX, reduction="sum")
    return loss_sum, (targets != IGNORE_INDEX).sum()


@dataclass
class SFTResult:
    """What :meth:`SFTTrainer.train` did.

    Attributes:
        steps: Optimizer steps taken.
        epochs: Passes over the training examples (fractional when stopped mid-epoch).
        stopped_by: ``"epochs"``, ``"max_steps"``, ``"early_stopping"`` or ``"time_budget"``.
        initial_val_loss: Validation loss before training.
        best_val_loss: Lowest validation loss seen (the restored weights with ``keep_best``).
        best_step: Step of ``best_val_loss`` (0: before training).
        final_train_loss: Mean training loss over the last logging window.
        elapsed_s: Wall-clock seconds.
        num_train: Training examples; ``num_val``: validation examples.
        restored: The weights of ``best_step`` were loaded back at the end (``keep_best``).
        checkpoint: Where the best model was saved, if anywhere.
        notes: Things the caller should know (e.g. augmentation skipped).
    """

    steps: int
    epochs: float
    stopped_by: str
    initial_val_loss: float
    best_val_loss: float
    best_step: int
    final_train_loss: float
    elapsed_s: float
    num_train: int
    num_val: int
    restored: bool = False
    checkpoint: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class _TrainState:
    """What :meth:`SFTTrainer.train` carries from step to step."""

    best: float  # lowest validation loss so far (the initial one at first)
    best_step: int = 0
    best_state: dict[str, torch.Tensor] | None = None  # the weights of best_step, with keep_best
    bad_evals: int = 0  # evaluations since the last improvement
    step: int = 0
    epoch: int = 0
    window: list[float] = field(default_factory=list)  # the latest step losses, for the logged mean


class SFTTrainer:
    """Supervised fine-tuning of a causal or encoder-decoder language model on solved examples.

    The loss is the mean cross-entropy of the response tokens (prompt tokens are masked with
    ``-100``). The model is trained in place; with ``keep_best`` it ends with the weights of its
    lowest validation loss.

    Args:
        model: A Hugging Face causal or seq2seq LM, or an :class:`~agents.common.model.ActorCritic`
            (its language model is trained).
        tokenizer: Its tokenizer (needs an EOS token).
        config: An :class:`~agents.sft.config.SFTConfig`.
        train_data: Training samples (default: the built-in suite's train split); the first
            ``config.num_examples`` of each task are used.
        val_data: Validation samples (default: the built-in suite's validation split); the first
            ``config.val_examples`` of each task are used.
        tasks: Built-in task names for the default datasets (``None``: all of them).
        formatter: A :class:`~instruct_env.tasks.PromptFormatter` (default template if ``None``).
        run_logger: An optional :class:`~agents.common.logging.RunLogger` (records under stage ``"sft"``).

    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> from instruct_env.tokenizer import builtin_tokenizer
    >>> tok = builtin_tokenizer()
    >>> lm = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2))
    >>> cfg = SFTConfig(num_examples=2, val_examples=1, max_steps=2, batch_size=4, device="cpu")
    >>> SFTTrainer(lm, tok, cfg, tasks=["copy"]).train().steps
    2
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: SFTConfig | None = None,
        *,
        train_data: SampleSource | Sequence[Sample] | None = None,
        val_data: SampleSource | Sequence[Sample] | None = None,
        tasks: Sequence[str] | None = None,
        formatter: Any = None,
        run_logger: Any = None,
    ) -> None:
        from instruct_env.tasks import BuiltinDataset, PromptFormatter

        self.config = config if config is not None else SFTConfig()
        cfg = self.config
        self.model: Any = dist.unwrap(model, lm=True)  # a Hugging Face model (PreTrainedModel or PEFT)
        self.tokenizer = tokenizer
        if tokenizer.eos_token_id is None:
            raise ConfigError("SFT needs a tokenizer with an eos_token_id: the model must learn where answers end.")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.encoder_decoder = bool(getattr(self.model.config, "is_encoder_decoder", False))
        self.formatter = formatter if formatter is not None else PromptFormatter()
        self.run_logger = run_logger
        self.device = select_device(cfg.device)
        if train_data is None:
            train_data = BuiltinDataset(tasks, split="train", size_per_task=cfg.num_examples, seed=cfg.seed)
        if val_data is None:
            val_data = BuiltinDataset(tasks, split="validation", size_per_task=cfg.val_examples, seed=cfg.seed)
        self.train_samples = take_per_task(train_data, cfg.num_examples)
        self.val_samples = take_per_task(val_data, cfg.val_examples)
        if not self.train_samples:
            raise EmptyDatasetError("SFT has no training examples: the train data is empty.")
        if not self.val_samples:
            raise EmptyDatasetError("SFT has no validation examples for early stopping: the validation data is empty.")
        self.notes: list[str] = []
        if cfg.paraphrase_prob > 0 and not any(can_paraphrase(s) for s in self.train_samples):
            note = ("Instruction-paraphrase augmentation was requested but skipped: the training samples' task "
                    "families do not expose instruction templates (only built-in task families do).")
            logger.warning(note)
            self.notes.append(note)
        self._val_examples = [self._encode(s) for s in self.val_samples]
        self._train_examples = [self._encode(s) for s in self.train_samples]

    # -- data ----------------------------------------------------------------------------------

    def _max_total_tokens(self) -> int | None:
        if self.encoder_decoder:
            return None
        cfg = self.model.config
        return getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)

    def _encode(self, sample: Sample) -> Example:
        return encode_example(sample, self.tokenizer, self.formatter, max_prompt_tokens=self.config.max_prompt_tokens,
                              max_response_tokens=self.config.max_response_tokens,
                              max_total_tokens=self._max_total_tokens())

    def _collate(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        collate = collate_seq2seq if self.encoder_decoder else collate_causal
        return {k: v.to(self.device) for k, v in collate(examples, self.pad_id).items()}

    def _epoch_batches(self, epoch: int, rng: np.random.Generator) -> list[list[Example]]:
        cfg = self.config
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(self.train_samples))
        if dist.world_size() > 1:  # this rank's share; equal-length shards so every rank steps together
            world = dist.world_size()
            order = np.resize(order, -(-len(order) // world) * world)[dist.rank()::world]
        examples = []
        for i in order:
            if cfg.paraphrase_prob > 0 and rng.random() < cfg.paraphrase_prob:
                examples.append(self._encode(paraphrase(self.train_samples[i], rng)))
            else:
                examples.append(self._train_examples[i])
        return [examples[i:i + cfg.batch_size] for i in range(0, len(examples), cfg.batch_size)]

    # -- evaluation ----------------------------------------------------------------------------

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Mean cross-entropy per response token on the validation examples."""
        was_training = self.model.training
        self.model.eval()
        total, count = 0.0, 0
        try:
            for i in range(0, len(self._val_examples), 64):
                with autocast(self.device):
                    loss_sum, n = response_loss(self.model, self._collate(self._val_examples[i:i + 64]))
                total += float(loss_sum)
                count += int(n)
        finally:
            self.model.train(was_training)
        return total / max(count, 1)

    # -- training ------------------------------------------------------------------------------

    def _optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ConfigError("The model has no trainable parameters (all have requires_grad=False).")
        decay = [p for p in params if p.dim() >= 2]  # weight matrices and embeddings
        no_decay = [p for p in params if p.dim() < 2]  # biases and norm scales
        groups = [{"params": decay, "weight_decay": self.config.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.config.lr)

    def _log(self, record: dict[str, Any], step: int, kind: str) -> None:
        if self.run_logger is not None:
            self.run_logger.log(record, step=step, stage="sft", kind=kind)

    def train(self) -> SFTResult:
        """Train until the epochs, ``max_steps``, early stopping or the time budget end it.

        Seeds torch's global generator with ``config.seed`` (dropout).
        """
        cfg = self.config
        start = time.perf_counter()
        trained, optimizer, scheduler, planned, rng = self._prepare_training()
        initial = self.validation_loss()
        self._log({"val_loss": initial}, 0, "eval")
        state = _TrainState(best=initial, best_state=self._snapshot() if cfg.keep_best else None)
        progress = self.run_logger.progress(total=planned, desc="SFT", unit="step") if self.run_logger else None
        stopped_by, epoch_fraction = "epochs", 0.0
        while True:
            stop = self._train_epoch(self._epoch_batches(state.epoch, rng), optimizer, scheduler, trained, state,
                                     progress, start)
            if stop is not None:
                stopped_by, epoch_fraction = stop
                break
            state.epoch += 1
            if state.epoch >= cfg.epochs and cfg.max_steps is None:
                break
        if progress is not None:
            progress.close()
        restored = cfg.keep_best and state.best_state is not None and state.best_step != state.step
        if restored:
            self.model.load_state_dict(state.best_state)
        self.model.eval()
        checkpoint = None
        if cfg.checkpoint_dir is not None:
            checkpoint = str(self.save(cfg.checkpoint_dir))
        return SFTResult(
            steps=state.step, epochs=state.epoch + epoch_fraction, stopped_by=stopped_by, initial_val_loss=initial,
            best_val_loss=state.best, best_step=state.best_step,
            final_train_loss=float(np.mean(state.window)) if state.window else math.nan,
            elapsed_s=time.perf_counter() - start, num_train=len(self.train_samples), num_val=len(self.val_samples),
            restored=restored, checkpoint=checkpoint, notes=list(self.notes),
        )

    def _prepare_training(self) -> tuple[torch.nn.Module, torch.optim.Optimizer, Any, int, np.random.Generator]:
        """Seed, place and wrap the model; ``(trained, optimizer, scheduler, planned steps, augmentation rng)``."""
        cfg = self.config
        torch.manual_seed(dist.rank_seed(cfg.seed))  # dropout masks differ between ranks
        rng = np.random.default_rng(cfg.seed)
        self.model.to(self.device)
        dist.broadcast_module(self.model)
        self.model.train()
        trained = dist.wrap_module(self.model, cfg.distributed.strategy)  # DDP wrapper / FSDP shards under torchrun
        per_step = cfg.batch_size * cfg.grad_accum
        steps_per_epoch = math.ceil(math.ceil(len(self.train_samples) / dist.world_size()) / per_step)
        planned = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
        warmup = int(cfg.warmup_ratio * planned)
        optimizer = self._optimizer()
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_multiplier(s, planned, warmup, cfg.schedule))
        return trained, optimizer, scheduler, planned, rng

    def _train_epoch(self, batches: list[list[Example]], optimizer: torch.optim.Optimizer, scheduler: Any,
                     trained: torch.nn.Module, state: _TrainState, progress: Any,
                     start: float) -> tuple[str, float] | None:
        """Step through one epoch's ``batches``, ``grad_accum`` at a time, logging and evaluating when due.

        Returns ``(stopped_by, fraction of the epoch done)`` when a stop condition ended training, else ``None``.
        """
        cfg = self.config
        for first in range(0, len(batches), cfg.grad_accum):
            group = batches[first:first + cfg.grad_accum]
            step_loss = self._optimizer_step(optimizer, group, trained)
            scheduler.step()
            state.step += 1
            state.window.append(step_loss)
            if progress is not None:
                progress.update(1)
            if state.step % cfg.log_every == 0:
                self._log({"loss": float(np.mean(state.window)), "lr": scheduler.get_last_lr()[0],
                           "epoch": state.epoch + (first + len(group)) / len(batches)}, state.step, "train")
                state.window = state.window[-cfg.log_every:]
            stopped_by = self._stop_reason(state, first + cfg.grad_accum >= len(batches), start)
            if stopped_by is not None:
                return stopped_by, (first + len(group)) / len(batches)
        return None

    def _stop_reason(self, state: _TrainState, end_of_epoch: bool, start: float) -> str | None:
        """Evaluate if due; the condition that ends training after this step (the last listed that holds), if any."""
        cfg = self.config
        stopped_by = None
        if (state.step % cfg.eval_every == 0) if cfg.eval_every else end_of_epoch:
            if self._evaluate(state):
                stopped_by = "early_stopping"
        if cfg.max_steps is not None and state.step >= cfg.max_steps:
            stopped_by = "max_steps"
        # Checked by every rank on every step: any_rank is a collective, so no rank may skip it.
        if cfg.time_budget_s is not None and dist.any_rank(time.perf_counter() - start >= cfg.time_budget_s):
            stopped_by = "time_budget"
        return stopped_by

    def _evaluate(self, state: _TrainState) -> bool:
        """Log the validation loss, keep the best weights; True once ``patience`` evaluations did not improve."""
        cfg = self.config
        val = self.validation_loss()
        self._log({"val_loss": val}, state.step, "eval")
        if val < state.best - cfg.min_delta:
            state.best, state.best_step, state.bad_evals = val, state.step, 0
            state.best_state = self._snapshot() if cfg.keep_best else None
        else:
            state.bad_evals += 1
        return bool(cfg.patience) and state.bad_evals >= cfg.patience

    def _optimizer_step(self, optimizer: torch.optim.Optimizer, group: list[list[Example]],
                        trained: torch.nn.Module | None = None) -> float:
        """One optimizer step over ``group`` (micro-batches); returns the mean loss per response token.

        ``trained`` is ``self.model`` (the default) or its DDP wrapper
        (:func:`~agents.common.distributed.wrap_module`).
        """
        trained = self.model if trained is None else trained
        batches = [self._collate(b) for b in group]
        total_tokens = int(dist.all_reduce_sum(float(sum(int((b["labels"] != IGNORE_INDEX).sum())
                                                              for b in batches))))  # over all ranks
        optimizer.zero_grad(set_to_none=True)
        loss_total = 0.0
        for i, batch in enumerate(batches):
            with dist.maybe_no_sync(trained, sync=i == len(batches) - 1):  # average once, after the last
                with autocast(self.device):
                    loss_sum, _ = response_loss(trained, batch)
                # Scaled by world_size because the ranks' gradients are averaged: the result is sum / global tokens.
                (loss_sum * dist.world_size() / max(total_tokens, 1)).backward()
            loss_total += float(loss_sum.detach())
        dist.sync_gradients(trained, self.model.parameters())
        loss_total = dist.all_reduce_sum(loss_total)
        if self.config.max_grad_norm > 0:
            dist.clip_grad_norm(self.model.parameters(), self.config.max_grad_norm)
        optimizer.step()
        return loss_total / max(total_tokens, 1)

    def _snapshot(self) -> dict[str, torch.Tensor]:
        # A sharded model's snapshot keeps each rank's shards (loaded back into the same sharded model).
        return {k: v.detach().clone() if isinstance(v, DTensor) else v.detach().to("cpu", copy=True)
                for k, v in self.model.state_dict().items()}

    def save(self, directory: str | Path) -> Path:
        """Save the model and tokenizer with ``save_pretrained`` and the config as ``sft_config.yaml``.

        In a multi-process run only rank 0 writes (the weights are the same on every rank); a
        sharded (FSDP) model is gathered first (every rank must call ``save``), so the saved
        model is whole and loads anywhere.
        """
        from agents.common.config import save_yaml

        path = Path(directory)
        # A sharded model is gathered whole (a collective: every rank takes part); None: the model's own weights.
        state = dist.full_state_dict(self.model) if dist.is_sharded(self.model) else None
        if not dist.is_main():
            dist.barrier()
            return path
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, state_dict=state)
        self.tokenizer.save_pretrained(path)
        save_yaml(self.config, path / "sft_config.yaml")
        dist.barrier()
        return path
