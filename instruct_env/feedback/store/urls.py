"""Store locations: parse a store URL (SQLite file or PostgreSQL server) and hide its password."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from instruct_env.error import ConfigError, suggest

__all__ = ["StoreURL", "SCHEMES", "parse_store_url", "redact_url"]

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
