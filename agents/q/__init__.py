"""Q-learning agents: offline ILQL from token-level episodes, online soft Q-learning on ``InstructEnv/Token-v0``."""

from agents.q.config import ILQLConfig, SoftQConfig
from agents.q.data import Episode, TransitionDataset
from agents.q.ilql import ILQLDecoder, ILQLTrainer
from agents.q.soft_q import SoftQTrainer

__all__ = ["ILQLTrainer", "ILQLConfig", "ILQLDecoder", "SoftQConfig", "SoftQTrainer", "Episode", "TransitionDataset"]
