"""The feedback store: evaluators, queries, assignments and an append-only log of their answers.

Modules: ``records`` (what the store reads and writes), ``urls`` (store locations), ``backends``
(SQLite and PostgreSQL, connections and transactions), ``schema`` (tables and upgrades),
``accounts`` (tokens and sessions), ``chat`` (chat turns) and ``core`` (:class:`FeedbackStore`);
every public name is importable from this package.

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
    ``chat_turns``   one row per reply in a chat: its ``thumbs`` query (instruction = the
                     evaluator's message, context = the conversation before it, completion = the
                     reply), who chatted, the conversation (the id of its first turn's query) and
                     the turn number. These queries are assigned to that evaluator only and never
                     enter anyone's queue; their thumbs are ordinary events.
    ``query_batches`` one row per batch of queries added with an idempotency key: the key, a
                     digest of the batch and its query ids (a retried batch gets the same ids).
    ``sessions``     one row per login (``open_session``): the evaluator, the SHA-256 hash of
                     the session secret (the key is ``<id>.<secret>``), when it was opened
                     and when it expires. Logging out deletes the row; so do resetting or revoking
                     the evaluator's token.

Undo semantics:
    Each evaluator's ``submit``, ``edit`` and ``skip`` events form a stack. ``undo`` cancels the
    newest event on it that is not already cancelled, whatever query it is about; repeating
    ``undo`` walks further back. The current answer of a pair is its newest uncancelled event
    (:class:`~instruct_env.feedback.log.AnswerLog` computes it from the log), so undoing an ``edit`` brings back the answer it
    replaced, and undoing a ``submit`` or ``skip`` puts the query back in the evaluator's queue.

Reading new feedback for training:
    Event ids only grow, and an event is visible only once its transaction has committed with
    all smaller ids (see *Transactions*), so ``events_since(watermark)`` followed by
    ``watermark = events[-1].id`` reads every event exactly once, across restarts of either side.
    Consumers must apply ``undo`` events (``ref`` names the event cancelled) and ``edit`` events
    (they replace the pair's previous answer), as :class:`~instruct_env.feedback.log.AnswerLog`
    does, or read :meth:`FeedbackStore.current_answers`.

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
    write lock), a read-only database and an unreachable server raise :class:`StoreUnavailable`;
    nothing was stored and the call may be retried.

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

from instruct_env.feedback.log import replay
from instruct_env.feedback.store.core import FeedbackStore
from instruct_env.feedback.store.records import (
    ANSWER_EVENTS,
    EVENT_TYPES,
    MAX_CHAT_CONTEXT_CHARS,
    MAX_CHAT_TURNS,
    MAX_ID,
    MAX_KEY_CHARS,
    MAX_NAME_CHARS,
    MAX_REASON_CHARS,
    ROLES,
    SESSION_TTL,
    ChatTurn,
    CurrentAnswer,
    Evaluator,
    Event,
    EventCounts,
    Progress,
    Query,
    QueryIds,
    QueryView,
    Receipt,
    chat_history,
    query_from_sample,
)
from instruct_env.feedback.store.schema import SCHEMA_VERSION
from instruct_env.feedback.store.urls import SCHEMES, StoreURL, parse_store_url, redact_url

__all__ = [
    # core, log, schema
    "FeedbackStore",
    "replay",
    "SCHEMA_VERSION",
    # records
    "ANSWER_EVENTS",
    "EVENT_TYPES",
    "MAX_CHAT_CONTEXT_CHARS",
    "MAX_CHAT_TURNS",
    "MAX_ID",
    "MAX_KEY_CHARS",
    "MAX_NAME_CHARS",
    "MAX_REASON_CHARS",
    "ROLES",
    "SESSION_TTL",
    "ChatTurn",
    "CurrentAnswer",
    "Evaluator",
    "Event",
    "EventCounts",
    "Progress",
    "Query",
    "QueryIds",
    "QueryView",
    "Receipt",
    "chat_history",
    "query_from_sample",
    # urls
    "SCHEMES",
    "StoreURL",
    "parse_store_url",
    "redact_url",
]
