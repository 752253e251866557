"""Token-level episodes for Q-learning: the offline dataset, its writers, and batches for the update.

An :class:`Episode` is one answer as a sequence of token actions: the prompt the model saw,
the completion tokens it wrote (EOS included when it ended that way), the reward after each
token (usually zero except the last, as ``InstructEnv/Token-v0`` gives them) and ``done``,
whether the answer ended (EOS or the token budget: both are terminal, nothing is bootstrapped
past them). Token ``t`` is the action taken in state ``s_t = prompt + tokens[:t]``.

Writers (each returns a :class:`TransitionDataset`):

==============================  =====================================================================
:func:`episodes_from_token_env`       any policy ``act(obs) -> tokens`` run through a Token vector env,
                                      scored by the env's reward
:func:`episodes_from_completion_env`  any ``act(obs) -> completions`` through a Completion vector env
:func:`sample_episodes`               an LM's samples through the Completion env (what ``--data
                                      rollouts`` and the pipeline collect from the SFT model)
:func:`episodes_from_feedback`        records exported from the feedback store (see below)
:func:`episodes_from_store`           a feedback store (path or URL) read directly, ratings included
:meth:`TransitionDataset.load`        a JSONL file of episodes or of feedback export records
==============================  =====================================================================

How feedback becomes a reward (the final token's reward; every other token gets 0):

- ``thumbs`` (``{"prompt", "completion", "label"}``): 1 for a thumbs up, 0 for a thumbs down.
- ``rating`` (``{"prompt", "completion", "rating"}`` with ``low``/``high``, 1..5 by default):
  ``(rating - low) / (high - low)``, in ``[0, 1]``.
- preferences (``{"prompt", "chosen", "rejected"}``): every distinct completion of a prompt
  gets the share of its comparisons it won (a completion always chosen: 1, never: 0).
- edits (``{"prompt", "completion"}``): the evaluator's corrected completion, reward 1 (a
  demonstration).

Several answers to the same (prompt, completion) are averaged into one episode.

The JSONL episode format, one object per line::

    {"prompt": "...", "completion": "...", "reward": 0.8}                  # text: needs a tokenizer
    {"prompt_ids": [...], "completion_ids": [...], "rewards": [0, 0, 1.0], "done": true}

``reward`` is the final token's reward; ``rewards`` gives one per completion token; ``done``
defaults to true. Text completions get the EOS token appended (the answer ended there).
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from instruct_env.error import ConfigError, DataFormatError

if TYPE_CHECKING:
    from instruct_env.envs.completion_env import CompletionVectorEnv

__all__ = [
    "Episode",
    "EpisodeBatch",
    "TransitionDataset",
    "EpisodeReplayBuffer",
    "pack_episodes",
    "episodes_from_token_env",
    "episodes_from_completion_env",
    "sample_episodes",
    "episodes_from_feedback",
    "episodes_from_store",
    "load_offline_data",
    "is_store_url",
]


@dataclass
class Episode:
    """One answer as token actions (see the module docstring).

    Attributes:
        prompt_ids: (P,) prompt token ids.
        tokens: (K,) completion token ids, K >= 1.
        rewards: (K,) reward after each token.
        done: The answer ended after the last token (no bootstrap past it).
    """

    prompt_ids: np.ndarray
    tokens: np.ndarray
    rewards: np.ndarray
    done: bool = True

    @property
    def total_reward(self) -> float:
        """The sum of the episode's rewards."""
        return float(self.rewards.sum())

    def to_json(self) -> dict[str, Any]:
        """The episode as a JSON-ready record (the format :func:`load_offline_data` reads)."""
        return {"prompt_ids": self.prompt_ids.tolist(), "completion_ids": self.tokens.tolist(),
                "rewards": self.rewards.tolist(), "done": bool(self.done)}


@dataclass
class EpisodeBatch:
    """Episodes packed for one forward pass over ``[prompt | completion]``.

    Row ``b`` is ``[left padding, prompt_b | tokens_b, right padding]``: prompts right-aligned to
    ``C`` columns, completions left-aligned after them, so the hidden state of state ``s_t``
    (before token ``t``) sits at column ``C - 1 + t`` and that of ``s_K`` after the last token at
    ``C - 1 + K``.

    Attributes:
        context_ids: (B, C) left-padded prompts.
        context_mask: (B, C)
        tokens: (B, K) completion tokens, right-padded.
        token_mask: (B, K) 1 on real tokens.
        rewards: (B, K) reward after each token (0 on padding).
        dones: (B, K) 1 where the token ended its episode (the last real token of a done episode).
    """

    context_ids: torch.Tensor
    context_mask: torch.Tensor
    tokens: torch.Tensor
    token_mask: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor


def pack_episodes(episodes: Sequence[Episode], pad_id: int, device: torch.device | str = "cpu") -> EpisodeBatch:
    """Lay ``episodes`` out for one forward pass (see :class:`EpisodeBatch`)."""
    B = len(episodes)
    C = max(len(e.prompt_ids) for e in episodes)
    K = max(len(e.tokens) for e in episodes)
    context_ids = np.full((B, C), pad_id, dtype=np.int64)
    context_mask = np.zeros((B, C), dtype=np.int64)
    tokens = np.full((B, K), pad_id, dtype=np.int64)
    token_mask = np.zeros((B, K), dtype=np.int64)
    rewards = np.zeros((B, K), dtype=np.float32)
    dones = np.zeros((B, K), dtype=np.float32)
    for b, e in enumerate(episodes):
        p, k = len(e.prompt_ids), len(e.tokens)
        context_ids[b, C - p:] = e.prompt_ids
        context_mask[b, C - p:] = 1
        tokens[b, :k] = e.tokens
        token_mask[b, :k] = 1
        rewards[b, :k] = e.rewards
        dones[b, k - 1] = float(e.done)
    as_t = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
    return EpisodeBatch(as_t(context_ids), as_t(context_mask), as_t(tokens), as_t(token_mask), as_t(rewards),
                        as_t(dones))


class TransitionDataset:
    """A list of token-level :class:`Episode` s: offline data for ILQL, and the replay store of online Q-learning.

    ``len(dataset)`` counts episodes; :attr:`num_transitions` counts token actions.
    """

    def __init__(self, episodes: Iterable[Episode] = ()) -> None:
        self.episodes: list[Episode] = list(episodes)

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, i: int) -> Episode:
        return self.episodes[i]

    @property
    def num_transitions(self) -> int:
        """The number of (state, token) transitions: tokens over all episodes."""
        return sum(len(e.tokens) for e in self.episodes)

    def rewards(self) -> np.ndarray:
        """(N,) total reward of every episode."""
        return np.array([e.total_reward for e in self.episodes], dtype=np.float64)

    def sample(self, rng: np.random.Generator, n: int) -> list[Episode]:
        """``n`` episodes drawn uniformly with replacement."""
        if not self.episodes:
            raise ConfigError("The transition dataset is empty: there is nothing to learn from.")
        return [self.episodes[i] for i in rng.integers(0, len(self.episodes), size=n)]

    def save(self, path: str | os.PathLike) -> Path:
        """Write every episode as one JSONL line (token ids, so no tokenizer is needed to read it back)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for e in self.episodes:
                f.write(json.dumps(e.to_json()) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, tokenizer: Any = None, **feedback_options: Any) -> TransitionDataset:
        """Read a JSONL file of episodes (module docstring) or of feedback export records.

        Raises:
            DataFormatError: naming the file, the line and the field that is wrong.
            ConfigError: a text record but no ``tokenizer``.
        """
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"Offline data file {str(path)!r} does not exist.")
        records, episodes = [], []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataFormatError(f"{where}: not valid JSON ({exc.msg}).") from exc
                if not isinstance(record, dict):
                    raise DataFormatError(f"{where}: expected a JSON object, got {type(record).__name__}.")
                if "chosen" in record or "label" in record or "rating" in record or (
                        "reward" not in record and "rewards" not in record):
                    records.append((where, record))
                else:
                    episodes.append(_episode_from_record(record, tokenizer, where))
        if records:
            episodes.extend(episodes_from_feedback(records, tokenizer, **feedback_options).episodes)
        if not episodes:
            raise DataFormatError(f"{path}: no episodes (the file is empty).")
        return cls(episodes)


class EpisodeReplayBuffer:
    """The ``capacity`` most recent finished episodes (first in, first out), sampled uniformly.

    Memory: one int64 per prompt and completion token and one float32 reward per completion
    token of each stored episode, i.e. about ``capacity * (P + 12 * K)`` bytes for prompts of
    ``P`` tokens and answers of ``K``.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ConfigError(f"The replay buffer needs a capacity >= 1 episode; got {capacity}.")
        self.capacity = capacity
        self._episodes: list[Episode] = []
        self._next = 0  # where the next episode goes once full

    def __len__(self) -> int:
        return len(self._episodes)

    def add(self, episode: Episode) -> None:
        """Store ``episode``, replacing the oldest one once the buffer is full."""
        if len(self._episodes) < self.capacity:
            self._episodes.append(episode)
        else:
            self._episodes[self._next] = episode
            self._next = (self._next + 1) % self.capacity

    def sample(self, rng: np.random.Generator, n: int) -> list[Episode]:
        """``n`` episodes drawn uniformly with replacement."""
        return TransitionDataset(self._episodes).sample(rng, n)

    def state(self) -> dict[str, Any]:
        """The buffer's contents and write position, for a checkpoint (:meth:`load` restores them)."""
        return {"episodes": list(self._episodes), "next": self._next}

    def load(self, state: Mapping[str, Any]) -> None:
        """Restore the contents saved by :meth:`state`."""
        self._episodes, self._next = list(state["episodes"]), int(state["next"])


# ----------------------------------------------------------------- validation of one record
def _field(record: Mapping[str, Any], name: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if name not in record:
        raise DataFormatError(f"{where}: missing field {name!r} (fields present: {sorted(record)}).")
    value = record[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataFormatError(f"{where}: field {name!r} must be {names}; got {value!r}.")
    return value


def _ids(record: Mapping[str, Any], name: str, where: str) -> np.ndarray:
    value = _field(record, name, where, list)
    if not value or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value):
        raise DataFormatError(f"{where}: field {name!r} must be a non-empty list of token ids (integers >= 0); "
                              f"got {value!r:.80}.")
    return np.asarray(value, dtype=np.int64)


def _number(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataFormatError(f"{where}: field {name!r} must be a finite number; got {value!r}.")
    return float(value)


def _encode(tokenizer: Any, text: str, where: str) -> np.ndarray:
    if tokenizer is None:
        raise ConfigError(f"{where}: a text record needs a tokenizer to become token actions; pass tokenizer=.")
    return np.asarray(tokenizer.encode(text, add_special_tokens=False), dtype=np.int64)


def _text_episode(tokenizer: Any, prompt: str, completion: str, reward: float, where: str) -> Episode:
    prompt_ids = _encode(tokenizer, prompt, where)
    if len(prompt_ids) == 0:
        raise DataFormatError(f"{where}: field 'prompt' is empty.")
    tokens = np.append(_encode(tokenizer, completion, where), tokenizer.eos_token_id).astype(np.int64)
    rewards = np.zeros(len(tokens), dtype=np.float32)
    rewards[-1] = reward
    return Episode(prompt_ids, tokens, rewards, True)


def _episode_from_record(record: Mapping[str, Any], tokenizer: Any, where: str) -> Episode:
    done = record.get("done", True)
    if not isinstance(done, bool):
        raise DataFormatError(f"{where}: field 'done' must be true or false; got {done!r}.")
    if "prompt_ids" in record or "completion_ids" in record:
        prompt_ids, tokens = _ids(record, "prompt_ids", where), _ids(record, "completion_ids", where)
    else:
        text = _text_episode(tokenizer, _field(record, "prompt", where, str), _field(record, "completion", where, str),
                             0.0, where)
        prompt_ids, tokens = text.prompt_ids, text.tokens
    if "rewards" in record:
        values = _field(record, "rewards", where, list)
        if len(values) != len(tokens):
            raise DataFormatError(f"{where}: field 'rewards' has {len(values)} values but the completion has "
                                  f"{len(tokens)} tokens; give one reward per completion token (or one 'reward').")
        rewards = np.array([_number(v, "rewards", where) for v in values], dtype=np.float32)
    else:
        rewards = np.zeros(len(tokens), dtype=np.float32)
        rewards[-1] = _number(_field(record, "reward", where, (int, float)), "reward", where)
    return Episode(prompt_ids, tokens, rewards, done)


# ----------------------------------------------------------------- writers
def episodes_from_feedback(records: Iterable[Mapping[str, Any] | tuple[str, Mapping[str, Any]]], tokenizer: Any,
                           low: float = 1.0, high: float = 5.0) -> TransitionDataset:
    """Episodes from feedback export records (thumbs, ratings, preference pairs, edits; module docstring).

    Args:
        records: Export records, or ``(where, record)`` pairs (``where`` names the file and line in errors).
        tokenizer: Encodes the prompts and completions.
        low: The lowest rating of the scale (ratings map to ``(rating - low) / (high - low)``).
        high: The highest rating of the scale.

    Returns:
        One episode per distinct (prompt, completion), rewarded at its last token with the mean of
        its outcomes (scores, ratings, win rate).
    """
    if not high > low:
        raise ConfigError(f"The rating scale needs low < high; got low={low}, high={high}.")
    scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    wins: dict[tuple[str, str], list[float]] = defaultdict(list)
    origin: dict[tuple[str, str], str] = {}
    for n, item in enumerate(records, 1):
        where, record = item if isinstance(item, tuple) else (f"record {n}", item)
        prompt = _field(record, "prompt", where, str)
        if "chosen" in record:
            chosen, rejected = _field(record, "chosen", where, str), _field(record, "rejected", where, str)
            wins[(prompt, chosen)].append(1.0)
            wins[(prompt, rejected)].append(0.0)
            origin.setdefault((prompt, chosen), where)
            origin.setdefault((prompt, rejected), where)
            continue
        completion = _field(record, "completion", where, str)
        if "label" in record:
            reward = float(_field(record, "label", where, bool))
        elif "rating" in record:
            rating = _number(record["rating"], "rating", where)
            if not low <= rating <= high:
                raise DataFormatError(f"{where}: field 'rating' must be in [{low:g}, {high:g}] (the rating scale; "
                                      f"pass low=/high= for another); got {rating!r}.")
            reward = (rating - low) / (high - low)
        else:  # an edit: the evaluator's own completion
            reward = 1.0
        scores[(prompt, completion)].append(reward)
        origin.setdefault((prompt, completion), where)
    for key, outcomes in wins.items():  # a completion's win rate over its comparisons
        scores[key].append(float(np.mean(outcomes)))
    return TransitionDataset(_text_episode(tokenizer, p, c, float(np.mean(v)), origin[(p, c)])
                             for (p, c), v in scores.items())


def is_store_url(spec: str) -> bool:
    """Whether ``spec`` names a feedback store rather than a JSONL file."""
    return spec.startswith(("sqlite://", "postgresql://", "postgres://")) or spec.endswith((".db", ".sqlite"))


def episodes_from_store(store: Any, tokenizer: Any, include_gold: bool = False,
                        formatter: Any = None) -> TransitionDataset:
    """Every kind of answer in a feedback store (an open store, a path or a URL) as episodes.

    Ratings are read with their query's own scale; thumbs, preferences and edits go through the
    store's exports (:mod:`instruct_env.feedback.export`). Prompts are written with ``formatter``
    (a :class:`~instruct_env.tasks.PromptFormatter`; the default template when ``None``): pass the
    environment's, so that the episodes' prompts are the ones the policy is asked.
    """
    from instruct_env.feedback import FeedbackStore
    from instruct_env.feedback.export import preference_pairs, sft_examples, unpaired_thumbs
    from instruct_env.tasks.prompts import PromptFormatter
    from instruct_env.tasks.sample import Sample

    own = not isinstance(store, FeedbackStore)
    if own:
        store = FeedbackStore(store)
    try:
        formatter = formatter if formatter is not None else PromptFormatter()
        records: list[Mapping[str, Any]] = []
        records += unpaired_thumbs(store, include_gold=include_gold, prompt=formatter)
        records += preference_pairs(store, include_gold=include_gold, prompt=formatter)
        records += sft_examples(store, include_gold=include_gold, prompt=formatter)
        answers = store.current_answers(kind="rating")
        queries = store.queries(ids={a.query_id for a in answers}, kind="rating")
        for a in answers:
            q = queries[a.query_id]
            if q.is_gold and not include_gold:
                continue
            prompt = formatter.format(Sample(str(q.id), q.kind, q.instruction, q.context))
            low, high = float(q.options.get("low", 1)), float(q.options.get("high", 5))
            rating = 1 + 4 * (a.answer["rating"] - low) / (high - low)  # the query's own scale onto 1..5
            records.append({"prompt": prompt, "completion": q.completions[0], "rating": rating})
    finally:
        if own:
            store.close()
    if not records:
        raise DataFormatError("The feedback store holds no answers to learn from (thumbs, ratings, comparisons "
                              "or edits).")
    return episodes_from_feedback(records, tokenizer)


def episodes_from_token_env(env: Any, act: Callable[[dict[str, np.ndarray]], np.ndarray], num_episodes: int,
                            seed: int | None = None) -> TransitionDataset:
    """Run ``act(obs) -> (N,) tokens`` in a Token vector env until ``num_episodes`` episodes ended.

    Rewards are the env's, token by token (its reward at the last token, shaping if any).
    """
    obs, _ = env.reset(seed=seed)
    N = obs["input_ids"].shape[0]
    P = env.setup.max_prompt_tokens
    prompts = [obs["input_ids"][n, :P][obs["attention_mask"][n, :P].astype(bool)].copy() for n in range(N)]
    tokens: list[list[int]] = [[] for _ in range(N)]
    rewards: list[list[float]] = [[] for _ in range(N)]
    out: list[Episode] = []
    while len(out) < num_episodes:
        actions = np.asarray(act(obs), dtype=np.int64)
        obs, r, terminated, truncated, _ = env.step(actions)
        for n in range(N):
            tokens[n].append(int(actions[n]))
            rewards[n].append(float(r[n]))
            if terminated[n] or truncated[n]:
                out.append(Episode(prompts[n], np.array(tokens[n], dtype=np.int64),
                                   np.array(rewards[n], dtype=np.float32), True))
                prompts[n] = obs["input_ids"][n, :P][obs["attention_mask"][n, :P].astype(bool)].copy()
                tokens[n], rewards[n] = [], []
    return TransitionDataset(out[:num_episodes])


def episodes_from_completion_env(env: Any, act: Callable[[dict[str, np.ndarray]], np.ndarray], num_episodes: int,
                                 seed: int | None = None) -> TransitionDataset:
    """Run ``act(obs) -> (N, T) token ids`` (padded after EOS) in a Completion vector env for ``num_episodes``.

    Each completion ends at its first EOS (kept) or at the budget; its reward is the env's.
    """
    obs, _ = env.reset(seed=seed)
    eos = env.setup.eos_token_id
    out: list[Episode] = []
    while len(out) < num_episodes:
        completions = np.asarray(act(obs), dtype=np.int64)
        prompts = [ids[m.astype(bool)].copy() for ids, m in zip(obs["input_ids"], obs["attention_mask"])]
        obs, r, _, _, _ = env.step(completions)
        for prompt, row, reward in zip(prompts, completions, r):
            ends = np.flatnonzero(row == eos)
            tokens = row[: ends[0] + 1] if len(ends) else row
            if len(tokens) == 0:
                continue
            rewards = np.zeros(len(tokens), dtype=np.float32)
            rewards[-1] = reward
            out.append(Episode(prompt, tokens.copy(), rewards, True))
    return TransitionDataset(out[:num_episodes])


def sample_episodes(lm: Any, tokenizer: Any, env_kwargs: Mapping[str, Any], num_episodes: int, *,
                    temperature: float = 1.0, max_new_tokens: int = 32, batch_size: int = 64, seed: int = 0,
                    group_size: int = 1) -> TransitionDataset:
    """Sample ``num_episodes`` completions from ``lm`` through the Completion env, scored by its reward.

    ``group_size`` answers per prompt (several samples of one prompt give the offline learner
    something to compare).
    """
    import gymnasium as gym

    from agents.common.device import autocast
    from agents.common.generation import SamplingConfig, generate

    if batch_size % group_size:
        raise ConfigError(f"batch_size={batch_size} must be a multiple of group_size={group_size}.")
    kwargs = {**env_kwargs, "tokenizer": tokenizer, "max_new_tokens": max_new_tokens}
    # The id's vector entry point is CompletionVectorEnv.
    env = cast("CompletionVectorEnv", gym.make_vec("InstructEnv/Completion-v0", num_envs=batch_size,
                                                   vectorization_mode="vector_entry_point",
                                                   group_size=group_size, **kwargs))
    device = next(lm.parameters()).device
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    setup = env.setup

    @torch.no_grad()
    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        ids = torch.as_tensor(obs["input_ids"], device=device)
        mask = torch.as_tensor(obs["attention_mask"], device=device)
        with autocast(device):
            gen = generate(lm, ids, mask, max_new_tokens, setup.eos_token_id, setup.pad_token_id,
                           SamplingConfig(temperature=temperature), generator)
        return gen.tokens.cpu().numpy()

    try:
        return episodes_from_completion_env(env, act, num_episodes, seed=seed)
    finally:
        env.close()


def load_offline_data(spec: str, tokenizer: Any, formatter: Any = None) -> TransitionDataset:
    """The dataset named by ``spec``: a JSONL file (episodes or feedback export records) or a store URL/path.

    ``formatter`` writes the prompts of a store's queries (see :func:`episodes_from_store`).
    """
    if is_store_url(spec):
        return episodes_from_store(spec, tokenizer, formatter=formatter)
    return TransitionDataset.load(spec, tokenizer)
