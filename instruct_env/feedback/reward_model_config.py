"""The settings of a reward model, importable without torch.

:class:`RewardModelConfig` is part of the feedback loop's configuration (and so of the main job's),
which is built, checked and printed without torch; :mod:`instruct_env.feedback.reward_model`,
which needs torch, re-exports both names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from instruct_env._validation import check_int
from instruct_env.error import ConfigError

__all__ = ["RewardModelConfig", "Pooling"]

#: How hidden states become one vector: all tokens, the completion's tokens, or the last token.
Pooling = Literal["mean", "completion", "last"]


@dataclass
class RewardModelConfig:
    """Shape and training of a :class:`~instruct_env.feedback.reward_model.RewardModel`.

    Attributes:
        n_heads: Ensemble size (each head sees its own bootstrap resample of the labels).
        hidden: Width of each head's hidden layer; 0 makes the heads linear.
        epochs: Full-batch Adam steps of a fit from scratch.
        warm_epochs: Steps of a warm-started fit (``None``: ``epochs``).
        lr: Adam learning rate.
        weight_decay: Decoupled weight decay (AdamW).
        bootstrap: Resample the labels per head (``False``: every head sees every label once;
            the heads then differ only by their initial weights).
        seed: Seeds the heads' initial weights and the resamples.
    """

    n_heads: int = 4
    hidden: int = 32
    epochs: int = 300
    warm_epochs: int | None = None
    lr: float = 1e-2
    weight_decay: float = 1e-2
    bootstrap: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name, minimum in (("n_heads", 1), ("hidden", 0), ("epochs", 1), ("seed", 0)):
            check_int(f"RewardModelConfig.{name}", getattr(self, name), minimum)
        if self.warm_epochs is not None and (not isinstance(self.warm_epochs, int) or self.warm_epochs < 1):
            raise ConfigError(f"RewardModelConfig.warm_epochs must be an integer >= 1 or None; got {self.warm_epochs!r}.")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 1):
            raise ConfigError(f"RewardModelConfig.lr must be in (0, 1); got {self.lr!r}. Typical: 1e-3 to 3e-2.")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ConfigError(f"RewardModelConfig.weight_decay must be >= 0; got {self.weight_decay!r}.")
