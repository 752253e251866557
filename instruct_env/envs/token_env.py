"""``InstructEnv/Token-v0``: generate the answer to an instruction one token at a time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from instruct_env.envs.core import (
    EnvSetup,
    SetupAccess,
    batch_infos,
    check_render_mode,
    make_setup,
    split_vector_options,
    vector_seeds,
)
from instruct_env.envs.slots import ShapingFn, TokenSlots
from instruct_env.error import InvalidAction, InvalidOption, ResetNeeded

__all__ = ["TokenEnv", "TokenVectorEnv"]


def _observation_space(setup: EnvSetup) -> spaces.Dict:
    width = setup.max_prompt_tokens + setup.max_new_tokens
    return spaces.Dict(
        {
            "input_ids": spaces.Box(0, setup.vocab_size - 1, shape=(width,), dtype=np.int64),
            "attention_mask": spaces.Box(0, 1, shape=(width,), dtype=np.int64),
        }
    )


def _check_token(action: Any, vocab_size: int, where: str = "action") -> int:
    if isinstance(action, np.ndarray) and action.shape in ((), (1,)):
        action = action.reshape(()).item() if np.issubdtype(action.dtype, np.integer) else action
    if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
        raise InvalidAction(
            f"{where} must be an integer token id in [0, {vocab_size}); got {action!r} of type "
            f"{type(action).__name__}. Convert sampled ids with int(...)."
        )
    if not 0 <= action < vocab_size:
        raise InvalidAction(f"{where} must be a token id in [0, {vocab_size}); got {action}.")
    return int(action)


class TokenEnv(SetupAccess, gym.Env):
    """Answer an instruction token by token.

    ## Description
    Each episode draws one instruction (with its context) from a task source: by
    default the built-in procedural suite of instruction families (sorting, arithmetic,
    word-for-word translation, a small semantic-parsing language...). The agent writes the
    answer one token at a time; when it emits the end-of-sequence token (or runs out of
    budget) the answer is decoded and scored by the configured reward.

    ## Observation Space
    ``Dict`` of two ``int64`` arrays of width ``W = max_prompt_tokens + max_new_tokens``:

    - ``input_ids``: the prompt right-aligned in the first ``max_prompt_tokens`` columns
      (left-padded with the pad id), then the completion so far, then padding.
    - ``attention_mask``: 1 on real tokens, 0 on padding.

    The completion so far starts at column ``max_prompt_tokens``; its length is
    ``attention_mask[max_prompt_tokens:].sum()``. Texts are in ``info``.

    ## Action Space
    ``Discrete(vocab_size)``: the next token id. Anything else raises
    :class:`~instruct_env.error.InvalidAction`.

    ## Rewards
    0 on every step except the last, where the reward is the configured reward of the
    decoded completion (EOS dropped) -- for the default ``reward="auto"`` this is the
    sample's task verifier, in ``[0, 1]``. ``info["reward_components"]`` holds the breakdown
    of a weighted reward. An optional ``shaping`` hook adds a per-token term on every step.

    ## Starting State
    A sample drawn uniformly from the dataset with ``self.np_random`` (or the one chosen by
    ``reset(options={"index": i})``, ``{"sample_id": s}`` or ``{"sample": Sample(...)}``).

    ## Episode End
    - Termination: the agent emits the tokenizer's EOS token.
    - Truncation: ``max_new_tokens`` tokens were emitted without EOS.

    Calling ``step`` after the episode ended without ``reset`` raises
    :class:`~instruct_env.error.ResetNeeded`.

    ## Arguments
    ``tasks``, ``dataset``, ``split``, ``tokenizer``, ``reward``, ``max_prompt_tokens``,
    ``max_new_tokens``, ``num_shots``, ``template``, ``use_chat_template``, ``dataset_kwargs``,
    ``sampling`` (``"uniform"`` or ``"stratified"`` over task families; see
    :class:`instruct_env.envs.core.EnvSetup`), ``shaping``  (per-token hook
    ``fn(tokens, generated, samples) -> bonus``) and ``render_mode`` (``"ansi"``).

    ## Version History
    - v0: initial version. Data files passed as ``dataset=`` are split by ``split`` (train / validation /
      test by a stable hash of each input, or by ``dataset_kwargs["split_column"]``); before, every split
      was the whole file.

    ## Example
    >>> import gymnasium as gym
    >>> import instruct_env
    >>> env = gym.make("InstructEnv/Token-v0", tasks=["copy"], max_new_tokens=8)
    >>> obs, info = env.reset(seed=0)
    >>> sorted(obs)
    ['attention_mask', 'input_ids']
    >>> eos = env.unwrapped.eos_token_id
    >>> obs, reward, terminated, truncated, info = env.step(eos)
    >>> terminated, info["completion"], 0.0 <= reward <= 1.0
    (True, '', True)
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        *,
        shaping: ShapingFn | None = None,
        render_mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.setup = make_setup('InstructEnv/Token-v0', kwargs, ('shaping', 'render_mode'),
                                {"autoreset_mode": " autoreset_mode is an argument of the vector env (gym.make_vec)."})
        self.shaping = shaping
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.observation_space = _observation_space(self.setup)
        self.action_space = spaces.Discrete(self.setup.vocab_size)
        self._slots = TokenSlots(self.setup, 1)
        self._running = False

    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None):
        """Draw a new instruction; return the prompt observation and the episode's info (see the class docstring)."""
        super().reset(seed=seed)
        if seed is not None:
            self.setup.reset_sampler()
        sample = self.setup.pick_sample(self.np_random, options)
        self._slots.start(0, sample)
        self._running = True
        info = self._slots.static_info(0)
        info["completion"] = ""
        return self._slots.observation(0), info

    def step(self, action: Any):
        """Append the token ``action``; the episode ends at EOS (terminated) or at max_new_tokens (truncated)."""
        if not self._running:
            raise ResetNeeded(
                "step() was called but no episode is running: call reset() first, and again after "
                "an episode ends (terminated or truncated)."
            )
        token = _check_token(action, self.setup.vocab_size)
        slots = np.zeros(1, dtype=np.int64)
        tokens = np.array([token], dtype=np.int64)
        terminated, truncated = self._slots.push(slots, tokens)
        reward = float(self._slots.shaping(self.shaping, slots, tokens)[0])
        info = self._slots.static_info(0)
        if terminated[0] or truncated[0]:
            total, end_info = self._slots.finish([0])
            reward += float(total[0])
            info.update(end_info[0])
            self._running = False
        else:
            info["completion"] = self._slots.completion_texts([0])[0]
        return self._slots.observation(0), reward, bool(terminated[0]), bool(truncated[0]), info

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: the prompt and the completion so far (None before the first reset)."""
        if self.render_mode != "ansi" or self._slots.samples[0] is None:
            return None
        return self._slots.prompt(0)[1] + self._slots.completion_texts([0])[0]


class TokenVectorEnv(SetupAccess, VectorEnv):
    """``num_envs`` token episodes stepped together with array operations.

    Created with ``gymnasium.make_vec("InstructEnv/Token-v0", num_envs=N,
    vectorization_mode="vector_entry_point", **kwargs)``; takes the same keyword arguments
    as :class:`TokenEnv` plus ``autoreset_mode`` (``"SameStep"``, the default, or
    ``"NextStep"``) and ``step_text`` (put the completion so far in ``info`` on every step;
    by default texts appear only when an episode starts and ends, to keep steps cheap).

    Slot ``i`` is seeded with ``seed + i`` and draws exactly the samples a :class:`TokenEnv`
    seeded with ``seed + i`` would, so single and vector runs can be compared one to one.

    With ``SameStep`` autoreset, a finished slot is reset inside the same ``step``: the
    returned observation is the new episode's first, and ``infos["final_obs"]`` /
    ``infos["final_info"]`` hold the finished episode's last observation and info.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        *,
        autoreset_mode: str | AutoresetMode = AutoresetMode.SAME_STEP,
        step_text: bool = False,
        shaping: ShapingFn | None = None,
        **kwargs: Any,
    ) -> None:
        from instruct_env.error import ConfigError

        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ConfigError(f"num_envs must be a positive integer; got {num_envs!r}.")
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ConfigError(
                f"autoreset_mode must be 'SameStep' or 'NextStep'; got {autoreset_mode!r}."
            ) from None
        if mode == AutoresetMode.DISABLED:
            raise ConfigError("autoreset_mode 'Disabled' is not supported; use 'SameStep' or 'NextStep'.")
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        self.num_envs = int(num_envs)
        self.setup = make_setup("InstructEnv/Token-v0 (vector env)", kwargs,
                                ('num_envs', 'autoreset_mode', 'step_text', 'shaping'))
        self.shaping = shaping
        self.step_text = step_text
        self.single_observation_space = _observation_space(self.setup)
        self.single_action_space = spaces.Discrete(self.setup.vocab_size)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._slots = TokenSlots(self.setup, self.num_envs)
        self._rngs: list[np.random.Generator] = [np.random.default_rng() for _ in range(self.num_envs)]
        self._running = np.zeros(self.num_envs, dtype=bool)
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)
        self._started = False

    def _seed(self, seed: int | Sequence[int | None] | None) -> None:
        if seed is None:
            return
        seeds = vector_seeds(seed, self.num_envs)
        for i, s in enumerate(seeds):
            if s is not None:
                self._rngs[i] = np.random.default_rng(int(s))
        self._np_random, self._np_random_seed = np.random.default_rng(seeds[0]), seeds[0]
        self.setup.reset_sampler()

    def _start(self, slot: int, options: Mapping[str, Any] | None) -> dict[str, Any]:
        sample = self.setup.pick_sample(self._rngs[slot], options)
        self._slots.start(slot, sample)
        self._running[slot] = True
        info = self._slots.static_info(slot)
        info["completion"] = ""
        return info

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: Mapping[str, Any] | None = None):
        """Reset all slots (or those in ``options["reset_mask"]``).

        ``options`` may hold ``"reset_mask"`` (bool array) and, per slot, a list under
        ``"index"``, ``"sample_id"`` or ``"sample"`` (``None`` entries draw at random).
        """
        self._seed(seed)
        options = dict(options or {})
        mask = np.asarray(options.pop("reset_mask", np.ones(self.num_envs, dtype=bool)), dtype=bool)
        if mask.shape != (self.num_envs,):
            raise InvalidOption(f"options['reset_mask'] must have shape ({self.num_envs},); got {mask.shape}.")
        per_slot = split_vector_options(options, self.num_envs)
        entries = [(int(slot), self._start(int(slot), per_slot[slot])) for slot in np.flatnonzero(mask)]
        self._needs_reset[mask] = False
        self._started = True
        return self._slots.observation(), batch_infos(entries, self.num_envs)

    def _check_actions(self, actions: Any) -> np.ndarray:
        arr = np.asarray(actions)
        if arr.shape != (self.num_envs,):
            raise InvalidAction(
                f"actions must be an array of {self.num_envs} token ids (one per env); got shape {arr.shape}."
            )
        if not np.issubdtype(arr.dtype, np.integer):
            raise InvalidAction(f"actions must be integer token ids; got dtype {arr.dtype}. Cast with .astype(int).")
        bad = (arr < 0) | (arr >= self.setup.vocab_size)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidAction(f"actions[{i}] = {arr[i]} is not a token id in [0, {self.setup.vocab_size}).")
        return arr.astype(np.int64, copy=False)

    def step(self, actions: Any):
        """Append one token per slot; finished episodes are scored and restarted as ``autoreset_mode`` says."""
        if not self._started:
            raise ResetNeeded("step() was called before reset(): call reset() first.")
        actions = self._check_actions(actions)
        n = self.num_envs
        rewards = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        entries: list[tuple[int, dict[str, Any]]] = []
        resetting = self._needs_reset.copy()
        acting = np.flatnonzero(~resetting)
        term, trunc = self._slots.push(acting, actions[acting])
        terminated[acting], truncated[acting] = term, trunc
        rewards[acting] = self._slots.shaping(self.shaping, acting, actions[acting])
        done = acting[term | trunc]
        if self.step_text:
            running = acting[~(term | trunc)]
            texts = self._slots.completion_texts(running)
            for slot, text in zip(running, texts):
                entries.append((int(slot), {"completion": text}))
        if len(done):
            total, end_infos = self._slots.finish(done)
            rewards[done] += total
            self._running[done] = False
            if self.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP:
                final_obs = self._slots.observation(done)
                for j, slot in enumerate(done):
                    end = {**self._slots.static_info(int(slot)), **end_infos[j]}
                    info = self._start(int(slot), None)
                    info["final_obs"] = {k: v[j] for k, v in final_obs.items()}
                    info["final_info"] = end
                    entries.append((int(slot), info))
            else:
                for j, slot in enumerate(done):
                    entries.append((int(slot), {**self._slots.static_info(int(slot)), **end_infos[j]}))
        for slot in np.flatnonzero(resetting):
            entries.append((int(slot), self._start(int(slot), None)))
        if self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP:
            self._needs_reset[:] = False
            self._needs_reset[done] = True
        return self._slots.observation(), rewards, terminated, truncated, batch_infos(entries, n)
