"""``TextObservation``: observations as text, for agents that call an LLM API."""

from __future__ import annotations

import string
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from instruct_env.envs.completion_env import CompletionEnv
from instruct_env.envs.token_env import TokenEnv
from instruct_env.error import ConfigError

__all__ = ["TextObservation", "AnyText"]


class AnyText(spaces.Text):
    r"""A :class:`gymnasium.spaces.Text` that contains every ``str`` (any characters, any length).

    Prompts and answers hold whatever characters the dataset has (punctuation, newlines,
    accents), which Gymnasium's ``Text`` would reject unless each one were listed in its
    charset. Here ``contains`` accepts any string of at least ``min_length`` characters;
    ``max_length`` and the printable-ASCII charset only bound :meth:`sample`.

    >>> space = AnyText(max_length=16)
    >>> space.contains("Trier les nombres : 3 1 2\n"), space.contains(3)
    (True, False)
    """

    def __init__(self, max_length: int, *, min_length: int = 0, seed: Any = None) -> None:
        super().__init__(max_length, min_length=min_length, charset=string.printable, seed=seed)

    def contains(self, x: Any) -> bool:
        """Whether ``x`` is a string of at least ``min_length`` characters."""
        return isinstance(x, str) and len(x) >= self.min_length

    def __repr__(self) -> str:
        return f"AnyText(max_length={self.max_length}, min_length={self.min_length})"


class TextObservation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Replace the token observation with the text an LLM would read: the prompt plus the answer so far.

    For agents that talk to an LLM API rather than holding a model: they read
    ``observation`` (a ``str``) and, on ``InstructEnv/Completion-v0``, answer with text.

    - ``InstructEnv/Token-v0``: the observation is ``prompt + completion so far`` (the
      formatted prompt from ``info["prompt"]`` followed by the decoded completion); the
      action stays a token id (``Discrete(vocab_size)``).
    - ``InstructEnv/Completion-v0``: the observation is the prompt, and after the step the
      prompt plus the answer; the action space becomes :class:`AnyText` -- the answer text,
      which the env scores as it is (token ids are still accepted).

    ``info`` is unchanged, so the instruction, context and references stay available.

    Args:
        env: A single (not vector) Token or Completion env, possibly already wrapped.
        max_chars: Bounds ``observation_space.sample()`` (and the Completion action
            space's); every string is ``contained`` whatever its length (see :class:`AnyText`).

    Raises:
        ConfigError: ``env`` is not an instruct-env Token or Completion env.

    >>> import gymnasium as gym
    >>> import instruct_env
    >>> env = TextObservation(gym.make("InstructEnv/Completion-v0", tasks=["copy"]))
    >>> obs, info = env.reset(seed=1)
    >>> obs == info["prompt"], env.observation_space.contains(obs)
    (True, True)
    >>> obs, reward, terminated, truncated, info = env.step(info["references"][0])
    >>> reward, obs.endswith(info["references"][0])
    (1.0, True)
    """

    def __init__(self, env: gym.Env, *, max_chars: int = 2048) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, max_chars=max_chars)
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, (TokenEnv, CompletionEnv)):
            raise ConfigError(
                f"TextObservation wraps InstructEnv/Token-v0 or InstructEnv/Completion-v0 (one env, not a vector "
                f"env); got {type(base).__name__}. For vector runs wrap each env, e.g. in gymnasium.vector.SyncVectorEnv."
            )
        if not isinstance(max_chars, int) or max_chars < 1:
            raise ConfigError(f"max_chars must be a positive integer; got {max_chars!r}.")
        self._tokens = isinstance(base, TokenEnv)
        self.observation_space = AnyText(max_chars)
        if not self._tokens:
            self.action_space = AnyText(max_chars)
        self._prompt = ""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset the env; the observation is the prompt text."""
        _, info = self.env.reset(seed=seed, options=options)
        self._prompt = info["prompt"]
        return self._prompt, info

    def step(self, action: Any):
        """Step the env; the observation is the prompt text followed by the completion so far."""
        _, reward, terminated, truncated, info = self.env.step(action)
        return self._prompt + info.get("completion", ""), reward, terminated, truncated, info
