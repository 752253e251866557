"""Online reward-model learning: refit on new feedback as it arrives, promote only what does not get worse.

:class:`OnlineRewardLearner` reads a :class:`~instruct_env.feedback.store.FeedbackStore`'s event log
from a watermark, keeps every evaluator's current answer (applying edits and undos), turns answers
into reward-model :class:`~instruct_env.feedback.reward_model.Label` objects (:func:`labels_from_answer`)
and refits the reward model every ``refit_every`` new answers or every ``refit_interval_s`` seconds
(when anything new arrived). A refit warm-starts from the current heads; the candidate is
**promoted only if its accuracy on the held-out labels does not drop** below the current model's
(on the same labels, less ``tolerance``); the first trained model is promoted as there is nothing to
compare it with (untrained heads are no model). A promoted model gets the next ``version``; whoever reads
:attr:`OnlineRewardLearner.current` (e.g. :class:`~instruct_env.feedback.rewards.ProxyReward`) uses
it from the next call on.

Held-out labels:
    A query is held out when its metadata says ``"holdout": true`` (the random share of
    :class:`~instruct_env.feedback.active.ActiveSelector`, an unbiased sample), else when a hash of
    ``(seed, query id)`` falls under ``holdout_fraction``. All answers to a held-out query are
    held out, so no evaluator's copy of a query leaks into training. Gold queries are left out.

Restarts (nothing missed, nothing read twice):
    ``state_dir`` holds ``state.json`` (the watermark, the promoted version and the watermark of
    the last refit), ``events.jsonl`` (every event read, appended and synced *before* the watermark
    moves), ``models/v<N>.pt`` (each promoted version) and ``history.jsonl`` (one refit report a
    line). A new learner on the same ``state_dir`` replays ``events.jsonl`` up to the saved
    watermark (dropping anything written after it, which is read again from the store) and loads
    the promoted model.

Why a thread and not a process:
    The worker shares the reward model with the training loop in memory: the proxy reward reads
    ``learner.current`` on every call and the feature cache is shared. A process would need the
    models shipped back and forth. The work is small torch computations (which release the GIL)
    and database reads; the training loop keeps running meanwhile.

Example:
    >>> import os, tempfile
    >>> from instruct_env.feedback import FeedbackStore, RewardModel
    >>> tmp = tempfile.TemporaryDirectory()
    >>> store = FeedbackStore(os.path.join(tmp.name, "f.db"), min_evaluators=1, gold_rate=0.0)
    >>> featurize = lambda pairs: [[len(c) / 10.0] for _, c in pairs]
    >>> learner = OnlineRewardLearner(store, RewardModel(featurize), os.path.join(tmp.name, "rm"))
    >>> learner.read(), learner.version
    (0, 0)
    >>> store.close(); tmp.cleanup()
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from instruct_env._validation import check_int
from instruct_env.error import ConfigError
from instruct_env.feedback.items import FeedbackItem, answer_value
from instruct_env.feedback.log import AnswerLog, FeedbackSource
from instruct_env.feedback.reward_model import Label, RewardModel
from instruct_env.feedback.store import Event, FeedbackStore, Query

__all__ = ["OnlineRewardLearner", "RefitReport", "labels_from_answer"]

_STATE_FORMAT = 1


def labels_from_answer(query: Query, answer: Mapping[str, Any], evaluator: str = "", formatter: Any = None
                       ) -> list[Label]:
    """Reward-model labels from one evaluator's (canonical) answer to ``query``.

    ``rating`` and ``thumbs`` give one label; ``pairwise`` one (``both_bad`` none: it says nothing
    about the order); a ranking of ``k`` completions ``k (k - 1) / 2`` pairwise labels; an
    ``edit`` that changed the completion one pairwise label preferring the edit; ``comment`` none.

    >>> q = Query("ranking", "Sort.", ["1 2 3", "3 2 1", "2 1 3"], context="3 1 2", id=7)
    >>> [(lb.items[0][1], lb.items[1][1]) for lb in labels_from_answer(q, {"ranking": [0, 2, 1]})]
    [('1 2 3', '2 1 3'), ('1 2 3', '3 2 1'), ('2 1 3', '3 2 1')]
    """
    item = FeedbackItem(query.instruction, tuple(query.completions), query.context)
    pairs = item.pairs(formatter)
    kind = query.kind

    def label(label_kind: str, items: tuple, target: float) -> Label:
        return Label(label_kind, items, target, evaluator, query.id)

    if kind in ("rating", "thumbs"):
        return [label(kind, (pairs[0],), answer_value(kind, answer, query.options))]
    if kind == "pairwise":
        value = answer_value(kind, answer)
        return [] if math.isnan(value) else [label("pairwise", (pairs[0], pairs[1]), value)]
    if kind == "ranking":
        order = answer["ranking"]
        return [label("pairwise", (pairs[order[i]], pairs[order[j]]), 1.0)
                for i in range(len(order)) for j in range(i + 1, len(order))]
    if kind == "edit" and answer["completion"] != query.completions[0]:
        return [label("pairwise", ((pairs[0][0], answer["completion"]), pairs[0]), 1.0)]
    return []


@dataclass(frozen=True)
class RefitReport:
    """What one refit did.

    Attributes:
        time: Unix time.
        version_before: The current version when the refit started.
        version_after: The current version after it (``version_before + 1`` when promoted).
        promoted: Whether the candidate replaced the current model.
        reason: Why (in words).
        accuracy_before: Current model's held-out accuracy (``nan`` with no usable held-out label).
        accuracy_after: Candidate's held-out accuracy.
        n_train: Training labels used.
        n_holdout: Held-out labels.
        new_answers: Answer events since the previous refit.
        seconds: Duration.
        losses: Final training losses per kind.
    """

    time: float
    version_before: int
    version_after: int
    promoted: bool
    reason: str
    accuracy_before: float
    accuracy_after: float
    n_train: int
    n_holdout: int
    new_answers: int
    seconds: float
    losses: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in asdict(self).items()}


class OnlineRewardLearner:
    """Refits a reward model on a store's new feedback and promotes candidates that do not get worse.

    Args:
        store: A :class:`~instruct_env.feedback.log.FeedbackSource`: a :class:`FeedbackStore`, or a
            :class:`~instruct_env.feedback.client.RemoteStore` (the store of a feedback server, read
            through its admin API); or a store URL (opened here and closed by :meth:`close`). The learner reads the event log, query payloads and
            evaluator names.
        model: The reward model to start from (its featurizer is used for every version; on a
            restart the promoted version saved in ``state_dir`` replaces its heads).
        state_dir: Folder for the watermark, the events read, promoted models and refit reports.
        refit_every: Refit after this many new answer events (submits, edits, undos).
        refit_interval_s: ...or after this many seconds since the last refit, if anything is new.
        holdout_fraction: Share of queries held out when their metadata does not say.
        min_holdout: Fewer held-out labels than this cannot judge a candidate: it is promoted
            (the report says so).
        tolerance: A candidate may be this much less accurate and still be promoted.
        formatter: Prompt template of the reward model's texts (``PromptFormatter``; default template).
        seed: Seed of the hash that holds queries out.
        clock: Seconds on a monotonic clock, for ``refit_interval_s`` (tests pass their own).
    """

    def __init__(
        self,
        store: FeedbackSource | str | os.PathLike[str],
        model: RewardModel,
        state_dir: str | os.PathLike[str],
        *,
        refit_every: int = 50,
        refit_interval_s: float = 600.0,
        holdout_fraction: float = 0.2,
        min_holdout: int = 10,
        tolerance: float = 0.0,
        formatter: Any = None,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(model, RewardModel):
            raise ConfigError(f"model must be a RewardModel; got {type(model).__name__}.")
        for name, value, minimum in (("refit_every", refit_every, 1), ("min_holdout", min_holdout, 0),
                                     ("seed", seed, 0)):
            check_int(name, value, minimum)
        if not isinstance(refit_interval_s, (int, float)) or not refit_interval_s > 0:
            raise ConfigError(f"refit_interval_s must be a number of seconds > 0; got {refit_interval_s!r}.")
        if not isinstance(holdout_fraction, (int, float)) or not 0 <= holdout_fraction < 1:
            raise ConfigError(f"holdout_fraction must be in [0, 1); got {holdout_fraction!r}.")
        if not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
            raise ConfigError(f"tolerance must be in [0, 1); got {tolerance!r}.")
        self.store: FeedbackSource
        self._own_store: FeedbackStore | None = None  # opened here from a URL, so closed here
        if isinstance(store, (str, os.PathLike)):
            self.store = self._own_store = FeedbackStore(store)
        elif all(callable(getattr(store, name, None)) for name in ("events_since", "queries", "evaluators")):
            self.store = store
        else:
            raise ConfigError(f"store must be a FeedbackStore, a store URL or a RemoteStore; got {type(store).__name__}.")
        self.refit_every, self.refit_interval_s = refit_every, float(refit_interval_s)
        self.holdout_fraction, self.min_holdout, self.tolerance = float(holdout_fraction), min_holdout, float(tolerance)
        self.formatter, self.seed = formatter, seed
        self.state_dir = Path(state_dir)
        (self.state_dir / "models").mkdir(parents=True, exist_ok=True)
        self._log = AnswerLog()
        self.refit_watermark = 0  # events up to here were available at the last refit
        self._clock = clock
        self.last_refit = clock()
        self.history: list[RefitReport] = []
        self.error: BaseException | None = None
        self._answer_events: list[int] = []  # ids of submit/edit/undo events (refit trigger)
        self._queries: dict[int, Query] = {}
        self._names: dict[int, str] = {}
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._current = model
        self._restore()

    # -- state --------------------------------------------------------------------------------

    @property
    def current(self) -> RewardModel:
        """The promoted reward model (the one to score with)."""
        return self._current

    @property
    def version(self) -> int:
        """Version of the promoted model (0: none promoted yet)."""
        return self._current.version

    def _restore(self) -> None:
        state_file = self.state_dir / "state.json"
        if not state_file.exists():
            return
        state = json.loads(state_file.read_text())
        if state.get("format") != _STATE_FORMAT:
            raise ConfigError(f"{state_file} has format {state.get('format')!r}; expected {_STATE_FORMAT}.")
        watermark, self.refit_watermark = int(state["watermark"]), int(state["refit_watermark"])
        kept: list[str] = []
        events_file = self.state_dir / "events.jsonl"
        if events_file.exists():
            for line in events_file.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash, after the watermark
                    break
                if record["id"] > watermark:  # written, but the watermark never moved: read it again
                    break
                kept.append(line)
                self._apply([Event(**record)])
            events_file.write_text("".join(line + "\n" for line in kept))
        self._log.watermark = watermark
        version = int(state["version"])
        if version:
            self._current = RewardModel.load(self.state_dir / "models" / f"v{version}.pt", self._current.featurizer)
        history_file = self.state_dir / "history.jsonl"
        if history_file.exists():
            self.history = [RefitReport(**json.loads(line)) for line in history_file.read_text().splitlines() if line]

    def _save_state(self) -> None:
        state = {"format": _STATE_FORMAT, "watermark": self.watermark, "refit_watermark": self.refit_watermark,
                 "version": self.version}
        tmp = self.state_dir / "state.json.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_dir / "state.json")

    @property
    def watermark(self) -> int:
        """The newest event id read from the store's log (and saved in ``state.json``)."""
        return self._log.watermark

    def _apply(self, events: Sequence[Event]) -> None:
        self._log.apply(events)
        self._answer_events.extend(event.id for event in events if event.type != "skip")

    # -- reading ------------------------------------------------------------------------------

    def read(self) -> int:
        """Read new events from the store's log; return how many were read.

        Events are appended (and synced) to ``events.jsonl`` before the watermark is saved, so a
        crash in between makes a restart read them again rather than lose them.
        """
        n = 0
        with self._lock:
            while True:
                events = self.store.events_since(self.watermark, limit=5000)
                if not events:
                    return n
                with open(self.state_dir / "events.jsonl", "a", encoding="utf-8") as f:
                    for event in events:
                        f.write(json.dumps(event.to_json()) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                self._apply(events)
                self._save_state()
                n += len(events)

    @property
    def new_answers(self) -> int:
        """Answer events (submits, edits, undos) read since the last refit."""
        return sum(1 for i in self._answer_events if i > self.refit_watermark)

    def is_holdout(self, query: Query) -> bool:
        """Whether ``query``'s answers are held out (see the module docstring)."""
        if "holdout" in query.metadata:
            return bool(query.metadata["holdout"])
        digest = zlib.crc32(f"{self.seed}:{query.id}".encode())
        return digest % 1_000_000 < self.holdout_fraction * 1_000_000

    def labels(self) -> tuple[list[Label], list[Label]]:
        """``(training labels, held-out labels)`` from every evaluator's current answer."""
        with self._lock:
            current = [(item, event) for item, event in self._log.items() if event.type != "skip"]
            missing = {qid for (qid, _), _ in current if qid not in self._queries}
            if missing:
                self._queries.update(self.store.queries(ids=missing))
            if any(eid not in self._names for (_, eid), _ in current):
                self._names = {e.id: e.name for e in self.store.evaluators()}
            train: list[Label] = []
            holdout: list[Label] = []
            for (qid, eid), event in sorted(current, key=lambda x: x[1].id):
                query = self._queries[qid]
                if query.is_gold:
                    continue
                labels = labels_from_answer(query, event.answer, self._names.get(eid, str(eid)), self.formatter)
                (holdout if self.is_holdout(query) else train).extend(labels)
        return train, holdout

    # -- refitting ----------------------------------------------------------------------------

    def due(self) -> bool:
        """Whether a refit is due (enough new answers, or time passed with anything new)."""
        new = self.new_answers
        return new >= self.refit_every or (new > 0 and self._clock() - self.last_refit >= self.refit_interval_s)

    def step(self, force: bool = False) -> RefitReport | None:
        """Read new events, then refit if due (or ``force``); returns the refit's report, if any.

        Raises:
            BaseException: the error that stopped the background worker, if it stopped on one.
        """
        if self.error is not None:
            raise self.error
        self.read()
        if force or self.due():
            return self.refit()
        return None

    def refit(self) -> RefitReport:
        """Fit a candidate, warm-started from the current heads, on all training labels; offer it."""
        with self._lock:
            start = time.perf_counter()
            marker = self.watermark
            new = self.new_answers
            train, holdout = self.labels()
            if not train:
                report = self._report(start, False, "no training labels yet", math.nan, math.nan, 0, len(holdout),
                                      new, {})
            else:
                candidate = self.current.clone()
                losses = candidate.fit(train, warm_start=True)
                report = self.offer(candidate, holdout=holdout, new_answers=new, n_train=len(train), losses=losses,
                                    started=start)
            self.refit_watermark = marker
            self.last_refit = self._clock()
            self._save_state()
            return report

    def offer(self, candidate: RewardModel, *, holdout: Sequence[Any] | None = None, new_answers: int = 0,
              n_train: int | None = None, losses: Mapping[str, float] | None = None,
              started: float | None = None) -> RefitReport:
        """Promote ``candidate`` if its held-out accuracy does not drop below the current model's.

        The first trained candidate is promoted whatever its accuracy (the current model is untrained).

        ``holdout`` defaults to the held-out labels of the answers read so far. Any candidate can
        be offered (e.g. one trained elsewhere); it must use the same featurizer.
        """
        with self._lock:
            start = time.perf_counter() if started is None else started
            if holdout is None:
                holdout = self.labels()[1]
            holdout = list(holdout)
            before = self.current.accuracy(holdout).overall if self.current.trained else math.nan
            after = candidate.accuracy(holdout).overall
            if not self.current.trained:
                promote, reason = True, "promoted: the first trained model (nothing to compare with)"
            elif len(holdout) < self.min_holdout or math.isnan(before) or math.isnan(after):
                promote, reason = True, f"promoted: {len(holdout)} held-out label(s), too few to judge " \
                                        f"(min_holdout={self.min_holdout})"
            elif after >= before - self.tolerance:
                promote, reason = True, f"promoted: held-out accuracy {before:.3f} -> {after:.3f}"
            else:
                promote, reason = False, f"refused: held-out accuracy would drop {before:.3f} -> {after:.3f}"
            if promote:
                candidate.version = self.version + 1
                candidate.save(self.state_dir / "models" / f"v{candidate.version}.pt")
                self._current = candidate
                self._save_state()
            return self._report(start, promote, reason, before, after,
                                candidate.n_labels if n_train is None else n_train, len(holdout), new_answers,
                                dict(losses or {}), version_before=self.version - int(promote))

    def _report(self, start: float, promoted: bool, reason: str, before: float, after: float, n_train: int,
                n_holdout: int, new: int, losses: dict[str, float], version_before: int | None = None) -> RefitReport:
        report = RefitReport(
            time=time.time(), version_before=self.version if version_before is None else version_before,
            version_after=self.version, promoted=promoted, reason=reason, accuracy_before=before,
            accuracy_after=after, n_train=n_train, n_holdout=n_holdout, new_answers=new,
            seconds=time.perf_counter() - start, losses=losses,
        )
        self.history.append(report)
        with open(self.state_dir / "history.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(report.to_dict()) + "\n")
        return report

    def heldout_accuracy(self) -> float:
        """The promoted model's accuracy on the held-out labels read so far (``nan`` if none)."""
        return self.current.accuracy(self.labels()[1]).overall

    # -- the background worker ----------------------------------------------------------------

    def start(self, poll_interval: float = 1.0) -> None:
        """Run :meth:`step` every ``poll_interval`` seconds in a daemon thread until :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive():
            raise ConfigError("The online learner is already running; stop() it first.")
        if not isinstance(poll_interval, (int, float)) or not poll_interval > 0:
            raise ConfigError(f"poll_interval must be a number of seconds > 0; got {poll_interval!r}.")
        self._stop.clear()
        self.error = None
        self._thread = threading.Thread(target=self._run, args=(float(poll_interval),),
                                        name="online-reward-learner", daemon=True)
        self._thread.start()

    def _run(self, poll_interval: float) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except BaseException as exc:  # kept and raised again by stop() / step(): never lost
                self.error = exc
                return
            self._stop.wait(poll_interval)

    @property
    def running(self) -> bool:
        """Whether the background worker is running."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float | None = 60.0) -> None:
        """Stop the worker (after its current step) and raise the error that stopped it, if any."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def close(self) -> None:
        """Stop the worker and close the store if this learner opened it."""
        try:
            self.stop()
        finally:
            if self._own_store is not None:
                self._own_store.close()

    def __enter__(self) -> OnlineRewardLearner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"OnlineRewardLearner(version={self.version}, watermark={self.watermark}, "
                f"refit_every={self.refit_every}, state_dir={str(self.state_dir)!r})")
