"""``Curriculum``: harder built-in tasks once the agent does well on the current ones."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import gymnasium as gym
import numpy as np

from instruct_env.error import ConfigError
from instruct_env.tasks import BuiltinDataset

if TYPE_CHECKING:
    from instruct_env.envs.core import EnvSetup

__all__ = ["Curriculum"]


class Curriculum(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Move through difficulty ``levels`` of the built-in suite as the running mean episode reward rises.

    Each level is a dict of the built-in tasks' difficulty knobs (``max_len``,
    ``max_value``, ``max_words``...; see :mod:`instruct_env.tasks.builtin`), applied on top of
    the env's own ones to every selected task that has them. After every episode the
    return is added to a window of the last ``window`` returns; once the window is full:

    - mean > ``threshold`` and not at the last level: go up one level;
    - mean < ``demote_below`` (if set) and not at the first level: go down one level.

    Hysteresis comes from the gap between the two thresholds and from clearing the window
    on every change, so each decision rests on ``window`` fresh episodes at the new level.
    A change takes effect from the next ``reset``: the wrapper replaces the env's dataset
    (``env.unwrapped.setup.dataset``) with the level's (same tasks, split, size and seed,
    different knobs). Few-shot demonstrations (``num_shots``) keep their original
    difficulty.

    ``info["curriculum_level"]`` is set on reset and on every step. The return is the sum
    of the rewards this wrapper sees: put it inside reward-changing wrappers (KL penalty,
    scaling) so the threshold applies to the task reward.

    Args:
        env: A single Token or Completion env built on the built-in suite (``tasks=...``).
        levels: Knob dicts, easiest first (``{}`` keeps the env's own knobs).
        threshold: Mean return above which the next level starts.
        demote_below: Mean return below which the previous level comes back (must be <
            ``threshold``); ``None`` never goes back.
        window: Episodes in the running mean.
        start_level: Index of the first level.

    Raises:
        ConfigError: the env has no built-in dataset, a level has a knob none of the tasks
            has, or the thresholds, window or start level are invalid.

    >>> import gymnasium as gym
    >>> import instruct_env
    >>> env = gym.make("InstructEnv/Completion-v0", tasks=["sort_numbers"])
    >>> env = Curriculum(env, levels=[{"max_len": 3}, {"max_len": 8}], threshold=0.9, window=2)
    >>> for _ in range(2):
    ...     _, info = env.reset(seed=0)
    ...     _, _, _, _, info = env.step(info["references"][0])   # perfect answers
    >>> info["curriculum_level"], env.level
    (1, 1)
    """

    def __init__(
        self,
        env: gym.Env,
        levels: Sequence[Mapping[str, int]],
        threshold: float,
        *,
        demote_below: float | None = None,
        window: int = 100,
        start_level: int = 0,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, levels=levels, threshold=threshold, demote_below=demote_below,
                                                 window=window, start_level=start_level)
        super().__init__(env)
        setup = getattr(env.unwrapped, "setup", None)
        base = getattr(setup, "dataset", None)
        if not isinstance(base, BuiltinDataset):
            raise ConfigError(
                f"Curriculum changes the difficulty knobs of the built-in task suite, so the env must be made "
                f"with tasks=...; its dataset is {type(base).__name__}. For your own data, build one env per "
                "difficulty instead."
            )
        if isinstance(levels, (str, Mapping)) or not levels or not all(isinstance(lv, Mapping) for lv in levels):
            raise ConfigError(f"levels must be a non-empty list of knob dicts, easiest first; got {levels!r}.")
        if not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
            raise ConfigError(f"threshold must be a finite number; got {threshold!r}.")
        if demote_below is not None and not demote_below < threshold:
            raise ConfigError(
                f"demote_below ({demote_below}) must be lower than threshold ({threshold}): the gap between them "
                "is the hysteresis that stops the level from flipping back and forth."
            )
        if not isinstance(window, int) or window < 1:
            raise ConfigError(f"window must be a positive integer; got {window!r}.")
        if not isinstance(start_level, int) or not 0 <= start_level < len(levels):
            raise ConfigError(f"start_level must be an index into the {len(levels)} levels; got {start_level!r}.")
        self.levels = [dict(lv) for lv in levels]
        self.threshold = float(threshold)
        self.demote_below = None if demote_below is None else float(demote_below)
        # Only the InstructEnv envs hold an EnvSetup whose dataset is a BuiltinDataset (checked above).
        self._setup = cast("EnvSetup", setup)
        # Built now (they are lazy) so that a knob none of the tasks has fails here, not mid-training.
        self._datasets = [
            BuiltinDataset(list(base.families), split=base.split, size_per_task=base.size_per_task, seed=base.seed,
                           **knobs)
            for knobs in self.levels
        ]
        self._returns: deque[float] = deque(maxlen=window)
        self._episode_return = 0.0
        self.set_level(start_level)

    @property
    def level(self) -> int:
        """Index of the current level."""
        return self._level

    @property
    def running_mean(self) -> float:
        """Mean return over the current window (``nan`` before the first episode at this level)."""
        return float(np.mean(self._returns)) if self._returns else math.nan

    def set_level(self, level: int) -> None:
        """Jump to ``level`` (e.g. when resuming); takes effect at the next reset."""
        if not isinstance(level, (int, np.integer)) or not 0 <= level < len(self.levels):
            raise ConfigError(f"level must be an index into the {len(self.levels)} levels; got {level!r}.")
        self._level = int(level)
        self._setup.dataset = self._datasets[self._level]
        self._returns.clear()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset the env at the current level; ``info["curriculum_level"]`` is that level."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._episode_return = 0.0
        info["curriculum_level"] = self._level
        return obs, info

    def step(self, action: Any):
        """Step the env; at an episode's end, update the running mean and maybe change the level."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._episode_return += float(reward)
        if terminated or truncated:
            self._returns.append(self._episode_return)
            self._episode_return = 0.0
            if len(self._returns) == self._returns.maxlen:
                mean = self.running_mean
                if mean > self.threshold and self._level < len(self.levels) - 1:
                    self.set_level(self._level + 1)
                elif self.demote_below is not None and mean < self.demote_below and self._level > 0:
                    self.set_level(self._level - 1)
        info["curriculum_level"] = self._level
        return obs, reward, terminated, truncated, info
