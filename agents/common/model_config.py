"""The shape of the embedded default model, importable without torch.

:class:`DefaultModelConfig` is part of the main job's configuration tree
(:class:`agents.pipeline.ModelConfig`), which is built, checked and printed without torch; the
model itself is built by :func:`agents.common.model.build_default_model`, which re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from instruct_env.error import ConfigError

__all__ = ["DefaultModelConfig", "ModelKind"]

#: How a Hugging Face model is loaded: decided from its config, or as a causal or a sequence-to-sequence LM.
ModelKind = Literal["auto", "causal", "seq2seq"]


@dataclass
class DefaultModelConfig:
    """Shape of the embedded default model: a small GPT-2 built from a config.

    Attributes:
        n_layer: Transformer blocks.
        n_embd: Width.
        n_head: Attention heads (must divide ``n_embd``).
        n_positions: Longest sequence (prompt + completion).
        dropout: Dropout in embeddings, attention and residuals.
    """

    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 256
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_embd", "n_head", "n_positions"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}).")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1); got {self.dropout}.")
