"""Evaluator accounts of the feedback store: tokens, and sessions opened with them.

A token is ``"<evaluator id>.<secret>"``; the store keeps only a salted SHA-256 hash of the
secret, so a token is shown once, when it is made. A session key (``"<session id>.<secret>"``)
stands in for the token in a login that ends on logout, on expiry, or when the token is reset or
revoked, while the token itself stays valid.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from instruct_env.error import ConfigError, suggest
from instruct_env.feedback.errors import FeedbackConflict, InvalidToken
from instruct_env.feedback.store.backends import _Tx
from instruct_env.feedback.store.records import (
    EVALUATOR_COLUMNS,
    MAX_NAME_CHARS,
    ROLES,
    SESSION_TTL,
    Evaluator,
    evaluator_from_row,
)

__all__ = ["EvaluatorAccounts"]


def _hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode("utf-8")).hexdigest()


def _split_secret(text: Any) -> tuple[int, str] | None:
    """``"<id>.<secret>"`` as ``(id, secret)``; ``None`` when it is not of that shape (ASCII digits, a 64-bit id)."""
    if not isinstance(text, str) or len(text) > 200 or not text.isascii():
        return None
    head, _, secret = text.partition(".")
    if not (head.isdigit() and len(head) <= 18 and secret):
        return None
    return int(head), secret


class EvaluatorAccounts:
    """The evaluator and session methods of :class:`~instruct_env.feedback.store.FeedbackStore`."""

    _clock: Callable[[], float]

    def _transaction(self, write: bool) -> AbstractContextManager[_Tx]:
        raise NotImplementedError  # the store's

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
            raise InvalidToken("No evaluator token given; pass the evaluator's token ('12.<secret>').")
        parsed = _split_secret(token)
        if parsed is None:
            raise InvalidToken("Malformed evaluator token; it looks like '12.<secret>'. Ask an admin for yours.")
        evaluator_id, secret = parsed
        with self._transaction(write=False) as tx:
            row = tx.one(
                f"SELECT {EVALUATOR_COLUMNS}, token_salt, token_hash FROM evaluators WHERE id = ?", (evaluator_id,)
            )
        if row is None or not hmac.compare_digest(_hash_secret(row[4], secret), row[5]):
            raise InvalidToken("Invalid evaluator token; ask an admin for a new one.")
        return evaluator_from_row(row)

    # -- sessions (logins that end without changing the token) ------------------------------------------------

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
        return evaluator_from_row(row)

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
            rows = tx.all(f"SELECT {EVALUATOR_COLUMNS} FROM evaluators ORDER BY id")
        return [evaluator_from_row(r) for r in rows]

    def _evaluator(self, tx: _Tx, evaluator_id: int) -> Evaluator:
        return evaluator_from_row(tx.row_by_id("evaluators", EVALUATOR_COLUMNS, "evaluator", evaluator_id))
