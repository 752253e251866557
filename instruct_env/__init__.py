"""instruct-env: instruction tuning as a reinforcement-learning problem.

Importing this package is cheap: it registers the Gymnasium environments and
exposes the light-weight sub-packages. torch and transformers are only imported
when an environment that needs a tokenizer is created.
"""

from __future__ import annotations

from instruct_env import error, rewards, tasks
from instruct_env.envs import ENV_IDS, register_envs
from instruct_env.tasks.sample import Sample

__version__ = "0.1.0"

__all__ = ["ENV_IDS", "Sample", "error", "rewards", "tasks", "__version__"]

register_envs()
