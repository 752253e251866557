"""Oracles: one interface for asking people, or simulated people, to judge model outputs.

An oracle takes a batch of :class:`FeedbackItem` (an instruction, its context and one or more
completions) and a feedback kind (``rating``, ``thumbs``, ``pairwise``, ``ranking``, ``comment``,
``edit``; see :mod:`instruct_env.feedback.kinds`), and returns a :class:`Ticket` at once::

    ticket = oracle.ask(items, "rating")
    result = oracle.poll(ticket)                # never blocks: the answers given so far
    result = oracle.wait(ticket, timeout=60.0)  # blocks until complete, or raises FeedbackTimeout

A :class:`FeedbackResult` holds one :class:`Judgement` per (item, evaluator) that answered or
skipped, always in **canonical** terms (``"A"`` is ``completions[0]`` of the item, whatever order
an evaluator saw). ``result.values()`` turns ratings, thumbs and pairwise choices into one number
per item.

=====================  =============================================================================
oracle                 answers come from
=====================  =============================================================================
:class:`SimulatedOracle`  an automatic metric or the sample's task verifier, with seeded noise,
                       bias, skips and adversarial flips; also acts as an evaluator of a store
:class:`HumanOracle`   people, through a :class:`~instruct_env.feedback.store.FeedbackStore`
                       (in-process) or a :class:`~instruct_env.feedback.client.RemoteStore`
                       (the feedback server's admin API, from another process or machine)
:class:`OraclePool`    several oracles per item, until each item has ``min_evaluators`` answers
=====================  =============================================================================

Example:
    >>> from instruct_env.tasks import BuiltinDataset
    >>> sample = BuiltinDataset(["copy"], split="validation", size_per_task=1)[0]
    >>> oracle = SimulatedOracle(noise=0.0, seed=0)
    >>> ticket = oracle.ask([FeedbackItem.from_sample(sample, [sample.references[0]]),
    ...                      FeedbackItem.from_sample(sample, ["nothing like it"])], "thumbs")
    >>> result = oracle.wait(ticket, timeout=1.0)
    >>> [j.answer for j in result.judgements]
    [{'thumb': 'up'}, {'thumb': 'down'}]
    >>> result.values()
    array([1., 0.])
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from instruct_env.error import ConfigError, InstructEnvError, RewardError
from instruct_env.feedback.client import RemoteStore, _LocalStore
from instruct_env.feedback.items import (
    FeedbackItem,
    FeedbackResult,
    Judgement,
    Ticket,
    answer_value,
    prompt_text,
)
from instruct_env.feedback.kinds import FeedbackKind, Rating, make_kind
from instruct_env.feedback.log import AnswerLog
from instruct_env.feedback.store import FeedbackStore
from instruct_env.tasks.sample import Sample

__all__ = [
    "FeedbackItem",
    "Ticket",
    "Judgement",
    "FeedbackResult",
    "FeedbackTimeout",
    "Oracle",
    "SimulatedOracle",
    "HumanOracle",
    "OraclePool",
    "RemoteStore",
    "answer_value",
    "prompt_text",
]


class FeedbackTimeout(InstructEnvError, TimeoutError):
    """:meth:`Oracle.wait` ran out of time; ``partial`` holds the answers given so far."""

    def __init__(self, message: str, partial: FeedbackResult) -> None:
        super().__init__(message)
        self.partial = partial


# --------------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------------


def _check_batch(items: Sequence[FeedbackItem], kind: str, options: Mapping[str, Any]) -> FeedbackKind:
    spec = make_kind(kind, **options)
    if isinstance(items, (FeedbackItem, str)) or not isinstance(items, Sequence):
        raise ConfigError(
            f"ask() needs a sequence of FeedbackItem; got {type(items).__name__}. Wrap one item in a list."
        )
    for i, item in enumerate(items):
        if not isinstance(item, FeedbackItem):
            raise ConfigError(
                f"items[{i}] is a {type(item).__name__}; expected a FeedbackItem (FeedbackItem.from_sample(...))."
            )
        try:
            spec.check_completions(item.completions)
        except ConfigError as exc:
            raise ConfigError(f"items[{i}]: {exc}") from None
    return spec


def _new_ticket(kind: FeedbackKind, n_items: int, query_ids: Sequence[int] = ()) -> Ticket:
    return Ticket(uuid.uuid4().hex, kind.name, dict(kind.options()), n_items, time.time(), tuple(query_ids))


class Oracle:
    """Base class: ask for judgements, then poll (non-blocking) or wait (blocking, with a timeout).

    Subclasses implement :meth:`ask` and :meth:`poll`; :meth:`wait` polls until the result is
    complete.

    Attributes:
        name: The oracle's name (evaluator name of a simulated oracle).
    """

    name: str = "oracle"
    poll_interval: float = 0.05

    def ask(self, items: Sequence[FeedbackItem], kind: str = "rating", **options: Any) -> Ticket:
        """Request judgements of ``items`` of feedback ``kind`` (with its ``options``); never blocks.

        Raises:
            ConfigError: an item does not fit the kind (e.g. one completion for ``pairwise``).
            UnknownNameError: an unknown kind.
        """
        raise NotImplementedError

    def poll(self, ticket: Ticket) -> FeedbackResult:
        """The answers to ``ticket`` given so far; never blocks."""
        raise NotImplementedError

    def wait(self, ticket: Ticket, timeout: float | None = None) -> FeedbackResult:
        """Block until ``ticket``'s result is complete and return it.

        Args:
            ticket: A ticket this oracle issued.
            timeout: Seconds to wait at most; ``None`` waits for ever.

        Raises:
            FeedbackTimeout: ``timeout`` passed first; its ``partial`` holds the answers so far.
        """
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
            raise ConfigError(f"timeout must be a number of seconds >= 0 or None; got {timeout!r}.")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = self.poll(ticket)
            if result.complete:
                return result
            left = math.inf if deadline is None else deadline - time.monotonic()
            if left <= 0:
                missing = int(np.sum(result.n_answers() == 0))
                raise FeedbackTimeout(
                    f"No complete feedback for ticket {ticket.id} ({ticket.n_items} {ticket.kind} item(s)) after "
                    f"{timeout:g} s: {len(result.judgements)} judgement(s) so far, {missing} item(s) without an "
                    "answer. The partial result is in the exception's .partial; poll(ticket) later for more.",
                    result,
                )
            time.sleep(min(self.poll_interval, left))

    def close(self) -> None:
        """Release what the oracle holds (database connections...)."""

    def __enter__(self) -> Oracle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------------
# Simulated evaluators
# --------------------------------------------------------------------------------------------------


class _PicklesWithoutLock:
    """Pickling for objects guarded by ``self._lock``.

    A lock does not pickle, so it is left out and a fresh one is made when the object is unpickled.
    """

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class SimulatedOracle(_PicklesWithoutLock, Oracle):
    """A simulated evaluator: answers from an automatic metric, with seeded noise, bias and mistakes.

    Each completion's true quality ``q`` is the metric's value clipped to ``[0, 1]``. The evaluator
    then, per item and independently:

    1. skips it with probability ``skip_rate``;
    2. turns adversarial with probability ``flip_rate``: it judges ``1 - q`` instead of ``q``
       (best rated worst, preferences reversed);
    3. perceives ``p = q + bias + noise * N(0, 1)`` per completion, plus ``position_bias`` on the
       first completion of a ``pairwise`` or ``ranking`` item;
    4. answers: ``rating`` ``round(low + clip(p, 0, 1) * (high - low))``; ``thumbs`` up when
       ``p >= 0.5``; ``pairwise`` ``A``/``B`` for the higher ``p`` (strength 1/2/3 when the
       gap is under 0.25 / under 0.5 / larger), or, within ``tie_margin``, ``tie`` when both are
       at least 0.5 and ``both_bad`` otherwise; ``ranking`` by ``p``; ``comment`` a sentence
       naming ``p``; ``edit`` the first reference (the completion unchanged when flipped; a skip
       when there is no reference).

    ``bias`` shifts absolute judgements (a lenient or harsh evaluator); it cancels out of
    comparisons. All draws come from one generator seeded with ``seed``, so the same sequence of
    requests gets the same answers.

    Args:
        metric: ``"task"`` (each sample's verifier; items need a ``sample``), a registered reward
            name such as ``"rougeL"`` (needs references), a :class:`~instruct_env.rewards.Reward`,
            or a function with the reward signature.
        noise: Standard deviation of the perception noise, in quality units.
        bias: Added to every perceived quality.
        position_bias: Added to the first completion's perceived quality in comparisons.
        skip_rate: Probability of skipping an item, in ``[0, 1]``.
        flip_rate: Probability of judging an item adversarially, in ``[0, 1]``.
        tie_margin: Perceived gap under which a pair counts as a tie (or both bad).
        latency: Seconds before the answers to a request become visible to ``poll``.
        seed: Seed of the generator (``None``: fresh entropy).
        name: The evaluator's name in judgements (and in a store).
    """

    def __init__(
        self,
        metric: Any = "task",
        *,
        noise: float = 0.1,
        bias: float = 0.0,
        position_bias: float = 0.0,
        skip_rate: float = 0.0,
        flip_rate: float = 0.0,
        tie_margin: float = 0.05,
        latency: float = 0.0,
        seed: int | None = None,
        name: str = "simulated",
    ) -> None:
        from instruct_env import rewards

        for arg, value, low, high in (("noise", noise, 0, math.inf), ("skip_rate", skip_rate, 0, 1),
                                      ("flip_rate", flip_rate, 0, 1), ("tie_margin", tie_margin, 0, 1),
                                      ("latency", latency, 0, math.inf), ("bias", bias, -1, 1),
                                      ("position_bias", position_bias, -1, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ConfigError(f"SimulatedOracle {arg} must be a number in [{low}, {high}]; got {value!r}.")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"SimulatedOracle name must be a non-empty string; got {name!r}.")
        self.metric = rewards.make(metric)
        self.noise, self.bias, self.position_bias = float(noise), float(bias), float(position_bias)
        self.skip_rate, self.flip_rate, self.tie_margin = float(skip_rate), float(flip_rate), float(tie_margin)
        self.latency = float(latency)
        self.seed = seed
        self.name = name
        self.rng = np.random.default_rng(seed)
        self._results: dict[str, tuple[float, list[Judgement]]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"SimulatedOracle({self.metric.name!r}, noise={self.noise}, bias={self.bias}, skip_rate={self.skip_rate}, "
                f"flip_rate={self.flip_rate}, seed={self.seed}, name={self.name!r})")

    # -- judging ------------------------------------------------------------------------------

    def quality(self, items: Sequence[FeedbackItem]) -> list[np.ndarray]:
        """True quality in ``[0, 1]`` of every completion of every item (one array per item)."""
        flat, refs, samples, sizes = [], [], [], []
        for item in items:
            sizes.append(len(item.completions))
            for completion in item.completions:
                flat.append(completion)
                refs.append(item.references)
                samples.append(item.sample)
        if not flat:
            return [np.zeros(0) for _ in items]
        if self.metric.name == "task" and any(s is None for s in samples):
            raise RewardError(
                "SimulatedOracle(metric='task') scores with each sample's verifier, but an item has no sample. "
                "Build items with FeedbackItem.from_sample(sample, completions), or use a reference metric "
                "such as metric='rougeL' (items then need references)."
            )
        values = np.clip(np.asarray(self.metric(flat, refs, samples=samples), dtype=np.float64), 0.0, 1.0)
        return list(np.split(values, np.cumsum(sizes)[:-1]))

    def judge(self, kind: FeedbackKind, quality: np.ndarray, references: Sequence[str] = (),
              completions: Sequence[str] = ()) -> dict[str, Any] | None:
        """One answer (canonical terms) for one item of true ``quality``; ``None`` is a skip."""
        rng = self.rng
        if rng.random() < self.skip_rate:
            return None
        flipped = rng.random() < self.flip_rate
        q = 1.0 - quality if flipped else quality
        perceived = q + self.bias + self.noise * rng.standard_normal(len(q))
        if kind.name in ("pairwise", "ranking"):
            perceived[0] += self.position_bias
        if kind.name == "rating":
            assert isinstance(kind, Rating)  # make_kind("rating") builds a Rating
            span = kind.high - kind.low
            return {"rating": int(round(kind.low + float(np.clip(perceived[0], 0.0, 1.0)) * span))}
        if kind.name == "thumbs":
            return {"thumb": "up" if perceived[0] >= 0.5 else "down"}
        if kind.name == "pairwise":
            gap = float(perceived[0] - perceived[1])
            if abs(gap) <= self.tie_margin:
                return {"choice": "tie" if min(perceived) >= 0.5 else "both_bad"}
            strength = 1 if abs(gap) < 0.25 else 2 if abs(gap) < 0.5 else 3
            return {"choice": "A" if gap > 0 else "B", "strength": strength}
        if kind.name == "ranking":
            return {"ranking": [int(i) for i in np.argsort(-perceived, kind="stable")]}
        if kind.name == "comment":
            return {"comment": f"I would give this {float(np.clip(perceived[0], 0, 1)):.2f} out of 1."}
        if kind.name == "edit":
            if flipped and completions and completions[0].strip():
                return {"completion": completions[0]}
            if references and references[0].strip():
                return {"completion": references[0]}
            return None
        raise ConfigError(f"SimulatedOracle cannot answer {kind.name!r} feedback.")

    # -- the oracle interface -----------------------------------------------------------------

    def ask(self, items: Sequence[FeedbackItem], kind: str = "rating", **options: Any) -> Ticket:
        """Judge ``items`` now (answers become visible to :meth:`poll` after ``latency`` seconds)."""
        spec = _check_batch(items, kind, options)
        ticket = _new_ticket(spec, len(items))
        qualities = self.quality(items)
        with self._lock:
            judgements = []
            for i, (item, quality) in enumerate(zip(items, qualities)):
                answer = self.judge(spec, quality, item.references, item.completions)
                judgements.append(Judgement(i, self.name, answer, ticket.created + self.latency))
            self._results[ticket.id] = (ticket.created + self.latency, judgements)
        return ticket

    def poll(self, ticket: Ticket) -> FeedbackResult:
        """The answers to ``ticket``: all of them once its latency has passed, none before."""
        entry = self._results.get(ticket.id)
        if entry is None:
            raise ConfigError(
                f"Ticket {ticket.id} was not issued by this SimulatedOracle ({self.name!r}), or was forgotten."
            )
        ready_at, judgements = entry
        if time.time() < ready_at:
            return FeedbackResult(ticket, (), False)
        return FeedbackResult(ticket, tuple(judgements), True)

    def forget(self, ticket: Ticket) -> None:
        """Drop a ticket's stored answers (they are kept until then)."""
        self._results.pop(ticket.id, None)

    # -- acting as an evaluator of a store ----------------------------------------------------

    def answer_store(self, store: FeedbackStore, samples: Mapping[str, Sample] | None = None,
                     limit: int | None = None) -> int:
        """Answer this evaluator's queue in ``store`` (registering ``self.name`` if new); return how many.

        Works like a person at the evaluator page: ``next_query``, judge the completions in the
        order shown, ``submit`` (or ``skip``). The true quality is scored with the sample named by
        the query's ``metadata["sample_id"]`` in ``samples`` when given, else with the references
        in ``metadata["references"]`` (queries posted by :class:`HumanOracle` carry both).

        Args:
            store: An open store.
            samples: ``sample id -> Sample`` (needed for ``metric="task"``).
            limit: Answer (or skip) at most this many queries.
        """
        evaluator_id = self._evaluator_id(store)
        done = 0
        while limit is None or done < limit:
            view = store.next_query(evaluator_id)
            if view is None:
                break
            query = store.get_query(view.id)
            sample_id = query.metadata.get("sample_id")
            sample = (samples or {}).get(sample_id) if isinstance(sample_id, str) else None
            if sample is None and self.metric.name == "task":
                raise ConfigError(
                    f"Query {view.id} names sample {query.metadata.get('sample_id')!r}, which is not in samples=; "
                    "SimulatedOracle(metric='task') needs each query's Sample to run its verifier. Pass "
                    "samples={sample.id: sample, ...} covering the queries posted."
                )
            item = FeedbackItem(view.instruction, view.completions, view.context, sample=sample,
                                metadata={"references": list(query.metadata.get("references", []))})
            [quality] = self.quality([item])
            with self._lock:
                answer = self.judge(make_kind(view.kind, **view.options), quality, item.references, item.completions)
            if answer is None:
                store.skip(evaluator_id, view.id, "simulated skip")
            else:
                store.submit(evaluator_id, view.id, answer)  # display terms: judged as shown
            done += 1
        return done

    def _evaluator_id(self, store: FeedbackStore) -> int:
        for evaluator in store.evaluators():
            if evaluator.name == self.name:
                return evaluator.id
        return store.add_evaluator(self.name)[0].id


# --------------------------------------------------------------------------------------------------
# People, through a store
# --------------------------------------------------------------------------------------------------


class HumanOracle(_PicklesWithoutLock, Oracle):
    """People answer through a feedback store: queries are posted, answers read from the event log.

    ``ask`` stores one query per item (kind, instruction, context, completions, the item's
    selector and score, and metadata holding the sample id, task and references). Evaluators
    answer them in the web pages or through the REST API. ``poll`` reads the store's event log
    from the oracle's watermark (each event once), applies edits and undos, and reports every
    evaluator's current answer or skip. A result is complete once every item has
    ``min_answers`` answers.

    In-process: ``HumanOracle(store)`` with a :class:`FeedbackStore` or a store URL. From another
    process or machine: ``HumanOracle(url="http://host:8000", token=admin_token)`` uses the
    server's admin API (needs ``httpx``: ``pip install 'instruct-env[server]'``); ``client=``
    accepts a ready ``httpx.Client`` (e.g. FastAPI's ``TestClient``).

    Pickling keeps the store URL (or server URL and token) and the log read so far; the copy
    reconnects when unpickled. A store passed as an object is not closed by :meth:`close`.

    Args:
        store: A :class:`FeedbackStore` or a store URL (in-process).
        url: The feedback server's base URL (over HTTP).
        token: An admin token (over HTTP).
        client: An ``httpx.Client`` to use instead of a new one (over HTTP).
        min_answers: Answers per item for a complete result (default: the store's
            ``min_evaluators``).
        name: The oracle's name.
    """

    poll_interval = 0.2

    def __init__(
        self,
        store: FeedbackStore | str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        client: Any = None,
        min_answers: int | None = None,
        name: str = "human",
    ) -> None:
        if (store is None) == (url is None):
            raise ConfigError(
                "HumanOracle needs either store= (a FeedbackStore or store URL, in this process) or url= and "
                "token= (the feedback server's address and an admin token), not both."
            )
        if min_answers is not None and (isinstance(min_answers, bool) or not isinstance(min_answers, int)
                                        or min_answers < 1):
            raise ConfigError(f"min_answers must be an integer >= 1 or None; got {min_answers!r}.")
        self.backend: _LocalStore | RemoteStore
        if store is not None:
            self.backend = _LocalStore(store)
        else:
            assert url is not None  # exactly one of store= and url= (checked above)
            self.backend = RemoteStore(url, token, client)
        self.min_answers = min_answers
        self.name = name
        self._log = AnswerLog()
        self._names: dict[int, str] = {}
        self._lock = threading.Lock()

    @property
    def store(self) -> FeedbackStore | None:
        """The store, when in-process (``None`` over HTTP)."""
        return self.backend.store if isinstance(self.backend, _LocalStore) else None

    def ask(self, items: Sequence[FeedbackItem], kind: str = "rating", **options: Any) -> Ticket:
        """Post one store query per item; people answer them in the store."""
        spec = _check_batch(items, kind, options)
        queries = [item.to_query(kind, spec.options()) for item in items]
        query_ids = self.backend.add_queries(queries) if queries else []
        return _new_ticket(spec, len(items), query_ids)

    def refresh(self) -> int:
        """Read new events from the log (from the watermark); return how many were read."""
        n = 0
        with self._lock:
            while events := self._log.read(self.backend):
                n += len(events)
        return n

    @property
    def watermark(self) -> int:
        """The newest event id read from the store's log."""
        return self._log.watermark

    def _name(self, evaluator_id: int) -> str:
        if evaluator_id not in self._names:
            self._names = {e.id: e.name for e in self.backend.evaluators()}
        return self._names.get(evaluator_id, f"evaluator-{evaluator_id}")

    def poll(self, ticket: Ticket) -> FeedbackResult:
        """Every evaluator's current answer or skip to ``ticket``'s queries, after reading the log."""
        if len(ticket.query_ids) != ticket.n_items:
            raise ConfigError(f"Ticket {ticket.id} has no store query ids: it was not issued by a HumanOracle.")
        self.refresh()
        judgements = []
        with self._lock:
            for i, qid in enumerate(ticket.query_ids):
                for eid in self._log.evaluators_of(qid):
                    current = self._log.current(qid, eid)
                    if current is not None:
                        answer = None if current.type == "skip" else current.answer
                        judgements.append(Judgement(i, self._name(eid), answer, current.time, qid, current.id))
        judgements.sort(key=lambda j: (j.item, j.evaluator))
        needed = self.min_answers if self.min_answers is not None else self.backend.min_evaluators()
        result = FeedbackResult(ticket, tuple(judgements), False)
        return FeedbackResult(ticket, result.judgements, bool(np.all(result.n_answers() >= needed)))

    def close(self) -> None:
        """Close the store connection or HTTP client (a store passed as an object stays open)."""
        self.backend.close()


# --------------------------------------------------------------------------------------------------
# Several evaluators per item
# --------------------------------------------------------------------------------------------------


class OraclePool(Oracle):
    """Several oracles judge each item; a result is complete once each item has ``min_evaluators`` answers.

    ``ask`` sends every item to ``per_item`` members (all of them by default, else a seeded random
    choice per item); judgements are collected per evaluator, under each member's evaluator names
    (which must not collide: give simulated members distinct ``name=``). An item whose members
    all answered or skipped counts as done even below ``min_evaluators``.

    Args:
        oracles: The members.
        min_evaluators: Answers per item for a complete result (default: ``per_item``).
        per_item: Members asked per item (default: all).
        seed: Seed of the member choice.
        name: The pool's name.
    """

    def __init__(self, oracles: Sequence[Oracle], *, min_evaluators: int | None = None, per_item: int | None = None,
                 seed: int | None = None, name: str = "pool") -> None:
        oracles = list(oracles)
        if not oracles or not all(isinstance(o, Oracle) for o in oracles):
            raise ConfigError("OraclePool needs a non-empty list of Oracle instances.")
        names = [o.name for o in oracles]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(
                f"OraclePool members must have distinct names (their answers are kept per evaluator); "
                f"{dupes} appear more than once. Give each a name=..."
            )
        per_item = len(oracles) if per_item is None else per_item
        if isinstance(per_item, bool) or not isinstance(per_item, int) or not 1 <= per_item <= len(oracles):
            raise ConfigError(f"per_item must be an integer in [1, {len(oracles)}] (the pool's size); got {per_item!r}.")
        min_evaluators = per_item if min_evaluators is None else min_evaluators
        if isinstance(min_evaluators, bool) or not isinstance(min_evaluators, int) or not 1 <= min_evaluators <= per_item:
            raise ConfigError(
                f"min_evaluators must be an integer in [1, per_item={per_item}]; got {min_evaluators!r}. "
                "Raise per_item or lower min_evaluators."
            )
        self.oracles, self.per_item, self.min_evaluators, self.name = oracles, per_item, min_evaluators, name
        self.rng = np.random.default_rng(seed)
        self._tickets: dict[str, list[tuple[int, Ticket, list[int]]]] = {}

    def ask(self, items: Sequence[FeedbackItem], kind: str = "rating", **options: Any) -> Ticket:
        """Send each item to ``per_item`` members."""
        spec = _check_batch(items, kind, options)
        ticket = _new_ticket(spec, len(items))
        assigned: list[list[int]] = [[] for _ in self.oracles]
        for i in range(len(items)):
            members = range(len(self.oracles)) if self.per_item == len(self.oracles) else \
                self.rng.choice(len(self.oracles), self.per_item, replace=False)
            for m in members:
                assigned[int(m)].append(i)
        parts = []
        for m, indices in enumerate(assigned):
            if indices:
                sub = self.oracles[m].ask([items[i] for i in indices], kind, **options)
                parts.append((m, sub, indices))
        self._tickets[ticket.id] = parts
        return ticket

    def poll(self, ticket: Ticket) -> FeedbackResult:
        """The members' judgements so far, under the item positions of ``ticket``."""
        parts = self._tickets.get(ticket.id)
        if parts is None:
            raise ConfigError(f"Ticket {ticket.id} was not issued by this OraclePool ({self.name!r}).")
        judgements = []
        members_done = np.zeros(ticket.n_items, dtype=np.int64)
        members_asked = np.zeros(ticket.n_items, dtype=np.int64)
        for m, sub, indices in parts:
            result = self.oracles[m].poll(sub)
            for j in result.judgements:
                judgements.append(Judgement(indices[j.item], j.evaluator, j.answer, j.time, j.query_id, j.event_id))
            members_asked[indices] += 1
            if result.complete:
                members_done[indices] += 1
        judgements.sort(key=lambda j: (j.item, j.evaluator))
        partial = FeedbackResult(ticket, tuple(judgements), False)
        done = (partial.n_answers() >= self.min_evaluators) | (members_done == members_asked)
        return FeedbackResult(ticket, partial.judgements, bool(np.all(done)))

    def close(self) -> None:
        """Close every member."""
        for oracle in self.oracles:
            oracle.close()
