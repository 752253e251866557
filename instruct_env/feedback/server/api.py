"""The JSON API: ``/api/health``, the evaluator endpoints and the admin endpoints.

Route functions are plain ``def`` where they touch the store: FastAPI runs them in its thread
pool, and the store keeps one database connection per thread.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the annotations of the route
# functions at run time, and they are defined inside the registrars below.

import asyncio
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi import Query as QueryParam
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPBearer

from instruct_env.error import InstructEnvError
from instruct_env.feedback.errors import AccessDenied, FeedbackConflict, InvalidAnswer, InvalidToken
from instruct_env.feedback.server.errors import http_detail
from instruct_env.feedback.server.models import (
    ERRORS,
    AnswerIn,
    EvaluatorIn,
    EvaluatorOut,
    IdPath,
    NextOut,
    ProgressOut,
    QueriesIn,
    QueriesOut,
    QueryOut,
    ReceiptOut,
    SkipIn,
    StoredQueriesOut,
    StoredQueryOut,
    UndoIn,
)
from instruct_env.feedback.server.security import not_admin, store_of
from instruct_env.feedback.store import MAX_ID, Evaluator, FeedbackStore, Receipt

__all__ = ["AdminDep", "EvaluatorDep", "KeyHeader", "add_api", "current_admin", "current_evaluator"]

# Declares the scheme in the OpenAPI description; the Guard does the checking, before the body is read.
_bearer = HTTPBearer(auto_error=False, description="The evaluator token (or the login session's cookie).")


def current_evaluator(request: Request, _: Annotated[Any, Depends(_bearer)]) -> Evaluator:
    """The evaluator whose bearer token (or session cookie) came with the request, as the Guard found it."""
    evaluator = getattr(request.state, "evaluator", None)
    if evaluator is None:  # a route outside the guarded prefix: never expected, refuse rather than guess
        raise InvalidToken("No evaluator token given; send 'Authorization: Bearer <token>' or log in.")
    return evaluator


def current_admin(evaluator: Annotated[Evaluator, Depends(current_evaluator)]) -> Evaluator:
    """The request's evaluator, who must have the admin role (403 otherwise)."""
    if not evaluator.is_admin:
        raise AccessDenied(not_admin(evaluator))
    return evaluator


EvaluatorDep = Annotated[Evaluator, Depends(current_evaluator)]
AdminDep = Annotated[Evaluator, Depends(current_admin)]
KeyHeader = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


def _one_key(body_key: str | None, header_key: str | None) -> str | None:
    if body_key is not None and header_key is not None and body_key != header_key:
        raise InvalidAnswer("The Idempotency-Key header and the body's idempotency_key differ; send one of them.")
    return body_key if body_key is not None else header_key


def _progress(store: FeedbackStore, evaluator_id: int) -> ProgressOut:
    return ProgressOut(**store.progress(evaluator_id).to_json())


def _write(
    request: Request,
    response: Response,
    keys: tuple[str | None, str | None],
    write: Callable[[FeedbackStore, str | None], Receipt],
) -> ReceiptOut:
    """Do one evaluator write with its idempotency key (body, header); 201, or 200 for a replay."""
    store = store_of(request)
    receipt = write(store, _one_key(*keys))
    response.status_code = 200 if receipt.replayed else 201
    event = receipt.event
    return ReceiptOut(
        event_id=event.id,
        query_id=event.query_id,
        type=event.type,
        ref=event.ref,
        replayed=receipt.replayed,
        progress=_progress(store, event.evaluator_id),
    )


def add_api(app: FastAPI) -> None:
    """Register the ``/api`` routes, in the order the OpenAPI description lists them."""
    _add_health(app)
    _add_queue(app)
    _add_writes(app)
    _add_export(app)
    _add_evaluator_admin(app)
    _add_query_admin(app)


def _add_health(app: FastAPI) -> None:
    @app.get("/api/health", tags=["meta"], summary="Liveness and database check (no token needed).",
             responses={503: {"description": "The database does not answer."}})
    async def health(request: Request) -> JSONResponse:
        # The check runs in a thread of its own, so a saturated request pool cannot delay it, and
        # concurrent calls share one check.
        state = request.app.state
        if state.health_check is None or state.health_check.done():
            state.health_check = state.health_pool.submit(store_of(request).ping)
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(state.health_check)), timeout=2.0)
        except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
            return JSONResponse({"status": "unavailable", "database": "not answering within 2 s"}, status_code=503)
        except InstructEnvError as exc:  # StoreUnavailable, or a store that was closed
            return JSONResponse({"status": "unavailable", "database": http_detail(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})


def _add_queue(app: FastAPI) -> None:
    @app.get("/api/next", tags=["evaluator"], response_model=NextOut, responses=ERRORS,
             summary="The query you should answer next.")
    def next_query(request: Request, evaluator: EvaluatorDep) -> NextOut:
        store = store_of(request)
        view = store.next_query(evaluator.id)
        return NextOut(query=None if view is None else QueryOut.of(view), progress=_progress(store, evaluator.id))

    @app.get("/api/queries/{query_id}", tags=["evaluator"], response_model=QueryOut, responses=ERRORS,
             summary="One of your assigned queries, with your current answer.")
    def get_query(query_id: IdPath, request: Request, evaluator: EvaluatorDep) -> QueryOut:
        return QueryOut.of(store_of(request).view(evaluator.id, query_id))


def _add_writes(app: FastAPI) -> None:
    @app.post("/api/answers", tags=["evaluator"], response_model=ReceiptOut, status_code=201, responses=ERRORS,
              summary="Submit an answer (201), or get the first reply again for a repeated idempotency key (200).")
    def submit(body: AnswerIn, request: Request, response: Response, evaluator: EvaluatorDep,
               idempotency_key: KeyHeader = None) -> ReceiptOut:
        return _write(request, response, (body.idempotency_key, idempotency_key), lambda store, key: store.submit(
            evaluator.id, body.query_id, body.answer, edit=body.edit, idempotency_key=key))

    @app.post("/api/skip", tags=["evaluator"], response_model=ReceiptOut, status_code=201, responses=ERRORS,
              summary="Skip a query, optionally saying why.")
    def skip(body: SkipIn, request: Request, response: Response, evaluator: EvaluatorDep,
             idempotency_key: KeyHeader = None) -> ReceiptOut:
        return _write(request, response, (body.idempotency_key, idempotency_key), lambda store, key: store.skip(
            evaluator.id, body.query_id, body.reason, idempotency_key=key))

    @app.post("/api/undo", tags=["evaluator"], response_model=ReceiptOut, status_code=201, responses=ERRORS,
              summary="Undo your newest answer, edit or skip; the query comes back to your queue.")
    def undo(request: Request, response: Response, evaluator: EvaluatorDep, body: UndoIn | None = None,
             idempotency_key: KeyHeader = None) -> ReceiptOut:
        keys = (None if body is None else body.idempotency_key, idempotency_key)
        return _write(request, response, keys, lambda store, key: store.undo(evaluator.id, idempotency_key=key))

    @app.get("/api/progress", tags=["evaluator"], response_model=ProgressOut, responses=ERRORS,
             summary="How many queries you answered and skipped, and how many are left.")
    def progress(request: Request, evaluator: EvaluatorDep) -> ProgressOut:
        return _progress(store_of(request), evaluator.id)


def _add_export(app: FastAPI) -> None:
    @app.get("/api/export", tags=["admin"], responses=ERRORS,
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

        store = store_of(request)
        if format == "events":
            records = event_records(store, since=since)
        else:
            records = iter(export_records(store, format, include_gold=include_gold))
        lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        return StreamingResponse(lines, media_type="application/x-ndjson")


def _add_evaluator_admin(app: FastAPI) -> None:
    @app.post("/api/admin/evaluators", tags=["admin"], response_model=EvaluatorOut, status_code=201,
              responses=ERRORS, summary="Create an evaluator; the reply holds its token, shown only once.")
    def add_evaluator(body: EvaluatorIn, request: Request, admin: AdminDep) -> EvaluatorOut:
        evaluator, token = store_of(request).add_evaluator(body.name, body.role)
        return EvaluatorOut(id=evaluator.id, name=evaluator.name, role=evaluator.role, token=token)

    @app.post("/api/admin/evaluators/{evaluator_id}/revoke", tags=["admin"], response_model=EvaluatorOut,
              responses=ERRORS, summary="Revoke an evaluator's token and end their sessions (their answers stay).")
    def revoke(evaluator_id: IdPath, request: Request, admin: AdminDep) -> EvaluatorOut:
        if evaluator_id == admin.id:
            raise FeedbackConflict("You cannot revoke your own token; ask another admin, or use "
                                   "'instruct-env revoke-token' on the server.")
        evaluator = store_of(request).revoke_token(evaluator_id)
        return EvaluatorOut(id=evaluator.id, name=evaluator.name, role=evaluator.role)

    @app.get("/api/admin/evaluators", tags=["admin"], response_model=list[EvaluatorOut], responses=ERRORS,
             summary="All evaluators (without tokens).")
    def list_evaluators(request: Request, admin: AdminDep) -> list[EvaluatorOut]:
        return [EvaluatorOut(id=e.id, name=e.name, role=e.role) for e in store_of(request).evaluators()]


def _add_query_admin(app: FastAPI) -> None:
    @app.post("/api/admin/queries", tags=["admin"], response_model=QueriesOut, status_code=201, responses=ERRORS,
              summary="Add queries; all are stored or none (201), or get the first ids again for a repeated "
                      "idempotency key (200).")
    def add_queries(body: QueriesIn, request: Request, response: Response, admin: AdminDep,
                    idempotency_key: KeyHeader = None) -> QueriesOut:
        ids = store_of(request).add_queries([q.model_dump() for q in body.queries],
                                            idempotency_key=_one_key(body.idempotency_key, idempotency_key))
        if ids.replayed:
            response.status_code = 200
        return QueriesOut(ids=ids)

    @app.get("/api/admin/queries", tags=["admin"], response_model=StoredQueriesOut, responses=ERRORS,
             summary="Stored queries by id (unknown ids are left out), in id order.")
    def stored_queries(
        request: Request,
        admin: AdminDep,
        ids: Annotated[list[int], QueryParam(min_length=1, max_length=1000, description="Query ids.")],
    ) -> StoredQueriesOut:
        found = store_of(request).queries(ids=ids)
        return StoredQueriesOut(queries=[
            StoredQueryOut(id=qid, kind=q.kind, instruction=q.instruction, completions=list(q.completions),
                           context=q.context, options=dict(q.options),
                           gold=None if q.gold is None else dict(q.gold), selector=q.selector, score=q.score,
                           metadata=dict(q.metadata), created=q.created)
            for qid, q in found.items()])

    @app.get("/api/admin/metrics", tags=["admin"], responses=ERRORS,
             summary="Per-evaluator counts and gold accuracy; Krippendorff's alpha per kind.")
    def metrics(request: Request, admin: AdminDep) -> dict[str, Any]:
        return store_of(request).metrics()
