"""REST API and evaluator web pages over a :class:`~instruct_env.feedback.store.FeedbackStore`.

Start it with ``serve("sqlite:///feedback.db", port=8000)`` (or ``instruct-env serve``); it binds
127.0.0.1 unless told otherwise. The OpenAPI description is at ``/docs`` and ``/openapi.json``.

Authentication:
    Every ``/api`` endpoint except ``/api/health`` needs an evaluator token, sent as
    ``Authorization: Bearer <token>``, or the session cookie ``instruct_env_session`` that the
    login page sets (HttpOnly, SameSite=Strict). Tokens are made by ``POST /api/admin/evaluators``
    (or :meth:`FeedbackStore.add_evaluator` for the first admin) and are shown only then. The
    cookie holds a server-side session, not the token: ``POST /logout`` ends it, and so does its
    expiry (``session_ttl``, 12 hours by default), a token reset or a revocation. A request that
    changes state with the cookie (any method but GET and HEAD) must come from the server's own
    origin (its ``Origin`` header, or ``Sec-Fetch-Site: same-origin``), for the API as for the pages.
    The token (or session) is checked before the request body is read.

Limits:
    Bodies over ``max_body_bytes`` (1 MiB by default) are refused with 413 before they are read,
    from the ``Content-Length`` header or while they arrive. Chat replies are generated in a pool
    of their own (``chat_workers`` threads, one reply at a time per evaluator: 429 for a second,
    503 when the pool's queue is full), so a slow policy never holds up the API. A database that
    is locked by another process, read-only or unreachable answers 503 (``unavailable``) after at
    most ``busy_timeout`` seconds, and ``/api/health`` reports it; a store that cannot be written
    is refused at start. Rate limiting and TLS belong to the reverse proxy in front of the server
    (see ``docs/feedback.md``).

Evaluator endpoints (each evaluator sees only their own queue and their own answers):
    ``GET  /api/next``              the query to answer next (``query`` is null when done)
    ``GET  /api/queries/{id}``      one of your assigned queries, with your current answer
    ``POST /api/answers``           submit (or, with ``edit``, change) an answer
    ``POST /api/skip``              skip a query, with an optional reason
    ``POST /api/undo``              undo your newest answer, edit or skip
    ``GET  /api/progress``          your counts of answered, skipped and remaining queries

Admin endpoints:
    ``POST /api/admin/evaluators``  create an evaluator; the reply holds the token, once
    ``GET  /api/admin/evaluators``  list evaluators (never tokens)
    ``POST /api/admin/evaluators/{id}/revoke``  revoke an evaluator's token and end their sessions
    ``POST /api/admin/queries``     add queries (all or none)
    ``GET  /api/admin/queries``     stored queries by id (``?ids=1&ids=2``, at most 1000), with gold
                                    answers and metadata: what training code reads
    ``GET  /api/admin/metrics``     per-evaluator counts, gold accuracy, agreement per kind
    ``GET  /api/export``            JSON Lines: ``format=events`` (the log, from ``since``),
                                    ``preferences``, ``thumbs`` or ``sft`` (see ``export``)

Writes accept an idempotency key (body field ``idempotency_key`` or header ``Idempotency-Key``):
a retried request with the same key returns the first reply (status 200 instead of 201) and
stores nothing new.

Errors are JSON ``{"error": <code>, "detail": <message>}``: 401 ``unauthorized`` (no or invalid
token), 403 ``forbidden`` (wrong role, or a cookie-authenticated change from another origin), 404
``not_found`` (also a query not in your queue: the same answer as for an unknown id), 409
``conflict`` (e.g. a second answer without ``edit``, nothing to undo), 413 ``too_large``, 422
``invalid_request`` (malformed body or id, an answer that does not fit the query's kind), 503
``unavailable`` (the database cannot serve requests now; retry with the same idempotency key).
A failed request stores nothing. Every response carries ``Cache-Control: no-store``,
``X-Content-Type-Options: nosniff`` and ``X-Frame-Options: DENY``; the pages also a
``Content-Security-Policy`` that allows only their own inline script and style.

Pages (server-rendered, a little inline JavaScript for the keyboard shortcuts): ``/login``,
``/`` which shows the next query with the page of its kind, and ``/chat``.

The chat page:
    ``/chat`` lets an evaluator chat with the current policy and give each reply a thumb. The
    policy is the ``responder`` given to :func:`create_app`: a function from the conversation
    (a list of ``{"role": "user" | "assistant", "content": str}`` messages ending with the
    evaluator's new message) to the reply text; ``instruct-env serve --policy PATH`` makes one from
    a saved model. Without one the page says so and sending a message answers 503. Every reply
    is stored as a ``thumbs`` query assigned to that evaluator only (instruction = the message,
    context = the conversation before it, completion = the reply; see
    :meth:`FeedbackStore.add_chat_turn`), so its thumb is an ordinary ``submit`` (or ``edit``)
    event: exported and learned from like any thumbs answer, and undone with ``U`` like one.
    Evaluators see only their own conversations. Errors re-render the page with a 4xx status
    (403 cross-site, 404 someone else's conversation or reply, 409 a stale page or a conversation
    at its turn limit, 422 a malformed form, or a message the responder refuses with an
    ``InstructEnvError``, 429 a message sent while your previous one is still being answered, 503
    the policy busy with other evaluators' messages); a responder that
    fails otherwise answers 502 with a generic message (the details go to the server's log).
"""

from instruct_env.error import require

require("fastapi", "server")

# The package is laid out by concern: ``app`` (create_app, serve), ``security`` (the guard: tokens,
# sessions, origins, body limits, headers), ``errors`` (exceptions -> status codes), ``models``
# (the API's bodies), ``api``, ``pages`` and ``chat`` (the routes), ``web`` (templates and forms).
from instruct_env.feedback.server.api import (  # noqa: E402
    AdminDep,
    EvaluatorDep,
    KeyHeader,
    current_admin,
    current_evaluator,
)
from instruct_env.feedback.server.app import create_app, serve  # noqa: E402
from instruct_env.feedback.server.chat import CHAT_GUIDELINES, MAX_CHAT_CHARS, Responder, chat_messages  # noqa: E402
from instruct_env.feedback.server.models import (  # noqa: E402
    AnswerIn,
    ErrorOut,
    EvaluatorIn,
    EvaluatorOut,
    IdPath,
    NextOut,
    ProgressOut,
    QueriesIn,
    QueriesOut,
    QueryIn,
    QueryOut,
    ReceiptOut,
    SkipIn,
    StoredQueriesOut,
    StoredQueryOut,
    UndoIn,
)
from instruct_env.feedback.server.security import COOKIE_NAME, MAX_BODY_BYTES  # noqa: E402
from instruct_env.feedback.server.web import TEMPLATES  # noqa: E402

__all__ = [
    "create_app",
    "serve",
    "COOKIE_NAME",
    "Responder",
    "MAX_CHAT_CHARS",
    "MAX_BODY_BYTES",
    # importable from here as they were from the single module: the API's bodies and dependencies,
    # the chat's conversation helper and guidelines, the templates' folder
    "AdminDep",
    "EvaluatorDep",
    "KeyHeader",
    "current_admin",
    "current_evaluator",
    "AnswerIn",
    "ErrorOut",
    "EvaluatorIn",
    "EvaluatorOut",
    "IdPath",
    "NextOut",
    "ProgressOut",
    "QueriesIn",
    "QueriesOut",
    "QueryIn",
    "QueryOut",
    "ReceiptOut",
    "SkipIn",
    "StoredQueriesOut",
    "StoredQueryOut",
    "UndoIn",
    "CHAT_GUIDELINES",
    "chat_messages",
    "TEMPLATES",
]
