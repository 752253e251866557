"""Errors raised by the human-feedback store and server.

Each one maps to one HTTP status in :mod:`instruct_env.feedback.server`, so the Python API and the
REST API fail in the same way with the same message:

=====================  ======  ===========================================================
exception              HTTP    raised when
=====================  ======  ===========================================================
``InvalidToken``       401     a token is missing, malformed or unknown
``AccessDenied``       403     the evaluator lacks the role (admin endpoints)
``QueryNotFound``      404     no query (or evaluator) has that id, or the query is not in your queue
``FeedbackConflict``   409     the request contradicts the stored state (answering twice...)
``InvalidAnswer``      422     an answer does not fit its feedback kind
``StoreUnavailable``   503     the database is locked, read-only or unreachable (try again later)
=====================  ======  ===========================================================

All of them derive from :class:`~instruct_env.error.InstructEnvError`.
"""

from __future__ import annotations

from instruct_env.error import ConfigError, InstructEnvError

__all__ = ["InvalidToken", "AccessDenied", "QueryNotFound", "FeedbackConflict", "InvalidAnswer", "StoreUnavailable"]


class InvalidToken(InstructEnvError, PermissionError):
    """An evaluator token is missing, malformed or does not match any evaluator."""


class AccessDenied(InstructEnvError, PermissionError):
    """The evaluator may not do this: wrong role, or a query outside their queue."""


class QueryNotFound(InstructEnvError, LookupError):
    """No query (or evaluator) has the requested id."""


class FeedbackConflict(InstructEnvError, RuntimeError):
    """The request contradicts what is stored: a second answer without ``edit``, nothing to undo..."""


class InvalidAnswer(InstructEnvError, ValueError):
    """An answer does not fit its feedback kind (wrong field, value out of range...)."""


class StoreUnavailable(ConfigError):
    """The database cannot serve the request now: locked by another process, read-only, or unreachable.

    A :class:`~instruct_env.error.ConfigError` (code that caught that for an unreachable server still
    does), answered with 503 by the server: nothing was stored, and the same request may be retried.
    """
