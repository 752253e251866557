"""Supervised fine-tuning: the warm start before RL.

>>> from agents.sft import SFTConfig
>>> SFTConfig(num_examples=16).num_examples
16
"""

from __future__ import annotations

from agents.sft.config import SFTConfig
from agents.sft.data import IGNORE_INDEX, Example, collate_causal, collate_seq2seq, encode_example, paraphrase
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
