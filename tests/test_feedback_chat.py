"""The chat page: conversations with a (fake) policy, thumbs stored as ordinary feedback events."""

from __future__ import annotations

import html
import re

import pytest

pytest.importorskip("fastapi", reason="the server needs the 'server' extra: pip install 'instruct-env[server]'")
pytest.importorskip("httpx", reason="fastapi.testclient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from instruct_env.feedback import FeedbackStore, create_app  # noqa: E402
from instruct_env.feedback.errors import FeedbackConflict, QueryNotFound  # noqa: E402
from instruct_env.feedback.export import unpaired_thumbs  # noqa: E402
from instruct_env.feedback.server import COOKIE_NAME  # noqa: E402


class EchoPolicy:
    """Replies with the message reversed and records every conversation it was given."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, str]]] = []

    def __call__(self, messages: list[dict[str, str]]) -> str:
        self.calls.append([dict(m) for m in messages])
        return f"reply {len(self.calls)}: {messages[-1]['content'][::-1]}"


@pytest.fixture
def chat(tmp_path):
    store = FeedbackStore(tmp_path / "chat.db", min_evaluators=2, gold_rate=0.0, synchronous="NORMAL")
    [queue_query] = store.add_queries([{"kind": "rating", "instruction": "Queue item", "completions": ["x"]}])
    store.add_evaluator("root", role="admin")  # evaluator 1; ann is 2 and bob is 3
    tokens = {name: store.add_evaluator(name)[1] for name in ("ann", "bob")}
    policy = EchoPolicy()
    app = create_app(store, responder=policy, policy_name="runs/demo/model")
    clients = {}
    for name, token in tokens.items():
        client = TestClient(app)
        client.cookies.set(COOKIE_NAME, store.open_session(token)[1])
        clients[name] = client
    yield store, clients, policy, queue_query
    store.close()


def send(client, message, conversation="", turn=0, **kwargs):
    return client.post("/chat", data={"message": message, "conversation": conversation, "turn": turn},
                       follow_redirects=False, **kwargs)


def hidden(page, name):
    return re.search(rf'name="{name}" value="([^"]*)"', page).group(1)


def test_a_message_gets_a_reply_shown_in_the_conversation(chat):
    store, clients, policy, _ = chat
    ann = clients["ann"]
    page = ann.get("/chat")
    assert page.status_code == 200 and 'data-kind="chat"' in page.text and 'id="empty-conversation"' in page.text
    assert "runs/demo/model" in page.text and 'data-focus-key="m"' in page.text
    first = send(ann, "Sort 3 1 <b>2</b>")
    assert first.status_code == 303 and first.headers["location"].startswith("/chat?c=")
    page = ann.get(first.headers["location"]).text
    assert "Sort 3 1 &lt;b&gt;2&lt;/b&gt;" in page  # escaped
    assert "reply 1: &gt;b/&lt;2&gt;b&lt; 1 3 troS" in page
    conversation, turn = hidden(page, "conversation"), hidden(page, "turn")
    assert turn == "1"
    second = send(ann, "And 5 4?", conversation, turn)
    assert second.status_code == 303
    page = ann.get(second.headers["location"]).text
    assert page.index('id="reply-0"') < page.index('id="reply-1"') and "reply 2: ?4 5 dnA" in page
    assert 'id="thumb-up-1" aria-pressed="false">Thumbs up (<kbd>Y</kbd>)' in page  # keys rate the newest
    assert policy.calls[1] == [
        {"role": "user", "content": "Sort 3 1 <b>2</b>"},
        {"role": "assistant", "content": "reply 1: >b/<2>b< 1 3 troS"},
        {"role": "user", "content": "And 5 4?"},
    ]
    [t0, t1] = store.chat(2, int(conversation))
    query = store.get_query(t1.query_id)
    assert (query.kind, query.instruction, query.completions) == ("thumbs", "And 5 4?", ("reply 2: ?4 5 dnA",))
    assert query.context == "User: Sort 3 1 <b>2</b>\nAssistant: reply 1: >b/<2>b< 1 3 troS"
    assert query.metadata == {"policy": "runs/demo/model", "source": "chat", "turn": 1}
    assert store.events_since(0) == []  # chatting stores no feedback until a thumb is given


def test_thumbs_are_stored_once_for_the_right_evaluator_and_exported(chat):
    store, clients, _, queue_query = chat
    ann = clients["ann"]
    page = ann.get(send(ann, "Hello").headers["location"]).text
    form = {"query_id": hidden(page, "query_id"), "conversation": hidden(page, "conversation"),
            "idempotency_key": hidden(page, "idempotency_key")}
    for _ in range(2):  # a double click
        rated = ann.post("/chat/thumb", data={**form, "thumb": "up"}, follow_redirects=False)
        assert rated.status_code == 303
    page = ann.get(rated.headers["location"]).text
    assert 'id="thumb-up-0" aria-pressed="true"' in page and "Saved" in page
    ann.post("/chat/thumb", data={**form, "thumb": "down", "idempotency_key": "k2"})  # change of mind
    events = store.events_since(0)
    assert [(e.type, e.evaluator_id, e.query_id, e.answer) for e in events] == [
        ("submit", 2, int(form["query_id"]), {"thumb": "up"}),
        ("edit", 2, int(form["query_id"]), {"thumb": "down"}),
    ]
    [record] = unpaired_thumbs(store)
    assert record["completion"] == "reply 1: olleH" and record["label"] is False and "Hello" in record["prompt"]
    # Chat replies never enter a queue: ann's queue still offers the rating item, bob's too.
    assert store.next_query(2).id == queue_query and store.next_query(3).id == queue_query
    assert store.progress(2).to_json() == {"answered": 1, "skipped": 0, "remaining": 1}
    assert store.metrics()["queries"]["chat"] == 1
    # U on the chat page undoes the thumb and comes back to the conversation.
    undone = ann.post("/undo", data={"idempotency_key": "u1", "next": f"/chat?c={form['conversation']}"},
                      follow_redirects=False)
    assert undone.headers["location"].startswith(f"/chat?c={form['conversation']}&notice=Undid")
    assert store.chat(2, int(form["conversation"]))[0].thumb == "up"
    evil = ann.post("/undo", data={"idempotency_key": "u2", "next": "https://evil.example/"}, follow_redirects=False)
    assert evil.headers["location"].startswith("/?notice=")


def test_other_evaluators_chats_are_not_visible(chat):
    store, clients, _, _ = chat
    ann, bob = clients["ann"], clients["bob"]
    page = ann.get(send(ann, "my secret plan").headers["location"]).text
    conversation, query_id = hidden(page, "conversation"), hidden(page, "query_id")
    assert "my secret plan" not in bob.get("/chat").text  # bob's newest conversation is none
    peek = bob.get(f"/chat?c={conversation}")
    assert peek.status_code == 404 and "You have no conversation" in peek.text and "my secret plan" not in peek.text
    hijack = send(bob, "me too", conversation, 1)
    assert hijack.status_code == 404 and "my secret plan" not in hijack.text
    thumb = bob.post("/chat/thumb", data={"query_id": query_id, "conversation": conversation, "thumb": "down"})
    assert thumb.status_code == 404 and "not in your queue" in thumb.text
    assert store.events_since(0) == [] and len(store.chat(2, int(conversation))) == 1
    with pytest.raises(QueryNotFound, match="You have no conversation"):
        store.chat(3, int(conversation))


def test_bad_chat_requests_get_4xx_and_store_nothing(chat):
    store, clients, policy, queue_query = chat
    ann = clients["ann"]
    assert ann.get("/chat", params={"c": "abc"}).status_code == 422
    empty = send(ann, "   ")
    assert empty.status_code == 422 and "A message must have 1 to 4000 characters" in empty.text
    assert send(ann, "x" * 4001).status_code == 422
    assert ann.post("/chat", data={"message": "hi", "turn": "one"}).status_code == 422
    assert send(ann, "hi", conversation="999", turn=1).status_code == 404
    assert send(ann, "hi", headers={"Origin": "http://evil.example"}).status_code == 403
    assert policy.calls == []  # none of these reached the policy
    location = send(ann, "first").headers["location"]
    conversation = hidden(ann.get(location).text, "conversation")
    stale = send(ann, "sent twice", conversation, 0)  # a re-posted form from the empty page
    assert stale.status_code == 409 and "out of date" in stale.text and "sent twice</textarea>" in stale.text
    assert ann.post("/chat/thumb", data={"query_id": "1x", "conversation": conversation}).status_code == 422
    query_id = store.chat(2, int(conversation))[0].query_id
    bad_thumb = ann.post("/chat/thumb", data={"query_id": query_id, "conversation": conversation, "thumb": "meh"})
    assert bad_thumb.status_code == 422 and "thumb must be 'up' or 'down'" in html.unescape(bad_thumb.text)
    store.next_query(2)  # the rating item is now assigned to ann; it is not a chat reply
    not_chat = ann.post("/chat/thumb", data={"query_id": queue_query, "conversation": conversation, "thumb": "up"})
    assert not_chat.status_code == 422 and "not a chat reply" in not_chat.text
    assert store.events_since(0) == [] and len(store.chat(2, int(conversation))) == 1
    with pytest.raises(FeedbackConflict, match="the conversation has 1 turn"):
        store.add_chat_turn(2, int(conversation), 0, "again", "r")
    anonymous = TestClient(ann.app)
    assert anonymous.get("/chat", follow_redirects=False).headers["location"] == "/login"
    assert anonymous.post("/chat", data={"message": "hi", "turn": 0}, follow_redirects=False).status_code == 303


def test_without_a_policy_the_page_says_so_and_posts_get_503(tmp_path):
    store = FeedbackStore(tmp_path / "c.db", synchronous="NORMAL")
    _, token = store.add_evaluator("ann")
    client = TestClient(create_app(store))
    client.cookies.set(COOKIE_NAME, store.open_session(token)[1])
    page = client.get("/chat")
    assert page.status_code == 200 and 'id="no-policy"' in page.text and "No policy is loaded" in page.text
    assert 'id="send" disabled' in page.text
    refused = send(client, "hello?")
    assert refused.status_code == 503 and "No policy is loaded" in refused.text
    assert store.conversations(1) == [] and store.events_since(0) == []
    store.close()


def test_a_failing_policy_answers_502_and_stores_nothing(tmp_path):
    store = FeedbackStore(tmp_path / "c.db", synchronous="NORMAL")
    _, token = store.add_evaluator("ann")

    def broken(messages):
        raise RuntimeError("out of memory")

    client = TestClient(create_app(store, responder=broken))
    client.cookies.set(COOKIE_NAME, store.open_session(token)[1])
    failed = send(client, "hello?")
    # The evaluator gets a generic message; the exception's text goes to the server's log only.
    assert failed.status_code == 502 and "The policy failed to reply" in failed.text
    assert "out of memory" not in failed.text and "RuntimeError" not in failed.text
    assert store.conversations(1) == []
    client = TestClient(create_app(store, responder=lambda messages: 42))
    client.cookies.set(COOKIE_NAME, store.open_session(token)[1])
    assert send(client, "hello?").status_code == 502
    store.close()


def test_policy_responder_answers_from_a_saved_model_within_the_prompt_budget(tmp_path):
    pytest.importorskip("torch")
    from rl_utils import tiny_policy, tiny_tokenizer

    from agents.common.responder import PolicyResponder, chat_prompt
    from instruct_env.error import ConfigError

    tokenizer = tiny_tokenizer()
    policy = tiny_policy(tokenizer, seed=0)
    responder = PolicyResponder(policy, tokenizer, max_new_tokens=6, max_prompt_tokens=24)
    history = []
    for word in ("yes", "no", "cat", "dog"):
        history += [{"role": "user", "content": f"Say {word} ."}, {"role": "assistant", "content": word}]
    messages = history + [{"role": "user", "content": "Say red ."}]
    ids = responder.prompt_ids(messages)
    text = tokenizer.decode(ids)
    assert len(ids) <= 24 and "red" in text and "dog" in text and "yes" not in text  # oldest turns left out
    reply = responder(messages)
    assert isinstance(reply, str) and len(tokenizer.encode(reply, add_special_tokens=False)) <= 6
    assert responder(messages) == reply  # greedy

    policy.lm.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    loaded = PolicyResponder.from_folder(tmp_path / "model", max_new_tokens=6, max_prompt_tokens=24)
    assert loaded(messages) == reply and loaded.name == str(tmp_path / "model")
    with pytest.raises(ConfigError, match="has no config.json"):
        PolicyResponder.from_folder(tmp_path)
    with pytest.raises(ConfigError, match="must alternate user and assistant"):
        chat_prompt([{"role": "assistant", "content": "hi"}])
    with pytest.raises(ConfigError, match="temperature must be >= 0"):
        PolicyResponder(policy, tokenizer, max_new_tokens=6, temperature=-1)
    # The tiny model's context is 64 tokens: prompt budget + reply must fit in it.
    assert PolicyResponder(policy, tokenizer, max_new_tokens=6).max_prompt_tokens == 58
    with pytest.raises(ConfigError, match="max_new_tokens=64 leaves no room for a prompt"):
        PolicyResponder(policy, tokenizer, max_new_tokens=64)
    with pytest.raises(ConfigError, match=r"max_prompt_tokens \(60\) \+ max_new_tokens \(6\) exceed"):
        PolicyResponder(policy, tokenizer, max_new_tokens=6, max_prompt_tokens=60)

    store = FeedbackStore(tmp_path / "c.db", synchronous="NORMAL")
    _, token = store.add_evaluator("ann")
    client = TestClient(create_app(store, responder=loaded, policy_name=loaded.name))
    client.cookies.set(COOKIE_NAME, store.open_session(token)[1])
    sent = send(client, "Say red .")
    assert sent.status_code == 303
    [turn] = store.chat(1, int(sent.headers["location"].split("c=")[1].split("#")[0]))
    assert turn.reply == loaded([{"role": "user", "content": "Say red ."}])
    too_long = send(client, "Say " + "red " * 40 + ".")  # longer than the prompt budget on its own
    assert too_long.status_code == 422 and "max_tokens=24" in too_long.text
    store.close()
