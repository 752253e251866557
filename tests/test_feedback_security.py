"""The feedback server under hostile and unlucky use: each finding of the security review, replayed.

Every test sends what the probe sent and checks the status, the message and that nothing was
stored. Nothing here waits on the wall clock: a session's expiry moves an injected clock, a slow
policy blocks on an event, and a locked database is locked by a second connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import threading

import pytest

pytest.importorskip("fastapi", reason="the server needs the 'server' extra: pip install 'instruct-env[server]'")
pytest.importorskip("httpx", reason="fastapi.testclient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from agents.cli import main as cli_main  # noqa: E402
from instruct_env.error import ConfigError  # noqa: E402
from instruct_env.feedback import FeedbackStore, InvalidToken, StoreUnavailable, create_app  # noqa: E402
from instruct_env.feedback import store as store_module  # noqa: E402
from instruct_env.feedback.kinds import make_kind  # noqa: E402
from instruct_env.feedback.server import COOKIE_NAME, MAX_BODY_BYTES  # noqa: E402

ORIGIN = {"Origin": "http://testserver"}  # TestClient's own origin
EVIL = {"Origin": "http://evil.example"}
QUERIES = [{"kind": "thumbs", "instruction": f"Say {i}", "completions": [str(i)]} for i in range(4)]


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def env(tmp_path):
    clock = Clock()
    store = FeedbackStore(tmp_path / "s.db", min_evaluators=2, gold_rate=0.0, seed=0, synchronous="NORMAL", clock=clock)
    _, admin = store.add_evaluator("root", role="admin")
    store.add_queries(QUERIES)
    _, ann = store.add_evaluator("ann")
    client = TestClient(create_app(store, session_ttl=3600))
    yield client, store, admin, ann, clock
    store.close()


def login(client, token):
    reply = client.post("/login", data={"token": token}, headers=ORIGIN, follow_redirects=False)
    assert reply.status_code == 303, reply.text
    return reply.cookies[COOKIE_NAME]


def answered(store, ann_id=2):
    return [(e.type, e.query_id) for e in store.events_since(0) if e.evaluator_id == ann_id]


# -- 1. CSRF on the JSON API ---------------------------------------------------------------------


def test_api_changes_made_with_the_cookie_must_come_from_this_origin(env):
    client, store, _, ann, _ = env
    login(client, ann)
    query = client.get("/api/next").json()["query"]  # reads with the cookie are fine
    for _ in range(2):
        sent = client.post("/api/answers", json={"query_id": query["id"], "answer": {"thumb": "up"}}, headers=ORIGIN)
        assert sent.status_code == 201, sent.text
        query = client.get("/api/next").json()["query"]
    assert len(answered(store)) == 2
    # What a same-site page (another port or subdomain) or a non-browser client with the cookie sends:
    for headers in (EVIL, {}, {"Sec-Fetch-Site": "same-site"}, {"Origin": "null"},
                    {**ORIGIN, "Sec-Fetch-Site": "cross-site"}):
        for path, body in (("/api/undo", None), ("/api/undo", {}), ("/api/skip", {"query_id": query["id"]})):
            refused = client.post(path, json=body, headers=headers)
            assert refused.status_code == 403, (headers, path, refused.text)
            assert refused.json()["error"] == "forbidden" and "Cross-site request refused" in refused.json()["detail"]
    assert len(answered(store)) == 2  # nothing undone, nothing skipped
    # Same origin by Sec-Fetch-Site alone, and the bearer header from anywhere, still work.
    assert client.post("/api/undo", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 201
    client.cookies.clear()
    assert client.post("/api/undo", headers={**bearer(ann), **EVIL}).status_code == 201
    assert [t for t, _ in answered(store)] == ["submit", "submit", "undo", "undo"]


def test_logout_and_login_refuse_other_origins(env):
    client, store, _, ann, _ = env
    key = login(client, ann)
    assert client.post("/logout", headers=EVIL, follow_redirects=False).status_code == 403
    assert store.session(key).name == "ann"  # a foreign page cannot log the evaluator out
    assert client.post("/login", data={"token": ann}, headers=EVIL).status_code == 403


# -- 2. Body-size limit, and the token checked before the body is read ----------------------------


def test_oversized_bodies_get_413_before_they_are_read(env):
    client, store, admin, _, _ = env
    big = {"queries": [{"kind": "thumbs", "instruction": "x" * MAX_BODY_BYTES, "completions": ["y"]}]}
    refused = client.post("/api/admin/queries", json=big, headers=bearer(admin))
    assert refused.status_code == 413 and refused.json()["error"] == "too_large"
    assert f"({MAX_BODY_BYTES} bytes)" in refused.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        yield json.dumps(big).encode()

    streamed = client.post("/api/admin/queries", content=chunks(), headers={**bearer(admin), "Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert len(store.queries()) == len(QUERIES)
    # The limit is configurable; a body within it is stored.
    roomy = TestClient(create_app(store, max_body_bytes=4 * MAX_BODY_BYTES))
    assert roomy.post("/api/admin/queries", json=big, headers=bearer(admin)).status_code == 201
    with pytest.raises(ConfigError, match="max_body_bytes must be an integer >= 1; got 0"):
        create_app(store, max_body_bytes=0)


def asgi_post(app, path, headers):
    """POST through the ASGI interface with a body the application must never ask for."""
    asked: list[str] = []
    sent: list[dict] = []

    async def receive():
        asked.append("body")
        return {"type": "http.request", "body": b"x" * 100, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], asked


def test_the_token_is_checked_before_the_body_is_read(env):
    client, _, _, ann, _ = env
    for path in ("/api/answers", "/api/admin/queries", "/api/undo"):
        assert asgi_post(client.app, path, {"host": "testserver"}) == (401, [])
        assert asgi_post(client.app, path, {"host": "testserver", "authorization": "Bearer 1.wrong"}) == (401, [])
    # The role too: an evaluator's post to an admin route is refused unread.
    assert asgi_post(client.app, "/api/admin/queries", {"host": "testserver", "authorization": f"Bearer {ann}"}) == (403, [])
    # A page form without a session is sent to the login page unread, a foreign one refused unread.
    assert asgi_post(client.app, "/answer", {"host": "testserver"}) == (303, [])
    assert asgi_post(client.app, "/chat", {"host": "testserver", "origin": "http://evil.example"}) == (403, [])
    # Declared too large: refused from the header alone.
    assert asgi_post(client.app, "/login", {"host": "testserver", "content-length": str(MAX_BODY_BYTES + 1)}) == (413, [])


# -- 3. Sessions that logout, expiry and revocation end ------------------------------------------


def test_logout_ends_the_session_and_the_cookie_never_holds_the_token(env):
    client, store, _, ann, _ = env
    key = login(client, ann)
    assert key != ann and ann.split(".", 1)[1] not in key
    assert client.get("/api/progress").status_code == 200
    assert client.post("/logout", headers=ORIGIN, follow_redirects=False).headers["location"] == "/login"
    client.cookies.set(COOKIE_NAME, key)  # the old cookie, replayed
    assert client.get("/api/progress").status_code == 401
    assert "session has ended" in client.get("/api/progress").json()["detail"]
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/api/progress", headers=bearer(ann)).status_code == 200  # the token itself still works


def test_a_session_expires_after_its_ttl(env):
    client, _, _, ann, clock = env
    reply = client.post("/login", data={"token": ann}, follow_redirects=False)
    assert "Max-Age=3600" in reply.headers["set-cookie"]
    clock.now += 3599
    assert client.get("/api/progress").status_code == 200
    clock.now += 1
    expired = client.get("/api/progress")
    assert expired.status_code == 401 and "session has expired" in expired.json()["detail"]
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_revoking_a_token_ends_it_and_its_sessions(env, capsys):
    client, store, admin, ann, _ = env
    key = login(client, ann)
    ann_id = int(ann.split(".")[0])
    revoked = client.post(f"/api/admin/evaluators/{ann_id}/revoke", headers=bearer(admin))
    assert revoked.status_code == 200 and revoked.json() == {"id": ann_id, "name": "ann", "role": "evaluator", "token": None}
    assert client.get("/api/progress").status_code == 401  # the session ended
    assert client.get("/api/progress", headers=bearer(ann)).status_code == 401  # so did the token
    assert client.post("/login", data={"token": ann}).status_code == 401
    assert client.post(f"/api/admin/evaluators/{ann_id}/revoke", headers=bearer(ann)).status_code == 401
    assert client.post("/api/admin/evaluators/99/revoke", headers=bearer(admin)).status_code == 404
    assert client.post(f"/api/admin/evaluators/{2**63}/revoke", headers=bearer(admin)).status_code == 422
    own = client.post("/api/admin/evaluators/1/revoke", headers=bearer(admin))
    assert own.status_code == 409 and "cannot revoke your own token" in own.json()["detail"]
    new = store.reset_token(ann_id)
    assert client.get("/api/progress", headers=bearer(new)).status_code == 200
    with pytest.raises(InvalidToken, match="session has ended"):
        store.session(key)  # a new token does not bring the old sessions back
    # The command line does the same on the server.
    _, bob = store.add_evaluator("bob")
    bob_key = store.open_session(bob)[1]
    url = str(store.url.target)
    assert cli_main(["revoke-token", "--store", url, "bob"]) == 0
    assert "The token of 'bob' is revoked" in capsys.readouterr().out
    with pytest.raises(InvalidToken, match="Invalid evaluator token"):
        store.authenticate(bob)
    with pytest.raises(InvalidToken, match="session has ended"):
        store.session(bob_key)
    assert cli_main(["revoke-token", "--store", url, "bobb"]) == 2
    assert "no evaluator is named 'bobb'. Did you mean 'bob'?" in capsys.readouterr().err


def test_an_old_token_cookie_is_not_a_session(env):
    client, _, _, ann, _ = env
    client.cookies.set(COOKIE_NAME, ann)  # what the cookie held before sessions
    assert client.get("/api/progress").status_code == 401
    client.cookies.set("instruct_env_token", ann)
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


# -- 4. Crafted ids and texts: 401/404/422, never 500 ---------------------------------------------


def test_crafted_tokens_ids_and_texts_are_client_errors(env):
    client, store, admin, ann, _ = env
    huge = 2**63
    for token in ("99999999999999999999999.x", "\u00b2.x", "1" * 19 + ".x", "-1.x", " 1.x", "1.x\u00e9"):
        reply = client.get("/api/next", headers={"Authorization": b"Bearer " + token.encode("latin-1")})
        assert reply.status_code == 401, (token, reply.text)
        assert reply.json()["error"] == "unauthorized"
    crafted = {"Cookie": f"{COOKIE_NAME}=\u00b2.x".encode("latin-1")}
    assert client.get("/api/next", headers=crafted).status_code == 401
    assert client.get("/", headers=crafted, follow_redirects=False).status_code == 303
    ann_h, admin_h = bearer(ann), bearer(admin)
    cases = [
        ("post", "/api/answers", {"json": {"query_id": huge, "answer": {"thumb": "up"}}}, ann_h, 422),
        ("post", "/api/answers", {"json": {"query_id": -1, "answer": {"thumb": "up"}}}, ann_h, 422),
        ("post", "/api/skip", {"json": {"query_id": huge}}, ann_h, 422),
        ("get", f"/api/queries/{huge}", {}, ann_h, 422),
        ("get", f"/api/queries/{10**30}", {}, ann_h, 422),
        ("get", f"/api/export?since={huge}", {}, admin_h, 422),
        ("get", f"/api/admin/queries?ids={huge}", {}, admin_h, 200),
        ("post", "/api/answers", {"json": {"query_id": 1, "answer": {"thumb": "up"}, "idempotency_key": "\ud800"}},
         ann_h, 422),
        ("post", "/api/skip", {"json": {"query_id": 1, "reason": "\udfff"}}, ann_h, None),
        ("post", "/api/admin/queries", {"json": {"queries": [{"kind": "comment", "instruction": "a\ud800b",
                                                              "completions": ["c"]}]}}, admin_h, 422),
        ("post", "/api/admin/queries", {"json": {"queries": [{"kind": "comment", "instruction": "i",
                                                              "completions": ["c"]}], "idempotency_key": "k\udc00"}},
         admin_h, 422),
        ("post", "/api/admin/evaluators", {"json": {"name": "\ud83d"}}, admin_h, 422),
    ]
    for method, path, kwargs, headers, status in cases:
        if "json" in kwargs:  # escaped as the probe sent it ("\\ud800"): a lone surrogate once parsed
            kwargs = {"content": json.dumps(kwargs["json"])}
            headers = {**headers, "Content-Type": "application/json"}
        reply = getattr(client, method)(path, headers=headers, **kwargs)
        assert reply.status_code < 500, (path, kwargs, reply.status_code, reply.text)
        if status is not None:
            assert reply.status_code == status, (path, kwargs, reply.text)
    assert store.events_since(0) == [] and len(store.queries()) == len(QUERIES)
    assert [e.name for e in store.evaluators()] == ["root", "ann"]
    # The pages: forms and query strings with the same ids.
    login(client, ann)
    client.get("/")
    for path, form in (("/answer", {"query_id": str(huge), "thumb": "up"}), ("/skip", {"query_id": str(10**30)}),
                       ("/answer", {"query_id": "\u0661", "thumb": "up"}), ("/answer", "query_id=1&thumb=%ED%A0%80")):
        if isinstance(form, str):  # percent-encoded surrogate bytes, as a crafted form sends them
            reply = client.post(path, content=form, follow_redirects=False,
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
        else:
            reply = client.post(path, data=form, follow_redirects=False)
        assert reply.status_code == 303 and "error=" in reply.headers["location"], (path, form, reply.text)
    for path in (f"/chat?c={huge}", f"/chat?c={10**30}"):
        assert client.get(path).status_code in (404, 422), path
    thumb = client.post("/chat/thumb", data={"query_id": str(huge), "conversation": "1", "thumb": "up"})
    assert thumb.status_code == 422 and "valid reply or conversation id" in thumb.text
    assert store.events_since(0) == []


def test_a_query_not_in_your_queue_looks_like_an_unknown_one(env):
    client, store, _, ann, _ = env
    _, bob = store.add_evaluator("bob")
    mine = client.get("/api/next", headers=bearer(bob)).json()["query"]["id"]
    theirs = client.get(f"/api/queries/{mine}", headers=bearer(ann))
    unknown = client.get("/api/queries/999", headers=bearer(ann))
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["detail"].replace(str(mine), "N") == unknown.json()["detail"].replace("999", "N")


def test_pages_give_the_stores_advice_in_their_own_words(env):
    client, store, _, ann, _ = env
    _, bob = store.add_evaluator("bob")
    theirs = client.get("/api/next", headers=bearer(bob)).json()["query"]["id"]
    api = client.post("/api/answers", json={"query_id": theirs, "answer": {"thumb": "up"}}, headers=bearer(ann))
    assert api.status_code == 404 and "GET /api/next" in api.json()["detail"]
    assert client.get("/api/next").json()["detail"].endswith("send 'Authorization: Bearer <token>' or log in.")
    empty = client.post("/login", data={"token": ""}, headers=ORIGIN)
    login(client, ann)
    answer = client.post("/answer", data={"query_id": str(theirs), "thumb": "up"}, headers=ORIGIN, follow_redirects=False)
    thumb = client.post("/chat/thumb", data={"query_id": str(theirs), "conversation": "1", "thumb": "up"}, headers=ORIGIN)
    queue = client.get(answer.headers["location"])  # (this assigns ann her first query, so it comes last)
    for page, status, advice in ((empty, 401, "enter the evaluator token an admin gave you."),
                                 (queue, 200, "answer the queries that the queue page shows you."),
                                 (thumb, 404, "answer the queries that the queue page shows you.")):
        shown = re.search(r'id="(?:login|flash)-error">([^<]*)<', page.text)
        assert page.status_code == status and shown is not None, page.text
        assert shown.group(1).endswith(advice), shown.group(1)
        assert not re.search(r"\w\(\)|/api/|Authorization|&lt;secret&gt;", shown.group(1)), shown.group(1)
    assert store.events_since(0) == []


# -- 5. Chat storage grows linearly, turns are capped ---------------------------------------------


def test_chat_turns_are_stored_once_and_turns_are_capped(tmp_path, monkeypatch):
    path = tmp_path / "c.db"
    store = FeedbackStore(path, synchronous="NORMAL")
    ann, _ = store.add_evaluator("ann")
    monkeypatch.setattr(store_module.chat, "MAX_CHAT_TURNS", 30)
    turns = []
    for turn in range(30):  # 30 turns of 3,000 + 1,000 characters: 120,000 typed
        conversation = None if not turns else turns[0].conversation
        turns.append(store.add_chat_turn(ann.id, conversation, turn, f"{turn} " + "m" * 3000, "r" * 1000))
    with sqlite3.connect(path) as conn:
        stored = sum(len(payload) for (payload,) in conn.execute("SELECT payload FROM queries"))
    typed = sum(len(t.message) + len(t.reply) for t in turns)
    assert typed <= stored < 1.1 * typed  # once each (plus the JSON around them); the whole history each time: 15x
    # The context is still there when read: the turns before, the newest that fit in MAX_CHAT_CONTEXT_CHARS.
    queries = store.queries()
    for t in turns:
        expected = store_module.chat_history(turns[:t.turn], store_module.MAX_CHAT_CONTEXT_CHARS)
        assert queries[t.query_id].context == expected == store.get_query(t.query_id).context
    assert queries[turns[-1].query_id].context.startswith("User: 26 ")  # the 4 newest turns fit in 16,000
    assert queries[turns[1].query_id].context == f"User: {turns[0].message}\nAssistant: {turns[0].reply}"
    from instruct_env.feedback.errors import FeedbackConflict

    with pytest.raises(FeedbackConflict, match="limit of 30 turns; start a new one"):
        store.add_chat_turn(ann.id, turns[0].conversation, 30, "one more", "r")
    store.close()


# -- 6. Chat replies are generated apart from the API ---------------------------------------------


def test_a_slow_policy_does_not_block_the_api_and_each_evaluator_waits_for_one_reply(tmp_path):
    store = FeedbackStore(tmp_path / "c.db", synchronous="NORMAL")
    tokens = [store.add_evaluator(f"e{i}")[1] for i in range(6)]
    store.add_queries(QUERIES)
    started, release = threading.Semaphore(0), threading.Event()
    threads_used: set[str] = set()

    def slow(messages):
        threads_used.add(threading.current_thread().name)
        started.release()
        assert release.wait(60), "the test never released the policy"
        return "late reply"

    app = create_app(store, responder=slow, chat_workers=1)  # at most 4 replies wait
    with TestClient(app) as client:
        keys = [store.open_session(t)[1] for t in tokens]
        results: dict[int, int] = {}

        def post(i):
            reply = client.post("/chat", data={"message": f"hi {i}", "conversation": "", "turn": "0"},
                                headers={"Cookie": f"{COOKIE_NAME}={keys[i]}"}, follow_redirects=False)
            results[i] = reply.status_code

        workers = [threading.Thread(target=post, args=(i,)) for i in range(4)]
        for w in workers:
            w.start()
        assert started.acquire(timeout=60)  # one reply is being generated
        while len(app.state.chat_busy) < 4:  # the other three wait in the chat pool's queue
            threading.Event().wait(0.01)
        # The API answers while the policy is stuck.
        assert client.get("/api/health").json() == {"status": "ok", "database": "ok"}
        assert client.get("/api/next", headers=bearer(tokens[5])).status_code == 200
        again = client.post("/chat", data={"message": "again", "conversation": "", "turn": "0"},
                            headers={"Cookie": f"{COOKIE_NAME}={keys[0]}"})
        assert again.status_code == 429 and "still being answered" in again.text
        full = client.post("/chat", data={"message": "me too", "conversation": "", "turn": "0"},
                           headers={"Cookie": f"{COOKIE_NAME}={keys[4]}"})
        assert full.status_code == 503 and "busy answering other evaluators" in full.text
        release.set()
        for w in workers:
            w.join(60)
    assert results == {0: 303, 1: 303, 2: 303, 3: 303}
    assert threads_used and all(name.startswith("instruct-env-chat") for name in threads_used)
    assert len(store.queries()) == len(QUERIES) + 4
    store.close()


def test_a_policys_exception_text_is_logged_not_shown(tmp_path, caplog):
    store = FeedbackStore(tmp_path / "c.db", synchronous="NORMAL")
    _, token = store.add_evaluator("ann")

    def broken(messages):
        raise RuntimeError("CUDA out of memory at /secret/path")

    client = TestClient(create_app(store, responder=broken))
    client.cookies.set(COOKIE_NAME, store.open_session(token)[1])
    with caplog.at_level(logging.ERROR, logger="instruct_env.feedback.server"):
        failed = client.post("/chat", data={"message": "hi", "conversation": "", "turn": "0"})
    assert failed.status_code == 502 and "/secret/path" not in failed.text
    assert "/secret/path" in caplog.text
    store.close()


# -- 7. A locked, read-only or unreachable database ----------------------------------------------


def test_a_database_locked_elsewhere_answers_503_fast_and_health_says_so(tmp_path):
    path = tmp_path / "locked.db"
    store = FeedbackStore(path, min_evaluators=1, gold_rate=0.0, synchronous="NORMAL", busy_timeout=0.2)
    _, ann = store.add_evaluator("ann")
    store.add_queries(QUERIES)
    client = TestClient(create_app(store))
    query = client.get("/api/next", headers=bearer(ann)).json()["query"]["id"]
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        refused = client.post("/api/answers", json={"query_id": query, "answer": {"thumb": "up"}}, headers=bearer(ann))
        assert refused.status_code == 503 and refused.json()["error"] == "unavailable"
        assert "locked by another writer" in refused.json()["detail"] and "nothing was stored" in refused.json()["detail"]
        # Reads still work: the queue shows the query already assigned, health answers.
        assert client.get("/api/next", headers=bearer(ann)).json()["query"]["id"] == query
        assert client.get("/api/health").json() == {"status": "ok", "database": "ok"}
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert client.post("/api/answers", json={"query_id": query, "answer": {"thumb": "up"}},
                       headers=bearer(ann)).status_code == 201
    store.close()


def test_a_read_only_database_is_refused_at_start(tmp_path, monkeypatch):
    path = tmp_path / "ro.db"
    FeedbackStore(path).close()
    connect = store_module.backends._SQLite.connect

    def read_only(self):  # what a file the server's user may only read behaves like
        conn = connect(self)
        conn.execute("PRAGMA query_only = ON")
        return conn

    monkeypatch.setattr(store_module.backends._SQLite, "connect", read_only)
    with pytest.raises(StoreUnavailable, match="Cannot open the feedback store for writing: .*is read-only"):
        create_app(str(path))


def test_an_unreachable_postgres_is_unavailable_not_a_client_error(tmp_path):
    pytest.importorskip("psycopg", reason="needs psycopg: pip install 'instruct-env[postgres]'")
    with pytest.raises(StoreUnavailable, match="Cannot connect to the PostgreSQL feedback store") as info:
        FeedbackStore("postgresql://ann:s3cret@127.0.0.1:1/none?connect_timeout=2")
    assert isinstance(info.value, ConfigError) and "s3cret" not in str(info.value)


def test_health_reports_a_database_that_stopped_answering(env):
    client, store, _, _, _ = env
    assert client.get("/api/health").status_code == 200
    store.close()  # from the server's side, a database that no longer answers
    reply = client.get("/api/health")
    assert reply.status_code == 503 and reply.json()["status"] == "unavailable"
    assert "closed" in reply.json()["database"]


# -- 8. Smaller findings --------------------------------------------------------------------------


def test_pages_and_api_send_security_headers(env):
    client, _, _, ann, _ = env
    login(client, ann)
    for path in ("/", "/chat", "/login", "/api/next", "/api/health"):
        headers = client.get(path).headers
        assert headers["cache-control"] == "no-store", path
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY", path
    policy = client.get("/").headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src 'sha256-" in policy
    assert "content-security-policy" not in client.get("/api/next").headers


def test_cookie_secure_reaches_the_cookie(tmp_path):
    store = FeedbackStore(tmp_path / "c.db", synchronous="NORMAL")
    _, token = store.add_evaluator("ann")
    client = TestClient(create_app(store, cookie_secure=True), base_url="https://testserver")
    reply = client.post("/login", data={"token": token}, follow_redirects=False)
    assert "Secure" in reply.headers["set-cookie"] and "HttpOnly" in reply.headers["set-cookie"]
    store.close()


def test_rating_scales_are_bounded_and_unknown_options_are_named():
    assert make_kind("rating", low=0, high=100).high == 100
    with pytest.raises(ConfigError, match=r"at most 101 scores .*got low=1, high=1000000 \(1000000 scores\)"):
        make_kind("rating", low=1, high=1_000_000)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['hi'\]; accepted options: low, high"):
        make_kind("rating", low=1, hi=7)


def test_remote_store_cuts_query_batches_to_fit_the_body_limit(tmp_path):
    from instruct_env.feedback.oracle import RemoteStore
    from instruct_env.feedback.store import Query

    store = FeedbackStore(tmp_path / "r.db", synchronous="NORMAL")
    _, admin = store.add_evaluator("root", role="admin")
    client = TestClient(create_app(store, max_body_bytes=64 * 1024))
    sizes: list[int] = []
    client.event_hooks["request"].append(lambda request: sizes.append(len(request.read())))
    remote = RemoteStore("http://testserver", admin, client=client)
    remote.batch_bytes = 32 * 1024
    queries = [Query("thumbs", f"Say {i} " + "x" * 1000, ["y"]) for i in range(100)]  # ~100 kB in all
    ids = remote.add_queries(queries)
    assert ids == list(range(1, 101)) and [store.get_query(i).instruction for i in (1, 100)] == [
        queries[0].instruction, queries[99].instruction]
    assert len(sizes) >= 4 and max(sizes) <= 64 * 1024
    store.close()


def test_serve_command_passes_cookie_secure(monkeypatch, tmp_path):
    import instruct_env.feedback as feedback

    seen: list[dict] = []
    monkeypatch.setattr(feedback, "serve", lambda store, **options: seen.append(options))
    assert cli_main(["serve", "--store", str(tmp_path / "f.db"), "--cookie-secure"]) == 0
    assert cli_main(["serve", "--store", str(tmp_path / "f.db")]) == 0
    assert [options["cookie_secure"] for options in seen] == [True, False]
