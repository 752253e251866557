"""The guard in front of every route: tokens and sessions, same-origin checks, body limits, headers.

Every request is checked before the application reads its body: the ``/api`` token or session
(401), the origin of a change made with the login cookie (403), the session of a page form (303 to
``/login``) and the body's size (413). Every response gets the security headers.
"""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
from functools import cache

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from instruct_env.feedback.errors import InvalidToken, StoreUnavailable
from instruct_env.feedback.server.errors import error_response, json_error
from instruct_env.feedback.server.web import redirect, script
from instruct_env.feedback.store import Evaluator, FeedbackStore

__all__ = [
    "COOKIE_NAME",
    "MAX_BODY_BYTES",
    "SAFE_METHODS",
    "Guard",
    "not_admin",
    "page_evaluator",
    "posted_evaluator",
    "same_origin",
    "store_of",
]

COOKIE_NAME = "instruct_env_session"  # holds a session key (see FeedbackStore.open_session), never the token
MAX_BODY_BYTES = 1 << 20  # default request-body limit: 10,000 queries of ~100 characters fit
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_PAGE_POSTS = ("/answer", "/skip", "/undo", "/chat", "/chat/thumb")  # need a session; /login and /logout do not
_THIRD_PARTY_PAGES = ("/docs", "/docs/oauth2-redirect", "/redoc")  # FastAPI's pages load their scripts from a CDN


def store_of(request: Request) -> FeedbackStore:
    """The store the application serves."""
    return request.app.state.store


def not_admin(evaluator: Evaluator) -> str:
    """The message refusing an admin endpoint to ``evaluator``."""
    return f"This endpoint needs the admin role; evaluator {evaluator.name!r} has role {evaluator.role!r}."


def page_evaluator(request: Request) -> Evaluator | None:
    """The evaluator of the request's session cookie, or ``None`` (not logged in, ended or expired)."""
    try:
        return store_of(request).session(request.cookies.get(COOKIE_NAME))
    except InvalidToken:
        return None


def posted_evaluator(request: Request) -> Evaluator:
    """The evaluator of a page form's session, as the :class:`Guard` found it before the body was read."""
    return request.state.evaluator


def same_origin(request: Request, *, strict: bool = False) -> bool:
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


@cache
def _page_policy() -> str:
    """The pages' Content-Security-Policy: their one inline script (by hash) and inline style, nothing else."""
    digest = base64.b64encode(hashlib.sha256(f"\n{script()}\n".encode()).digest()).decode()
    return (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


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


class Guard:
    """ASGI middleware in front of every route.

    In order, before the application sees a request: the ``/api`` token or session is checked
    (401, without reading the body), a cookie-authenticated change must come from this origin
    (403), the page forms need a session (303 to ``/login``), and the body is read up to
    ``max_body_bytes`` (413 from ``Content-Length`` at once, or as soon as more arrives). Every
    response gets the security headers.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check one request, then pass it on (its body already read) or answer it with the refusal."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": _security_headers(path, list(message.get("headers", [])))}
            await send(message)

        request = Request(scope)  # headers and cookies only; the body stays unread
        refusal = await self._check(request)
        if refusal is None and scope["method"] not in SAFE_METHODS:
            receive, refusal = await self._read_body(request, receive)
        if refusal is not None:
            if scope["method"] not in SAFE_METHODS:  # its body may still be arriving: stop reading it
                refusal.headers["connection"] = "close"
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    async def _check(self, request: Request) -> Response | None:
        try:
            if request.url.path.startswith("/api/") and request.url.path != "/api/health":
                return await self._check_api(request)
            if request.method == "POST" and request.url.path in (*_PAGE_POSTS, "/login", "/logout"):
                return await self._check_page_post(request)
        except (InvalidToken, StoreUnavailable) as exc:
            return error_response(exc)
        return None

    async def _check_api(self, request: Request) -> Response | None:
        """Authenticate an API request by its bearer token or its session cookie."""
        path, store = request.url.path, store_of(request)
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            evaluator = await run_in_threadpool(store.authenticate, credentials.strip())
        else:
            cookie = request.cookies.get(COOKIE_NAME)
            if cookie is None:
                store.authenticate(None)  # raises InvalidToken: no token given
            evaluator = await run_in_threadpool(store.session, cookie)
            if request.method not in SAFE_METHODS and not same_origin(request, strict=True):
                return json_error(403, "forbidden", "Cross-site request refused: a change made with the "
                                  "login cookie must come from this server's pages; other clients send "
                                  "'Authorization: Bearer <token>'.")
        if (path.startswith("/api/admin/") or path == "/api/export") and not evaluator.is_admin:
            return json_error(403, "forbidden", not_admin(evaluator))
        request.state.evaluator = evaluator
        return None

    async def _check_page_post(self, request: Request) -> Response | None:
        """A page form must come from this origin, and (but for login and logout) with a session."""
        path = request.url.path
        if not same_origin(request):
            if path.startswith("/chat"):
                return HTMLResponse("<p>Cross-site request refused.</p>", status_code=403)
            if path in ("/login", "/logout"):
                return HTMLResponse("<p>Cross-site login or logout refused.</p>", status_code=403)
            return redirect("/", error="Cross-site request refused.")
        if path in _PAGE_POSTS:
            evaluator = await run_in_threadpool(page_evaluator, request)
            if evaluator is None:
                return redirect("/login")
            request.state.evaluator = evaluator  # the form's handler reads it here (posted_evaluator)
        return None

    async def _read_body(self, request: Request, receive: Receive) -> tuple[Receive, Response | None]:
        limit = self.max_body_bytes
        too_large = json_error(
            413, "too_large", f"The request body is larger than this server accepts ({limit} bytes); send less "
            "(e.g. smaller batches of queries), or ask the admin to raise max_body_bytes.")
        declared = request.headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()):
                return receive, json_error(400, "invalid_request", f"Content-Length must be a number; got {declared!r:.40}.")
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

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay, None
