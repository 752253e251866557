"""Fresh, empty feedback-store URLs for tests, on SQLite and (when configured) PostgreSQL.

SQLite is always tested. PostgreSQL is tested when ``INSTRUCT_ENV_TEST_POSTGRES_URL`` names a
database the tests may create schemas in, e.g.
``INSTRUCT_ENV_TEST_POSTGRES_URL=postgresql://user:password@localhost/instruct_test``. Each store
gets its own schema (``search_path`` set through the URL), so ids start at 1 in every test, and
the schema is dropped afterwards.

Without the URL (or without psycopg) the PostgreSQL cases are skipped, saying why -- unless
``INSTRUCT_ENV_REQUIRE_POSTGRES=1`` is set (as CI does), in which case they fail instead.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from pathlib import Path

import pytest

POSTGRES_URL_ENV = "INSTRUCT_ENV_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "INSTRUCT_ENV_REQUIRE_POSTGRES"


def backend_params() -> list:
    """``pytest.param`` for each back-end; PostgreSQL skipped, with the reason, when unavailable."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        reason = f"PostgreSQL tests need {POSTGRES_URL_ENV}=postgresql://user:password@host/dbname"
    elif importlib.util.find_spec("psycopg") is None:
        reason = "PostgreSQL tests need psycopg: pip install 'instruct-env[postgres]'"
    else:
        reason = ""
    if reason and os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        # Required (CI): the cases run, and fail with the reason instead of skipping.
        return [
            pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql-missing: " + reason, id="postgresql"),
        ]
    return [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.skipif(bool(reason), reason=reason)),
    ]


class StoreURLs:
    """Makes store URLs for one test (``new()``) and removes what it made (``cleanup()``)."""

    def __init__(self, backend: str, tmp_path: Path) -> None:
        if backend.startswith("postgresql-missing: "):
            pytest.fail(f"{REQUIRE_POSTGRES_ENV}=1 but {backend.partition(': ')[2]}")
        self.backend = backend
        self.tmp_path = tmp_path
        self.made: list[str] = []

    @property
    def is_postgres(self) -> bool:
        return self.backend == "postgresql"

    def new(self, name: str = "feedback") -> str:
        """A URL of an empty store; on SQLite a file ``<name>.db`` in the test's folder."""
        if not self.is_postgres:
            return str(self.tmp_path / f"{name}.db")
        schema = f"test_{name}_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        self.made.append(schema)
        base = os.environ[POSTGRES_URL_ENV]
        return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"

    def rows(self, url: str, sql: str) -> list[tuple]:
        """Run a read-only statement directly on the database behind ``url``."""
        if not self.is_postgres:
            import sqlite3

            with sqlite3.connect(url) as conn:
                return conn.execute(sql).fetchall()
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute(sql).fetchall()

    def cleanup(self) -> None:
        if not self.made:
            return
        with self._admin() as conn:
            conn.execute("SET lock_timeout = '10s'")
            for schema in self.made:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self.made.clear()

    @staticmethod
    def _admin():
        import psycopg

        return psycopg.connect(os.environ[POSTGRES_URL_ENV], autocommit=True)
