"""Reward scaling: a fixed factor (:class:`ScaleReward`); running normalisation is Gymnasium's.

Running normalisation needs nothing of ours: :class:`gymnasium.wrappers.NormalizeReward`
(re-exported by :mod:`instruct_env.wrappers`) divides each reward by the running standard
deviation of the discounted return ``G_t = gamma * G_{t-1} + r_t``. It scales but does not
subtract a mean -- on purpose: shifting every step's reward by a constant would change
which answer lengths pay, since episodes have different lengths. The vector envs take
:class:`gymnasium.wrappers.vector.NormalizeReward`; with SB3 use ``VecNormalize(venv,
norm_obs=False, norm_reward=True)`` -- ``norm_obs`` must stay off, normalising token ids
would destroy them.
"""

from __future__ import annotations

import math
from typing import SupportsFloat

import gymnasium as gym

from instruct_env.error import ConfigError

__all__ = ["ScaleReward"]


class ScaleReward(gym.RewardWrapper, gym.utils.RecordConstructorArgs):
    """Multiply every reward by a constant ``scale`` (picklable, unlike ``TransformReward`` with a lambda).

    Scaling leaves the optimal policy unchanged; it sets the size of the reward against
    other terms (a KL penalty, an entropy bonus) and against the critic's initial outputs.

    Args:
        env: Any env.
        scale: A finite factor, > 0.

    >>> import gymnasium as gym
    >>> import instruct_env
    >>> env = ScaleReward(gym.make("InstructEnv/Completion-v0", tasks=["copy"]), scale=10.0)
    >>> _, info = env.reset(seed=1)
    >>> env.step(info["references"][0])[1]
    10.0
    """

    def __init__(self, env: gym.Env, scale: float) -> None:
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ConfigError(f"scale must be a finite number > 0; got {scale!r}. (To flip a reward's sign, "
                              "change the reward itself.)")
        gym.utils.RecordConstructorArgs.__init__(self, scale=scale)
        super().__init__(env)
        self.scale = float(scale)

    def reward(self, reward: SupportsFloat) -> float:
        """``scale * reward``."""
        return self.scale * float(reward)
