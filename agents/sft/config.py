"""Configuration of supervised fine-tuning (the warm start before RL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from agents.common.distributed_config import DistributedConfig, as_distributed_config
from instruct_env._validation import check_choice, choices_of
from instruct_env.error import ConfigError

__all__ = ["SFTConfig", "SCHEDULES", "Schedule"]

#: Learning-rate shapes after the linear warm-up.
Schedule = Literal["cosine", "linear", "constant"]
SCHEDULES: tuple[str, ...] = choices_of(Schedule)


@dataclass
class SFTConfig:
    """Supervised fine-tuning: cross-entropy on the response tokens of solved train examples.

    The defaults are sized for the embedded default model on 2 CPU cores: 64 examples per task
    family (few-shot: the default model was pre-trained on the suite's text, so SFT only has to
    teach it to answer and stop), at most 15 epochs, early stopping on the validation loss, and a
    60-second time budget.

    Attributes:
        num_examples: Training examples per task family (the first ones of the train split).
        epochs: Passes over the training examples.
        max_steps: Train for exactly this many optimizer steps, however many epochs that takes
            (overrides ``epochs``; ``None``: ``epochs`` decide).
        lr: Peak learning rate (AdamW).
        schedule: ``"cosine"``, ``"linear"`` (both decay to 0 at the last planned step) or ``"constant"``.
        warmup_ratio: Fraction of the planned steps spent warming up linearly from 0.
        batch_size: Examples per micro-batch.
        grad_accum: Micro-batches per optimizer step (the loss is averaged over all their
            response tokens, so results match one big batch).
        weight_decay: AdamW decoupled weight decay (not applied to biases and norms).
        max_grad_norm: Gradient clipping norm (``0``: no clipping).
        val_examples: Validation-split examples per task family for the early-stopping loss.
        eval_every: Optimizer steps between validation losses (``0``: once per epoch).
        patience: Validation losses without improvement before stopping (``0``: never stop early).
        min_delta: An improvement must lower the validation loss by more than this.
        keep_best: Restore the weights with the lowest validation loss at the end.
        paraphrase_prob: Probability of replacing an example's instruction by another phrasing
            of the same task family, each time the example is used (augmentation; needs task
            families that expose their instruction templates, as the built-in ones do).
        max_prompt_tokens: Prompt budget (longer prompts are truncated like the environments do).
        max_response_tokens: Response tokens trained on, end-of-sequence token included.
        checkpoint_dir: Where to save the best model (``None``: keep it in memory only).
        log_every: Optimizer steps between training-loss records.
        seed: Seed of initial data order, dropout and augmentation.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        time_budget_s: Stop after this many seconds of training (``None``: no limit).
        distributed: How ranks average gradients in a data-parallel run
            (:class:`~agents.common.distributed.DistributedConfig`; ignored in a single process).
    """

    num_examples: int = 64
    epochs: int = 15
    max_steps: int | None = None
    lr: float = 3e-4
    schedule: Schedule = "cosine"
    warmup_ratio: float = 0.05
    batch_size: int = 32
    grad_accum: int = 1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    val_examples: int = 16
    eval_every: int = 0
    patience: int = 3
    min_delta: float = 0.0
    keep_best: bool = True
    paraphrase_prob: float = 0.0
    max_prompt_tokens: int = 128
    max_response_tokens: int = 64
    checkpoint_dir: str | None = None
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    time_budget_s: float | None = 60.0
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        self.distributed = as_distributed_config(self.distributed, "SFTConfig")
        for name in ("num_examples", "epochs", "batch_size", "grad_accum", "val_examples", "max_prompt_tokens",
                     "log_every"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"SFTConfig.{name} must be >= 1; got {value}.")
        for name in ("eval_every", "patience", "seed"):
            value = getattr(self, name)
            if value < 0:
                raise ConfigError(f"SFTConfig.{name} must be >= 0; got {value}.")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"SFTConfig.max_steps must be >= 1 or None (no step limit); got {self.max_steps}.")
        if not self.lr > 0:
            raise ConfigError(f"SFTConfig.lr must be > 0; got {self.lr}.")
        check_choice("SFTConfig.schedule", self.schedule, Schedule)
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"SFTConfig.warmup_ratio must be in [0, 1); got {self.warmup_ratio}.")
        if self.weight_decay < 0 or self.max_grad_norm < 0 or self.min_delta < 0:
            raise ConfigError(
                "SFTConfig.weight_decay, max_grad_norm and min_delta must be >= 0; got "
                f"{self.weight_decay}, {self.max_grad_norm} and {self.min_delta}."
            )
        if not 0.0 <= self.paraphrase_prob <= 1.0:
            raise ConfigError(f"SFTConfig.paraphrase_prob must be in [0, 1]; got {self.paraphrase_prob}.")
        if self.max_response_tokens < 2:
            raise ConfigError(
                f"SFTConfig.max_response_tokens must be >= 2 (at least one answer token and the end-of-sequence "
                f"token); got {self.max_response_tokens}."
            )
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError(
                f"SFTConfig.time_budget_s must be > 0 seconds, or None for no limit; got {self.time_budget_s}."
            )
