"""The evaluator pages: login and logout, and the queue page that shows the next query by its kind.

Server-rendered from :mod:`string.Template` files, with a little inline JavaScript for the keyboard
shortcuts. Errors come back to the page as a flash message, never as a JSON body.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the annotations of the route
# functions at run time, and they are defined inside the registrars below.

import re
import urllib.parse
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from instruct_env.error import InstructEnvError
from instruct_env.feedback.errors import InvalidAnswer, InvalidToken
from instruct_env.feedback.kinds import Rating, make_kind
from instruct_env.feedback.server.errors import http_detail
from instruct_env.feedback.server.security import COOKIE_NAME, page_evaluator, posted_evaluator, store_of
from instruct_env.feedback.server.web import escape, form_id, read_form, redirect, script, template
from instruct_env.feedback.store import Evaluator, QueryView

__all__ = ["COMMON_KEYS", "add_pages", "flash", "layout"]

_NAV = '<a href="/" id="nav-queue">Queue</a><a href="/chat" id="nav-chat">Chat</a>'
COMMON_KEYS = [("U", "undo your last answer"), ("?", "show or hide this help"), ("Esc", "close help, leave a text box")]
_CHAT_PATH = re.compile(r"/chat(\?c=\d{1,18})?")  # where an undo may send the evaluator back to


def flash(notice: str, error: str) -> str:
    """The notice and error boxes shown at the top of a page (empty for empty texts)."""
    return "".join(
        f'<div class="flash {cls}" id="flash-{cls}">{escape(text)}</div>'
        for cls, text in (("notice", notice), ("error", error)) if text
    )


def layout(
    request: Request, evaluator: Evaluator, *, kind: str, main: str, flash: str, skip_section: str,
    shortcuts: list[tuple[str, str]], guidelines: str, undo_next: str,
) -> str:
    """A whole page around ``main``: header, progress, undo form, guidelines and the shortcuts' help."""
    progress = store_of(request).progress(evaluator.id)
    rows = "".join(f"<tr><td><kbd>{escape(keys)}</kbd></td><td>{escape(text)}</td></tr>" for keys, text in shortcuts)
    return template("base.html").substitute(
        title=escape(request.app.state.title),
        nav=_NAV,
        kind=kind,
        answered=progress.answered,
        skipped=progress.skipped,
        remaining=progress.remaining,
        evaluator_name=escape(evaluator.name),
        flash=flash,
        main=main,
        skip_section=skip_section,
        undo_key=uuid.uuid4().hex,
        undo_next=escape(undo_next),
        guidelines=escape(guidelines),
        help_rows=rows,
        script=script(),
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


def _rating_choices(view: QueryView) -> dict[str, Any]:
    """The template fields of a rating page: its scale and one radio button per score."""
    kind = make_kind("rating", **view.options)
    assert isinstance(kind, Rating)  # make_kind("rating") makes a Rating
    choices = []
    for score in range(kind.low, kind.high + 1):
        key = kind.digit_of(score) or ""
        hint = f" (<kbd>{key}</kbd>)" if key else ""
        required = " required" if score == kind.low else ""
        choices.append(
            f'<label><input type="radio" name="rating" value="{score}" data-key="{key}"{required}>'
            f"<span>{score}{hint}</span></label>"
        )
    return {"low": kind.low, "high": kind.high, "choices": "\n    ".join(choices)}


def _render_query(view: QueryView) -> str:
    context = f'<h2>Input</h2>\n<div class="prompt" id="context">{escape(view.context)}</div>' if view.context else ""
    prompt = template("prompt.html").substitute(instruction=escape(view.instruction), context_block=context)
    fields: dict[str, Any] = {
        "prompt": prompt,
        "query_id": view.id,
        "answer_key": uuid.uuid4().hex,
        "completion": escape(view.completions[0]),
    }
    if view.kind == "rating":
        fields.update(_rating_choices(view))
    elif view.kind == "pairwise":
        fields.update(left=escape(view.completions[0]), right=escape(view.completions[1]))
    elif view.kind == "ranking":
        items = "\n".join(
            f'<h2>Response {i + 1}</h2>\n<div class="completion" id="completion-{i}">{escape(c)}</div>'
            for i, c in enumerate(view.completions)
        )
        fields.update(items=items, count=len(view.completions))
    return template(f"{view.kind}.html").substitute(fields)


def _render_page(request: Request, evaluator: Evaluator, view: QueryView | None, notice: str, error: str) -> str:
    kind = view.kind if view is not None else "done"
    if view is None:
        main, skip_section, shortcuts = template("done.html").substitute(), "", []
    else:
        main = _render_query(view)
        skip_section = template("skip.html").substitute(query_id=view.id, skip_key=uuid.uuid4().hex)
        shortcuts = make_kind(view.kind, **view.options).shortcuts(len(view.completions))
        shortcuts += [("Enter", "submit the answer"), ("S", "skip (type an optional reason, Enter to confirm)")]
    guidelines = request.app.state.guidelines.get(kind, "When you are ready, reload the page to check for new queries.")
    return layout(
        request, evaluator, kind=kind, main=main, flash=flash(notice, error), skip_section=skip_section,
        shortcuts=shortcuts + COMMON_KEYS, guidelines=guidelines, undo_next="/",
    )


def add_pages(app: FastAPI) -> None:
    """Register the login and logout pages and the queue page with its forms."""
    _add_login(app)
    _add_queue(app)


def _login_page(request: Request, error: str = "", status: int = 200) -> HTMLResponse:
    message = f'<p class="error" id="login-error">{escape(error)}</p>' if error else ""
    body = template("login.html").substitute(title=escape(request.app.state.title), error=message)
    return HTMLResponse(body, status_code=status)


def _add_login(app: FastAPI) -> None:
    @app.get("/login", include_in_schema=False)
    def login_form(request: Request) -> HTMLResponse:
        return _login_page(request)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:  # the Guard refuses a cross-site login
        token = (await read_form(request)).get("token", "").strip()
        ttl = request.app.state.session_ttl
        try:
            _, key = await run_in_threadpool(store_of(request).open_session, token, ttl)
        except InvalidToken as exc:
            return _login_page(request, http_detail(exc, page=True), 401)
        response = redirect("/")
        response.set_cookie(
            COOKIE_NAME, key, max_age=int(ttl), httponly=True, samesite="strict",
            secure=request.app.state.cookie_secure, path="/",
        )
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:  # the Guard refuses a cross-site logout
        await run_in_threadpool(store_of(request).end_session, request.cookies.get(COOKIE_NAME))  # the session ends here
        response = redirect("/login")
        response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict",
                               secure=request.app.state.cookie_secure)
        return response


async def _page_action(request: Request, action: str) -> Response:
    """Answer, skip or undo from the queue page; back to it with a notice or the error.

    The :class:`~instruct_env.feedback.server.security.Guard` has checked the origin and the session.
    """
    evaluator = posted_evaluator(request)
    form = await read_form(request)
    store = store_of(request)
    key = form.get("idempotency_key") or None
    try:
        if action == "undo":
            receipt = await run_in_threadpool(lambda: store.undo(evaluator.id, idempotency_key=key))
            notice = f"Undid your last answer (query {receipt.event.query_id})."
            after = form.get("next", "/")
            if _CHAT_PATH.fullmatch(after):  # back to the chat page it came from
                return RedirectResponse(f"{after}{'&' if '?' in after else '?'}notice={urllib.parse.quote(notice)}", status_code=303)
            return redirect("/", notice=notice)
        try:
            query_id = form_id(form, "query_id")
        except ValueError:
            return redirect("/", error="The form has no valid query id; reload the page.")
        if action == "skip":
            reason = form.get("reason") or None
            await run_in_threadpool(lambda: store.skip(evaluator.id, query_id, reason, idempotency_key=key))
            return redirect("/", notice="Skipped. Press U to undo.")
        view = await run_in_threadpool(store.view, evaluator.id, query_id)
        answer = _form_answer(view, form)
        await run_in_threadpool(lambda: store.submit(evaluator.id, query_id, answer, idempotency_key=key))
        return redirect("/", notice="Saved. Press U to undo.")
    except InstructEnvError as exc:
        return redirect("/", error=http_detail(exc, page=True))


def _add_queue(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def evaluate(request: Request, notice: str = "", error: str = "") -> Response:
        evaluator = page_evaluator(request)
        if evaluator is None:
            return redirect("/login")
        view = store_of(request).next_query(evaluator.id)
        return HTMLResponse(_render_page(request, evaluator, view, notice[:300], error[:500]))

    @app.post("/answer", include_in_schema=False)
    async def answer(request: Request) -> Response:
        return await _page_action(request, "answer")

    @app.post("/skip", include_in_schema=False)
    async def skip(request: Request) -> Response:
        return await _page_action(request, "skip")

    @app.post("/undo", include_in_schema=False)
    async def undo(request: Request) -> Response:
        return await _page_action(request, "undo")
