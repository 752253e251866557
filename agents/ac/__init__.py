"""Actor-critic agents (PPO, A2C) acting token by token in ``InstructEnv/Token-v0``."""

from agents.ac.a2c import A2CTrainer
from agents.ac.config import A2CConfig, ActorCriticConfig, PPOConfig
from agents.ac.ppo import PPOTrainer

__all__ = ["PPOTrainer", "A2CTrainer", "PPOConfig", "A2CConfig", "ActorCriticConfig"]
