"""The application: :func:`create_app` wires the store, the guard and the routes; :func:`serve` runs it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from instruct_env._validation import check_int
from instruct_env.error import ConfigError, require
from instruct_env.feedback.kinds import KINDS, make_kind
from instruct_env.feedback.server.api import add_api
from instruct_env.feedback.server.chat import Responder, add_chat
from instruct_env.feedback.server.errors import add_error_handlers
from instruct_env.feedback.server.pages import add_pages
from instruct_env.feedback.server.security import MAX_BODY_BYTES, Guard
from instruct_env.feedback.store import SESSION_TTL, FeedbackStore

__all__ = ["create_app", "serve"]


def _check_options(max_body_bytes: int, session_ttl: float, chat_workers: int, responder: Responder | None) -> None:
    check_int("max_body_bytes", max_body_bytes)
    check_int("chat_workers", chat_workers)
    if isinstance(session_ttl, bool) or not isinstance(session_ttl, (int, float)) or not 0 < session_ttl < float("inf"):
        raise ConfigError(f"session_ttl must be a number of seconds > 0; got {session_ttl!r}.")
    if responder is not None and not callable(responder):
        raise ConfigError(
            f"responder must be a function from a list of chat messages to the reply text; got "
            f"{type(responder).__name__}."
        )


def _open_store(store: str | os.PathLike[str] | FeedbackStore, store_options: Mapping[str, Any]) -> tuple[FeedbackStore, bool]:
    """The store to serve, and whether the application opened it (and so closes it)."""
    if isinstance(store, FeedbackStore):
        if store_options:
            raise ConfigError(
                f"Store options {sorted(store_options)} were given with an already open FeedbackStore; "
                "pass a URL instead, or set them when opening the store."
            )
        return store, False
    return FeedbackStore(store, **{"busy_timeout": 5.0, **store_options}), True


def _guideline_texts(guidelines: Mapping[str, str] | None) -> dict[str, str]:
    """Kind name -> the guidelines its page shows: the kind's own, unless ``guidelines`` replaces them."""
    texts = {name: kind.guidelines for name, kind in KINDS.items()}
    for name, text in (guidelines or {}).items():
        if name not in KINDS:
            make_kind(name)  # raises UnknownNameError with a suggestion
        texts[name] = str(text)
    return texts


def _lifespan(owned: FeedbackStore | None, *pools: ThreadPoolExecutor) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """On shutdown: stop the pools (dropping queued work), then close the store if the app opened it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        if owned is not None:
            owned.close()

    return lifespan


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
    _check_options(max_body_bytes, session_ttl, chat_workers, responder)
    opened, owned = _open_store(store, store_options)
    texts = _guideline_texts(guidelines)
    chat_pool = ThreadPoolExecutor(max_workers=chat_workers, thread_name_prefix="instruct-env-chat")
    health_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="instruct-env-health")
    app = FastAPI(
        title=title,
        summary="Collect human feedback on language-model outputs (instruct-env).",
        version="1",
        lifespan=_lifespan(opened if owned else None, chat_pool, health_pool),
    )
    app.state.store = opened
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
    app.add_middleware(Guard, max_body_bytes=max_body_bytes)
    add_error_handlers(app)
    add_api(app)
    add_pages(app)
    add_chat(app)
    return app


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
