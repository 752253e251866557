"""Q-learning agents: offline ILQL from token-level episodes, online soft Q-learning on ``InstructEnv/Token-v0``."""

from agents.q.config import ILQLConfig, SoftQConfig
from agents.q.data import Episode, TransitionDataset
from agents.q.ilql import ILQLDecoder, ILQLTrainer

__all__ = ["ILQLTrainer", "ILQLConfig", "ILQLDecoder", "SoftQConfig", "Episode", "TransitionDataset"]
