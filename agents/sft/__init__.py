"""Supervised fine-tuning: the warm start before RL.

The config imports without torch; the trainer and data helpers are imported on first use.

>>> from agents.sft import SFTConfig
>>> SFTConfig(num_examples=16).num_examples
16
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agents.sft.config import SFTConfig

if TYPE_CHECKING:  # pragma: no cover
    from agents.sft.data import (
        IGNORE_INDEX,
        Example,
        collate_causal,
        collate_seq2seq,
        encode_example,
        paraphrase,
    )
    from agents.sft.trainer import SFTResult, SFTTrainer, response_loss

__all__ = [
    "SFTConfig",
    "SFTTrainer",
    "SFTResult",
    "response_loss",
    "Example",
    "encode_example",
    "collate_causal",
    "collate_seq2seq",
    "paraphrase",
    "IGNORE_INDEX",
]

_LAZY = {name: "agents.sft.data" for name in ("IGNORE_INDEX", "Example", "collate_causal", "collate_seq2seq",
                                              "encode_example", "paraphrase")}
_LAZY.update({name: "agents.sft.trainer" for name in ("SFTResult", "SFTTrainer", "response_loss")})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
