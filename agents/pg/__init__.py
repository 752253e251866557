"""Policy-gradient agents (REINFORCE, GRPO, RLOO) answering in ``InstructEnv/Completion-v0``."""

from agents.pg.config import GRPOConfig, PolicyGradientConfig, ReinforceConfig, RLOOConfig
from agents.pg.grpo import GRPOTrainer
from agents.pg.reinforce import ReinforceTrainer
from agents.pg.rloo import RLOOTrainer

__all__ = [
    "ReinforceTrainer",
    "GRPOTrainer",
    "RLOOTrainer",
    "ReinforceConfig",
    "GRPOConfig",
    "RLOOConfig",
    "PolicyGradientConfig",
]
