"""The feedback store: evaluators, queries, assignments and an append-only log of their answers.

A store is one database per project. SQLite (in WAL mode) is the embedded default: pass a path or
``sqlite:///relative/path.db`` (``sqlite:////absolute/path.db`` for an absolute path). PostgreSQL
is reached with ``postgresql://user:password@host:5432/dbname`` (libpq URL parameters such as
``?sslmode=require&connect_timeout=10`` or ``?options=-csearch_path%3Dfeedback`` pass through) and
needs psycopg 3 (``pip install 'instruct-env[postgres]'``); the database must exist, the tables
are created on first use. The SQL is plain and portable: ``?`` parameters (translated to ``%s``
for PostgreSQL), JSON kept as text, no JSON functions, no upserts, no ``INSERT OR ...``; the only
dialect-specific pieces are the auto-increment key (``AUTOINCREMENT`` / an identity column), the
connection set-up (PRAGMAs for SQLite) and how transactions start (see *Transactions*).

Tables:
    ``evaluators``   id, name, role (``evaluator`` or ``admin``), salt and SHA-256 hash of the
                     token secret (tokens are never stored), created.
    ``queries``      id, kind, payload (JSON: instruction, context, completions, kind options,
                     gold answer, selector and score, metadata), is_gold, created.
    ``assignments``  one row per (query, evaluator) that was shown: the evaluator's own random
                     display order of the completions, and when the assignment was (re)opened.
    ``events``       the append-only log: id (the watermark), query, evaluator, type (``submit``,
                     ``edit``, ``undo``, ``skip``), answer (JSON, canonical terms), ref (the event
                     an ``undo`` cancels), idempotency key, time. Rows are never updated or deleted.
    ``answers``      the current answer (or skip) per (query, evaluator), re-derived from that
                     pair's events in the same transaction as every event appended.
    ``chat_turns``   one row per reply of the chat page: its ``thumbs`` query (instruction = the
                     evaluator's message, context = the conversation before it, completion = the
                     reply), who chatted, the conversation (the id of its first turn's query) and
                     the turn number. These queries are assigned to that evaluator only and never
                     enter anyone's queue; their thumbs are ordinary events.
    ``query_batches`` one row per batch of queries added with an idempotency key: the key, a
                     digest of the batch and its query ids (a retried batch gets the same ids).
    ``sessions``     one row per login of the evaluator pages: the evaluator, the SHA-256 hash of
                     the session secret (the cookie holds ``<id>.<secret>``), when it was opened
                     and when it expires. Logging out deletes the row; so do resetting or revoking
                     the evaluator's token.

Undo semantics:
    Each evaluator's ``submit``, ``edit`` and ``skip`` events form a stack. ``undo`` cancels the
    newest event on it that is not already cancelled, whatever query it is about; repeating
    ``undo`` walks further back. The current answer of a pair is its newest uncancelled event
    (``replay`` computes it from the log), so undoing an ``edit`` brings back the answer it
    replaced, and undoing a ``submit`` or ``skip`` puts the query back in the evaluator's queue.

Reading new feedback for training:
    Event ids only grow, and an event is visible only once its transaction has committed with
    all smaller ids (see *Transactions*), so ``events_since(watermark)`` followed by
    ``watermark = events[-1].id`` reads every event exactly once, across restarts of either side.
    Consumers must apply ``undo`` events (``ref`` names the event cancelled) and ``edit`` events
    (they replace the pair's previous answer), or read :meth:`FeedbackStore.current_answers`.

Transactions:
    Every public method runs in one transaction: it either completes or leaves nothing behind.
    Writes are serialised: SQLite starts them with ``BEGIN IMMEDIATE`` (one writer at a time, a
    30 s busy timeout between processes, a lock between threads of one process); PostgreSQL takes
    ``LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE`` first (READ COMMITTED, so every statement
    after the lock sees what earlier writers committed), because its sequences may otherwise
    commit id 11 before id 10, and a reader at watermark 11 would then never see event 10.
    Reads see one snapshot: a deferred ``BEGIN`` in SQLite's WAL mode, ``REPEATABLE READ READ
    ONLY`` in PostgreSQL (readers never block writers, nor wait for them). A PostgreSQL connection
    that broke (a server restart) is replaced on the next call; the call that hit it fails.
    With the default ``synchronous="FULL"`` a committed SQLite transaction survives a crash of
    the process and of the machine; ``"NORMAL"`` is faster and survives a crash of the process.
    A transaction that cannot start within ``busy_timeout`` seconds (another process holds the
    write lock), a read-only database and an unreachable server raise :class:`StoreUnavailable`
    (the server answers 503); nothing was stored and the call may be retried.

Example:
    >>> import os, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> store = FeedbackStore(os.path.join(tmp.name, "project.db"), min_evaluators=1, seed=0)
    >>> ann, token = store.add_evaluator("ann")
    >>> store.authenticate(token) == ann
    True
    >>> [qid] = store.add_queries([Query("thumbs", "Sort: 3 1 2", ["1 2 3"])])
    >>> view = store.next_query(ann.id)
    >>> view.completions
    ('1 2 3',)
    >>> receipt = store.submit(ann.id, view.id, {"thumb": "up"})
    >>> [(e.type, e.answer) for e in store.events_since(0)]
    [('submit', {'thumb': 'up'})]
    >>> store.next_query(ann.id) is None  # nothing left for ann
    True
    >>> store.close()
    >>> tmp.cleanup()
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import random
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from instruct_env.error import ConfigError, InstructEnvError, UnknownNameError, require, suggest
from instruct_env.feedback.errors import (
    FeedbackConflict,
    InvalidAnswer,
    InvalidToken,
    QueryNotFound,
    StoreUnavailable,
)
from instruct_env.feedback.kinds import FeedbackKind, make_kind

__all__ = [
    "FeedbackStore",
    "Query",
    "QueryView",
    "Evaluator",
    "Event",
    "CurrentAnswer",
    "Receipt",
    "Progress",
    "ChatTurn",
    "StoreURL",
    "parse_store_url",
    "redact_url",
    "query_from_sample",
    "replay",
    "chat_history",
    "ROLES",
    "EVENT_TYPES",
]

SCHEMA_VERSION = 4  # 2: the chat_turns table; 3: the query_batches table; 4: the sessions table
MAX_ID = 2**63 - 1  # ids are signed 64-bit integers in both back-ends
SESSION_TTL = 12 * 3600.0  # default lifetime of a page login, seconds
ROLES = ("evaluator", "admin")
EVENT_TYPES = ("submit", "edit", "undo", "skip")
ANSWER_EVENTS = ("submit", "edit", "skip")  # the events an undo can cancel
MAX_KEY_CHARS = 200
MAX_REASON_CHARS = 1000
MAX_NAME_CHARS = 100
MAX_CHAT_TURNS = 100  # turns per conversation; then the evaluator starts a new one
MAX_CHAT_CONTEXT_CHARS = 16_000  # the stored context of a chat turn keeps the newest turns that fit


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluator:
    """A person (or an admin) who answers queries. The token is never part of this record."""

    id: int
    name: str
    role: str
    created: float

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Query:
    """Something to judge: an instruction, its context and the model's completion(s).

    Attributes:
        kind: Feedback kind (``rating``, ``thumbs``, ``pairwise``, ``ranking``, ``comment``,
            ``edit``); see :mod:`instruct_env.feedback.kinds`.
        instruction: What the model was asked to do.
        completions: The model output(s) to judge, in canonical order.
        context: The input the instruction applies to; may be empty.
        options: Options of the kind (``{"low": 1, "high": 7}`` for a 7-point rating); filled
            in with the kind's defaults.
        gold: The known correct answer, in canonical terms, for quality control. Gold queries
            are mixed into every evaluator's queue and are not counted towards ``min_evaluators``.
        selector: Name of whatever chose this query (e.g. an active-learning selector).
        score: That selector's score for the query.
        metadata: JSON-serialisable extra information (sample id, model name...). Never shown
            to evaluators.
        id: Set by the store.
        created: Unix time at which it was stored; set by the store.

    Raises:
        ConfigError: an invalid field (unknown kind, wrong number of completions, a gold answer
            that does not fit the kind...).
    """

    kind: str
    instruction: str
    completions: Sequence[str]
    context: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    gold: Mapping[str, Any] | None = None
    selector: str | None = None
    score: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None
    created: float | None = None
    spec: FeedbackKind = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str):
            raise ConfigError(f"Query kind must be a string such as 'rating'; got {self.kind!r}.")
        if not isinstance(self.options, Mapping):
            raise ConfigError(f"Query options must be a mapping; got {type(self.options).__name__}.")
        spec = make_kind(self.kind, **self.options)
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "options", spec.options())
        object.__setattr__(self, "completions", spec.check_completions(self.completions))
        for name in ("instruction", "context"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"Query {name} must be a string; got {type(getattr(self, name)).__name__}.")
        if not self.instruction.strip():
            raise ConfigError("Query instruction is empty; evaluators need to know what was asked.")
        if self.gold is not None:
            if not spec.gold_allowed:
                raise ConfigError(
                    f"{self.kind!r} queries cannot have a gold answer (free text cannot be checked); "
                    "leave gold=None."
                )
            try:
                object.__setattr__(self, "gold", spec.validate(self.gold, len(self.completions)))
            except InvalidAnswer as exc:
                raise ConfigError(f"Invalid gold answer: {exc}") from None
        if self.selector is not None and not isinstance(self.selector, str):
            raise ConfigError(f"Query selector must be a string or None; got {self.selector!r}.")
        if self.score is not None:
            if isinstance(self.score, bool) or not isinstance(self.score, (int, float)) or not math.isfinite(self.score):
                raise ConfigError(f"Query score must be a finite number or None; got {self.score!r}.")
            object.__setattr__(self, "score", float(self.score))
        if not isinstance(self.metadata, Mapping):
            raise ConfigError(f"Query metadata must be a mapping; got {type(self.metadata).__name__}.")
        try:
            _dumps(dict(self.metadata))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Query metadata must be JSON-serialisable: {exc}.") from None

    @property
    def is_gold(self) -> bool:
        return self.gold is not None

    def payload(self) -> dict[str, Any]:
        """The JSON object stored in the ``queries`` table."""
        return {
            "instruction": self.instruction,
            "context": self.context,
            "completions": list(self.completions),
            "options": dict(self.options),
            "gold": None if self.gold is None else dict(self.gold),
            "selector": self.selector,
            "score": self.score,
            "metadata": dict(self.metadata),
        }


def query_from_sample(
    sample: Any,
    completions: Sequence[str],
    kind: str = "rating",
    **fields: Any,
) -> Query:
    """Build a :class:`Query` from a :class:`~instruct_env.tasks.Sample` and model completion(s).

    The sample's id and task go into ``metadata`` (merged with ``fields["metadata"]``).

    >>> from instruct_env.tasks import Sample
    >>> q = query_from_sample(Sample("sort/0", "sort", "Sort.", "3 1 2"), ["1 2 3"], "thumbs")
    >>> q.context, q.metadata
    ('3 1 2', {'sample_id': 'sort/0', 'task': 'sort'})
    """
    metadata = {"sample_id": sample.id, "task": sample.task, **dict(fields.pop("metadata", {}))}
    return Query(kind, sample.instruction, completions, context=sample.context, metadata=metadata, **fields)


@dataclass(frozen=True)
class QueryView:
    """A query as one evaluator sees it: completions in their display order, no gold, no selector.

    Attributes:
        id: Query id.
        kind: Feedback kind.
        options: Kind options.
        instruction: The instruction.
        context: The context (may be empty).
        completions: The completions in this evaluator's display order.
        status: ``None`` (open), ``"answered"`` or ``"skipped"``.
        answer: This evaluator's current answer in display terms, if answered.
    """

    id: int
    kind: str
    options: Mapping[str, Any]
    instruction: str
    context: str
    completions: tuple[str, ...]
    status: str | None = None
    answer: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Event:
    """One row of the append-only log.

    Attributes:
        id: Log position; read new events with ``events_since(watermark)``.
        query_id: The query.
        evaluator_id: Who acted.
        type: ``submit``, ``edit`` (replaces the current answer), ``undo`` or ``skip``.
        answer: The answer in canonical terms (``submit``/``edit``), ``{"reason": ...}`` or
            ``None`` (``skip``), ``None`` (``undo``).
        ref: For ``undo``, the id of the event it cancels; else ``None``.
        time: Unix time.
    """

    id: int
    query_id: int
    evaluator_id: int
    type: str
    answer: Any
    ref: int | None
    time: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "query_id": self.query_id,
            "evaluator_id": self.evaluator_id,
            "type": self.type,
            "answer": self.answer,
            "ref": self.ref,
            "time": self.time,
        }


@dataclass(frozen=True)
class CurrentAnswer:
    """The current state of one (query, evaluator) pair: ``status`` is ``answered`` or ``skipped``."""

    query_id: int
    evaluator_id: int
    status: str
    answer: Any
    event_id: int


@dataclass(frozen=True)
class Receipt:
    """What a write returns: the event appended, or the earlier one when an idempotency key repeats."""

    event: Event
    replayed: bool = False


@dataclass(frozen=True)
class Progress:
    """One evaluator's progress.

    Attributes:
        answered: Queries with a current answer.
        skipped: Queries skipped.
        remaining: Queries still waiting for them (open assignments plus queries they could still
            be assigned; gold queries are not counted, so the number is a lower bound).
    """

    answered: int
    skipped: int
    remaining: int

    def to_json(self) -> dict[str, int]:
        return {"answered": self.answered, "skipped": self.skipped, "remaining": self.remaining}


@dataclass(frozen=True)
class ChatTurn:
    """One exchange on the chat page: the evaluator's message and the policy's reply.

    Attributes:
        query_id: The ``thumbs`` query holding the exchange (rate it with :meth:`FeedbackStore.submit`).
        conversation: The conversation's id (the query id of its first turn).
        turn: Position in the conversation, from 0.
        message: What the evaluator wrote.
        reply: What the policy answered.
        thumb: The evaluator's current thumb (``"up"`` / ``"down"``), or ``None``.
    """

    query_id: int
    conversation: int
    turn: int
    message: str
    reply: str
    thumb: str | None = None


def chat_history(turns: Iterable[ChatTurn], max_chars: int | None = None) -> str:
    """The transcript of earlier turns: the context of the next turn's query (rebuilt when read, not stored).

    With ``max_chars``, the oldest turns are left out until the transcript fits (the newest turn
    is kept whole even if it alone is longer), so each stored turn is bounded and a long
    conversation's storage grows linearly, not with its square.

    >>> chat_history([ChatTurn(1, 1, 0, "Hi", "Hello!")])
    'User: Hi\\nAssistant: Hello!'
    >>> chat_history([ChatTurn(1, 1, 0, "Hi", "Hello!"), ChatTurn(2, 1, 1, "Bye", "Bye!")], max_chars=30)
    'User: Bye\\nAssistant: Bye!'
    """
    lines = [f"User: {t.message}\nAssistant: {t.reply}" for t in turns]
    if max_chars is not None:
        size, start = 0, len(lines)
        while start > 0 and (start == len(lines) or size + len(lines[start - 1]) + 1 <= max_chars):
            size += len(lines[start - 1]) + 1
            start -= 1
        lines = lines[start:]
    return "\n".join(lines)


def replay(events: Iterable[Event]) -> dict[tuple[int, int], Event]:
    """Derive the current answer of each (query, evaluator) pair from log events, in id order.

    Returns:
        ``(query_id, evaluator_id)`` -> the event holding the current answer (``submit``,
        ``edit`` or ``skip``); pairs whose events are all cancelled are absent.

    >>> log = [Event(1, 7, 1, "submit", {"thumb": "up"}, None, 0.0),
    ...        Event(2, 7, 1, "edit", {"thumb": "down"}, None, 0.0),
    ...        Event(3, 7, 1, "undo", None, 2, 0.0)]
    >>> replay(log)[(7, 1)].answer
    {'thumb': 'up'}
    """
    stacks: dict[tuple[int, int], list[Event]] = {}
    for event in events:
        stack = stacks.setdefault((event.query_id, event.evaluator_id), [])
        if event.type == "undo":
            stack[:] = [e for e in stack if e.id != event.ref]
        else:
            stack.append(event)
    return {pair: stack[-1] for pair, stack in stacks.items() if stack}


# --------------------------------------------------------------------------------------------------
# Database URLs and back-ends
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL: ``backend`` is ``"sqlite"`` (``target`` a file path) or ``"postgresql"``."""

    backend: str
    target: str


SCHEMES = ("sqlite", "postgresql", "postgres")


def parse_store_url(url: str | os.PathLike[str]) -> StoreURL:
    """Parse a store location.

    Accepted: a file path (``feedback.db``), ``sqlite:///relative.db``,
    ``sqlite:////absolute/path.db`` and ``postgresql://user:password@host:5432/dbname``.

    Raises:
        ConfigError: an empty URL, an in-memory SQLite database, or an unknown scheme.

    >>> parse_store_url("sqlite:///runs/feedback.db")
    StoreURL(backend='sqlite', target='runs/feedback.db')
    >>> parse_store_url("sqlite:////srv/feedback.db").target
    '/srv/feedback.db'
    >>> parse_store_url("postgresql://ann@db/feedback").backend
    'postgresql'
    """
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(
            f"A store URL must be a non-empty string such as 'sqlite:///feedback.db'; got {url!r}."
        )
    scheme, sep, rest = url.partition("://")
    if not sep:
        path = url
    elif scheme.lower() == "sqlite":
        if not rest.startswith("/"):
            raise ConfigError(
                f"Malformed SQLite URL {url!r}; write sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db (three slashes, then the path)."
            )
        path = rest[1:]
    elif scheme.lower() in ("postgresql", "postgres") or scheme.lower().startswith("postgresql+"):
        return StoreURL("postgresql", "postgresql://" + rest)
    else:
        raise ConfigError(
            f"Unknown store URL scheme {scheme!r} in {url!r}.{suggest(scheme, SCHEMES)} "
            "Use a file path, sqlite:///path.db or postgresql://user@host/dbname."
        )
    if path in ("", ":memory:") or path.startswith("file::memory:"):
        raise ConfigError(
            f"Store URL {url!r} names no file. The store must be a file: an in-memory database "
            "would vanish with the process and is not shared between the server's threads."
        )
    return StoreURL("sqlite", path)


def redact_url(url: str) -> str:
    """A store URL with its password replaced by ``***``, for messages and ``repr``.

    >>> redact_url("postgresql://ann:s3cret@db:5432/feedback")
    'postgresql://ann:***@db:5432/feedback'
    >>> redact_url("postgresql://db/feedback?user=ann&password=s3cret&sslmode=require")
    'postgresql://db/feedback?user=ann&password=***&sslmode=require'
    >>> redact_url("runs/feedback.db")
    'runs/feedback.db'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest = re.sub(r"([?&]password=)[^&]*", r"\1***", rest, flags=re.IGNORECASE)
    authority, slash, tail = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.split(':', 1)[0]}:***@{host}"
    return f"{scheme}://{authority}{slash}{tail}"


class _SQLite:
    """SQLite in WAL mode, one connection per thread."""

    name = "sqlite"
    primary_key = "INTEGER PRIMARY KEY AUTOINCREMENT"  # AUTOINCREMENT: ids are never reused

    def __init__(self, path: str, synchronous: str, busy_timeout: float) -> None:
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise ConfigError(
                f"Cannot create the feedback store {path!r}: the directory {directory!r} does not exist."
            )
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout

    def connect(self) -> Any:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def usable(self, conn: Any) -> bool:
        return True

    def sql(self, statement: str) -> str:
        return statement

    def begin(self, conn: Any, write: bool) -> None:
        # IMMEDIATE takes the write lock up front: no deadlock when two readers both try to write.
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def begin_schema(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def insert(self, conn: Any, statement: str, params: Sequence[Any]) -> int:
        return int(conn.execute(statement, params).lastrowid)

    def unavailable(self, exc: BaseException) -> str | None:
        """Why the database cannot serve requests now, or ``None`` when ``exc`` is another failure."""
        if not isinstance(exc, sqlite3.OperationalError):
            return None
        text = " ".join(str(exc).split())
        if "locked" in text or "busy" in text:
            return (
                f"The feedback store {self.path!r} is locked by another writer (waited {self.busy_timeout:g} s); "
                "nothing was stored. Try again shortly; if it lasts, find the process holding the database."
            )
        if "readonly" in text or "read-only" in text:
            return (
                f"The feedback store {self.path!r} is read-only ({text}); nothing was stored. Make the file and "
                "its directory writable by the server's user."
            )
        if "disk I/O" in text or "unable to open" in text or "disk is full" in text:
            return f"The feedback store {self.path!r} cannot be read or written ({text}); nothing was stored."
        return None


class _Postgres:
    """PostgreSQL through psycopg 3, one autocommit connection per thread with explicit transactions."""

    name = "postgresql"
    primary_key = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"

    def __init__(self, dsn: str, busy_timeout: float) -> None:
        self.psycopg = require("psycopg", "postgres")
        self.dsn = dsn
        self.busy_timeout = busy_timeout

    def connect(self) -> Any:
        try:
            conn = self.psycopg.connect(self.dsn, autocommit=True)
            # A lock held elsewhere (e.g. a long transaction) fails the request instead of stalling it.
            conn.execute(f"SET lock_timeout = {int(self.busy_timeout * 1000)}")
            return conn
        except self.psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split())
            raise StoreUnavailable(
                f"Cannot connect to the PostgreSQL feedback store {redact_url(self.dsn)!r}: {reason}. "
                "Check the host, port, user, password and database name, and that the server is running "
                "(add ?connect_timeout=10 to the URL to bound the wait)."
            ) from None

    def usable(self, conn: Any) -> bool:
        return not (conn.closed or conn.broken)

    def sql(self, statement: str) -> str:
        # psycopg's placeholder is %s, so a literal % must be doubled first. Our statements hold
        # no '?' or '%' inside string literals; values always travel as parameters.
        return statement.replace("%", "%%").replace("?", "%s")

    def begin(self, conn: Any, write: bool) -> None:
        if write:
            # READ COMMITTED: each statement sees everything committed before it, including what
            # the writer that held the lock before us committed.
            conn.execute("BEGIN")
            # Serialise writers so that event ids become visible in increasing order.
            conn.execute("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")
        else:
            # One snapshot for all statements of a read (metrics, progress): no torn counts.
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def begin_schema(self, conn: Any) -> None:
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(741930215)")  # one schema creator at a time

    def insert(self, conn: Any, statement: str, params: Sequence[Any]) -> int:
        return int(conn.execute(statement + " RETURNING id", params).fetchone()[0])

    def unavailable(self, exc: BaseException) -> str | None:
        """Why the database cannot serve requests now, or ``None`` when ``exc`` is another failure."""
        errors = self.psycopg.errors
        if isinstance(exc, (errors.LockNotAvailable, errors.ReadOnlySqlTransaction)) or (
            isinstance(exc, self.psycopg.OperationalError)
        ):
            text = " ".join(str(exc).split())
            return (
                f"The PostgreSQL feedback store {redact_url(self.dsn)!r} cannot serve the request now ({text}); "
                "nothing was stored. Try again shortly; check that the server is running and writable."
            )
        return None


def _schema(primary_key: str) -> list[str]:
    return [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS evaluators (
            id {primary_key},
            name TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL,
            token_salt TEXT NOT NULL,
            token_hash TEXT NOT NULL,
            created DOUBLE PRECISION NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS queries (
            id {primary_key},
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            is_gold INTEGER NOT NULL,
            created DOUBLE PRECISION NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS assignments (
            id {primary_key},
            query_id BIGINT NOT NULL REFERENCES queries (id),
            evaluator_id BIGINT NOT NULL REFERENCES evaluators (id),
            display_order TEXT NOT NULL,
            opened DOUBLE PRECISION NOT NULL,
            created DOUBLE PRECISION NOT NULL,
            UNIQUE (query_id, evaluator_id))""",
        f"""CREATE TABLE IF NOT EXISTS events (
            id {primary_key},
            query_id BIGINT NOT NULL REFERENCES queries (id),
            evaluator_id BIGINT NOT NULL REFERENCES evaluators (id),
            type TEXT NOT NULL,
            answer TEXT,
            ref BIGINT,
            idempotency_key TEXT,
            time DOUBLE PRECISION NOT NULL,
            UNIQUE (evaluator_id, idempotency_key))""",
        """CREATE TABLE IF NOT EXISTS answers (
            query_id BIGINT NOT NULL REFERENCES queries (id),
            evaluator_id BIGINT NOT NULL REFERENCES evaluators (id),
            status TEXT NOT NULL,
            answer TEXT,
            event_id BIGINT NOT NULL,
            PRIMARY KEY (query_id, evaluator_id))""",
        """CREATE TABLE IF NOT EXISTS query_batches (
            idempotency_key TEXT PRIMARY KEY,
            digest TEXT NOT NULL,
            ids TEXT NOT NULL,
            created DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS chat_turns (
            query_id BIGINT PRIMARY KEY REFERENCES queries (id),
            evaluator_id BIGINT NOT NULL REFERENCES evaluators (id),
            conversation BIGINT NOT NULL,
            turn INTEGER NOT NULL,
            UNIQUE (evaluator_id, conversation, turn))""",
        f"""CREATE TABLE IF NOT EXISTS sessions (
            id {primary_key},
            evaluator_id BIGINT NOT NULL REFERENCES evaluators (id),
            secret_hash TEXT NOT NULL,
            created DOUBLE PRECISION NOT NULL,
            expires DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS sessions_evaluator ON sessions (evaluator_id)",
        "CREATE INDEX IF NOT EXISTS assignments_evaluator ON assignments (evaluator_id)",
        "CREATE INDEX IF NOT EXISTS events_pair ON events (query_id, evaluator_id)",
        "CREATE INDEX IF NOT EXISTS events_evaluator ON events (evaluator_id, id)",
        "CREATE INDEX IF NOT EXISTS events_ref ON events (ref)",
        "CREATE INDEX IF NOT EXISTS queries_gold ON queries (is_gold, id)",
        "CREATE INDEX IF NOT EXISTS answers_evaluator ON answers (evaluator_id)",
    ]


class QueryIds(list):
    """The ids :meth:`FeedbackStore.add_queries` stored, in order; ``replayed``: an earlier batch's (repeated key)."""

    def __init__(self, ids: Iterable[int] = (), replayed: bool = False) -> None:
        super().__init__(ids)
        self.replayed = replayed


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode("utf-8")).hexdigest()


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return value


def _split_secret(text: Any) -> tuple[int, str] | None:
    """``"<id>.<secret>"`` as ``(id, secret)``; ``None`` when it is not of that shape (ASCII digits, a 64-bit id)."""
    if not isinstance(text, str) or len(text) > 200 or not text.isascii():
        return None
    head, _, secret = text.partition(".")
    if not (head.isdigit() and len(head) <= 18 and secret):
        return None
    return int(head), secret


def _check_key(key: Any) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS:
        raise InvalidAnswer(
            f"An idempotency key must be a string of 1 to {MAX_KEY_CHARS} characters (e.g. a UUID); got {key!r:.80}."
        )
    return key


_EVENT_COLUMNS = "id, query_id, evaluator_id, type, answer, ref, time"
_NOT_CHAT = "NOT EXISTS (SELECT 1 FROM chat_turns c WHERE c.query_id = {query})"  # chat queries queue for nobody


def _event(row: Sequence[Any]) -> Event:
    return Event(int(row[0]), int(row[1]), int(row[2]), row[3], _loads(row[4]), row[5], float(row[6]))


# --------------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------------


class FeedbackStore:
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
        self.min_evaluators = _check_int("min_evaluators", min_evaluators, 1)
        if isinstance(gold_rate, bool) or not isinstance(gold_rate, (int, float)) or not 0 <= gold_rate <= 1:
            raise ConfigError(f"gold_rate must be a number in [0, 1]; got {gold_rate!r}.")
        self.gold_rate = float(gold_rate)
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
        self._local = threading.local()
        self._connections: list[Any] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        # Transactions in flight, so that close() lets them finish instead of pulling their connection away.
        self._in_flight = 0
        self._in_flight_changed = threading.Condition()
        self._create_schema()

    # -- connections and transactions ---------------------------------------------------------

    def _connection(self) -> Any:
        if self._closed:
            raise ConfigError("This FeedbackStore is closed; open a new one.")
        conn = getattr(self._local, "conn", None)
        if conn is not None and not self._backend.usable(conn):  # e.g. the server restarted
            with self._connections_lock:
                self._connections.remove(conn)
            conn.close()
            conn = None
        if conn is None:
            conn = self._backend.connect()
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[_Tx]:
        with self._in_flight_changed:
            if self._closed:
                raise ConfigError("This FeedbackStore is closed; open a new one.")
            self._in_flight += 1
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            conn = self._connection()
            lock = self._write_lock if write else None
            if lock is not None and not lock.acquire(timeout=self.busy_timeout):
                raise StoreUnavailable(
                    f"The feedback store is busy: this process's other writers held it for {self.busy_timeout:g} s; "
                    "nothing was stored. Try again shortly."
                )
            try:
                self._backend.begin(conn, write)
                try:
                    yield _Tx(conn, self._backend)
                    conn.execute("COMMIT")
                except BaseException:
                    try:
                        conn.execute("ROLLBACK")
                    except Exception:  # the failure that got us here matters more
                        pass
                    raise
            finally:
                if lock is not None:
                    lock.release()
        except Exception as exc:
            reason = self._backend.unavailable(exc)
            if reason is None:
                raise
            raise StoreUnavailable(reason) from exc
        finally:
            self._local.depth -= 1
            with self._in_flight_changed:
                self._in_flight -= 1
                self._in_flight_changed.notify_all()

    def _create_schema(self) -> None:
        try:
            self._create_tables()
        except Exception as exc:
            reason = self._backend.unavailable(exc)
            if reason is None:
                raise
            self.close()
            raise StoreUnavailable(f"Cannot open the feedback store for writing: {reason}") from exc

    def _create_tables(self) -> None:
        conn = self._connection()
        with self._write_lock:
            self._backend.begin_schema(conn)
            try:
                tx = _Tx(conn, self._backend)
                for statement in _schema(self._backend.primary_key):
                    tx.run(statement)
                row = tx.one("SELECT value FROM meta WHERE key = ?", ("schema_version",))
                if row is None:
                    tx.run("INSERT INTO meta (key, value) VALUES (?, ?)", ("schema_version", str(SCHEMA_VERSION)))
                elif int(row[0]) < SCHEMA_VERSION:  # older stores only lack tables created above
                    tx.run("UPDATE meta SET value = ? WHERE key = ?", (str(SCHEMA_VERSION), "schema_version"))
                elif int(row[0]) > SCHEMA_VERSION:
                    raise ConfigError(
                        f"The feedback store {redact_url(self.url.target)!r} has schema version {row[0]}, newer than "
                        f"this instruct-env understands ({SCHEMA_VERSION}); upgrade instruct-env."
                    )
                # A real write, so that a database this process can only read fails here, at start,
                # rather than on every answer later.
                tx.run("UPDATE meta SET value = value WHERE key = ?", ("schema_version",))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def close(self, timeout: float = 30.0) -> None:
        """Close every connection of this store; later calls raise :class:`ConfigError`.

        Transactions other threads have already begun are waited for (up to ``timeout`` seconds), so they
        commit or roll back whole instead of failing half-way on a closed connection; new ones are refused.
        """
        own = getattr(self._local, "depth", 0)  # close() called from inside this thread's own transaction
        deadline = time.monotonic() + timeout
        with self._in_flight_changed:
            self._closed = True
            while self._in_flight > own and (left := deadline - time.monotonic()) > 0:
                self._in_flight_changed.wait(left)
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

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

    # -- evaluators ---------------------------------------------------------------------------

    def add_evaluator(self, name: str, role: str = "evaluator") -> tuple[Evaluator, str]:
        """Create an evaluator and return it with its token. The token is shown only this once.

        Raises:
            ConfigError: an empty or over-long name, or an unknown role.
            FeedbackConflict: the name is taken.
        """
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
            raise ConfigError(f"An evaluator name must be 1 to {MAX_NAME_CHARS} characters; got {name!r:.120}.")
        if role not in ROLES:
            raise ConfigError(f"role must be one of {', '.join(map(repr, ROLES))}; got {role!r}.{suggest(str(role), ROLES)}")
        salt, secret = secrets.token_hex(16), secrets.token_urlsafe(32)
        now = self._clock()
        with self._transaction(write=True) as tx:
            if tx.one("SELECT id FROM evaluators WHERE name = ?", (name,)) is not None:
                raise FeedbackConflict(f"An evaluator named {name!r} already exists; choose another name.")
            evaluator_id = tx.insert(
                "INSERT INTO evaluators (name, role, token_salt, token_hash, created) VALUES (?, ?, ?, ?, ?)",
                (name, role, salt, _hash_secret(salt, secret), now),
            )
        return Evaluator(evaluator_id, name, role, now), f"{evaluator_id}.{secret}"

    def reset_token(self, evaluator_id: int) -> str:
        """Give an evaluator a new token and return it; the old token and every session it opened stop working."""
        salt, secret = secrets.token_hex(16), secrets.token_urlsafe(32)
        with self._transaction(write=True) as tx:
            self._evaluator(tx, evaluator_id)
            tx.run(
                "UPDATE evaluators SET token_salt = ?, token_hash = ? WHERE id = ?",
                (salt, _hash_secret(salt, secret), evaluator_id),
            )
            tx.run("DELETE FROM sessions WHERE evaluator_id = ?", (evaluator_id,))
        return f"{evaluator_id}.{secret}"

    def revoke_token(self, evaluator_id: int) -> Evaluator:
        """Revoke an evaluator's token and end their sessions; :meth:`reset_token` gives them a new one.

        Their answers stay in the store. Returns the evaluator.

        Raises:
            QueryNotFound: no evaluator has this id.
        """
        with self._transaction(write=True) as tx:
            evaluator = self._evaluator(tx, evaluator_id)
            # An empty hash matches no secret (hashes are 64 hex digits), so the token stops working.
            tx.run("UPDATE evaluators SET token_hash = ? WHERE id = ?", ("", evaluator_id))
            tx.run("DELETE FROM sessions WHERE evaluator_id = ?", (evaluator_id,))
        return evaluator

    def authenticate(self, token: str | None) -> Evaluator:
        """Return the evaluator whose token this is.

        Raises:
            InvalidToken: no token, a malformed one, or one that matches no evaluator.
        """
        if not token:
            raise InvalidToken("No evaluator token given; send 'Authorization: Bearer <token>' or log in.")
        parsed = _split_secret(token)
        if parsed is None:
            raise InvalidToken("Malformed evaluator token; it looks like '12.<secret>'. Ask an admin for yours.")
        evaluator_id, secret = parsed
        with self._transaction(write=False) as tx:
            row = tx.one(
                "SELECT id, name, role, created, token_salt, token_hash FROM evaluators WHERE id = ?", (evaluator_id,)
            )
        if row is None or not hmac.compare_digest(_hash_secret(row[4], secret), row[5]):
            raise InvalidToken("Invalid evaluator token; ask an admin for a new one.")
        return Evaluator(int(row[0]), row[1], row[2], float(row[3]))

    # -- sessions (the evaluator pages' logins) ------------------------------------------------

    def open_session(self, token: str | None, ttl: float = SESSION_TTL) -> tuple[Evaluator, str]:
        """Log in with an evaluator token: return the evaluator and a new session key, valid ``ttl`` seconds.

        The key (``"<id>.<secret>"``) is what the login cookie holds instead of the token, so
        logging out (:meth:`end_session`) or expiry ends it while the token stays valid.

        Raises:
            InvalidToken: as for :meth:`authenticate`.
            ConfigError: ``ttl`` is not a positive number.
        """
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl < math.inf:
            raise ConfigError(f"A session's ttl must be a number of seconds > 0; got {ttl!r}.")
        evaluator = self.authenticate(token)
        secret, now = secrets.token_urlsafe(32), self._clock()
        with self._transaction(write=True) as tx:
            tx.run("DELETE FROM sessions WHERE expires <= ?", (now,))  # keep the table small
            session_id = tx.insert(
                "INSERT INTO sessions (evaluator_id, secret_hash, created, expires) VALUES (?, ?, ?, ?)",
                (evaluator.id, hashlib.sha256(secret.encode()).hexdigest(), now, now + float(ttl)),
            )
        return evaluator, f"{session_id}.{secret}"

    def session(self, key: str | None) -> Evaluator:
        """The evaluator logged in with this session key.

        Raises:
            InvalidToken: no key, a malformed, unknown, ended or expired one.
        """
        parsed = _split_secret(key) if key else None
        if parsed is None:
            raise InvalidToken("Not logged in; log in with your evaluator token.")
        session_id, secret = parsed
        with self._transaction(write=False) as tx:
            row = tx.one(
                "SELECT e.id, e.name, e.role, e.created, s.secret_hash, s.expires FROM sessions s "
                "JOIN evaluators e ON e.id = s.evaluator_id WHERE s.id = ?",
                (session_id,),
            )
        if row is None or not hmac.compare_digest(hashlib.sha256(secret.encode()).hexdigest(), row[4]):
            raise InvalidToken("Your session has ended; log in again with your evaluator token.")
        if float(row[5]) <= self._clock():
            raise InvalidToken("Your session has expired; log in again with your evaluator token.")
        return Evaluator(int(row[0]), row[1], row[2], float(row[3]))

    def end_session(self, key: str | None) -> bool:
        """End a session (log out). Returns whether there was one to end; a malformed key ends nothing."""
        parsed = _split_secret(key) if key else None
        if parsed is None:
            return False
        session_id, secret = parsed
        with self._transaction(write=True) as tx:
            row = tx.one("SELECT secret_hash FROM sessions WHERE id = ?", (session_id,))
            if row is None or not hmac.compare_digest(hashlib.sha256(secret.encode()).hexdigest(), row[0]):
                return False
            tx.run("DELETE FROM sessions WHERE id = ?", (session_id,))
        return True

    def evaluators(self) -> list[Evaluator]:
        """All evaluators, in creation order."""
        with self._transaction(write=False) as tx:
            rows = tx.all("SELECT id, name, role, created FROM evaluators ORDER BY id")
        return [Evaluator(int(r[0]), r[1], r[2], float(r[3])) for r in rows]

    def _evaluator(self, tx: _Tx, evaluator_id: int) -> Evaluator:
        if isinstance(evaluator_id, bool) or not isinstance(evaluator_id, int):
            raise QueryNotFound(f"Evaluator ids are integers; got {evaluator_id!r}.")
        row = tx.one("SELECT id, name, role, created FROM evaluators WHERE id = ?", (evaluator_id,))
        if row is None:
            raise QueryNotFound(f"No evaluator has id {evaluator_id}.")
        return Evaluator(int(row[0]), row[1], row[2], float(row[3]))

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
        checked = []
        for n, item in enumerate(queries):
            if isinstance(item, Query):
                query = item
            elif isinstance(item, Mapping):
                unknown = sorted(set(item) - set(_QUERY_FIELDS))
                if unknown:
                    raise ConfigError(
                        f"queries[{n}] has unknown field(s) {unknown}; allowed: {', '.join(_QUERY_FIELDS)}."
                    )
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
            checked.append(query)
        now = self._clock()
        digest = hashlib.sha256(_dumps([[q.kind, q.payload(), q.is_gold] for q in checked]).encode()).hexdigest() \
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
                    (q.kind, _dumps(q.payload()), int(q.is_gold), now),
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
        wanted = None if ids is None else set(ids)
        sql = "SELECT id, kind, payload, created FROM queries"
        params: tuple[Any, ...] = ()
        if kind is not None:
            sql, params = sql + " WHERE kind = ?", (kind,)
        with self._transaction(write=False) as tx:
            rows = tx.all(sql + " ORDER BY id", params)
            found = {int(r[0]): _query(r) for r in rows if wanted is None or int(r[0]) in wanted}
            return self._chat_contexts(tx, found)

    def _query(self, tx: _Tx, query_id: int) -> Query:
        if isinstance(query_id, bool) or not isinstance(query_id, int):
            raise QueryNotFound(f"Query ids are integers; got {query_id!r}.")
        row = tx.one("SELECT id, kind, payload, created FROM queries WHERE id = ?", (query_id,))
        if row is None:
            raise QueryNotFound(f"No query has id {query_id}.")
        return self._chat_contexts(tx, {query_id: _query(row)})[query_id]

    def _chat_contexts(self, tx: _Tx, found: dict[int, Query]) -> dict[int, Query]:
        """``found`` with the context of each chat turn rebuilt from the turns before it.

        A chat turn stores its message and reply only; its context (the conversation before it,
        see :func:`chat_history`) is read from the earlier turns, so a conversation stores each
        turn once. Turns stored with their context (before schema version 4) keep it.
        """
        candidates = [qid for qid, q in found.items()
                      if not q.context and q.metadata.get("source") == "chat" and q.metadata.get("turn")]
        if not candidates:
            return found
        turn_of: dict[int, tuple[int, int]] = {}
        for start in range(0, len(candidates), 500):  # bounded statement size
            part = candidates[start:start + 500]
            marks = ", ".join("?" * len(part))
            for qid, conversation, turn in tx.all(
                f"SELECT query_id, conversation, turn FROM chat_turns WHERE query_id IN ({marks})", part
            ):
                turn_of[int(qid)] = (int(conversation), int(turn))
        conversations = sorted({c for c, _ in turn_of.values()})
        history: dict[int, list[ChatTurn]] = {}
        for start in range(0, len(conversations), 500):
            part = conversations[start:start + 500]
            marks = ", ".join("?" * len(part))
            for row in tx.all(
                "SELECT c.query_id, c.conversation, c.turn, q.payload, NULL FROM chat_turns c "
                f"JOIN queries q ON q.id = c.query_id WHERE c.conversation IN ({marks}) ORDER BY c.conversation, c.turn",
                part,
            ):
                history.setdefault(int(row[1]), []).append(_chat_turn(row))
        rebuilt = dict(found)
        for qid, (conversation, turn) in turn_of.items():
            earlier = [t for t in history.get(conversation, []) if t.turn < turn]
            rebuilt[qid] = replace(found[qid], context=chat_history(earlier, MAX_CHAT_CONTEXT_CHARS))
        return rebuilt

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
                (query_id, evaluator_id, _dumps(order), now, now),
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
        """The query and the evaluator's display order; a 404 error when there is none."""
        self._evaluator(tx, evaluator_id)
        try:
            query = self._query(tx, query_id)
        except QueryNotFound:
            raise QueryNotFound(
                f"Query {query_id!r:.30} is not in your queue; answer the queries that /api/next gives you."
            ) from None
        row = tx.one(
            "SELECT display_order FROM assignments WHERE query_id = ? AND evaluator_id = ?", (query_id, evaluator_id)
        )
        if row is None:  # the same answer as for an unknown id: evaluators cannot probe which ids exist
            raise QueryNotFound(
                f"Query {query_id} is not in your queue; answer the queries that /api/next gives you."
            )
        return query, _loads(row[0])

    def _state(self, tx: _Tx, evaluator_id: int, query_id: int) -> CurrentAnswer | None:
        row = tx.one(
            "SELECT status, answer, event_id FROM answers WHERE query_id = ? AND evaluator_id = ?",
            (query_id, evaluator_id),
        )
        return None if row is None else CurrentAnswer(query_id, evaluator_id, row[0], _loads(row[1]), int(row[2]))

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
        _check_int("turn", turn, 0)
        now = self._clock()
        with self._transaction(write=True) as tx:
            self._evaluator(tx, evaluator_id)
            turns = [] if conversation is None else self._chat(tx, evaluator_id, conversation)
            if conversation is not None and not turns:
                raise QueryNotFound(f"You have no conversation {conversation}; start a new one.")
            if turn != len(turns):
                raise FeedbackConflict(
                    f"This message answers turn {turn}, but the conversation has {len(turns)} turn(s) now "
                    "(sent twice, or from an old page); reload the conversation and send it again."
                )
            if len(turns) >= MAX_CHAT_TURNS:
                raise FeedbackConflict(
                    f"This conversation has reached its limit of {MAX_CHAT_TURNS} turns; start a new one."
                )
            # No context stored: it is the conversation before this turn, rebuilt on reading (see
            # _chat_contexts), so a conversation stores each turn once.
            query = Query(
                "thumbs", message, [reply],
                metadata={**dict(metadata or {}), "source": "chat", "turn": turn},
            )
            query_id = tx.insert(
                "INSERT INTO queries (kind, payload, is_gold, created) VALUES (?, ?, ?, ?)",
                ("thumbs", _dumps(query.payload()), 0, now),
            )
            conversation = query_id if conversation is None else conversation
            tx.run(
                "INSERT INTO assignments (query_id, evaluator_id, display_order, opened, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (query_id, evaluator_id, _dumps([0]), now, now),
            )
            tx.run(
                "INSERT INTO chat_turns (query_id, evaluator_id, conversation, turn) VALUES (?, ?, ?, ?)",
                (query_id, evaluator_id, conversation, turn),
            )
        return ChatTurn(query_id, conversation, turn, message, reply)

    def chat(self, evaluator_id: int, conversation: int) -> list[ChatTurn]:
        """The turns of one of this evaluator's conversations, with their current thumbs.

        Raises:
            QueryNotFound: unknown evaluator, or a conversation that is not theirs.
        """
        with self._transaction(write=False) as tx:
            self._evaluator(tx, evaluator_id)
            turns = self._chat(tx, evaluator_id, conversation)
        if not turns:
            raise QueryNotFound(f"You have no conversation {conversation}; start a new one.")
        return turns

    def conversations(self, evaluator_id: int) -> list[ChatTurn]:
        """The first turn of each of this evaluator's conversations, newest conversation first."""
        with self._transaction(write=False) as tx:
            self._evaluator(tx, evaluator_id)
            rows = tx.all(
                "SELECT c.query_id, c.conversation, c.turn, q.payload, s.answer FROM chat_turns c "
                "JOIN queries q ON q.id = c.query_id LEFT JOIN answers s "
                "ON s.query_id = c.query_id AND s.evaluator_id = c.evaluator_id AND s.status = 'answered' "
                "WHERE c.evaluator_id = ? AND c.turn = 0 ORDER BY c.conversation DESC",
                (evaluator_id,),
            )
        return [_chat_turn(r) for r in rows]

    def _chat(self, tx: _Tx, evaluator_id: int, conversation: int) -> list[ChatTurn]:
        if isinstance(conversation, bool) or not isinstance(conversation, int):
            raise QueryNotFound(f"Conversation ids are integers; got {conversation!r}.")
        rows = tx.all(
            "SELECT c.query_id, c.conversation, c.turn, q.payload, s.answer FROM chat_turns c "
            "JOIN queries q ON q.id = c.query_id LEFT JOIN answers s "
            "ON s.query_id = c.query_id AND s.evaluator_id = c.evaluator_id AND s.status = 'answered' "
            "WHERE c.evaluator_id = ? AND c.conversation = ? ORDER BY c.turn",
            (evaluator_id, conversation),
        )
        return [_chat_turn(r) for r in rows]

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
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE evaluator_id = ? AND idempotency_key = ?",
            (evaluator_id, key),
        )
        if row is None:
            return None
        event = _event(row)
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
            (query_id, evaluator_id, event_type, None if answer is None else _dumps(answer), ref, key, now),
        )
        rows = tx.all(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE query_id = ? AND evaluator_id = ? ORDER BY id",
            (query_id, evaluator_id),
        )
        current = replay(_event(r) for r in rows).get((query_id, evaluator_id))
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
                    None if current.answer is None else _dumps(current.answer),
                    current.id,
                ),
            )
        return Event(event_id, query_id, evaluator_id, event_type, answer, ref, now)

    # -- reading ------------------------------------------------------------------------------

    def events_since(self, watermark: int = 0, limit: int | None = None) -> list[Event]:
        """Log events with ``id > watermark``, in id order (at most ``limit`` of them).

        Keep ``events[-1].id`` as the next watermark: every event is read exactly once.
        """
        _check_int("watermark", watermark, 0)
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id"
        params: tuple[Any, ...] = (watermark,)
        if limit is not None:
            sql, params = sql + " LIMIT ?", (watermark, _check_int("limit", limit, 1))
        with self._transaction(write=False) as tx:
            return [_event(r) for r in tx.all(sql, params)]

    def last_event_id(self) -> int:
        """The newest event id (0 for an empty log)."""
        with self._transaction(write=False) as tx:
            row = tx.one("SELECT MAX(id) FROM events")
        return 0 if row is None or row[0] is None else int(row[0])

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
        return [CurrentAnswer(int(r[0]), int(r[1]), r[2], _loads(r[3]), int(r[4])) for r in rows]

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

    def metrics(self) -> dict[str, Any]:
        """Counts per evaluator, gold accuracy, and agreement (Krippendorff's alpha) per kind.

        Returns:
            A JSON-serialisable dict with ``evaluators`` (one entry each: ``answered``,
            ``skipped``, ``edits``, ``undos``, ``gold_answered``, ``gold_accuracy``), ``queries``
            (``total``, ``gold``, ``chat``: replies made on the chat page, ``complete``: queue
            queries, neither gold nor chat, with at least ``min_evaluators`` answers), ``agreement`` (kind -> alpha, or ``None`` where no query has two answers)
            and ``watermark`` (the newest event id).
        """
        from instruct_env.feedback.aggregation import krippendorff_alpha

        with self._transaction(write=False) as tx:
            evaluators = [Evaluator(int(r[0]), r[1], r[2], float(r[3])) for r in tx.all(
                "SELECT id, name, role, created FROM evaluators ORDER BY id")]
            event_counts = {
                (int(e), t): int(n)
                for e, t, n in tx.all("SELECT evaluator_id, type, COUNT(*) FROM events GROUP BY evaluator_id, type")
            }
            queries = {int(r[0]): _query(r) for r in tx.all("SELECT id, kind, payload, created FROM queries")}
            answers = [
                CurrentAnswer(int(r[0]), int(r[1]), r[2], _loads(r[3]), int(r[4]))
                for r in tx.all("SELECT query_id, evaluator_id, status, answer, event_id FROM answers")
            ]
            watermark = tx.one("SELECT MAX(id) FROM events")[0] or 0
            chat = {int(r[0]) for r in tx.all("SELECT query_id FROM chat_turns")}
        per_evaluator: dict[int, dict[str, Any]] = {
            e.id: {
                "id": e.id, "name": e.name, "role": e.role, "answered": 0, "skipped": 0,
                "edits": event_counts.get((e.id, "edit"), 0), "undos": event_counts.get((e.id, "undo"), 0),
                "gold_answered": 0, "gold_correct": 0, "gold_accuracy": None,
            }
            for e in evaluators
        }
        answers_per_query: dict[int, int] = {}
        triples: dict[str, list[tuple[Any, Any, Any]]] = {}
        for a in answers:
            stats = per_evaluator[a.evaluator_id]
            stats[a.status] += 1
            if a.status != "answered":
                continue
            query = queries[a.query_id]
            answers_per_query[a.query_id] = answers_per_query.get(a.query_id, 0) + 1
            if query.is_gold:
                stats["gold_answered"] += 1
                stats["gold_correct"] += int(query.spec.label(a.answer) == query.spec.label(query.gold))
            if query.spec.agreement_level is not None:
                triples.setdefault(query.kind, []).extend(query.spec.agreement_triples(a.query_id, a.evaluator_id, a.answer))
        for stats in per_evaluator.values():
            if stats["gold_answered"]:
                stats["gold_accuracy"] = stats["gold_correct"] / stats["gold_answered"]
        agreement: dict[str, float | None] = {}
        for kind, kind_triples in sorted(triples.items()):
            try:
                agreement[kind] = krippendorff_alpha(kind_triples, level=make_kind(kind).agreement_level)
            except ConfigError:  # no item with two answers yet
                agreement[kind] = None
        regular = [q for q in queries.values() if not q.is_gold and q.id not in chat]
        return {
            "evaluators": list(per_evaluator.values()),
            "queries": {
                "total": len(queries),
                "gold": sum(q.is_gold for q in queries.values()),
                "chat": len(chat),
                "complete": sum(answers_per_query.get(q.id, 0) >= self.min_evaluators for q in regular),
                "min_evaluators": self.min_evaluators,
            },
            "agreement": agreement,
            "watermark": int(watermark),
        }


_QUERY_FIELDS = ("kind", "instruction", "completions", "context", "options", "gold", "selector", "score", "metadata")


def _chat_turn(row: Sequence[Any]) -> ChatTurn:
    """``(query_id, conversation, turn, payload, answer)`` -> :class:`ChatTurn`."""
    payload = json.loads(row[3])
    answer = _loads(row[4])
    thumb = answer.get("thumb") if isinstance(answer, dict) else None
    return ChatTurn(int(row[0]), int(row[1]), int(row[2]), payload["instruction"], payload["completions"][0], thumb)


def _query(row: Sequence[Any]) -> Query:
    payload = json.loads(row[2])
    return Query(
        kind=row[1],
        instruction=payload["instruction"],
        completions=payload["completions"],
        context=payload["context"],
        options=payload["options"],
        gold=payload["gold"],
        selector=payload["selector"],
        score=payload["score"],
        metadata=payload["metadata"],
        id=int(row[0]),
        created=float(row[3]),
    )


def _stored_value_error(exc: OverflowError | UnicodeEncodeError) -> InstructEnvError:
    """The client's error for a value no database can hold (the driver fails before any SQL runs)."""
    if isinstance(exc, OverflowError):  # an integer beyond 64 bits: no row can have it
        return QueryNotFound(f"No record has that id; ids are integers from 0 to {MAX_ID}.")
    bad = exc.object[exc.start:exc.end] if isinstance(exc.object, str) else "?"
    return InvalidAnswer(  # e.g. a lone surrogate from a JSON "\ud800" escape
        f"Text must be valid Unicode; got a character that cannot be stored ({bad!r}: {exc.reason}). "
        "Remove it and send the text again."
    )


class _Tx:
    """A connection inside a transaction, with the back-end's parameter style."""

    def __init__(self, conn: Any, backend: _SQLite | _Postgres) -> None:
        self.conn = conn
        self.backend = backend

    def run(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self.conn.execute(self.backend.sql(sql), tuple(params))
        except (OverflowError, UnicodeEncodeError) as exc:
            raise _stored_value_error(exc) from None

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.run(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self.run(sql, params).fetchall())

    def insert(self, sql: str, params: Sequence[Any]) -> int:
        try:
            return self.backend.insert(self.conn, self.backend.sql(sql), tuple(params))
        except (OverflowError, UnicodeEncodeError) as exc:
            raise _stored_value_error(exc) from None
