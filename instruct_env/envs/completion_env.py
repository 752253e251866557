"""``InstructEnv/Completion-v0``: answer an instruction with one whole completion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

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
from instruct_env.envs.slots import TokenSlots
from instruct_env.error import ConfigError, InvalidAction, ResetNeeded

__all__ = ["CompletionEnv", "CompletionVectorEnv"]


def _spaces(setup: EnvSetup) -> tuple[spaces.Dict, spaces.Box]:
    P, T = setup.max_prompt_tokens, setup.max_new_tokens
    obs = spaces.Dict(
        {
            "input_ids": spaces.Box(0, setup.vocab_size - 1, shape=(P,), dtype=np.int64),
            "attention_mask": spaces.Box(0, 1, shape=(P,), dtype=np.int64),
        }
    )
    return obs, spaces.Box(0, setup.vocab_size - 1, shape=(T,), dtype=np.int64)


#: Why the Completion envs take no ``autoreset_mode`` (for the unknown-argument message).
_HINTS = {"autoreset_mode": " Completion episodes last one step, so their vector env always resets in the same step "
                            "(SameStep); autoreset_mode is an argument of InstructEnv/Token-v0's vector env."}


class _Completions:
    """Turns completion actions (text or token ids) into (text, n_tokens, length_limited, cut_tokens)."""

    def __init__(self, setup: EnvSetup) -> None:
        self.setup = setup
        self.stop_ids = {int(setup.eos_token_id), int(setup.pad_token_id)}

    def parse(self, actions: Sequence[Any]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        texts: list[str | None] = [None] * len(actions)
        n_tokens = np.zeros(len(actions), dtype=np.int64)
        limited = np.zeros(len(actions), dtype=bool)
        cut = np.zeros(len(actions), dtype=np.int64)  # tokens dropped from the end of a text action
        to_decode, decode_at = [], []
        to_encode, encode_at = [], []
        for i, action in enumerate(actions):
            if isinstance(action, str):
                to_encode.append(action)
                encode_at.append(i)
                continue
            ids = self._ids(action, i)
            stop = next((k for k, t in enumerate(ids) if t in self.stop_ids), None)
            if stop is None:
                limited[i] = len(ids) >= self.setup.max_new_tokens
                stop = len(ids)
            n_tokens[i] = stop
            to_decode.append(ids[:stop])
            decode_at.append(i)
        for i, text in zip(decode_at, self.setup.decode_batch(to_decode)):
            texts[i] = text
        if to_encode:
            encoded = [self.setup.tokenizer.encode(t, add_special_tokens=False) for t in to_encode]
            for i, text, ids in zip(encode_at, to_encode, encoded):
                if len(ids) > self.setup.max_new_tokens:  # over budget: keep the first T tokens
                    cut[i] = len(ids) - self.setup.max_new_tokens
                    ids = ids[: self.setup.max_new_tokens]
                    text = self.setup.decode_batch([ids])[0]
                    limited[i] = True
                texts[i] = text
                n_tokens[i] = len(ids)
        return cast("list[str]", texts), n_tokens, limited, cut  # every action was decoded or encoded above

    def _ids(self, action: Any, i: int) -> list[int]:
        arr = np.asarray(action)
        where = "action" if i == 0 else f"actions[{i}]"
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise InvalidAction(
                f"{where} must be a str or a 1-D sequence of integer token ids (at most "
                f"{self.setup.max_new_tokens}); got {type(action).__name__} with shape {arr.shape} "
                f"and dtype {arr.dtype}."
            )
        if arr.size > self.setup.max_new_tokens:
            raise InvalidAction(
                f"{where} has {arr.size} token ids but max_new_tokens is {self.setup.max_new_tokens}."
            )
        if arr.size and (arr.min() < 0 or arr.max() >= self.setup.vocab_size):
            raise InvalidAction(f"{where} holds ids outside [0, {self.setup.vocab_size}): {arr.tolist()}.")
        return arr.astype(np.int64).tolist()


class CompletionEnv(SetupAccess, gym.Env):
    """Answer an instruction in one step with a whole completion.

    ## Description
    One-step episodes: the observation is the prompt for one instruction (drawn from
    the built-in suite by default), the action is the complete answer, the reward is the
    configured reward of that answer. This is the natural interface for policy-gradient
    methods that sample whole completions (REINFORCE, GRPO, RLOO) and for LLM-API agents.

    ## Observation Space
    ``Dict`` of ``int64`` arrays of width ``max_prompt_tokens``: ``input_ids`` (the prompt,
    left-padded with the pad id) and ``attention_mask``. Texts are in ``info``.

    ## Action Space
    Declared as ``Box(0, vocab_size - 1, (max_new_tokens,), int64)``: token ids, read up
    to the first EOS or pad id. Also accepted: a shorter 1-D sequence of ids, or a ``str``
    (the answer text, used as is; if it encodes to more than ``max_new_tokens`` tokens it is
    cut to the first ``max_new_tokens``, ``info["text_cut"]`` is ``True`` and
    ``info["cut_tokens"]`` says how many tokens were dropped). Anything else raises
    :class:`~instruct_env.error.InvalidAction`. The budget is in tokens of the env's tokenizer:
    with the built-in one (byte-level, trained on the English suite), general English takes
    about 3.1 tokens per word, Chinese 2.7 and Japanese 2.8 tokens per character, Arabic 2.0
    per character (measured on the example files; see the README's "Non-English text").

    ## Rewards
    The configured reward of the completion text (for ``reward="auto"`` on the built-in
    suite: the task verifier, in ``[0, 1]``), with the breakdown in ``info["reward_components"]``.

    ## Starting State
    A sample drawn uniformly with ``self.np_random``, or chosen with
    ``reset(options={"index" | "sample_id" | "sample": ...})``.

    ## Episode End
    Always after one step, with ``terminated=True`` (the answer is given: a terminal state,
    not a time limit). ``info["length_limited"]`` is ``True`` when the answer used up
    ``max_new_tokens`` without ending (ids without EOS/pad filling the budget, or text cut
    to the budget); it is then scored as cut. ``info["text_cut"]`` (and ``info["cut_tokens"]``
    > 0) marks the second case only: a text action that did not fit and lost its end.

    ## Arguments
    Same as :class:`~instruct_env.envs.token_env.TokenEnv` (without ``shaping``).

    ## Version History
    - v0: initial version. Data files passed as ``dataset=`` are split by ``split`` (train / validation /
      test by a stable hash of each input, or by ``dataset_kwargs["split_column"]``); before, every split
      was the whole file.

    ## Example
    >>> import gymnasium as gym
    >>> import instruct_env
    >>> env = gym.make("InstructEnv/Completion-v0", tasks=["copy"])
    >>> obs, info = env.reset(seed=1)
    >>> _, reward, terminated, truncated, info = env.step(info["references"][0])
    >>> reward, terminated, truncated
    (1.0, True, False)
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, *, render_mode: str | None = None, **kwargs: Any) -> None:
        self.setup = make_setup('InstructEnv/Completion-v0', kwargs, ('render_mode',), _HINTS)
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.observation_space, self.action_space = _spaces(self.setup)
        self._slots = TokenSlots(self.setup, 1)
        self._parser = _Completions(self.setup)
        self._running = False
        self._last = ""

    def _obs(self) -> dict[str, np.ndarray]:
        P = self.setup.max_prompt_tokens
        return {"input_ids": self._slots.input_ids[0, :P].copy(), "attention_mask": self._slots.attention_mask[0, :P].copy()}

    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None):
        """Draw a new instruction; return the prompt observation and the episode's info (see the class docstring)."""
        super().reset(seed=seed)
        if seed is not None:
            self.setup.reset_sampler()
        self._slots.start(0, self.setup.pick_sample(self.np_random, options))
        self._running, self._last = True, ""
        return self._obs(), self._slots.static_info(0)

    def step(self, action: Any):
        """Score the answer ``action`` (text or token ids); the episode ends (terminated) after this one step."""
        if not self._running:
            raise ResetNeeded("step() was called but no episode is running: call reset() first (episodes last one step).")
        texts, n_tokens, limited, cut = self._parser.parse([action])
        sample = self._slots.sample(0)
        total, components, sources = self.setup.score(texts, [sample])
        info = self._slots.static_info(0)
        info.update(completion=texts[0], completion_tokens=int(n_tokens[0]), length_limited=bool(limited[0]),
                    text_cut=bool(cut[0] > 0), cut_tokens=int(cut[0]),
                    reward_components={k: float(v[0]) for k, v in components.items()}, **sources[0])
        self._running, self._last = False, texts[0]
        return self._obs(), float(total[0]), True, False, info

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: the prompt and the last answer (None before the first reset)."""
        if self.render_mode != "ansi" or self._slots.samples[0] is None:
            return None
        return self._slots.prompt(0)[1] + self._last


class CompletionVectorEnv(SetupAccess, VectorEnv):
    """``num_envs`` completion episodes answered in one batched call.

    ``actions`` is a list of ``num_envs`` answers (each a str or a sequence of ids) or an
    int array of shape ``(num_envs, max_new_tokens)``. Rewards for the whole batch are
    computed in one call of the batched reward. Episodes last one step, so the default
    autoreset mode is ``"SameStep"``: each ``step`` returns the next prompts, and
    ``infos["final_info"]`` holds the answered episodes' info. Slot ``i`` is seeded with
    ``seed + i`` and matches a :class:`CompletionEnv` seeded with ``seed + i``.

    For group-relative methods (GRPO, RLOO), ``group_size=G`` makes consecutive groups
    of ``G`` slots share one prompt (``num_envs`` must be a multiple of ``G``; the group
    draws with the RNG of its first slot).
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, *, group_size: int = 1, **kwargs: Any) -> None:
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ConfigError(f"num_envs must be a positive integer; got {num_envs!r}.")
        if not isinstance(group_size, (int, np.integer)) or group_size < 1 or num_envs % group_size:
            raise ConfigError(
                f"group_size must be a positive divisor of num_envs={num_envs}; got {group_size!r}."
            )
        self.num_envs, self.group_size = int(num_envs), int(group_size)
        self.setup = make_setup('InstructEnv/Completion-v0 (vector env)', kwargs, ('num_envs', 'group_size'), _HINTS)
        self.single_observation_space, self.single_action_space = _spaces(self.setup)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._slots = TokenSlots(self.setup, self.num_envs)
        self._parser = _Completions(self.setup)
        self._rngs = [np.random.default_rng() for _ in range(self.num_envs)]
        self._started = False

    @property
    def samples(self) -> list:
        """The samples currently posed in each slot."""
        return list(self._slots.samples)

    def _obs(self) -> dict[str, np.ndarray]:
        P = self.setup.max_prompt_tokens
        return {"input_ids": self._slots.input_ids[:, :P].copy(), "attention_mask": self._slots.attention_mask[:, :P].copy()}

    def _start_all(self, slots: Sequence[int], per_slot: Sequence[Mapping[str, Any] | None]) -> list[dict[str, Any]]:
        """Start new episodes in ``slots``; return their infos."""
        infos = []
        G = self.group_size
        for slot in slots:
            leader = slot - slot % G
            if slot == leader:
                sample = self.setup.pick_sample(self._rngs[slot], per_slot[slot])
            else:
                sample = self._slots.sample(leader)
            self._slots.start(slot, sample)
            infos.append(self._slots.static_info(slot))
        return infos

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: Mapping[str, Any] | None = None):
        """Reset every slot; ``options`` may hold per-slot lists under ``index``/``sample_id``/``sample``."""
        if seed is not None:
            seeds = vector_seeds(seed, self.num_envs)
            self._rngs = [np.random.default_rng(s) for s in seeds]
            self._np_random, self._np_random_seed = np.random.default_rng(seeds[0]), seeds[0]
            self.setup.reset_sampler()
        per_slot = split_vector_options(dict(options or {}), self.num_envs)
        infos = self._start_all(range(self.num_envs), per_slot)
        self._started = True
        return self._obs(), batch_infos(list(enumerate(infos)), self.num_envs)

    def step(self, actions: Any):
        """Score one answer per slot; every episode ends and a new one starts in its slot (see the class docstring)."""
        if not self._started:
            raise ResetNeeded("step() was called before reset(): call reset() first.")
        if isinstance(actions, np.ndarray) and actions.ndim == 2:
            actions = list(actions)
        if isinstance(actions, (str, bytes)) or not hasattr(actions, "__len__") or len(actions) != self.num_envs:
            raise InvalidAction(
                f"actions must hold {self.num_envs} answers (str or token-id sequences), one per env; got {actions!r:.200}."
            )
        texts, n_tokens, limited, cut = self._parser.parse(list(actions))
        samples = [self._slots.sample(i) for i in range(self.num_envs)]
        total, components, sources = self.setup.score(texts, samples)
        final_obs = self._obs()
        final_infos = []
        for i in range(self.num_envs):
            info = self._slots.static_info(i)
            info.update(completion=texts[i], completion_tokens=int(n_tokens[i]), length_limited=bool(limited[i]),
                        text_cut=bool(cut[i] > 0), cut_tokens=int(cut[i]),
                        reward_components={k: float(v[i]) for k, v in components.items()}, **sources[i])
            final_infos.append(info)
        n = self.num_envs
        infos = self._start_all(range(n), [None] * n)
        for i, info in enumerate(infos):
            info["final_info"] = final_infos[i]
            info["final_obs"] = {k: v[i] for k, v in final_obs.items()}
        return self._obs(), total, np.ones(n, dtype=bool), np.zeros(n, dtype=bool), batch_infos(list(enumerate(infos)), n)
