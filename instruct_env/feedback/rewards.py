"""Rewards backed by feedback, usable as any environment's ``reward=``.

================================  =====================================================================
reward                            value returned by the environment
================================  =====================================================================
:class:`ProxyReward`              *proxy* mode: at once, the current reward model's score (or a fallback
                                  metric's before a model exists); the items can be sent to an oracle
                                  for human or simulated labels, which later train the next model
:class:`DelayedHumanReward`       *delayed* mode: 0 at once; the people's answer arrives later through
                                  :meth:`DelayedHumanReward.collect` or a callback
:class:`HumanReward`              *direct* mode: the evaluators' answer itself; the step waits for it (up
                                  to ``timeout``), so any trainer can learn from it as from a metric
================================  =====================================================================

Both need the environment's ``samples=`` (every environment passes them): a reward model scores
``(prompt, completion)`` and people need the instruction. Every value says where it came from in
the per-completion info of :meth:`~instruct_env.rewards.Reward.compute_with_info`, which the
environments merge into the episode's ``info``:

``reward_source``
    ``"reward_model"``, ``"fallback:<metric>"`` (proxy), ``"human:delayed"``, or ``"human"``
    (direct; ``"fallback:<metric>"`` for a completion nobody answered in time).
``reward_model_version``
    The version of the reward model that produced the value; ``None`` for other sources.
``reward_model_std``
    The ensemble's disagreement on this completion (proxy; ``nan`` for the fallback).
``ticket`` and ``ticket_index``
    For a completion sent to an oracle: the :class:`~instruct_env.feedback.oracle.Ticket` of its
    batch and its position in it. Absent for completions not sent.

Pickling (environments and trainer checkpoints pickle their reward): a proxy reward that reads an
:class:`~instruct_env.feedback.online.OnlineRewardLearner` pickles a snapshot of the learner's
current model instead (a thread and a database connection do not pickle), so the copy keeps the
version it had. Oracles pickle by their own rules (a :class:`~instruct_env.feedback.oracle.HumanOracle`
reconnects to its store when unpickled). A ``callback`` must itself be picklable (a module-level
function) for the delayed reward to pickle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from instruct_env._validation import check_finite
from instruct_env.error import ConfigError, RewardError
from instruct_env.feedback.kinds import make_kind
from instruct_env.feedback.oracle import FeedbackItem, FeedbackResult, FeedbackTimeout, Oracle, Ticket
from instruct_env.rewards.base import Completions, References, Reward, check_inputs
from instruct_env.tasks.sample import Sample

__all__ = ["ProxyReward", "DelayedHumanReward", "HumanReward"]


def _items(completions: list[str], samples: Any, reward: str, **fields: Any) -> list[FeedbackItem]:
    if samples is None:
        raise RewardError(
            f"The {reward!r} reward needs samples=[...], one Sample per completion, to know each prompt. The "
            "environments pass them; when calling the reward by hand use reward(completions, references, "
            "samples=samples)."
        )
    samples = [samples] if isinstance(samples, Sample) else list(samples)
    if len(samples) != len(completions):
        raise RewardError(f"The {reward!r} reward got {len(completions)} completions but {len(samples)} samples; "
                          "expected one Sample per completion.")
    for i, sample in enumerate(samples):
        if not isinstance(sample, Sample):
            raise RewardError(f"samples[{i}] is a {type(sample).__name__}, expected a Sample.")
    return [FeedbackItem.from_sample(s, c, **fields) for s, c in zip(samples, completions)]


def _check_single_kind(kind: str, options: dict[str, Any], owner: str) -> None:
    spec = make_kind(kind, **options)
    if spec.max_completions != 1:
        raise ConfigError(
            f"{owner} judges one completion at a time, so its kind must be rating, thumbs, comment or edit; "
            f"got {kind!r}. Ask for pairwise or ranking feedback with an ActiveSelector and an oracle instead."
        )


def _check_numeric_oracle(owner: str, oracle: Any, kind: str, kind_options: dict[str, Any]) -> None:
    """An oracle asked for answers that are numbers (ratings or thumbs), with valid kind options."""
    if not isinstance(oracle, Oracle):
        raise ConfigError(f"{owner} needs an Oracle; got {type(oracle).__name__}.")
    if kind not in ("rating", "thumbs"):
        raise ConfigError(f"{owner} turns answers into numbers, so kind must be 'rating' or 'thumbs'; got {kind!r}.")
    make_kind(kind, **kind_options)


class _InfoReward(Reward):
    """A reward whose per-completion info is computed with its values: ``compute`` is ``compute_with_info``'s first two."""

    def compute(self, completions: Completions, references: References, **kwargs: Any
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.compute_with_info(completions, references, **kwargs)[:2]


class ProxyReward(_InfoReward):
    """The current reward model's score now; optionally, the completions go to an oracle for labels.

    The value of a completion is ``mean - uncertainty_penalty * std`` of the reward model's
    ensemble (mean in ``[0, 1]``), from the promoted model of an
    :class:`~instruct_env.feedback.online.OnlineRewardLearner` (read on every call, so a newly
    promoted version is used from the next batch on) or a fixed
    :class:`~instruct_env.feedback.reward_model.RewardModel`. Until a model has been trained
    (``version`` 0) the ``fallback`` metric is used, or, without one, a
    :class:`~instruct_env.error.RewardError` says so.

    With an ``oracle``, a random ``label_fraction`` of each batch is sent to it as ``kind``
    feedback (selector ``"proxy"``, score = the ensemble's disagreement); the tickets are kept
    in :attr:`tickets`. With a :class:`~instruct_env.feedback.oracle.HumanOracle` the answers land
    in the store, where an online learner picks them up.

    Args:
        model: An ``OnlineRewardLearner`` (anything with ``.current``) or a ``RewardModel``.
        fallback: Reward used before a model exists: a name (``"rougeL"``, ``"task"``...), a
            :class:`~instruct_env.rewards.Reward` or a function; ``None`` for none.
        oracle: Where to send completions for labels; ``None`` sends nothing.
        kind: Feedback kind asked of the oracle (one completion per item).
        label_fraction: Share of each batch sent to the oracle, in ``[0, 1]``.
        uncertainty_penalty: Subtract this times the ensemble's standard deviation (pessimism
            where the heads disagree, which resists over-optimising the reward model).
        formatter: Prompt template of the reward model's texts (``PromptFormatter``; the default
            template). Must match the one the labels were built with.
        seed: Seed of the choice of completions sent.
        name: Component name.
        **kind_options: Options of ``kind`` (``low``/``high`` for a rating).

    >>> from instruct_env.feedback.oracle import SimulatedOracle
    >>> from instruct_env.tasks import BuiltinDataset
    >>> sample = BuiltinDataset(["copy"], split="validation", size_per_task=1)[0]
    >>> from instruct_env.feedback.reward_model import RewardModel
    >>> untrained = RewardModel(lambda pairs: [[len(c) / 10] for _, c in pairs])  # version 0
    >>> reward = ProxyReward(untrained, fallback="exact_match", oracle=SimulatedOracle(seed=0))
    >>> values, _, infos = reward.compute_with_info([sample.references[0]], [sample.references], samples=[sample])
    >>> values, infos[0]["reward_source"], infos[0]["reward_model_version"], infos[0]["ticket_index"]
    (array([1.]), 'fallback:exact_match', None, 0)
    """

    needs_references = False

    def __init__(
        self,
        model: Any,
        *,
        fallback: Any = None,
        oracle: Oracle | None = None,
        kind: str = "rating",
        label_fraction: float = 1.0,
        uncertainty_penalty: float = 0.0,
        formatter: Any = None,
        seed: int | None = 0,
        name: str = "reward_model",
        **kind_options: Any,
    ) -> None:
        from instruct_env import rewards

        if not (hasattr(model, "current") or hasattr(model, "predict")):
            raise ConfigError(
                f"ProxyReward needs a RewardModel or an OnlineRewardLearner (anything with .current); "
                f"got {type(model).__name__}."
            )
        if oracle is not None and not isinstance(oracle, Oracle):
            raise ConfigError(f"oracle must be an Oracle or None; got {type(oracle).__name__}.")
        _check_single_kind(kind, kind_options, "ProxyReward")
        for arg, value in (("label_fraction", label_fraction), ("uncertainty_penalty", uncertainty_penalty)):
            check_finite(arg, value, 0)
        if label_fraction > 1:
            raise ConfigError(f"label_fraction must be in [0, 1]; got {label_fraction!r}.")
        self.source = model
        self.fallback = None if fallback is None else rewards.make(fallback)
        self.oracle = oracle
        self.kind, self.kind_options = kind, dict(kind_options)
        self.label_fraction, self.uncertainty_penalty = float(label_fraction), float(uncertainty_penalty)
        self.formatter = formatter
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.tickets: list[Ticket] = []

    def __repr__(self) -> str:
        fallback = None if self.fallback is None else self.fallback.name
        return f"ProxyReward({type(self.source).__name__}, version={self.version}, fallback={fallback!r})"

    @property
    def model(self) -> Any:
        """The reward model used now (the learner's promoted one)."""
        return getattr(self.source, "current", self.source)

    @property
    def version(self) -> int:
        """Version of the reward model used now (0: none trained yet; the fallback is used)."""
        return int(getattr(self.model, "version", 0))

    def compute_with_info(self, completions: Completions, references: References, **kwargs: Any
                          ) -> tuple[np.ndarray, dict[str, np.ndarray], list[dict[str, Any]]]:
        """Score with the current model (or the fallback); send a share of the batch to the oracle."""
        completions, refs = check_inputs(completions, references)
        items = _items(completions, kwargs.get("samples"), self.name)
        model = self.model
        version: int | None = self.version
        if version is not None and version >= 1:
            mean, std = model.predict([item.pairs(self.formatter)[0] for item in items])
            values = mean - self.uncertainty_penalty * std
            source: str = self.name
        elif self.fallback is not None:
            values, _, _ = self.fallback.compute_with_info(completions, refs, **kwargs)
            std = np.full(len(items), np.nan)
            source, version = f"fallback:{self.fallback.name}", None
        else:
            raise RewardError(
                "ProxyReward has no trained reward model yet (version 0) and no fallback. Collect feedback and "
                "fit or promote a model first, or pass fallback='rougeL' (or another reward) for the start."
            )
        values = np.asarray(values, dtype=np.float64)
        infos: list[dict[str, Any]] = [
            {"reward_source": source, "reward_model_version": version, "reward_model_std": float(std[i])}
            for i in range(len(items))
        ]
        if self.oracle is not None and self.label_fraction > 0 and items:
            chosen = np.flatnonzero(self.rng.random(len(items)) < self.label_fraction)
            if len(chosen):
                queued = [FeedbackItem.from_sample(cast(Sample, items[i].sample), items[i].completions, selector="proxy",  # _items set it
                                                   score=None if math.isnan(std[i]) else float(std[i]))
                          for i in chosen]
                ticket = self.oracle.ask(queued, self.kind, **self.kind_options)
                self.tickets.append(ticket)
                for position, i in enumerate(chosen):
                    infos[i]["ticket"], infos[i]["ticket_index"] = ticket, position
        return values, {self.name: values}, infos

    def poll_labels(self) -> list[FeedbackResult]:
        """Poll the oracle for every ticket sent; complete ones are returned and dropped from :attr:`tickets`."""
        if self.oracle is None:
            return []
        results = [self.oracle.poll(t) for t in self.tickets]
        self.tickets = [r.ticket for r in results if not r.complete]
        return results

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["source"] = self.model  # a learner's thread and store do not pickle: keep its current model
        return state


class DelayedHumanReward(_InfoReward):
    """People's judgement as the reward, delivered later: the environment gets 0 now and a ticket.

    Each batch becomes one oracle request of ``kind`` feedback (one item per completion). The
    value returned at once is ``placeholder`` (0 by default) for every completion, with
    ``reward_source="human:delayed"`` and the batch's ``ticket`` and ``ticket_index`` in the info.
    The human reward, in ``[0, 1]`` (a rating ``r`` on ``low..high`` becomes
    ``(r - low) / (high - low)``, thumbs up 1 and down 0, averaged over evaluators), arrives
    through :meth:`collect`, or through ``callback(ticket, values)`` called by :meth:`deliver`
    once a ticket is complete. Nothing runs in the background: call ``deliver()`` when convenient
    (e.g. after each update).

    Args:
        oracle: Who answers (a :class:`~instruct_env.feedback.oracle.HumanOracle`, a pool...).
        kind: ``"rating"`` or ``"thumbs"``.
        callback: ``callback(ticket, values)`` for each completed ticket, from :meth:`deliver`.
        placeholder: The value returned at once.
        name: Component name.
        **kind_options: Options of ``kind`` (``low``/``high`` for a rating).

    >>> from instruct_env.feedback.oracle import SimulatedOracle
    >>> from instruct_env.tasks import BuiltinDataset
    >>> sample = BuiltinDataset(["copy"], split="validation", size_per_task=1)[0]
    >>> reward = DelayedHumanReward(SimulatedOracle(noise=0.0, seed=0), "thumbs")
    >>> values, _, infos = reward.compute_with_info([sample.references[0]], [[]], samples=[sample])
    >>> values, infos[0]["reward_source"]
    (array([0.]), 'human:delayed')
    >>> reward.collect(infos[0]["ticket"])
    array([1.])
    """

    needs_references = False

    def __init__(self, oracle: Oracle, kind: str = "rating", *, callback: Callable[[Ticket, np.ndarray], Any] | None = None,
                 placeholder: float = 0.0, name: str = "human", **kind_options: Any) -> None:
        _check_numeric_oracle("DelayedHumanReward", oracle, kind, kind_options)
        if callback is not None and not callable(callback):
            raise ConfigError(f"callback must be callable or None; got {type(callback).__name__}.")
        check_finite("placeholder", placeholder)
        self.oracle, self.kind, self.kind_options = oracle, kind, dict(kind_options)
        self.callback, self.placeholder, self.name = callback, float(placeholder), name
        self.pending: dict[str, Ticket] = {}

    def __repr__(self) -> str:
        return f"DelayedHumanReward({self.oracle!r}, kind={self.kind!r}, pending={len(self.pending)})"

    def compute_with_info(self, completions: Completions, references: References, **kwargs: Any
                          ) -> tuple[np.ndarray, dict[str, np.ndarray], list[dict[str, Any]]]:
        """Send the batch to the oracle; return the placeholder and the ticket per completion."""
        completions, _ = check_inputs(completions, references)
        items = _items(completions, kwargs.get("samples"), self.name, selector="delayed")
        values = np.full(len(items), self.placeholder)
        if not items:
            return values, {self.name: values}, []
        ticket = self.oracle.ask(items, self.kind, **self.kind_options)
        self.pending[ticket.id] = ticket
        infos = [{"reward_source": f"{self.name}:delayed", "reward_model_version": None, "ticket": ticket,
                  "ticket_index": i} for i in range(len(items))]
        return values, {self.name: values}, infos

    def _ticket(self, ticket: Ticket | str) -> Ticket:
        if isinstance(ticket, Ticket):
            return ticket
        if ticket in self.pending:
            return self.pending[ticket]
        raise ConfigError(f"Unknown or already delivered ticket id {ticket!r}; pass the Ticket object from the info.")

    def collect(self, ticket: Ticket | str, timeout: float | None = 0.0) -> np.ndarray:
        """The human reward of each completion of ``ticket`` (``nan`` where nobody answered yet).

        Args:
            ticket: The ``info["ticket"]`` of the completions (or its id, while pending).
            timeout: ``0`` polls without blocking; a number waits up to that many seconds for a
                complete answer; ``None`` waits as long as it takes.
        """
        ticket = self._ticket(ticket)
        if timeout == 0:
            result = self.oracle.poll(ticket)
        else:
            try:
                result = self.oracle.wait(ticket, timeout)
            except FeedbackTimeout as exc:
                result = exc.partial
        if result.complete:
            self.pending.pop(ticket.id, None)
        return result.values()

    def deliver(self) -> int:
        """Poll every pending ticket; call ``callback(ticket, values)`` for each complete one; return how many."""
        delivered = 0
        for ticket in list(self.pending.values()):
            result = self.oracle.poll(ticket)
            if result.complete:
                del self.pending[ticket.id]
                if self.callback is not None:
                    self.callback(ticket, result.values())
                delivered += 1
        return delivered


class HumanReward(_InfoReward):
    """People's judgement as the reward, at once: each batch waits for the evaluators' answers.

    The *direct* mode. Each batch becomes one oracle request of ``kind`` feedback (one item per
    completion); :meth:`compute_with_info` blocks until every item has its answers (an
    :class:`~instruct_env.feedback.oracle.OraclePool` waits for ``min_evaluators`` per item) or
    ``timeout`` seconds pass, and returns each completion's mean answer in ``[0, 1]`` (a rating
    ``r`` on ``low..high`` becomes ``(r - low) / (high - low)``, thumbs up 1 and down 0). Any
    trainer can then learn from people exactly as from a metric: with simulated evaluators this is
    RL on a noisy verifier; with people it suits small batches or a crowd that answers quickly.

    A completion nobody answered within ``timeout`` (everyone skipped, or time ran out) gets the
    ``fallback`` reward's value, with ``reward_source="fallback:<name>"`` in its info; without a
    fallback that is an error, never a silent 0.

    Info per completion: ``reward_source`` (``"human"``), ``reward_model_version`` (``None``),
    ``human_answers`` (how many evaluators answered it) and the batch's ``ticket`` /
    ``ticket_index``. :attr:`judgements` counts the answers received so far.

    Args:
        oracle: Who answers (a :class:`~instruct_env.feedback.oracle.HumanOracle`, a pool...).
        kind: ``"rating"`` or ``"thumbs"``.
        timeout: Seconds to wait per batch (``None``: as long as it takes).
        fallback: Reward for unanswered completions: a name (``"task"``, ``"rougeL"``...), a
            :class:`~instruct_env.rewards.Reward`, a function, or ``None`` (raise instead).
        name: Component name.
        **kind_options: Options of ``kind`` (``low``/``high`` for a rating).

    >>> from instruct_env.feedback.oracle import SimulatedOracle
    >>> from instruct_env.tasks import BuiltinDataset
    >>> sample = BuiltinDataset(["copy"], split="validation", size_per_task=1)[0]
    >>> reward = HumanReward(SimulatedOracle(noise=0.0, seed=0), "thumbs")
    >>> values, _, infos = reward.compute_with_info([sample.references[0], "zzz"], [[], []], samples=[sample, sample])
    >>> values, infos[0]["reward_source"], infos[0]["human_answers"]
    (array([1., 0.]), 'human', 1)
    """

    needs_references = False

    def __init__(self, oracle: Oracle, kind: str = "rating", *, timeout: float | None = 600.0, fallback: Any = None,
                 name: str = "human", **kind_options: Any) -> None:
        _check_numeric_oracle("HumanReward", oracle, kind, kind_options)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout > 0):
            raise ConfigError(f"timeout must be a number of seconds > 0, or None to wait as long as it takes; "
                              f"got {timeout!r}.")
        from instruct_env import rewards

        self.oracle, self.kind, self.kind_options = oracle, kind, dict(kind_options)
        self.timeout = timeout
        self.fallback = None if fallback is None else rewards.make(fallback)
        self.name = name
        self.judgements = 0

    def __repr__(self) -> str:
        fallback = None if self.fallback is None else self.fallback.name
        return f"HumanReward({self.oracle!r}, kind={self.kind!r}, timeout={self.timeout}, fallback={fallback!r})"

    def compute_with_info(self, completions: Completions, references: References, **kwargs: Any
                          ) -> tuple[np.ndarray, dict[str, np.ndarray], list[dict[str, Any]]]:
        """Ask the oracle about the batch and wait for the answers (see the class docstring)."""
        completions, refs = check_inputs(completions, references)
        items = _items(completions, kwargs.get("samples"), self.name, selector="direct")
        if not items:
            return np.zeros(0), {self.name: np.zeros(0)}, []
        ticket = self.oracle.ask(items, self.kind, **self.kind_options)
        try:
            result = self.oracle.wait(ticket, self.timeout)
        except FeedbackTimeout as exc:
            result = exc.partial
        values = np.asarray(result.values(), dtype=np.float64)
        missing = np.flatnonzero(np.isnan(values))
        source = np.full(len(items), self.name, dtype=object)
        if missing.size:
            if self.fallback is None:
                raise RewardError(
                    f"{missing.size} of {len(items)} completions got no {self.kind} answer within "
                    f"{self.timeout} s (ticket {ticket.id}); their reward is unknown. Give evaluators more time "
                    "(timeout=...), or pass fallback='task' (or another reward) for unanswered completions."
                )
            fill, _, _ = self.fallback.compute_with_info([completions[i] for i in missing],
                                                          [refs[i] for i in missing],
                                                          samples=[items[i].sample for i in missing])
            values[missing] = fill
            source[missing] = f"fallback:{self.fallback.name}"
        counts = np.zeros(len(items), dtype=int)
        for j in result.judgements:
            counts[j.item] += not j.skipped
        self.judgements += int(counts.sum())
        infos = [{"reward_source": str(source[i]), "reward_model_version": None, "human_answers": int(counts[i]),
                  "ticket": ticket, "ticket_index": i} for i in range(len(items))]
        return values, {self.name: values}, infos
