"""The feedback store: :class:`FeedbackStore`, one project's evaluators, queries, assignments and answer log."""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from instruct_env._validation import check_int, check_probability
from instruct_env.error import ConfigError, UnknownNameError
from instruct_env.feedback.errors import FeedbackConflict, InvalidAnswer, QueryNotFound
from instruct_env.feedback.log import replay
from instruct_env.feedback.store.accounts import EvaluatorAccounts
from instruct_env.feedback.store.backends import _Database, _Postgres, _SQLite, _Tx
from instruct_env.feedback.store.chat import (
    append_turn,
    conversation_turns,
    first_turns,
    in_chunks,
    rebuild_contexts,
)
from instruct_env.feedback.store.records import (
    ANSWER_COLUMNS,
    EVENT_COLUMNS,
    MAX_KEY_CHARS,
    MAX_REASON_CHARS,
    QUERY_COLUMNS,
    QUERY_FIELDS,
    ChatTurn,
    CurrentAnswer,
    Event,
    EventCounts,
    Progress,
    Query,
    QueryIds,
    QueryView,
    Receipt,
    answer_from_row,
    dumps,
    event_from_row,
    loads,
    query_from_row,
)
from instruct_env.feedback.store.schema import create_schema
from instruct_env.feedback.store.urls import parse_store_url, redact_url

__all__ = ["FeedbackStore"]

_NOT_CHAT = "NOT EXISTS (SELECT 1 FROM chat_turns c WHERE c.query_id = {query})"  # chat queries queue for nobody


def _check_key(key: Any) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS:
        raise InvalidAnswer(
            f"An idempotency key must be a string of 1 to {MAX_KEY_CHARS} characters (e.g. a UUID); got {key!r:.80}."
        )
    return key


def _checked_query(n: int, item: Query | Mapping[str, Any]) -> Query:
    """Item ``n`` of a batch for :meth:`FeedbackStore.add_queries`, as a :class:`Query` without an id."""
    if isinstance(item, Query):
        query = item
    elif isinstance(item, Mapping):
        unknown = sorted(set(item) - set(QUERY_FIELDS))
        if unknown:
            raise ConfigError(f"queries[{n}] has unknown field(s) {unknown}; allowed: {', '.join(QUERY_FIELDS)}.")
        try:
            query = Query(**item)
        except TypeError as exc:
            raise ConfigError(f"queries[{n}]: {exc}; required: kind, instruction, completions.") from None
        except (ConfigError, UnknownNameError) as exc:
            raise type(exc)(f"queries[{n}]: {exc}") from None
    else:
        raise ConfigError(f"queries[{n}] is a {type(item).__name__}; expected a Query or a mapping.")
    if query.id is not None:
        raise ConfigError(f"queries[{n}] already has id {query.id}; the store assigns ids.")
    return query


class FeedbackStore(EvaluatorAccounts):
    """A project's human-feedback database.

    Args:
        url: Where the database lives: a file path, ``sqlite:///path.db`` or
            ``postgresql://user:password@host/dbname`` (``pip install 'instruct-env[postgres]'``;
            the database must exist). Tables are created if absent; a version 1 store is upgraded.
        min_evaluators: How many evaluators should answer each (non-gold) query. A query stops
            being handed out once this many evaluators answered it or hold a fresh assignment.
        gold_rate: Probability that a newly assigned query is a gold query the evaluator has not
            seen (when one is left), in ``[0, 1]``.
        assignment_ttl: Seconds after which an unanswered assignment stops counting towards
            ``min_evaluators`` (so that an evaluator who walked away does not block a query).
        seed: Seed of the random draws (display orders, gold mixing); ``None`` uses the system's
            entropy, so evaluators cannot predict either.
        synchronous: SQLite durability, ``"FULL"`` (survives power loss) or ``"NORMAL"``
            (survives a process crash, faster).
        busy_timeout: Seconds a transaction waits for a lock held by another writer before it
            fails with :class:`StoreUnavailable`.
        clock: The wall clock (seconds since the epoch) used for event times, assignment ages and
            session expiry; tests pass their own to move time without sleeping.

    Raises:
        ConfigError: an invalid option or URL, a PostgreSQL server that cannot be reached (the
            message names the URL without its password), a database written by a newer schema,
            or one this process cannot write (:class:`StoreUnavailable`, a ``ConfigError``).
        MissingDependency: a ``postgresql://`` URL without ``psycopg`` installed.
    """

    def __init__(
        self,
        url: str | os.PathLike[str],
        *,
        min_evaluators: int = 3,
        gold_rate: float = 0.1,
        assignment_ttl: float = 3600.0,
        seed: int | None = None,
        synchronous: str = "FULL",
        busy_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.min_evaluators = check_int("min_evaluators", min_evaluators, 1)
        self.gold_rate = float(check_probability("gold_rate", gold_rate))
        if (
            isinstance(assignment_ttl, bool)
            or not isinstance(assignment_ttl, (int, float))
            or not assignment_ttl > 0
        ):
            raise ConfigError(f"assignment_ttl must be a number of seconds > 0; got {assignment_ttl!r}.")
        self.assignment_ttl = float(assignment_ttl)
        if synchronous not in ("FULL", "NORMAL"):
            raise ConfigError(f"synchronous must be 'FULL' or 'NORMAL'; got {synchronous!r}.")
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, (int, float)) or not busy_timeout > 0:
            raise ConfigError(f"busy_timeout must be a number of seconds > 0; got {busy_timeout!r}.")
        if not callable(clock):
            raise ConfigError(f"clock must be a function returning seconds since the epoch; got {clock!r}.")
        self.busy_timeout = float(busy_timeout)
        self._clock = clock
        self.url = parse_store_url(url)
        self._backend: _SQLite | _Postgres = (
            _SQLite(self.url.target, synchronous, self.busy_timeout)
            if self.url.backend == "sqlite"
            else _Postgres(self.url.target, self.busy_timeout)
        )
        self._rng: random.Random = random.Random(seed) if seed is not None else random.SystemRandom()
        self._db = _Database(self._backend, self.busy_timeout)
        create_schema(self._db, self.url.target)

    # -- connections and transactions ---------------------------------------------------------

    def _connection(self) -> Any:
        return self._db.connection()

    def _transaction(self, write: bool) -> AbstractContextManager[_Tx]:
        return self._db.transaction(write)

    def close(self, timeout: float = 30.0) -> None:
        """Close every connection of this store; later calls raise :class:`ConfigError`.

        Transactions other threads have already begun are waited for (up to ``timeout`` seconds), so they
        commit or roll back whole instead of failing half-way on a closed connection; new ones are refused.
        """
        self._db.close(timeout)

    def ping(self) -> None:
        """Check that the database answers a read.

        Raises:
            StoreUnavailable: it does not (unreachable server, unreadable file).
        """
        with self._transaction(write=False) as tx:
            tx.one("SELECT value FROM meta WHERE key = ?", ("schema_version",))

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"FeedbackStore({self.url.backend}:{redact_url(self.url.target)!r}, min_evaluators={self.min_evaluators}, "
            f"gold_rate={self.gold_rate})"
        )

    # -- queries ------------------------------------------------------------------------------

    def add_queries(self, queries: Iterable[Query | Mapping[str, Any]], *, idempotency_key: str | None = None
                    ) -> QueryIds:
        """Store queries (all or none) and return their ids, in order.

        Each item is a :class:`Query` or a mapping of its fields (``{"kind": "rating",
        "instruction": ..., "completions": [...]}``).

        Args:
            queries: The queries.
            idempotency_key: A client-chosen key (e.g. a UUID) for this batch: posting the same
                batch again with the same key returns the first call's ids and stores nothing
                (a client that lost the reply can retry safely).

        Raises:
            ConfigError: an invalid query; the message gives its position. Nothing is stored.
            FeedbackConflict: the idempotency key was used for a different batch.

        Returns:
            The ids (a list; its ``replayed`` attribute is ``True`` when a repeated key returned an
            earlier batch's ids).
        """
        key = _check_key(idempotency_key)
        checked = [_checked_query(n, item) for n, item in enumerate(queries)]
        now = self._clock()
        digest = hashlib.sha256(dumps([[q.kind, q.payload(), q.is_gold] for q in checked]).encode()).hexdigest() \
            if key is not None else ""
        with self._transaction(write=True) as tx:  # writers are serialised, so a repeated key sees the first batch
            if key is not None:
                row = tx.one("SELECT digest, ids FROM query_batches WHERE idempotency_key = ?", (key,))
                if row is not None:
                    if row[0] != digest:
                        raise FeedbackConflict(
                            f"Idempotency key {key!r} was already used for a different batch of queries; use a new "
                            "key for each new batch."
                        )
                    return QueryIds((int(i) for i in json.loads(row[1])), replayed=True)
            ids = [
                tx.insert(
                    "INSERT INTO queries (kind, payload, is_gold, created) VALUES (?, ?, ?, ?)",
                    (q.kind, dumps(q.payload()), int(q.is_gold), now),
                )
                for q in checked
            ]
            if key is not None:
                tx.run("INSERT INTO query_batches (idempotency_key, digest, ids, created) VALUES (?, ?, ?, ?)",
                       (key, digest, json.dumps(ids), now))
            return QueryIds(ids)

    def get_query(self, query_id: int) -> Query:
        """The stored query (with its gold answer and selector: for admins and training code).

        Raises:
            QueryNotFound: no query has this id.
        """
        with self._transaction(write=False) as tx:
            return self._query(tx, query_id)

    def queries(self, ids: Iterable[int] | None = None, kind: str | None = None) -> dict[int, Query]:
        """Stored queries by id (all, or those in ``ids``), optionally of one kind only."""
        where, params = ("kind = ?", [kind]) if kind is not None else ("1 = 1", [])
        sql = f"SELECT {QUERY_COLUMNS} FROM queries WHERE {where}"
        with self._transaction(write=False) as tx:
            if ids is None:
                rows = tx.all(sql + " ORDER BY id", tuple(params))
            else:  # only the rows asked for, a bounded number of ids per statement
                rows = []
                for part in in_chunks(_stored_ids(ids)):
                    marks = ", ".join("?" * len(part))
                    rows += tx.all(f"{sql} AND id IN ({marks})", (*params, *part))
                rows.sort(key=lambda r: int(r[0]))
            found = {int(r[0]): query_from_row(r) for r in rows}
            return rebuild_contexts(tx, found)

    def _query(self, tx: _Tx, query_id: int) -> Query:
        row = tx.row_by_id("queries", QUERY_COLUMNS, "query", query_id)
        return rebuild_contexts(tx, {query_id: query_from_row(row)})[query_id]

    # -- assignment ---------------------------------------------------------------------------

    def next_query(self, evaluator_id: int) -> QueryView | None:
        """The query this evaluator should answer next, or ``None`` when there is none.

        An open assignment (shown but not answered, or re-opened by ``undo``; the most recently
        opened first) comes back until it is answered or skipped. Otherwise a new query is
        assigned: with probability ``gold_rate`` a gold query they have not seen, else the oldest
        query they have not seen that is still short of ``min_evaluators``. When no such query is
        left the evaluator is done (``None``), even if unseen gold queries remain.
        """
        # Showing the query already assigned needs only a read (it works while another process
        # holds the write lock); a new assignment is a write, which checks again.
        with self._transaction(write=False) as tx:
            self._evaluator(tx, evaluator_id)
            open_view = self._open_assignment(tx, evaluator_id)
        if open_view is not None:
            return open_view
        now = self._clock()
        with self._transaction(write=True) as tx:
            open_view = self._open_assignment(tx, evaluator_id)
            if open_view is not None:
                return open_view
            query_id = self._pick(tx, evaluator_id, now)
            if query_id is None:
                return None
            query = self._query(tx, query_id)
            order = list(range(len(query.completions)))
            if query.spec.shuffled:
                self._rng.shuffle(order)
            tx.run(
                "INSERT INTO assignments (query_id, evaluator_id, display_order, opened, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (query_id, evaluator_id, dumps(order), now, now),
            )
            return self._view(tx, evaluator_id, query_id)

    def _open_assignment(self, tx: _Tx, evaluator_id: int) -> QueryView | None:
        """The evaluator's open assignment (shown, not answered), most recently opened first."""
        row = tx.one(
            "SELECT a.query_id FROM assignments a LEFT JOIN answers s "
            "ON s.query_id = a.query_id AND s.evaluator_id = a.evaluator_id "
            f"WHERE a.evaluator_id = ? AND s.query_id IS NULL AND {_NOT_CHAT.format(query='a.query_id')} "
            "ORDER BY a.opened DESC, a.id DESC LIMIT 1",
            (evaluator_id,),
        )
        return None if row is None else self._view(tx, evaluator_id, int(row[0]))

    _UNSEEN = (
        "NOT EXISTS (SELECT 1 FROM assignments m WHERE m.query_id = q.id AND m.evaluator_id = ?) AND "
        + _NOT_CHAT.format(query="q.id")
    )
    # Evaluators counting towards a query's quota: answered it, or hold a fresh open assignment.
    _TAKEN = (
        "(SELECT COUNT(*) FROM assignments a LEFT JOIN answers s "
        "ON s.query_id = a.query_id AND s.evaluator_id = a.evaluator_id "
        "WHERE a.query_id = q.id AND (s.status = 'answered' OR (s.status IS NULL AND a.opened >= ?)))"
    )

    def _pick(self, tx: _Tx, evaluator_id: int, now: float) -> int | None:
        regular = tx.one(
            f"SELECT q.id FROM queries q WHERE q.is_gold = 0 AND {self._UNSEEN} AND {self._TAKEN} < ? "
            "ORDER BY q.id LIMIT 1",
            (evaluator_id, now - self.assignment_ttl, self.min_evaluators),
        )
        if regular is None:
            return None
        if self.gold_rate > 0 and self._rng.random() < self.gold_rate:
            gold = tx.all(f"SELECT q.id FROM queries q WHERE q.is_gold = 1 AND {self._UNSEEN} ORDER BY q.id", (evaluator_id,))
            if gold:
                return int(self._rng.choice(gold)[0])
        return int(regular[0])

    def _assignment(self, tx: _Tx, evaluator_id: int, query_id: int) -> tuple[Query, list[int]]:
        """The query and the evaluator's display order; :class:`QueryNotFound` when it is not assigned to them."""
        self._evaluator(tx, evaluator_id)
        try:
            query = self._query(tx, query_id)
        except QueryNotFound:
            raise QueryNotFound(
                f"Query {query_id!r:.30} is not in your queue; answer the queries that next_query() assigns you."
            ) from None
        row = tx.one(
            "SELECT display_order FROM assignments WHERE query_id = ? AND evaluator_id = ?", (query_id, evaluator_id)
        )
        if row is None:  # the same answer as for an unknown id: evaluators cannot probe which ids exist
            raise QueryNotFound(
                f"Query {query_id} is not in your queue; answer the queries that next_query() assigns you."
            )
        return query, loads(row[0])

    def _state(self, tx: _Tx, evaluator_id: int, query_id: int) -> CurrentAnswer | None:
        row = tx.one(
            f"SELECT {ANSWER_COLUMNS} FROM answers WHERE query_id = ? AND evaluator_id = ?", (query_id, evaluator_id)
        )
        return None if row is None else answer_from_row(row)

    def view(self, evaluator_id: int, query_id: int) -> QueryView:
        """A query as this evaluator sees it, with their own current answer in display terms.

        Raises:
            QueryNotFound: unknown query or evaluator, or a query never assigned to this evaluator
                (the same answer, so that evaluators cannot probe which query ids exist).
        """
        with self._transaction(write=False) as tx:
            return self._view(tx, evaluator_id, query_id)

    def _view(self, tx: _Tx, evaluator_id: int, query_id: int) -> QueryView:
        query, order = self._assignment(tx, evaluator_id, query_id)
        state = self._state(tx, evaluator_id, query_id)
        answer = None
        if state is not None and state.status == "answered":
            answer = query.spec.to_display(state.answer, order)
        return QueryView(
            id=query_id,
            kind=query.kind,
            options=dict(query.options),
            instruction=query.instruction,
            context=query.context,
            completions=tuple(query.completions[i] for i in order),
            status=None if state is None else state.status,
            answer=answer,
        )

    # -- chat ---------------------------------------------------------------------------------

    def add_chat_turn(
        self,
        evaluator_id: int,
        conversation: int | None,
        turn: int,
        message: str,
        reply: str,
        metadata: Mapping[str, Any] | None = None,
    ) -> ChatTurn:
        """Store one chat exchange as a ``thumbs`` query assigned to this evaluator only.

        The query's instruction is ``message``, its context the conversation so far (see
        :func:`chat_history`) and its completion ``reply``; rate it with :meth:`submit` like any
        thumbs query, and it is exported and learned from like one.

        Args:
            evaluator_id: Who chats.
            conversation: An existing conversation of theirs, or ``None`` to start one.
            turn: How many turns the conversation had when the message was sent (0 for a new
                one): a stale page or a repeated form post gets a conflict instead of a fork.
            message: What the evaluator wrote.
            reply: The policy's answer.
            metadata: Extra JSON-serialisable query metadata (e.g. the policy's path).

        Each turn stores its message and reply once; the query's context is rebuilt from the
        earlier turns when it is read (the newest that fit in ``MAX_CHAT_CONTEXT_CHARS``
        characters), so what a conversation stores grows linearly with its length. A
        conversation has at most ``MAX_CHAT_TURNS`` turns.

        Raises:
            QueryNotFound: unknown evaluator, or a conversation that is not theirs.
            FeedbackConflict: ``turn`` is not the conversation's current length, or the
                conversation has ``MAX_CHAT_TURNS`` turns already.
            ConfigError: an empty message or a non-string reply.
        """
        if not isinstance(message, str) or not message.strip():
            raise ConfigError(f"A chat message must be a non-empty string; got {message!r:.80}.")
        if not isinstance(reply, str):
            raise ConfigError(f"A chat reply must be a string; got {type(reply).__name__}.")
        turn = check_int("turn", turn, 0)
        now = self._clock()
        with self._transaction(write=True) as tx:
            self._evaluator(tx, evaluator_id)
            return append_turn(tx, evaluator_id, conversation, turn, message, reply, metadata, now)

    def chat(self, evaluator_id: int, conversation: int) -> list[ChatTurn]:
        """The turns of one of this evaluator's conversations, with their current thumbs.

        Raises:
            QueryNotFound: unknown evaluator, or a conversation that is not theirs.
        """
        with self._transaction(write=False) as tx:
            self._evaluator(tx, evaluator_id)
            turns = conversation_turns(tx, evaluator_id, conversation)
        if not turns:
            raise QueryNotFound(f"You have no conversation {conversation}; start a new one.")
        return turns

    def conversations(self, evaluator_id: int) -> list[ChatTurn]:
        """The first turn of each of this evaluator's conversations, newest conversation first."""
        with self._transaction(write=False) as tx:
            self._evaluator(tx, evaluator_id)
            return first_turns(tx, evaluator_id)


    # -- answers ------------------------------------------------------------------------------

    def submit(
        self,
        evaluator_id: int,
        query_id: int,
        answer: Mapping[str, Any],
        *,
        edit: bool = False,
        idempotency_key: str | None = None,
    ) -> Receipt:
        """Record an answer (in the evaluator's display terms) to an assigned query.

        Args:
            evaluator_id: Who answers.
            query_id: A query assigned to them.
            answer: The answer, e.g. ``{"rating": 4}``; see :mod:`instruct_env.feedback.kinds`.
            edit: Replace the evaluator's current answer instead of giving a first one.
            idempotency_key: A client-chosen key (e.g. a UUID): repeating a request with the same
                key returns the first receipt (``replayed=True``) instead of storing it twice.

        Raises:
            QueryNotFound: unknown query or evaluator, or a query not assigned to this evaluator.
            InvalidAnswer: the answer does not fit the query's kind.
            FeedbackConflict: already answered (without ``edit``), nothing to edit, or the
                idempotency key was used for a different request.
        """
        key = _check_key(idempotency_key)
        event_type = "edit" if edit else "submit"
        with self._transaction(write=True) as tx:
            query, order = self._assignment(tx, evaluator_id, query_id)
            canonical = query.spec.to_canonical(query.spec.validate(answer, len(query.completions)), order)
            earlier = self._replayed(tx, evaluator_id, key, query_id, event_type, canonical)
            if earlier is not None:
                return earlier
            state = self._state(tx, evaluator_id, query_id)
            if edit and (state is None or state.status != "answered"):
                what = "skipped it" if state is not None else "not answered it"
                raise FeedbackConflict(
                    f"Cannot edit your answer to query {query_id}: you have {what}. Submit without edit "
                    "(after undoing the skip, if you skipped it)."
                )
            if not edit and state is not None:
                raise FeedbackConflict(
                    f"You have already {state.status} query {query_id}; to change your answer submit with "
                    "edit=true, or undo it first."
                )
            return Receipt(self._append(tx, query_id, evaluator_id, event_type, canonical, None, key))

    def skip(
        self,
        evaluator_id: int,
        query_id: int,
        reason: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Receipt:
        """Skip an assigned query, optionally saying why. Skips do not count towards ``min_evaluators``.

        Raises:
            QueryNotFound: as for :meth:`submit`.
            InvalidAnswer: a reason that is not a string or too long.
            FeedbackConflict: the query is already answered or skipped (undo first).
        """
        key = _check_key(idempotency_key)
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS):
            raise InvalidAnswer(f"A skip reason must be a string of at most {MAX_REASON_CHARS} characters; got {reason!r:.80}.")
        payload = {"reason": reason.strip()} if reason and reason.strip() else None
        with self._transaction(write=True) as tx:
            self._assignment(tx, evaluator_id, query_id)
            earlier = self._replayed(tx, evaluator_id, key, query_id, "skip", payload)
            if earlier is not None:
                return earlier
            state = self._state(tx, evaluator_id, query_id)
            if state is not None:
                raise FeedbackConflict(
                    f"You have already {state.status} query {query_id}; undo that first to skip it."
                )
            return Receipt(self._append(tx, query_id, evaluator_id, "skip", payload, None, key))

    def undo(self, evaluator_id: int, *, idempotency_key: str | None = None) -> Receipt:
        """Cancel the evaluator's newest answer, edit or skip that is not cancelled yet.

        The query returns to the evaluator's queue (first in line) unless an earlier answer to it
        is restored (undoing an ``edit``). The receipt's ``event.ref`` is the cancelled event.

        Raises:
            QueryNotFound: unknown evaluator.
            FeedbackConflict: there is nothing left to undo.
        """
        key = _check_key(idempotency_key)
        with self._transaction(write=True) as tx:
            self._evaluator(tx, evaluator_id)
            earlier = self._replayed(tx, evaluator_id, key, None, "undo", None)
            if earlier is not None:
                return earlier
            row = tx.one(
                "SELECT e.id, e.query_id FROM events e WHERE e.evaluator_id = ? "
                "AND e.type IN ('submit', 'edit', 'skip') "
                "AND NOT EXISTS (SELECT 1 FROM events u WHERE u.type = 'undo' AND u.ref = e.id) "
                "ORDER BY e.id DESC LIMIT 1",
                (evaluator_id,),
            )
            if row is None:
                raise FeedbackConflict("Nothing to undo: you have no answer or skip left that is not undone.")
            return Receipt(self._append(tx, int(row[1]), evaluator_id, "undo", None, int(row[0]), key))

    def _replayed(
        self, tx: _Tx, evaluator_id: int, key: str | None, query_id: int | None, event_type: str, answer: Any
    ) -> Receipt | None:
        """The earlier receipt for a repeated idempotency key, or ``None`` for a new key."""
        if key is None:
            return None
        row = tx.one(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE evaluator_id = ? AND idempotency_key = ?",
            (evaluator_id, key),
        )
        if row is None:
            return None
        event = event_from_row(row)
        same_query = query_id is None or event.query_id == query_id
        if not (same_query and event.type == event_type and (event_type == "undo" or event.answer == answer)):
            raise FeedbackConflict(
                f"Idempotency key {key!r} was already used for a different request (event {event.id}: "
                f"{event.type} on query {event.query_id}); use a new key for each new request."
            )
        return Receipt(event, replayed=True)

    def _append(
        self, tx: _Tx, query_id: int, evaluator_id: int, event_type: str, answer: Any, ref: int | None, key: str | None
    ) -> Event:
        """Append one event and re-derive the pair's current answer, in the caller's transaction."""
        now = self._clock()
        event_id = tx.insert(
            "INSERT INTO events (query_id, evaluator_id, type, answer, ref, idempotency_key, time) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (query_id, evaluator_id, event_type, None if answer is None else dumps(answer), ref, key, now),
        )
        rows = tx.all(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE query_id = ? AND evaluator_id = ? ORDER BY id",
            (query_id, evaluator_id),
        )
        current = replay(event_from_row(r) for r in rows).get((query_id, evaluator_id))
        tx.run("DELETE FROM answers WHERE query_id = ? AND evaluator_id = ?", (query_id, evaluator_id))
        if current is None:  # back in the queue, first in line
            tx.run("UPDATE assignments SET opened = ? WHERE query_id = ? AND evaluator_id = ?", (now, query_id, evaluator_id))
        else:
            tx.run(
                "INSERT INTO answers (query_id, evaluator_id, status, answer, event_id) VALUES (?, ?, ?, ?, ?)",
                (
                    query_id,
                    evaluator_id,
                    "skipped" if current.type == "skip" else "answered",
                    None if current.answer is None else dumps(current.answer),
                    current.id,
                ),
            )
        return Event(event_id, query_id, evaluator_id, event_type, answer, ref, now)

    # -- reading ------------------------------------------------------------------------------

    def events_since(self, watermark: int = 0, limit: int | None = None) -> list[Event]:
        """Log events with ``id > watermark``, in id order (at most ``limit`` of them).

        Keep ``events[-1].id`` as the next watermark: every event is read exactly once.
        """
        watermark = check_int("watermark", watermark, 0)
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id"
        params: tuple[Any, ...] = (watermark,)
        if limit is not None:
            sql, params = sql + " LIMIT ?", (watermark, check_int("limit", limit, 1))
        with self._transaction(write=False) as tx:
            return [event_from_row(r) for r in tx.all(sql, params)]

    def last_event_id(self) -> int:
        """The newest event id (0 for an empty log)."""
        with self._transaction(write=False) as tx:
            row = tx.one("SELECT MAX(id) FROM events")
        return 0 if row is None or row[0] is None else int(row[0])

    def event_counts(self) -> EventCounts:
        """How many events of each type each evaluator has in the log, and the watermark they are as of.

        Counted by the database in one read transaction, so the counts and the watermark come from
        the same snapshot; the same numbers as counting ``events_since(0)``, without reading the log.
        """
        with self._transaction(write=False) as tx:
            rows = tx.all("SELECT evaluator_id, type, COUNT(*) FROM events GROUP BY evaluator_id, type")
            row = tx.one("SELECT MAX(id) FROM events")
        watermark = 0 if row is None or row[0] is None else int(row[0])
        return EventCounts({(int(evaluator), str(type_)): int(n) for evaluator, type_, n in rows}, watermark)

    def current_answers(self, kind: str | None = None, status: str | None = "answered") -> list[CurrentAnswer]:
        """Current answers (canonical terms), by query then evaluator.

        Args:
            kind: Only queries of this kind.
            status: ``"answered"`` (default), ``"skipped"``, or ``None`` for both.
        """
        sql = "SELECT s.query_id, s.evaluator_id, s.status, s.answer, s.event_id FROM answers s"
        where, params = [], []
        if kind is not None:
            sql += " JOIN queries q ON q.id = s.query_id"
            where.append("q.kind = ?")
            params.append(kind)
        if status is not None:
            where.append("s.status = ?")
            params.append(status)
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._transaction(write=False) as tx:
            rows = tx.all(sql + " ORDER BY s.query_id, s.evaluator_id", tuple(params))
        return [answer_from_row(r) for r in rows]

    def progress(self, evaluator_id: int) -> Progress:
        """How many queries this evaluator answered and skipped, and how many are left for them."""
        now = self._clock()
        with self._transaction(write=False) as tx:
            self._evaluator(tx, evaluator_id)
            counts = dict(
                (status, int(n))
                for status, n in tx.all(
                    "SELECT status, COUNT(*) FROM answers WHERE evaluator_id = ? GROUP BY status", (evaluator_id,)
                )
            )
            open_row = tx.one(
                "SELECT COUNT(*) FROM assignments a LEFT JOIN answers s "
                "ON s.query_id = a.query_id AND s.evaluator_id = a.evaluator_id "
                f"WHERE a.evaluator_id = ? AND s.query_id IS NULL AND {_NOT_CHAT.format(query='a.query_id')}",
                (evaluator_id,),
            )
            unseen_row = tx.one(
                f"SELECT COUNT(*) FROM queries q WHERE q.is_gold = 0 AND {self._UNSEEN} AND {self._TAKEN} < ?",
                (evaluator_id, now - self.assignment_ttl, self.min_evaluators),
            )
        return Progress(
            answered=counts.get("answered", 0),
            skipped=counts.get("skipped", 0),
            remaining=int(open_row[0]) + int(unseen_row[0]),
        )

    def chat_query_ids(self) -> set[int]:
        """The ids of the queries holding chat turns (each assigned to its evaluator only, never queued)."""
        with self._transaction(write=False) as tx:
            return {int(r[0]) for r in tx.all("SELECT query_id FROM chat_turns")}

    def metrics(self) -> dict[str, Any]:
        """Counts per evaluator, gold accuracy and agreement per kind: see :func:`~instruct_env.feedback.analytics.store_metrics`."""
        from instruct_env.feedback.analytics import store_metrics

        return store_metrics(self)


def _stored_ids(ids: Iterable[Any]) -> list[int]:
    """The distinct ids among ``ids`` that can name a stored query, sorted (``5.0`` names 5; ``"5"``, ``5.5`` none)."""
    found = set()
    for value in ids:
        try:
            as_int = int(value)
        except (TypeError, ValueError, OverflowError):
            continue
        if as_int == value and 1 <= as_int < 2**63:
            found.add(as_int)
    return sorted(found)
