"""Request and response bodies of the JSON API (pydantic models, shown in the OpenAPI description).

A model's docstring becomes its description in ``/openapi.json``, so the models described there
by their fields alone have none (``noqa: D101``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from instruct_env.feedback.kinds import KINDS
from instruct_env.feedback.store import MAX_ID, QueryView

__all__ = [
    "AnswerIn",
    "SkipIn",
    "UndoIn",
    "ProgressOut",
    "QueryOut",
    "NextOut",
    "ReceiptOut",
    "EvaluatorIn",
    "EvaluatorOut",
    "QueryIn",
    "QueriesIn",
    "QueriesOut",
    "StoredQueryOut",
    "StoredQueriesOut",
    "ErrorOut",
    "IdPath",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnswerIn(_Strict):
    """An answer to one of your queries, in the terms you saw it (``"A"`` = left)."""

    query_id: int = Field(ge=0, le=MAX_ID, description="Id of a query assigned to you.")
    answer: dict[str, Any] = Field(
        description='Depends on the kind: {"rating": 4}, {"thumb": "up"}, {"choice": "A", "strength": 2}, '
        '{"ranking": [1, 0, 2]}, {"comment": "..."}, {"completion": "..."}.'
    )
    edit: bool = Field(default=False, description="Replace your current answer to this query.")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class SkipIn(_Strict):  # noqa: D101 (see the module docstring)
    query_id: int = Field(ge=0, le=MAX_ID)
    reason: str | None = Field(default=None, max_length=1000)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class UndoIn(_Strict):  # noqa: D101 (see the module docstring)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class ProgressOut(BaseModel):  # noqa: D101 (see the module docstring)
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
    status: str | None = Field(default=None, description="null (open), 'answered' or 'skipped'.")
    answer: dict[str, Any] | None = Field(default=None, description="Your current answer, in display terms.")

    @classmethod
    def of(cls, view: QueryView) -> QueryOut:
        """The reply body for one evaluator's view of a query."""
        return cls(
            id=view.id,
            kind=view.kind,
            options=dict(view.options),
            instruction=view.instruction,
            context=view.context,
            completions=list(view.completions),
            status=view.status,
            answer=None if view.answer is None else dict(view.answer),
        )


class NextOut(BaseModel):  # noqa: D101 (see the module docstring)
    query: QueryOut | None
    progress: ProgressOut


class ReceiptOut(BaseModel):  # noqa: D101 (see the module docstring)
    event_id: int
    query_id: int
    type: str
    ref: int | None = Field(default=None, description="For an undo: the event it cancelled.")
    replayed: bool = Field(description="True when an earlier request with the same idempotency key is returned.")
    progress: ProgressOut


class EvaluatorIn(_Strict):  # noqa: D101 (see the module docstring)
    name: str = Field(min_length=1, max_length=100)
    role: Literal["evaluator", "admin"] = "evaluator"


class EvaluatorOut(BaseModel):  # noqa: D101 (see the module docstring)
    id: int
    name: str
    role: str
    token: str | None = Field(default=None, description="Only in the reply that creates the evaluator.")


class QueryIn(_Strict):  # noqa: D101 (see the module docstring)
    kind: str = Field(description=f"One of {', '.join(KINDS)}.")
    instruction: str
    completions: list[str]
    context: str = ""
    options: dict[str, Any] = Field(default_factory=dict, description='e.g. {"low": 1, "high": 7} for a rating.')
    gold: dict[str, Any] | None = Field(default=None, description="Known answer, canonical terms (quality control).")
    selector: str | None = None
    score: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class QueriesIn(_Strict):  # noqa: D101 (see the module docstring)
    queries: list[QueryIn] = Field(min_length=1, max_length=10_000)
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="A client-chosen key (e.g. a UUID): repeating the request with it returns the first ids.")


class QueriesOut(BaseModel):  # noqa: D101 (see the module docstring)
    ids: list[int]


class StoredQueryOut(BaseModel):  # noqa: D101 (see the module docstring)
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


class StoredQueriesOut(BaseModel):  # noqa: D101 (see the module docstring)
    queries: list[StoredQueryOut]


class ErrorOut(BaseModel):  # noqa: D101 (see the module docstring)
    error: str
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 403, 404, 409, 413, 422, 503)}
"""The error replies every authenticated endpoint may give, for the OpenAPI description."""
IdPath = Annotated[int, PathParam(ge=0, le=MAX_ID)]
