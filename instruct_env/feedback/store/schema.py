"""The feedback store's tables, and how a database gets them (created, or upgraded from an older version).

Version history:
    1. evaluators, queries, assignments, events, answers.
    2. the ``chat_turns`` table.
    3. the ``query_batches`` table.
    4. the ``sessions`` table.

Every upgrade so far only added tables, so creating whatever is missing (``IF NOT EXISTS``) and
raising the recorded version is the whole migration. A database written by a newer version is
refused rather than guessed at.
"""

from __future__ import annotations

from instruct_env.error import ConfigError
from instruct_env.feedback.errors import StoreUnavailable
from instruct_env.feedback.store.backends import _Database, _Tx
from instruct_env.feedback.store.urls import redact_url

__all__ = ["SCHEMA_VERSION", "create_schema", "schema_statements"]

SCHEMA_VERSION = 4

# Table -> column definitions; "{id}" is the back-end's auto-increment primary key.
_TABLES: dict[str, tuple[str, ...]] = {
    "meta": ("key TEXT PRIMARY KEY", "value TEXT NOT NULL"),
    "evaluators": (
        "id {id}", "name TEXT NOT NULL UNIQUE", "role TEXT NOT NULL", "token_salt TEXT NOT NULL",
        "token_hash TEXT NOT NULL", "created DOUBLE PRECISION NOT NULL",
    ),
    "queries": (
        "id {id}", "kind TEXT NOT NULL", "payload TEXT NOT NULL", "is_gold INTEGER NOT NULL",
        "created DOUBLE PRECISION NOT NULL",
    ),
    "assignments": (
        "id {id}", "query_id BIGINT NOT NULL REFERENCES queries (id)",
        "evaluator_id BIGINT NOT NULL REFERENCES evaluators (id)", "display_order TEXT NOT NULL",
        "opened DOUBLE PRECISION NOT NULL", "created DOUBLE PRECISION NOT NULL", "UNIQUE (query_id, evaluator_id)",
    ),
    "events": (
        "id {id}", "query_id BIGINT NOT NULL REFERENCES queries (id)",
        "evaluator_id BIGINT NOT NULL REFERENCES evaluators (id)", "type TEXT NOT NULL", "answer TEXT",
        "ref BIGINT", "idempotency_key TEXT", "time DOUBLE PRECISION NOT NULL",
        "UNIQUE (evaluator_id, idempotency_key)",
    ),
    "answers": (
        "query_id BIGINT NOT NULL REFERENCES queries (id)", "evaluator_id BIGINT NOT NULL REFERENCES evaluators (id)",
        "status TEXT NOT NULL", "answer TEXT", "event_id BIGINT NOT NULL", "PRIMARY KEY (query_id, evaluator_id)",
    ),
    "query_batches": (
        "idempotency_key TEXT PRIMARY KEY", "digest TEXT NOT NULL", "ids TEXT NOT NULL",
        "created DOUBLE PRECISION NOT NULL",
    ),
    "chat_turns": (
        "query_id BIGINT PRIMARY KEY REFERENCES queries (id)", "evaluator_id BIGINT NOT NULL REFERENCES evaluators (id)",
        "conversation BIGINT NOT NULL", "turn INTEGER NOT NULL", "UNIQUE (evaluator_id, conversation, turn)",
    ),
    "sessions": (
        "id {id}", "evaluator_id BIGINT NOT NULL REFERENCES evaluators (id)", "secret_hash TEXT NOT NULL",
        "created DOUBLE PRECISION NOT NULL", "expires DOUBLE PRECISION NOT NULL",
    ),
}

# Index name -> "table (columns)".
_INDEXES = {
    "sessions_evaluator": "sessions (evaluator_id)",
    "assignments_evaluator": "assignments (evaluator_id)",
    "events_pair": "events (query_id, evaluator_id)",
    "events_evaluator": "events (evaluator_id, id)",
    "events_ref": "events (ref)",
    "queries_gold": "queries (is_gold, id)",
    "answers_evaluator": "answers (evaluator_id)",
}


def schema_statements(primary_key: str) -> list[str]:
    """The ``CREATE ... IF NOT EXISTS`` statements of every table and index, in dependency order.

    Args:
        primary_key: The back-end's auto-increment key column type (e.g. SQLite's
            ``INTEGER PRIMARY KEY AUTOINCREMENT``).
    """
    tables = [
        f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(c.format(id=primary_key) for c in columns)})"
        for name, columns in _TABLES.items()
    ]
    return tables + [f"CREATE INDEX IF NOT EXISTS {name} ON {target}" for name, target in _INDEXES.items()]


def create_schema(db: _Database, target: str) -> None:
    """Create the missing tables and record :data:`SCHEMA_VERSION`, in one transaction.

    Args:
        db: The store's database.
        target: The store's file path or URL, for messages (its password is hidden).

    Raises:
        ConfigError: the database was written by a newer schema version.
        StoreUnavailable: this process cannot write the database (read-only, locked, unreachable).
    """
    try:
        with db.schema_transaction() as tx:
            _migrate(tx, target)
    except Exception as exc:
        reason = db.backend.unavailable(exc)
        if reason is None:
            raise
        db.close()
        raise StoreUnavailable(f"Cannot open the feedback store for writing: {reason}") from exc


def _migrate(tx: _Tx, target: str) -> None:
    for statement in schema_statements(tx.backend.primary_key):
        tx.run(statement)
    row = tx.one("SELECT value FROM meta WHERE key = ?", ("schema_version",))
    if row is None:
        tx.run("INSERT INTO meta (key, value) VALUES (?, ?)", ("schema_version", str(SCHEMA_VERSION)))
    elif int(row[0]) < SCHEMA_VERSION:  # older stores only lack tables created above
        tx.run("UPDATE meta SET value = ? WHERE key = ?", (str(SCHEMA_VERSION), "schema_version"))
    elif int(row[0]) > SCHEMA_VERSION:
        raise ConfigError(
            f"The feedback store {redact_url(target)!r} has schema version {row[0]}, newer than "
            f"this instruct-env understands ({SCHEMA_VERSION}); upgrade instruct-env."
        )
    # A real write, so that a database this process can only read fails here, at start,
    # rather than on every answer later.
    tx.run("UPDATE meta SET value = value WHERE key = ?", ("schema_version",))
