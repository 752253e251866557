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

# No ``from __future__ import annotations`` here: FastAPI reads the annotations of the route
# functions at run time, and some of them are defined inside ``create_app``.

import asyncio
import base64
import hashlib
import html
import json
import logging
import os
import re
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from string import Template
from typing import Annotated, Any, Literal

from instruct_env.error import ConfigError, InstructEnvError, UnknownNameError, require
from instruct_env.feedback.errors import (
    AccessDenied,
    FeedbackConflict,
    InvalidAnswer,
    InvalidToken,
    QueryNotFound,
    StoreUnavailable,
)
from instruct_env.feedback.kinds import KINDS, make_kind
from instruct_env.feedback.store import (
    MAX_CHAT_TURNS,
    MAX_ID,
    SESSION_TTL,
    ChatTurn,
    Evaluator,
    FeedbackStore,
    QueryView,
    Receipt,
)

require("fastapi", "server")

from fastapi import Depends, FastAPI, Header, Request, Response  # noqa: E402
from fastapi import Path as PathParam  # noqa: E402
from fastapi import Query as QueryParam  # noqa: E402
from fastapi.encoders import jsonable_encoder  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse  # noqa: E402
from fastapi.security import HTTPBearer  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

__all__ = ["create_app", "serve", "COOKIE_NAME", "Responder", "MAX_CHAT_CHARS", "MAX_BODY_BYTES"]

COOKIE_NAME = "instruct_env_session"  # holds a session key (see FeedbackStore.open_session), never the token
MAX_CHAT_CHARS = 4000  # longest chat message accepted
MAX_BODY_BYTES = 1 << 20  # default request-body limit: 10,000 queries of ~100 characters fit
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
Responder = Callable[[list[dict[str, str]]], str]
"""Conversation (role/content messages, the evaluator's new message last) -> the policy's reply."""
_log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).with_name("templates")

_STATUS = (  # most specific first
    (StoreUnavailable, 503, "unavailable"),
    (InvalidToken, 401, "unauthorized"),
    (AccessDenied, 403, "forbidden"),
    (QueryNotFound, 404, "not_found"),
    (FeedbackConflict, 409, "conflict"),
    (InvalidAnswer, 422, "invalid_request"),
    (UnknownNameError, 422, "invalid_request"),
    (ConfigError, 422, "invalid_request"),
)


# --------------------------------------------------------------------------------------------------
# Request and response bodies
# --------------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnswerIn(_Strict):
    """An answer to one of your queries, in the terms you saw it (``"A"`` = left)."""

    query_id: int = Field(ge=0, le=MAX_ID, description="Id of a query assigned to you.")
    answer: dict[str, Any] = Field(
        description='Depends on the kind: {"rating": 4}, {"thumb": "up"}, {"choice": "A", "strength": 2}, '
        '{"ranking": [1, 0, 2]}, {"comment": "..."}, {"completion": "..."}.'
    )
    edit: bool = Field(False, description="Replace your current answer to this query.")
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


class SkipIn(_Strict):
    query_id: int = Field(ge=0, le=MAX_ID)
    reason: str | None = Field(None, max_length=1000)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


class UndoIn(_Strict):
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


class ProgressOut(BaseModel):
    answered: int
    skipped: int
    remaining: int


class QueryOut(BaseModel):
    """A query as you see it: completions in your own display order."""

    id: int
    kind: str
    options: dict[str, Any]
    instruction: str
    context: str
    completions: list[str]
    status: str | None = Field(None, description="null (open), 'answered' or 'skipped'.")
    answer: dict[str, Any] | None = Field(None, description="Your current answer, in display terms.")


class NextOut(BaseModel):
    query: QueryOut | None
    progress: ProgressOut


class ReceiptOut(BaseModel):
    event_id: int
    query_id: int
    type: str
    ref: int | None = Field(None, description="For an undo: the event it cancelled.")
    replayed: bool = Field(description="True when an earlier request with the same idempotency key is returned.")
    progress: ProgressOut


class EvaluatorIn(_Strict):
    name: str = Field(min_length=1, max_length=100)
    role: Literal["evaluator", "admin"] = "evaluator"


class EvaluatorOut(BaseModel):
    id: int
    name: str
    role: str
    token: str | None = Field(None, description="Only in the reply that creates the evaluator.")


class QueryIn(_Strict):
    kind: str = Field(description=f"One of {', '.join(KINDS)}.")
    instruction: str
    completions: list[str]
    context: str = ""
    options: dict[str, Any] = Field(default_factory=dict, description='e.g. {"low": 1, "high": 7} for a rating.')
    gold: dict[str, Any] | None = Field(None, description="Known answer, canonical terms (quality control).")
    selector: str | None = None
    score: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class QueriesIn(_Strict):
    queries: list[QueryIn] = Field(min_length=1, max_length=10_000)
    idempotency_key: str | None = Field(
        None, min_length=1, max_length=200,
        description="A client-chosen key (e.g. a UUID): repeating the request with it returns the first ids.")


class QueriesOut(BaseModel):
    ids: list[int]


class StoredQueryOut(BaseModel):
    id: int
    kind: str
    instruction: str
    completions: list[str]
    context: str
    options: dict[str, Any]
    gold: dict[str, Any] | None
    selector: str | None
    score: float | None
    metadata: dict[str, Any]
    created: float | None


class StoredQueriesOut(BaseModel):
    queries: list[StoredQueryOut]


class ErrorOut(BaseModel):
    error: str
    detail: str


_ERRORS = {code: {"model": ErrorOut} for code in (401, 403, 404, 409, 413, 422, 503)}
IdPath = Annotated[int, PathParam(ge=0, le=MAX_ID)]


def _view_out(view: QueryView) -> QueryOut:
    return QueryOut(
        id=view.id,
        kind=view.kind,
        options=dict(view.options),
        instruction=view.instruction,
        context=view.context,
        completions=list(view.completions),
        status=view.status,
        answer=None if view.answer is None else dict(view.answer),
    )


# --------------------------------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------------------------------

# Declares the scheme in the OpenAPI description; _Guard does the checking, before the body is read.
_bearer = HTTPBearer(auto_error=False, description="The evaluator token (or the login session's cookie).")


def _store(request: Request) -> FeedbackStore:
    return request.app.state.store


def current_evaluator(request: Request, _: Annotated[Any, Depends(_bearer)]) -> Evaluator:
    """The evaluator whose bearer token (or session cookie) came with the request, as ``_Guard`` found it."""
    evaluator = getattr(request.state, "evaluator", None)
    if evaluator is None:  # a route outside the guarded prefix: never expected, refuse rather than guess
        raise InvalidToken("No evaluator token given; send 'Authorization: Bearer <token>' or log in.")
    return evaluator


def _not_admin(evaluator: Evaluator) -> str:
    return f"This endpoint needs the admin role; evaluator {evaluator.name!r} has role {evaluator.role!r}."


def current_admin(evaluator: Annotated[Evaluator, Depends(current_evaluator)]) -> Evaluator:
    if not evaluator.is_admin:
        raise AccessDenied(_not_admin(evaluator))
    return evaluator


EvaluatorDep = Annotated[Evaluator, Depends(current_evaluator)]
AdminDep = Annotated[Evaluator, Depends(current_admin)]
KeyHeader = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


def _one_key(body_key: str | None, header_key: str | None) -> str | None:
    if body_key is not None and header_key is not None and body_key != header_key:
        raise InvalidAnswer("The Idempotency-Key header and the body's idempotency_key differ; send one of them.")
    return body_key if body_key is not None else header_key


# --------------------------------------------------------------------------------------------------
# The guard: every request is checked before the application reads its body
# --------------------------------------------------------------------------------------------------

_PAGE_POSTS = ("/answer", "/skip", "/undo", "/chat", "/chat/thumb")  # need a session; /login and /logout do not
_THIRD_PARTY_PAGES = ("/docs", "/docs/oauth2-redirect", "/redoc")  # FastAPI's pages load their scripts from a CDN


def _same_origin(request: Request, *, strict: bool = False) -> bool:
    """Whether a state-changing request comes from this server's own pages.

    A browser names where a request comes from in ``Sec-Fetch-Site`` and ``Origin``; either one
    naming another site or origin refuses it. With ``strict`` (the API with a cookie) one of them must
    also say "this origin": every browser sends ``Origin`` with a POST, so its absence means a
    client that should use the bearer header instead. The pages accept it absent (SameSite=Strict
    keeps the cookie off other sites' requests).
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return site == "same-origin" or not strict
    if origin == "null":
        return False
    return urllib.parse.urlsplit(origin).netloc == request.headers.get("host")


def _json_error(status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _security_headers(path: str, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in headers}
    extra = [
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    ]
    html_page = any(n.lower() == b"content-type" and v.startswith(b"text/html") for n, v in headers)
    if html_page and path not in _THIRD_PARTY_PAGES:
        extra.append((b"content-security-policy", _page_policy().encode()))
    return headers + [(name, value) for name, value in extra if name not in present]


class _Guard:
    """ASGI middleware in front of every route.

    In order, before the application sees a request: the ``/api`` token or session is checked
    (401, without reading the body), a cookie-authenticated change must come from this origin
    (403), the page forms need a session (303 to ``/login``), and the body is read up to
    ``max_body_bytes`` (413 from ``Content-Length`` at once, or as soon as more arrives). Every
    response gets the security headers.
    """

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": _security_headers(path, list(message.get("headers", [])))}
            await send(message)

        request = Request(scope)  # headers and cookies only; the body stays unread
        refusal = await self._check(request)
        if refusal is None and scope["method"] not in _SAFE_METHODS:
            receive, refusal = await self._read_body(request, receive)
        if refusal is not None:
            if scope["method"] not in _SAFE_METHODS:  # its body may still be arriving: stop reading it
                refusal.headers["connection"] = "close"
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    async def _check(self, request: Request) -> Response | None:
        path, method = request.url.path, request.method
        store = _store(request)
        try:
            if path.startswith("/api/") and path != "/api/health":
                scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
                if scheme.lower() == "bearer" and credentials.strip():
                    evaluator = await run_in_threadpool(store.authenticate, credentials.strip())
                else:
                    cookie = request.cookies.get(COOKIE_NAME)
                    if cookie is None:
                        store.authenticate(None)  # raises InvalidToken: no token given
                    evaluator = await run_in_threadpool(store.session, cookie)
                    if method not in _SAFE_METHODS and not _same_origin(request, strict=True):
                        return _json_error(403, "forbidden", "Cross-site request refused: a change made with the "
                                           "login cookie must come from this server's pages; other clients send "
                                           "'Authorization: Bearer <token>'.")
                if (path.startswith("/api/admin/") or path == "/api/export") and not evaluator.is_admin:
                    return _json_error(403, "forbidden", _not_admin(evaluator))
                request.state.evaluator = evaluator
            elif method == "POST" and path in (*_PAGE_POSTS, "/login", "/logout"):
                if not _same_origin(request):
                    if path.startswith("/chat"):
                        return HTMLResponse("<p>Cross-site request refused.</p>", status_code=403)
                    if path in ("/login", "/logout"):
                        return HTMLResponse("<p>Cross-site login or logout refused.</p>", status_code=403)
                    return _redirect("/", error="Cross-site request refused.")
                if path in _PAGE_POSTS:
                    evaluator = await run_in_threadpool(_page_evaluator, request)
                    if evaluator is None:
                        return _redirect("/login")
        except InvalidToken as exc:
            return _json_error(401, "unauthorized", str(exc), {"WWW-Authenticate": "Bearer"})
        except StoreUnavailable as exc:
            return _json_error(503, "unavailable", str(exc))
        return None

    async def _read_body(self, request: Request, receive: Callable) -> tuple[Callable, Response | None]:
        limit = self.max_body_bytes
        too_large = _json_error(
            413, "too_large", f"The request body is larger than this server accepts ({limit} bytes); send less "
            "(e.g. smaller batches of queries), or ask the admin to raise max_body_bytes.")
        declared = request.headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()):
                return receive, _json_error(400, "invalid_request", f"Content-Length must be a number; got {declared!r:.40}.")
            if int(declared) > limit:
                return receive, too_large
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return receive, too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay, None


def _receipt(store: FeedbackStore, receipt: Receipt, response: Response) -> ReceiptOut:
    response.status_code = 200 if receipt.replayed else 201
    event = receipt.event
    return ReceiptOut(
        event_id=event.id,
        query_id=event.query_id,
        type=event.type,
        ref=event.ref,
        replayed=receipt.replayed,
        progress=ProgressOut(**store.progress(event.evaluator_id).to_json()),
    )


# --------------------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------------------


def create_app(
    store: str | os.PathLike[str] | FeedbackStore,
    *,
    guidelines: Mapping[str, str] | None = None,
    title: str = "instruct-env feedback",
    cookie_secure: bool = False,
    responder: Responder | None = None,
    policy_name: str = "",
    max_body_bytes: int = MAX_BODY_BYTES,
    session_ttl: float = SESSION_TTL,
    chat_workers: int = 2,
    **store_options: Any,
) -> FastAPI:
    """Build the FastAPI application.

    Args:
        store: A store URL (``sqlite:///feedback.db``, a path, ``postgresql://...``) or an open
            :class:`FeedbackStore` (then the caller closes it).
        guidelines: Kind name -> guidelines shown on that kind's page (replacing the default).
        title: Shown in the page header.
        cookie_secure: Mark the login cookie ``Secure`` (set it when serving over HTTPS).
        responder: The policy the ``/chat`` page talks to (see :data:`Responder`); ``None``
            shows that no policy is loaded.
        policy_name: Shown on the chat page and stored in each reply's query metadata.
        max_body_bytes: Longest request body accepted; longer ones get 413 before they are read.
        session_ttl: Seconds a page login lasts (the cookie's session then ends; log in again).
        chat_workers: Threads generating chat replies, apart from the API's; each evaluator has at
            most one reply in progress, and at most ``4 * chat_workers`` wait.
        **store_options: Passed to :class:`FeedbackStore` (``min_evaluators``, ``gold_rate``,
            ``assignment_ttl``, ``seed``, ``synchronous``, ``busy_timeout``: 5 s here, so that a
            database locked elsewhere answers 503 soon) when ``store`` is a URL.

    Raises:
        ConfigError: an unknown kind in ``guidelines``, store options given with an open store,
            a ``responder`` that is not callable, a limit that is not a positive number.
        StoreUnavailable: the store cannot be written (e.g. a read-only file).
    """
    for name, value in (("max_body_bytes", max_body_bytes), ("chat_workers", chat_workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1; got {value!r}.")
    if isinstance(session_ttl, bool) or not isinstance(session_ttl, (int, float)) or not 0 < session_ttl < float("inf"):
        raise ConfigError(f"session_ttl must be a number of seconds > 0; got {session_ttl!r}.")
    if responder is not None and not callable(responder):
        raise ConfigError(
            f"responder must be a function from a list of chat messages to the reply text; got "
            f"{type(responder).__name__}."
        )
    if isinstance(store, FeedbackStore):
        if store_options:
            raise ConfigError(
                f"Store options {sorted(store_options)} were given with an already open FeedbackStore; "
                "pass a URL instead, or set them when opening the store."
            )
        owned = False
    else:
        store = FeedbackStore(store, **{"busy_timeout": 5.0, **store_options})
        owned = True
    texts = {name: kind.guidelines for name, kind in KINDS.items()}
    for name, text in (guidelines or {}).items():
        if name not in KINDS:
            make_kind(name)  # raises UnknownNameError with a suggestion
        texts[name] = str(text)

    chat_pool = ThreadPoolExecutor(max_workers=chat_workers, thread_name_prefix="instruct-env-chat")
    health_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="instruct-env-health")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        chat_pool.shutdown(wait=False, cancel_futures=True)
        health_pool.shutdown(wait=False, cancel_futures=True)
        if owned:
            store.close()

    app = FastAPI(
        title=title,
        summary="Collect human feedback on language-model outputs (instruct-env).",
        version="1",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.guidelines = texts
    app.state.title = title
    app.state.cookie_secure = cookie_secure
    app.state.responder = responder
    app.state.policy_name = str(policy_name)
    app.state.session_ttl = float(session_ttl)
    app.state.chat_pool = chat_pool
    app.state.chat_waiting_limit = 4 * chat_workers
    app.state.chat_busy = set()  # evaluators with a reply in progress (changed on the event loop only)
    app.state.health_pool = health_pool
    app.state.health_check = None  # the database check in progress, shared by concurrent /api/health calls
    app.add_middleware(_Guard, max_body_bytes=max_body_bytes)
    _add_error_handlers(app)
    _add_api(app)
    _add_pages(app)
    _add_chat(app)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    def handle(request: Request, exc: Exception) -> JSONResponse:
        for cls, status, code in _STATUS:
            if isinstance(exc, cls):
                headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
                return JSONResponse({"error": code, "detail": str(exc)}, status_code=status, headers=headers)
        raise exc

    app.add_exception_handler(InstructEnvError, handle)

    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors(), exclude={"input", "ctx", "url"})
        parts = []
        for e in errors:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return JSONResponse(
            {"error": "invalid_request", "detail": "; ".join(parts) or "Malformed request.", "errors": errors},
            status_code=422,
        )

    app.add_exception_handler(RequestValidationError, invalid_request)

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return JSONResponse(
            {"error": code, "detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    app.add_exception_handler(StarletteHTTPException, http_error)

    async def unstorable_text(request: Request, exc: UnicodeError) -> JSONResponse:
        # e.g. a lone surrogate ("\\ud800" in JSON) that reached code hashing or storing the text
        return _json_error(422, "invalid_request", "Text must be valid Unicode (no lone surrogates); "
                           "remove the character and send the request again.")

    app.add_exception_handler(UnicodeError, unstorable_text)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.error("Unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
        return _json_error(500, "internal_error", "The server failed unexpectedly; the details are in its log.")

    app.add_exception_handler(Exception, unexpected)


def _add_api(app: FastAPI) -> None:
    # Route functions are plain ``def``: FastAPI runs them in its thread pool, and the store
    # keeps one database connection per thread.

    @app.get("/api/health", tags=["meta"], summary="Liveness and database check (no token needed).",
             responses={503: {"description": "The database does not answer."}})
    async def health(request: Request) -> JSONResponse:
        # The check runs in a thread of its own, so a saturated request pool cannot delay it, and
        # concurrent calls share one check.
        state = request.app.state
        if state.health_check is None or state.health_check.done():
            state.health_check = state.health_pool.submit(_store(request).ping)
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(state.health_check)), timeout=2.0)
        except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
            return JSONResponse({"status": "unavailable", "database": "not answering within 2 s"}, status_code=503)
        except InstructEnvError as exc:  # StoreUnavailable, or a store that was closed
            return JSONResponse({"status": "unavailable", "database": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    @app.get("/api/next", tags=["evaluator"], response_model=NextOut, responses=_ERRORS,
             summary="The query you should answer next.")
    def next_query(request: Request, evaluator: EvaluatorDep) -> NextOut:
        store = _store(request)
        view = store.next_query(evaluator.id)
        return NextOut(
            query=None if view is None else _view_out(view),
            progress=ProgressOut(**store.progress(evaluator.id).to_json()),
        )

    @app.get("/api/queries/{query_id}", tags=["evaluator"], response_model=QueryOut, responses=_ERRORS,
             summary="One of your assigned queries, with your current answer.")
    def get_query(query_id: IdPath, request: Request, evaluator: EvaluatorDep) -> QueryOut:
        return _view_out(_store(request).view(evaluator.id, query_id))

    @app.post("/api/answers", tags=["evaluator"], response_model=ReceiptOut, status_code=201, responses=_ERRORS,
              summary="Submit an answer (201), or get the first reply again for a repeated idempotency key (200).")
    def submit(
        body: AnswerIn,
        request: Request,
        response: Response,
        evaluator: EvaluatorDep,
        idempotency_key: KeyHeader = None,
    ) -> ReceiptOut:
        store = _store(request)
        receipt = store.submit(
            evaluator.id, body.query_id, body.answer, edit=body.edit,
            idempotency_key=_one_key(body.idempotency_key, idempotency_key),
        )
        return _receipt(store, receipt, response)

    @app.post("/api/skip", tags=["evaluator"], response_model=ReceiptOut, status_code=201, responses=_ERRORS,
              summary="Skip a query, optionally saying why.")
    def skip(
        body: SkipIn,
        request: Request,
        response: Response,
        evaluator: EvaluatorDep,
        idempotency_key: KeyHeader = None,
    ) -> ReceiptOut:
        store = _store(request)
        receipt = store.skip(
            evaluator.id, body.query_id, body.reason,
            idempotency_key=_one_key(body.idempotency_key, idempotency_key),
        )
        return _receipt(store, receipt, response)

    @app.post("/api/undo", tags=["evaluator"], response_model=ReceiptOut, status_code=201, responses=_ERRORS,
              summary="Undo your newest answer, edit or skip; the query comes back to your queue.")
    def undo(
        request: Request,
        response: Response,
        evaluator: EvaluatorDep,
        body: UndoIn | None = None,
        idempotency_key: KeyHeader = None,
    ) -> ReceiptOut:
        store = _store(request)
        key = _one_key(None if body is None else body.idempotency_key, idempotency_key)
        return _receipt(store, store.undo(evaluator.id, idempotency_key=key), response)

    @app.get("/api/progress", tags=["evaluator"], response_model=ProgressOut, responses=_ERRORS,
             summary="How many queries you answered and skipped, and how many are left.")
    def progress(request: Request, evaluator: EvaluatorDep) -> ProgressOut:
        return ProgressOut(**_store(request).progress(evaluator.id).to_json())

    @app.get("/api/export", tags=["admin"], responses=_ERRORS,
             summary="JSON Lines: the event log (format=events, from id > since) or training records.")
    def export(
        request: Request,
        admin: AdminDep,
        format: Literal["events", "preferences", "thumbs", "sft"] = "events",
        since: Annotated[int, QueryParam(ge=0, le=MAX_ID,
                                         description="Watermark: only events with a larger id (events only).")] = 0,
        include_gold: bool = False,
    ) -> StreamingResponse:
        from instruct_env.feedback.export import event_records, export_records

        store = _store(request)
        if format == "events":
            records = event_records(store, since=since)
        else:
            records = iter(export_records(store, format, include_gold=include_gold))
        lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        return StreamingResponse(lines, media_type="application/x-ndjson")

    @app.post("/api/admin/evaluators", tags=["admin"], response_model=EvaluatorOut, status_code=201,
              responses=_ERRORS, summary="Create an evaluator; the reply holds its token, shown only once.")
    def add_evaluator(body: EvaluatorIn, request: Request, admin: AdminDep) -> EvaluatorOut:
        evaluator, token = _store(request).add_evaluator(body.name, body.role)
        return EvaluatorOut(id=evaluator.id, name=evaluator.name, role=evaluator.role, token=token)

    @app.post("/api/admin/evaluators/{evaluator_id}/revoke", tags=["admin"], response_model=EvaluatorOut,
              responses=_ERRORS, summary="Revoke an evaluator's token and end their sessions (their answers stay).")
    def revoke(evaluator_id: IdPath, request: Request, admin: AdminDep) -> EvaluatorOut:
        if evaluator_id == admin.id:
            raise FeedbackConflict("You cannot revoke your own token; ask another admin, or use "
                                   "'instruct-env revoke-token' on the server.")
        evaluator = _store(request).revoke_token(evaluator_id)
        return EvaluatorOut(id=evaluator.id, name=evaluator.name, role=evaluator.role)

    @app.get("/api/admin/evaluators", tags=["admin"], response_model=list[EvaluatorOut], responses=_ERRORS,
             summary="All evaluators (without tokens).")
    def list_evaluators(request: Request, admin: AdminDep) -> list[EvaluatorOut]:
        return [EvaluatorOut(id=e.id, name=e.name, role=e.role) for e in _store(request).evaluators()]

    @app.post("/api/admin/queries", tags=["admin"], response_model=QueriesOut, status_code=201, responses=_ERRORS,
              summary="Add queries; all are stored or none (201), or get the first ids again for a repeated "
                      "idempotency key (200).")
    def add_queries(body: QueriesIn, request: Request, response: Response, admin: AdminDep,
                    idempotency_key: KeyHeader = None) -> QueriesOut:
        ids = _store(request).add_queries([q.model_dump() for q in body.queries],
                                          idempotency_key=_one_key(body.idempotency_key, idempotency_key))
        if ids.replayed:
            response.status_code = 200
        return QueriesOut(ids=ids)

    @app.get("/api/admin/queries", tags=["admin"], response_model=StoredQueriesOut, responses=_ERRORS,
             summary="Stored queries by id (unknown ids are left out), in id order.")
    def stored_queries(
        request: Request,
        admin: AdminDep,
        ids: Annotated[list[int], QueryParam(min_length=1, max_length=1000, description="Query ids.")],
    ) -> StoredQueriesOut:
        found = _store(request).queries(ids=ids)
        return StoredQueriesOut(queries=[
            StoredQueryOut(id=qid, kind=q.kind, instruction=q.instruction, completions=list(q.completions),
                           context=q.context, options=dict(q.options),
                           gold=None if q.gold is None else dict(q.gold), selector=q.selector, score=q.score,
                           metadata=dict(q.metadata), created=q.created)
            for qid, q in found.items()])

    @app.get("/api/admin/metrics", tags=["admin"], responses=_ERRORS,
             summary="Per-evaluator counts and gold accuracy; Krippendorff's alpha per kind.")
    def metrics(request: Request, admin: AdminDep) -> dict[str, Any]:
        return _store(request).metrics()


# --------------------------------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------------------------------


@cache
def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


@cache
def _script() -> str:
    return (TEMPLATES / "shortcuts.js").read_text(encoding="utf-8")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _redirect(path: str, **params: str) -> RedirectResponse:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v})
    return RedirectResponse(path + ("?" + query if query else ""), status_code=303)


async def _form(request: Request) -> dict[str, str]:
    """Parse an ``application/x-www-form-urlencoded`` body (no python-multipart needed)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}


def _form_id(form: Mapping[str, str], name: str) -> int:
    """An id or count from a page form: ASCII digits for a 64-bit integer, else ``ValueError``."""
    value = form.get(name, "").strip()
    if not (value.isascii() and value.isdigit() and int(value) <= MAX_ID):
        raise ValueError(f"{name} must be a whole number from 0 to {MAX_ID}; got {value!r:.40}.")
    return int(value)


def _page_evaluator(request: Request) -> Evaluator | None:
    """The evaluator of the request's session cookie, or ``None`` (not logged in, ended or expired)."""
    try:
        return _store(request).session(request.cookies.get(COOKIE_NAME))
    except InvalidToken:
        return None


@cache
def _page_policy() -> str:
    """The pages' Content-Security-Policy: their one inline script (by hash) and inline style, nothing else."""
    script = base64.b64encode(hashlib.sha256(f"\n{_script()}\n".encode()).digest()).decode()
    return (
        f"default-src 'none'; script-src 'sha256-{script}'; style-src 'unsafe-inline'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


def _form_answer(view: QueryView, form: Mapping[str, str]) -> dict[str, Any]:
    """Turn the fields of a kind's page form into an answer for :meth:`FeedbackStore.submit`."""

    def integer(name: str) -> int:
        value = form.get(name, "").strip()
        try:
            return int(value)
        except ValueError:
            raise InvalidAnswer(f"{name} must be a whole number; got {value!r}.") from None

    if view.kind == "rating":
        return {"rating": integer("rating")}
    if view.kind == "thumbs":
        return {"thumb": form.get("thumb", "")}
    if view.kind == "pairwise":
        answer: dict[str, Any] = {"choice": form.get("choice", "")}
        if form.get("strength", "").strip() and answer["choice"] in ("A", "B"):
            answer["strength"] = integer("strength")
        return answer
    if view.kind == "ranking":
        parts = [p for p in form.get("ranking", "").replace(" ", ",").split(",") if p]
        try:
            return {"ranking": [int(p) - 1 for p in parts]}  # the page numbers responses from 1
        except ValueError:
            raise InvalidAnswer(
                f"ranking must be response numbers separated by commas, e.g. 2,1,3; got {form.get('ranking')!r}."
            ) from None
    if view.kind == "comment":
        return {"comment": form.get("comment", "")}
    return {"completion": form.get("completion", "").replace("\r\n", "\n")}


def _render_query(view: QueryView) -> str:
    context = f'<h2>Input</h2>\n<div class="prompt" id="context">{_e(view.context)}</div>' if view.context else ""
    prompt = _template("prompt.html").substitute(instruction=_e(view.instruction), context_block=context)
    fields: dict[str, Any] = {
        "prompt": prompt,
        "query_id": view.id,
        "answer_key": uuid.uuid4().hex,
        "completion": _e(view.completions[0]),
    }
    if view.kind == "rating":
        kind = make_kind("rating", **view.options)
        choices = []
        for score in range(kind.low, kind.high + 1):
            key = kind.digit_of(score) or ""
            hint = f" (<kbd>{key}</kbd>)" if key else ""
            required = " required" if score == kind.low else ""
            choices.append(
                f'<label><input type="radio" name="rating" value="{score}" data-key="{key}"{required}>'
                f"<span>{score}{hint}</span></label>"
            )
        fields.update(low=kind.low, high=kind.high, choices="\n    ".join(choices))
    elif view.kind == "pairwise":
        fields.update(left=_e(view.completions[0]), right=_e(view.completions[1]))
    elif view.kind == "ranking":
        items = "\n".join(
            f'<h2>Response {i + 1}</h2>\n<div class="completion" id="completion-{i}">{_e(c)}</div>'
            for i, c in enumerate(view.completions)
        )
        fields.update(items=items, count=len(view.completions))
    return _template(f"{view.kind}.html").substitute(fields)


def _flash(notice: str, error: str) -> str:
    return "".join(
        f'<div class="flash {cls}" id="flash-{cls}">{_e(text)}</div>' for cls, text in (("notice", notice), ("error", error)) if text
    )


_NAV = '<a href="/" id="nav-queue">Queue</a><a href="/chat" id="nav-chat">Chat</a>'
_COMMON_KEYS = [("U", "undo your last answer"), ("?", "show or hide this help"), ("Esc", "close help, leave a text box")]


def _layout(
    request: Request, evaluator: Evaluator, *, kind: str, main: str, flash: str, skip_section: str,
    shortcuts: list[tuple[str, str]], guidelines: str, undo_next: str,
) -> str:
    progress = _store(request).progress(evaluator.id)
    rows = "".join(f"<tr><td><kbd>{_e(keys)}</kbd></td><td>{_e(text)}</td></tr>" for keys, text in shortcuts)
    return _template("base.html").substitute(
        title=_e(request.app.state.title),
        nav=_NAV,
        kind=kind,
        answered=progress.answered,
        skipped=progress.skipped,
        remaining=progress.remaining,
        evaluator_name=_e(evaluator.name),
        flash=flash,
        main=main,
        skip_section=skip_section,
        undo_key=uuid.uuid4().hex,
        undo_next=_e(undo_next),
        guidelines=_e(guidelines),
        help_rows=rows,
        script=_script(),
    )


def _render_page(request: Request, evaluator: Evaluator, view: QueryView | None, notice: str, error: str) -> str:
    kind = view.kind if view is not None else "done"
    if view is None:
        main, skip_section, shortcuts = _template("done.html").substitute(), "", []
    else:
        main = _render_query(view)
        skip_section = _template("skip.html").substitute(query_id=view.id, skip_key=uuid.uuid4().hex)
        shortcuts = make_kind(view.kind, **view.options).shortcuts(len(view.completions))
        shortcuts += [("Enter", "submit the answer"), ("S", "skip (type an optional reason, Enter to confirm)")]
    guidelines = request.app.state.guidelines.get(kind, "When you are ready, reload the page to check for new queries.")
    return _layout(
        request, evaluator, kind=kind, main=main, flash=_flash(notice, error), skip_section=skip_section,
        shortcuts=shortcuts + _COMMON_KEYS, guidelines=guidelines, undo_next="/",
    )


def _add_pages(app: FastAPI) -> None:
    def login_page(request: Request, error: str = "", status: int = 200) -> HTMLResponse:
        message = f'<p class="error" id="login-error">{_e(error)}</p>' if error else ""
        body = _template("login.html").substitute(title=_e(request.app.state.title), error=message)
        return HTMLResponse(body, status_code=status)

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request) -> HTMLResponse:
        return login_page(request)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if not _same_origin(request):
            return login_page(request, "Cross-site login refused.", 403)
        token = (await _form(request)).get("token", "").strip()
        ttl = request.app.state.session_ttl
        try:
            _, key = await run_in_threadpool(_store(request).open_session, token, ttl)
        except InvalidToken as exc:
            return login_page(request, str(exc), 401)
        response = _redirect("/")
        response.set_cookie(
            COOKIE_NAME, key, max_age=int(ttl), httponly=True, samesite="strict",
            secure=request.app.state.cookie_secure, path="/",
        )
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        if not _same_origin(request):
            return HTMLResponse("<p>Cross-site login or logout refused.</p>", status_code=403)
        await run_in_threadpool(_store(request).end_session, request.cookies.get(COOKIE_NAME))  # the session ends here
        response = _redirect("/login")
        response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict",
                               secure=request.app.state.cookie_secure)
        return response

    @app.get("/", include_in_schema=False)
    def evaluate(request: Request, notice: str = "", error: str = "") -> Response:
        evaluator = _page_evaluator(request)
        if evaluator is None:
            return _redirect("/login")
        view = _store(request).next_query(evaluator.id)
        return HTMLResponse(_render_page(request, evaluator, view, notice[:300], error[:500]))

    async def page_action(request: Request, action: str) -> Response:
        if not _same_origin(request):
            return _redirect("/", error="Cross-site request refused.")
        evaluator = await run_in_threadpool(_page_evaluator, request)
        if evaluator is None:
            return _redirect("/login")
        form = await _form(request)
        store = _store(request)
        key = form.get("idempotency_key") or None
        try:
            if action == "undo":
                receipt = await run_in_threadpool(lambda: store.undo(evaluator.id, idempotency_key=key))
                notice = f"Undid your last answer (query {receipt.event.query_id})."
                after = form.get("next", "/")
                if _CHAT_PATH.fullmatch(after):  # back to the chat page it came from
                    return RedirectResponse(f"{after}{'&' if '?' in after else '?'}notice={urllib.parse.quote(notice)}", status_code=303)
                return _redirect("/", notice=notice)
            try:
                query_id = _form_id(form, "query_id")
            except ValueError:
                return _redirect("/", error="The form has no valid query id; reload the page.")
            if action == "skip":
                reason = form.get("reason") or None
                await run_in_threadpool(lambda: store.skip(evaluator.id, query_id, reason, idempotency_key=key))
                return _redirect("/", notice="Skipped. Press U to undo.")
            view = await run_in_threadpool(store.view, evaluator.id, query_id)
            answer = _form_answer(view, form)
            await run_in_threadpool(lambda: store.submit(evaluator.id, query_id, answer, idempotency_key=key))
            return _redirect("/", notice="Saved. Press U to undo.")
        except InstructEnvError as exc:
            return _redirect("/", error=str(exc))

    @app.post("/answer", include_in_schema=False)
    async def answer(request: Request) -> Response:
        return await page_action(request, "answer")

    @app.post("/skip", include_in_schema=False)
    async def skip(request: Request) -> Response:
        return await page_action(request, "skip")

    @app.post("/undo", include_in_schema=False)
    async def undo(request: Request) -> Response:
        return await page_action(request, "undo")


# --------------------------------------------------------------------------------------------------
# The chat page
# --------------------------------------------------------------------------------------------------

_CHAT_PATH = re.compile(r"/chat(\?c=\d{1,18})?")  # where an undo may send the evaluator back to
CHAT_GUIDELINES = (
    "Chat with the policy as a user would. After each reply give a thumb: up if you would accept the reply "
    "as it is, down if not. Press the other thumb to change your mind; U undoes your last thumb. Each reply "
    "is saved with the conversation before it and used to train the reward model."
)
_CHAT_KEYS = [
    ("M", "type a message"),
    ("Ctrl+Enter", "send the message"),
    ("Y / +", "thumbs up for the newest reply"),
    ("N / -", "thumbs down for the newest reply"),
]


def _status_of(exc: Exception) -> int:
    return next((status for cls, status, _ in _STATUS if isinstance(exc, cls)), 400)


def chat_messages(turns: list[ChatTurn], message: str) -> list[dict[str, str]]:
    """The conversation handed to the responder: earlier turns, then the new message."""
    messages = []
    for t in turns:
        messages += [{"role": "user", "content": t.message}, {"role": "assistant", "content": t.reply}]
    return messages + [{"role": "user", "content": message}]


def _render_chat(
    request: Request,
    evaluator: Evaluator,
    conversation: int | None,
    turns: list[ChatTurn],
    *,
    notice: str = "",
    error: str = "",
    draft: str = "",
) -> str:
    store = _store(request)
    if request.app.state.responder is None:
        note = (
            '<p class="note" id="no-policy">No policy is loaded, so there is nobody to chat with. An admin '
            "starts the server with <code>instruct-env serve --policy PATH</code> to load one.</p>"
        )
    else:
        name = request.app.state.policy_name
        note = f'<p id="policy">Policy: <code>{_e(name)}</code></p>' if name else ""
    rendered = []
    for t in turns:
        last = t is turns[-1]
        rendered.append(_template("chat_turn.html").substitute(
            turn=t.turn, message=_e(t.message), reply=_e(t.reply), query_id=t.query_id,
            conversation=t.conversation, thumb_key=uuid.uuid4().hex,
            up_pressed="true" if t.thumb == "up" else "false",
            down_pressed="true" if t.thumb == "down" else "false",
            up_key=" (<kbd>Y</kbd>)" if last else "", down_key=" (<kbd>N</kbd>)" if last else "",
        ))
    listed = store.conversations(evaluator.id)
    current = ' aria-current="page"'
    items = "".join(
        f'<li><a href="/chat?c={c.conversation}"{current if c.conversation == conversation else ""}>'
        f"{_e(c.message[:60])}{'...' if len(c.message) > 60 else ''}</a></li>"
        for c in listed
    )
    others = f'<h2>Your conversations</h2>\n<ul id="conversations">{items}</ul>' if items else ""
    main = _template("chat.html").substitute(
        policy_note=note,
        turns="\n".join(rendered) or '<p id="empty-conversation">Send a message to start a conversation.</p>',
        conversation="" if conversation is None else conversation,
        turn=len(turns),
        max_chars=MAX_CHAT_CHARS,
        draft=_e(draft),
        disabled=" disabled" if request.app.state.responder is None else "",
        conversations=others,
    )
    return _layout(
        request, evaluator, kind="chat", main=main, flash=_flash(notice, error), skip_section="",
        shortcuts=_CHAT_KEYS + _COMMON_KEYS, guidelines=CHAT_GUIDELINES,
        undo_next="/chat" if conversation is None else f"/chat?c={conversation}",
    )


def _add_chat(app: FastAPI) -> None:
    @app.get("/chat", include_in_schema=False)
    def chat_page(request: Request, c: int | None = None, new: bool = False, notice: str = "", error: str = "") -> Response:
        evaluator = _page_evaluator(request)
        if evaluator is None:
            return _redirect("/login")
        store = _store(request)
        conversation, turns, status = c, [], 200
        if conversation is None and not new:  # the newest conversation, if there is one
            latest = store.conversations(evaluator.id)
            conversation = latest[0].conversation if latest else None
        if conversation is not None:
            try:
                turns = store.chat(evaluator.id, conversation)
            except QueryNotFound as exc:
                conversation, error, status = None, str(exc), 404
        page = _render_chat(request, evaluator, conversation, turns, notice=notice[:300], error=error[:500])
        return HTMLResponse(page, status_code=status)

    async def refuse(request: Request, evaluator: Evaluator, status: int, error: str,
                     conversation: int | None = None, draft: str = "") -> HTMLResponse:
        """The chat page again, with the error, the evaluator's unsent text and a 4xx/5xx status."""

        def render() -> str:
            turns: list[ChatTurn] = []
            shown = conversation
            if shown is not None:
                try:
                    turns = _store(request).chat(evaluator.id, shown)
                except QueryNotFound:
                    shown = None
            return _render_chat(request, evaluator, shown, turns, error=error, draft=draft)

        return HTMLResponse(await run_in_threadpool(render), status_code=status)

    async def chat_post(request: Request) -> Response | tuple[Evaluator, dict[str, str]]:
        """A chat page post's evaluator and form, or the response refusing it (cross-site, not logged in)."""
        if not _same_origin(request):
            return HTMLResponse("<p>Cross-site request refused.</p>", status_code=403)
        evaluator = await run_in_threadpool(_page_evaluator, request)
        if evaluator is None:
            return _redirect("/login")
        return evaluator, await _form(request)

    @app.post("/chat", include_in_schema=False)
    async def chat_send(request: Request) -> Response:
        posted = await chat_post(request)
        if isinstance(posted, Response):
            return posted
        evaluator, form = posted
        message = form.get("message", "").replace("\r\n", "\n")
        try:
            conversation = _form_id(form, "conversation") if form.get("conversation", "").strip() else None
            turn = _form_id(form, "turn")
        except ValueError:
            return await refuse(request, evaluator, 422, "The form has no valid conversation or turn number; "
                                "reload the page.", draft=message)
        responder = request.app.state.responder
        if responder is None:
            return await refuse(request, evaluator, 503, "No policy is loaded, so the message was not sent; "
                                "ask an admin to start the server with --policy.", conversation, message)
        if not message.strip() or len(message) > MAX_CHAT_CHARS:
            return await refuse(request, evaluator, 422, f"A message must have 1 to {MAX_CHAT_CHARS} characters; "
                                f"got {len(message.strip())}.", conversation, message[:MAX_CHAT_CHARS])
        store = _store(request)
        try:
            turns = [] if conversation is None else await run_in_threadpool(store.chat, evaluator.id, conversation)
            if turn != len(turns):  # checked before generating; add_chat_turn checks again
                raise FeedbackConflict(
                    f"This page is out of date: the conversation has {len(turns)} turn(s), the page showed {turn}. "
                    "Your message was not sent; check the conversation and send it again."
                )
            if turn >= MAX_CHAT_TURNS:  # checked before generating; add_chat_turn checks again
                raise FeedbackConflict(f"This conversation has reached its limit of {MAX_CHAT_TURNS} turns; "
                                       "start a new one. Your message was not sent.")
        except (QueryNotFound, FeedbackConflict) as exc:
            return await refuse(request, evaluator, _status_of(exc), str(exc), conversation, message)
        state = request.app.state
        if evaluator.id in state.chat_busy:
            return await refuse(request, evaluator, 429, "Your previous message is still being answered; wait for "
                                "its reply, then send this one.", conversation, message)
        if len(state.chat_busy) >= state.chat_waiting_limit:
            return await refuse(request, evaluator, 503, "The policy is busy answering other evaluators; send your "
                                "message again in a moment.", conversation, message)
        state.chat_busy.add(evaluator.id)
        try:  # in the chat pool: a slow policy holds up only the chat, never the API's threads
            reply = await asyncio.wrap_future(state.chat_pool.submit(responder, chat_messages(turns, message)))
        except InstructEnvError as exc:  # e.g. a message too long for the policy's context
            return await refuse(request, evaluator, 422, str(exc), conversation, message)
        except Exception:  # a broken policy must not take the page down; its details are for the log only
            _log.exception("The chat responder failed")
            return await refuse(request, evaluator, 502, "The policy failed to reply; try again, or tell an admin "
                                "(the details are in the server's log).", conversation, message)
        finally:
            state.chat_busy.discard(evaluator.id)
        if not isinstance(reply, str):
            return await refuse(request, evaluator, 502, f"The policy returned a {type(reply).__name__} instead of "
                                "text; tell an admin.", conversation, message)
        metadata = {"policy": request.app.state.policy_name} if request.app.state.policy_name else {}
        try:
            added = await run_in_threadpool(
                lambda: store.add_chat_turn(evaluator.id, conversation, turn, message, reply, metadata)
            )
        except InstructEnvError as exc:
            return await refuse(request, evaluator, _status_of(exc), str(exc), conversation, message)
        return RedirectResponse(f"/chat?c={added.conversation}#turn-{added.turn}", status_code=303)

    @app.post("/chat/thumb", include_in_schema=False)
    async def chat_thumb(request: Request) -> Response:
        posted = await chat_post(request)
        if isinstance(posted, Response):
            return posted
        evaluator, form = posted
        try:
            query_id, conversation = _form_id(form, "query_id"), _form_id(form, "conversation")
        except ValueError:
            return await refuse(request, evaluator, 422, "The form has no valid reply or conversation id; reload the page.")
        thumb, key = form.get("thumb", ""), form.get("idempotency_key") or None
        store = _store(request)

        def rate() -> bool:
            view = store.view(evaluator.id, query_id)  # 404 / 403 for someone else's reply
            if view.kind != "thumbs":
                raise InvalidAnswer(f"Query {query_id} is a {view.kind!r} query, not a chat reply; answer it on the queue page.")
            if view.status == "answered" and view.answer == {"thumb": thumb}:
                return False  # a repeated click: nothing new to store
            store.submit(evaluator.id, query_id, {"thumb": thumb}, edit=view.status == "answered", idempotency_key=key)
            return True

        try:
            await run_in_threadpool(rate)
        except InstructEnvError as exc:
            return await refuse(request, evaluator, _status_of(exc), str(exc), conversation)
        return RedirectResponse(f"/chat?c={conversation}&notice=Saved.+Press+U+to+undo.", status_code=303)


def serve(
    store_url: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "info",
    max_connections: int = 200,
    keep_alive: float = 5.0,
    **options: Any,
) -> None:
    """Run the feedback server until interrupted (binds 127.0.0.1 by default).

    Args:
        store_url: Where the store lives (see :func:`~instruct_env.feedback.store.parse_store_url`).
        host: Interface to bind; use ``0.0.0.0`` only behind HTTPS and with care.
        port: TCP port.
        log_level: uvicorn's log level.
        max_connections: Connections and requests handled at once; more are answered 503 at once.
        keep_alive: Seconds an idle connection is kept open.
        **options: Passed to :func:`create_app` (``guidelines``, ``min_evaluators``, ``gold_rate``,
            ``cookie_secure``, ``max_body_bytes``, ``session_ttl``...).

    Per-client rate limits and TLS are the job of a reverse proxy in front of the server (see
    ``docs/feedback.md``).
    """
    uvicorn = require("uvicorn", "server")
    uvicorn.run(create_app(store_url, **options), host=host, port=port, log_level=log_level,
                limit_concurrency=max_connections, timeout_keep_alive=keep_alive)

