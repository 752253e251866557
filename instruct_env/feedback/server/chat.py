"""The chat page: an evaluator chats with the current policy and gives each reply a thumb.

Each reply is stored as a ``thumbs`` query assigned to that evaluator only (see
:meth:`~instruct_env.feedback.store.FeedbackStore.add_chat_turn`). Replies are generated in a
pool of their own, one at a time per evaluator, so a slow policy never holds up the API.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the annotations of the route
# functions at run time, and they are defined inside the registrars below.

import asyncio
import logging
import uuid
from collections.abc import Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from instruct_env.error import InstructEnvError
from instruct_env.feedback.errors import FeedbackConflict, InvalidAnswer, QueryNotFound
from instruct_env.feedback.server.errors import http_detail, status_of
from instruct_env.feedback.server.pages import COMMON_KEYS, flash, layout
from instruct_env.feedback.server.security import page_evaluator, posted_evaluator, store_of
from instruct_env.feedback.server.web import escape, form_id, read_form, redirect, template
from instruct_env.feedback.store import MAX_CHAT_TURNS, ChatTurn, Evaluator, FeedbackStore

__all__ = ["CHAT_GUIDELINES", "MAX_CHAT_CHARS", "Responder", "add_chat", "chat_messages"]

MAX_CHAT_CHARS = 4000  # longest chat message accepted
Responder = Callable[[list[dict[str, str]]], str]
"""Conversation (role/content messages, the evaluator's new message last) -> the policy's reply."""
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
_log = logging.getLogger(__name__)


def chat_messages(turns: list[ChatTurn], message: str) -> list[dict[str, str]]:
    """The conversation handed to the responder: earlier turns, then the new message."""
    messages = []
    for t in turns:
        messages += [{"role": "user", "content": t.message}, {"role": "assistant", "content": t.reply}]
    return messages + [{"role": "user", "content": message}]


def _render_turns(turns: list[ChatTurn]) -> str:
    rendered = []
    for t in turns:
        last = t is turns[-1]
        rendered.append(template("chat_turn.html").substitute(
            turn=t.turn, message=escape(t.message), reply=escape(t.reply), query_id=t.query_id,
            conversation=t.conversation, thumb_key=uuid.uuid4().hex,
            up_pressed="true" if t.thumb == "up" else "false",
            down_pressed="true" if t.thumb == "down" else "false",
            up_key=" (<kbd>Y</kbd>)" if last else "", down_key=" (<kbd>N</kbd>)" if last else "",
        ))
    return "\n".join(rendered) or '<p id="empty-conversation">Send a message to start a conversation.</p>'


def _render_conversations(store: FeedbackStore, evaluator: Evaluator, conversation: int | None) -> str:
    """The list of the evaluator's conversations, the shown one marked (empty when there are none)."""
    current = ' aria-current="page"'
    items = "".join(
        f'<li><a href="/chat?c={c.conversation}"{current if c.conversation == conversation else ""}>'
        f"{escape(c.message[:60])}{'...' if len(c.message) > 60 else ''}</a></li>"
        for c in store.conversations(evaluator.id)
    )
    return f'<h2>Your conversations</h2>\n<ul id="conversations">{items}</ul>' if items else ""


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
    state = request.app.state
    if state.responder is None:
        note = (
            '<p class="note" id="no-policy">No policy is loaded, so there is nobody to chat with. An admin '
            "starts the server with <code>instruct-env serve --policy PATH</code> to load one.</p>"
        )
    else:
        note = f'<p id="policy">Policy: <code>{escape(state.policy_name)}</code></p>' if state.policy_name else ""
    turns_html = _render_turns(turns)
    main = template("chat.html").substitute(
        policy_note=note,
        turns=turns_html,
        conversation="" if conversation is None else conversation,
        turn=len(turns),
        max_chars=MAX_CHAT_CHARS,
        draft=escape(draft),
        disabled=" disabled" if state.responder is None else "",
        conversations=_render_conversations(store_of(request), evaluator, conversation),
    )
    return layout(
        request, evaluator, kind="chat", main=main, flash=flash(notice, error), skip_section="",
        shortcuts=_CHAT_KEYS + COMMON_KEYS, guidelines=CHAT_GUIDELINES,
        undo_next="/chat" if conversation is None else f"/chat?c={conversation}",
    )


async def _refuse(request: Request, evaluator: Evaluator, status: int, error: str,
                  conversation: int | None = None, draft: str = "") -> HTMLResponse:
    """The chat page again, with the error, the evaluator's unsent text and a 4xx/5xx status."""

    def render() -> str:
        turns: list[ChatTurn] = []
        shown = conversation
        if shown is not None:
            try:
                turns = store_of(request).chat(evaluator.id, shown)
            except QueryNotFound:
                shown = None
        return _render_chat(request, evaluator, shown, turns, error=error, draft=draft)

    return HTMLResponse(await run_in_threadpool(render), status_code=status)


def add_chat(app: FastAPI) -> None:
    """Register the chat page, sending a message, and the thumbs on its replies."""
    _add_chat_page(app)
    _add_chat_posts(app)


def _add_chat_page(app: FastAPI) -> None:
    @app.get("/chat", include_in_schema=False)
    def chat_page(request: Request, c: int | None = None, new: bool = False, notice: str = "", error: str = "") -> Response:
        evaluator = page_evaluator(request)
        if evaluator is None:
            return redirect("/login")
        store = store_of(request)
        conversation, turns, status = c, [], 200
        if conversation is None and not new:  # the newest conversation, if there is one
            latest = store.conversations(evaluator.id)
            conversation = latest[0].conversation if latest else None
        if conversation is not None:
            try:
                turns = store.chat(evaluator.id, conversation)
            except QueryNotFound as exc:
                conversation, error, status = None, http_detail(exc, page=True), 404
        page = _render_chat(request, evaluator, conversation, turns, notice=notice[:300], error=error[:500])
        return HTMLResponse(page, status_code=status)


async def _turns_before(store: FeedbackStore, evaluator: Evaluator, conversation: int | None, turn: int) -> list[ChatTurn]:
    """The conversation's turns so far; 409 when the page is stale or the conversation is full."""
    turns = [] if conversation is None else await run_in_threadpool(store.chat, evaluator.id, conversation)
    if turn != len(turns):  # checked before generating; add_chat_turn checks again
        raise FeedbackConflict(
            f"This page is out of date: the conversation has {len(turns)} turn(s), the page showed {turn}. "
            "Your message was not sent; check the conversation and send it again."
        )
    if turn >= MAX_CHAT_TURNS:  # checked before generating; add_chat_turn checks again
        raise FeedbackConflict(f"This conversation has reached its limit of {MAX_CHAT_TURNS} turns; "
                               "start a new one. Your message was not sent.")
    return turns


async def _generate(request: Request, evaluator: Evaluator, responder: Responder, turns: list[ChatTurn],
                    message: str, conversation: int | None) -> str | HTMLResponse:
    """The policy's reply, generated in the chat pool, or the page refusing the message."""
    state = request.app.state
    if evaluator.id in state.chat_busy:
        return await _refuse(request, evaluator, 429, "Your previous message is still being answered; wait for "
                             "its reply, then send this one.", conversation, message)
    if len(state.chat_busy) >= state.chat_waiting_limit:
        return await _refuse(request, evaluator, 503, "The policy is busy answering other evaluators; send your "
                             "message again in a moment.", conversation, message)
    state.chat_busy.add(evaluator.id)
    try:  # in the chat pool: a slow policy holds up only the chat, never the API's threads
        reply = await asyncio.wrap_future(state.chat_pool.submit(responder, chat_messages(turns, message)))
    except InstructEnvError as exc:  # e.g. a message too long for the policy's context
        return await _refuse(request, evaluator, 422, http_detail(exc, page=True), conversation, message)
    except Exception:  # a broken policy must not take the page down; its details are for the log only
        _log.exception("The chat responder failed")
        return await _refuse(request, evaluator, 502, "The policy failed to reply; try again, or tell an admin "
                             "(the details are in the server's log).", conversation, message)
    finally:
        state.chat_busy.discard(evaluator.id)
    if not isinstance(reply, str):
        return await _refuse(request, evaluator, 502, f"The policy returned a {type(reply).__name__} instead of "
                             "text; tell an admin.", conversation, message)
    return reply


async def _send_message(request: Request, evaluator: Evaluator, form: dict[str, str]) -> Response:
    """Send the form's message to the policy and store the reply as the conversation's next turn."""
    message = form.get("message", "").replace("\r\n", "\n")
    try:
        conversation = form_id(form, "conversation") if form.get("conversation", "").strip() else None
        turn = form_id(form, "turn")
    except ValueError:
        return await _refuse(request, evaluator, 422, "The form has no valid conversation or turn number; "
                             "reload the page.", draft=message)
    responder = request.app.state.responder
    if responder is None:
        return await _refuse(request, evaluator, 503, "No policy is loaded, so the message was not sent; "
                             "ask an admin to start the server with --policy.", conversation, message)
    if not message.strip() or len(message) > MAX_CHAT_CHARS:
        return await _refuse(request, evaluator, 422, f"A message must have 1 to {MAX_CHAT_CHARS} characters; "
                             f"got {len(message.strip())}.", conversation, message[:MAX_CHAT_CHARS])
    store = store_of(request)
    try:
        turns = await _turns_before(store, evaluator, conversation, turn)
    except (QueryNotFound, FeedbackConflict) as exc:
        return await _refuse(request, evaluator, status_of(exc), http_detail(exc, page=True), conversation, message)
    reply = await _generate(request, evaluator, responder, turns, message, conversation)
    if isinstance(reply, Response):
        return reply
    metadata = {"policy": request.app.state.policy_name} if request.app.state.policy_name else {}
    try:
        added = await run_in_threadpool(
            lambda: store.add_chat_turn(evaluator.id, conversation, turn, message, reply, metadata)
        )
    except InstructEnvError as exc:
        return await _refuse(request, evaluator, status_of(exc), http_detail(exc, page=True), conversation, message)
    return RedirectResponse(f"/chat?c={added.conversation}#turn-{added.turn}", status_code=303)


async def _rate_reply(request: Request, evaluator: Evaluator, form: dict[str, str]) -> Response:
    """Store the form's thumb on a chat reply (an edit when it changes the thumb, nothing when it repeats it)."""
    try:
        query_id, conversation = form_id(form, "query_id"), form_id(form, "conversation")
    except ValueError:
        return await _refuse(request, evaluator, 422, "The form has no valid reply or conversation id; reload the page.")
    thumb, key = form.get("thumb", ""), form.get("idempotency_key") or None
    store = store_of(request)

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
        return await _refuse(request, evaluator, status_of(exc), http_detail(exc, page=True), conversation)
    return RedirectResponse(f"/chat?c={conversation}&notice=Saved.+Press+U+to+undo.", status_code=303)


def _add_chat_posts(app: FastAPI) -> None:
    # The Guard has checked each post's origin and session (posted_evaluator).
    @app.post("/chat", include_in_schema=False)
    async def chat_send(request: Request) -> Response:
        return await _send_message(request, posted_evaluator(request), await read_form(request))

    @app.post("/chat/thumb", include_in_schema=False)
    async def chat_thumb(request: Request) -> Response:
        return await _rate_reply(request, posted_evaluator(request), await read_form(request))
