"""How the project's exceptions and the framework's errors become JSON error replies and page messages.

:func:`http_detail` words an exception's message for a JSON reply or a page. Every error reply is ``{"error": <code>, "detail": <message>}``; :data:`STATUS` maps each of the
project's exception types to its HTTP status and code, most specific first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from instruct_env.error import ConfigError, InstructEnvError, UnknownNameError
from instruct_env.feedback import errors as feedback

__all__ = ["STATUS", "add_error_handlers", "error_response", "http_detail", "json_error", "status_of"]

_log = logging.getLogger(__name__)

STATUS: tuple[tuple[type[InstructEnvError], int, str], ...] = (  # most specific first
    (feedback.StoreUnavailable, 503, "unavailable"),
    (feedback.InvalidToken, 401, "unauthorized"),
    (feedback.AccessDenied, 403, "forbidden"),
    (feedback.QueryNotFound, 404, "not_found"),
    (feedback.FeedbackConflict, 409, "conflict"),
    (feedback.InvalidAnswer, 422, "invalid_request"),
    (UnknownNameError, 422, "invalid_request"),
    (ConfigError, 422, "invalid_request"),
)
"""Exception type -> (HTTP status, error code); the first matching row applies."""


# The store's advice names its Python methods; a client of the server reads the same advice in its
# own terms: a JSON reply names the API, a page names what a person does on the pages.
_ADVICE = (  # (the store's words, the API's, the pages')
    (
        "answer the queries that next_query() assigns you.",
        "answer the queries that GET /api/next gives you.",
        "answer the queries that the queue page shows you.",
    ),
    (
        "pass the evaluator's token ('12.<secret>').",
        "send 'Authorization: Bearer <token>' or log in.",
        "enter the evaluator token an admin gave you.",
    ),
)


def http_detail(exc: Exception, *, page: bool = False) -> str:
    """The message of ``exc`` as the server shows it: the store's advice put in the client's terms.

    Every reply and page that shows an exception's message takes it from here.

    Args:
        exc: The exception (usually one of the store's).
        page: ``True`` for an HTML page (words a person acts on: "the queue page"); ``False`` for
            a JSON reply (the API's paths and headers).
    """
    text = str(exc)
    for store_words, api_words, page_words in _ADVICE:
        text = text.replace(store_words, page_words if page else api_words)
    return text


def json_error(status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An error reply: ``{"error": code, "detail": detail}`` with the given status."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def status_of(exc: Exception) -> int:
    """The HTTP status of one of the project's exceptions (400 for one that :data:`STATUS` lacks)."""
    return next((status for cls, status, _ in STATUS if isinstance(exc, cls)), 400)


def error_response(exc: Exception) -> JSONResponse | None:
    """The error reply for an exception that :data:`STATUS` maps, else ``None``.

    A 401 also names the scheme to authenticate with (``WWW-Authenticate: Bearer``).
    """
    for cls, status, code in STATUS:
        if isinstance(exc, cls):
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return json_error(status, code, http_detail(exc), headers)
    return None


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error with a JSON error reply; an unexpected one is logged and answers 500."""

    @app.exception_handler(InstructEnvError)
    def handle(request: Request, exc: InstructEnvError) -> JSONResponse:
        response = error_response(exc)
        if response is None:
            raise exc
        return response

    @app.exception_handler(RequestValidationError)
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

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return json_error(exc.status_code, code, str(exc.detail), exc.headers)

    @app.exception_handler(UnicodeError)
    async def unstorable_text(request: Request, exc: UnicodeError) -> JSONResponse:
        # e.g. a lone surrogate ("\\ud800" in JSON) that reached code hashing or storing the text
        return json_error(422, "invalid_request", "Text must be valid Unicode (no lone surrogates); "
                          "remove the character and send the request again.")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.error("Unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
        return json_error(500, "internal_error", "The server failed unexpectedly; the details are in its log.")
