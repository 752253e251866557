"""Chat turns in the store: each exchange is a ``thumbs`` query assigned to its evaluator only.

A turn stores its message (the query's instruction) and the policy's reply (its completion)
once; the context of a turn (the conversation before it, see
:func:`~instruct_env.feedback.store.chat_history`) is rebuilt from the earlier turns whenever it is
read, so what a conversation stores grows linearly with its length. These functions run inside a
transaction of :class:`~instruct_env.feedback.store.FeedbackStore`, which checks the evaluator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from instruct_env.feedback.errors import FeedbackConflict, QueryNotFound
from instruct_env.feedback.store.backends import _Tx
from instruct_env.feedback.store.records import (
    MAX_CHAT_CONTEXT_CHARS,
    MAX_CHAT_TURNS,
    ChatTurn,
    Query,
    chat_history,
    chat_turn_from_row,
    dumps,
)

__all__: list[str] = []  # internal to the store

_TURNS = (
    "SELECT c.query_id, c.conversation, c.turn, q.payload, s.answer FROM chat_turns c "
    "JOIN queries q ON q.id = c.query_id LEFT JOIN answers s "
    "ON s.query_id = c.query_id AND s.evaluator_id = c.evaluator_id AND s.status = 'answered' "
)


def append_turn(
    tx: _Tx,
    evaluator_id: int,
    conversation: int | None,
    turn: int,
    message: str,
    reply: str,
    metadata: Mapping[str, Any] | None,
    now: float,
) -> ChatTurn:
    """Store turn ``turn`` of ``conversation`` (``None``: a new one); see ``FeedbackStore.add_chat_turn``."""
    turns = [] if conversation is None else conversation_turns(tx, evaluator_id, conversation)
    if conversation is not None and not turns:
        raise QueryNotFound(f"You have no conversation {conversation}; start a new one.")
    if turn != len(turns):
        raise FeedbackConflict(
            f"This message answers turn {turn}, but the conversation has {len(turns)} turn(s) now "
            "(sent twice, or from an out-of-date copy of it); read the conversation again and send the message "
            "once more."
        )
    if len(turns) >= MAX_CHAT_TURNS:
        raise FeedbackConflict(f"This conversation has reached its limit of {MAX_CHAT_TURNS} turns; start a new one.")
    # No context stored: it is the conversation before this turn, rebuilt on reading (see
    # rebuild_contexts), so a conversation stores each turn once.
    query = Query("thumbs", message, [reply], metadata={**dict(metadata or {}), "source": "chat", "turn": turn})
    query_id = tx.insert(
        "INSERT INTO queries (kind, payload, is_gold, created) VALUES (?, ?, ?, ?)",
        ("thumbs", dumps(query.payload()), 0, now),
    )
    conversation = query_id if conversation is None else conversation
    tx.run(
        "INSERT INTO assignments (query_id, evaluator_id, display_order, opened, created) VALUES (?, ?, ?, ?, ?)",
        (query_id, evaluator_id, dumps([0]), now, now),
    )
    tx.run(
        "INSERT INTO chat_turns (query_id, evaluator_id, conversation, turn) VALUES (?, ?, ?, ?)",
        (query_id, evaluator_id, conversation, turn),
    )
    return ChatTurn(query_id, conversation, turn, message, reply)


def conversation_turns(tx: _Tx, evaluator_id: int, conversation: int) -> list[ChatTurn]:
    """The turns of one of this evaluator's conversations (none when it is not theirs), in order."""
    if isinstance(conversation, bool) or not isinstance(conversation, int):
        raise QueryNotFound(f"Conversation ids are integers; got {conversation!r}.")
    rows = tx.all(_TURNS + "WHERE c.evaluator_id = ? AND c.conversation = ? ORDER BY c.turn", (evaluator_id, conversation))
    return [chat_turn_from_row(r) for r in rows]


def first_turns(tx: _Tx, evaluator_id: int) -> list[ChatTurn]:
    """The first turn of each of this evaluator's conversations, newest conversation first."""
    rows = tx.all(_TURNS + "WHERE c.evaluator_id = ? AND c.turn = 0 ORDER BY c.conversation DESC", (evaluator_id,))
    return [chat_turn_from_row(r) for r in rows]


def rebuild_contexts(tx: _Tx, found: dict[int, Query]) -> dict[int, Query]:
    """``found`` with the context of each chat turn rebuilt from the turns before it.

    A chat turn stores its message and reply only; its context (the conversation before it,
    see :func:`chat_history`) is read from the earlier turns, so a conversation stores each
    turn once. Turns stored with their context (before schema version 4) keep it.
    """
    candidates = [qid for qid, q in found.items()
                  if not q.context and q.metadata.get("source") == "chat" and q.metadata.get("turn")]
    if not candidates:
        return found
    turn_of: dict[int, tuple[int, int]] = {}
    for part in in_chunks(candidates):
        marks = ", ".join("?" * len(part))
        for qid, conversation, turn in tx.all(
            f"SELECT query_id, conversation, turn FROM chat_turns WHERE query_id IN ({marks})", part
        ):
            turn_of[int(qid)] = (int(conversation), int(turn))
    history: dict[int, list[ChatTurn]] = {}
    for part in in_chunks(sorted({c for c, _ in turn_of.values()})):
        marks = ", ".join("?" * len(part))
        for row in tx.all(
            "SELECT c.query_id, c.conversation, c.turn, q.payload, NULL FROM chat_turns c "
            f"JOIN queries q ON q.id = c.query_id WHERE c.conversation IN ({marks}) ORDER BY c.conversation, c.turn",
            part,
        ):
            history.setdefault(int(row[1]), []).append(chat_turn_from_row(row))
    rebuilt = dict(found)
    for qid, (conversation, turn) in turn_of.items():
        earlier = [t for t in history.get(conversation, []) if t.turn < turn]
        rebuilt[qid] = replace(found[qid], context=chat_history(earlier, MAX_CHAT_CONTEXT_CHARS))
    return rebuilt


def in_chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    """``ids`` in parts of at most ``size``: a bounded number of parameters per statement."""
    return [ids[start:start + size] for start in range(0, len(ids), size)]
