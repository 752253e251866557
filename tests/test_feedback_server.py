"""The REST API and the evaluator pages, through FastAPI's TestClient."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi", reason="the server needs the 'server' extra: pip install 'instruct-env[server]'")
pytest.importorskip("httpx", reason="fastapi.testclient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from instruct_env.feedback import FeedbackStore, create_app  # noqa: E402
from instruct_env.feedback.server import COOKIE_NAME  # noqa: E402


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


QUERIES = [
    {"kind": "rating", "instruction": "Sort: 3 1 2", "completions": ["1 2 3"], "selector": "uncertainty", "score": 0.9},
    {"kind": "pairwise", "instruction": "Greet", "completions": ["hello", "go away"], "metadata": {"model": "m1"}},
    {"kind": "thumbs", "instruction": "Gold one", "completions": ["ok"], "gold": {"thumb": "up"}},
]


@pytest.fixture
def env(tmp_path):
    store = FeedbackStore(tmp_path / "f.db", min_evaluators=2, gold_rate=0.0, seed=0, synchronous="NORMAL")
    _, admin = store.add_evaluator("root", role="admin")
    client = TestClient(create_app(store))
    ids = client.post("/api/admin/queries", json={"queries": QUERIES}, headers=bearer(admin)).json()["ids"]
    tokens = {}
    for name in ("ann", "bob"):
        reply = client.post("/api/admin/evaluators", json={"name": name}, headers=bearer(admin))
        assert reply.status_code == 201
        tokens[name] = reply.json()["token"]
    yield client, store, admin, tokens, ids
    store.close()


def error(reply, status, code, fragment):
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["error"] == code
    assert fragment in body["detail"], body["detail"]


def test_requests_without_a_valid_token_get_401(env):
    client, store, _, tokens, _ = env
    assert client.get("/api/health").json() == {"status": "ok", "database": "ok"}
    for method, path in [("get", "/api/next"), ("post", "/api/answers"), ("post", "/api/undo"),
                         ("post", "/api/skip"), ("get", "/api/progress"), ("get", "/api/export"),
                         ("post", "/api/admin/evaluators"), ("post", "/api/admin/queries"),
                         ("get", "/api/admin/metrics"), ("get", "/api/queries/1")]:
        reply = getattr(client, method)(path)
        error(reply, 401, "unauthorized", "No evaluator token given")
        assert reply.headers["www-authenticate"] == "Bearer"
    error(client.get("/api/next", headers=bearer("1.wrong")), 401, "unauthorized", "Invalid evaluator token")
    error(client.get("/api/next", headers=bearer("garbage")), 401, "unauthorized", "Malformed evaluator token")
    client.cookies.set(COOKIE_NAME, store.open_session(tokens["ann"])[1])  # the pages' session works too
    assert client.get("/api/progress").status_code == 200
    client.cookies.clear()


def test_admin_endpoints_need_the_admin_role(env):
    client, _, admin, tokens, _ = env
    ann = bearer(tokens["ann"])
    for method, path in [("get", "/api/export"), ("get", "/api/admin/metrics"), ("get", "/api/admin/evaluators")]:
        error(getattr(client, method)(path, headers=ann), 403, "forbidden", "needs the admin role")
    error(client.post("/api/admin/evaluators", json={"name": "x"}, headers=ann), 403, "forbidden", "admin role")
    error(client.post("/api/admin/queries", json={"queries": QUERIES}, headers=ann), 403, "forbidden", "admin role")
    error(client.post("/api/admin/evaluators", json={"name": "ann"}, headers=bearer(admin)),
          409, "conflict", "An evaluator named 'ann' already exists")
    listed = client.get("/api/admin/evaluators", headers=bearer(admin)).json()
    assert [(e["name"], e["role"], e["token"]) for e in listed] == [
        ("root", "admin", None), ("ann", "evaluator", None), ("bob", "evaluator", None)
    ]


def test_admin_query_upload_is_validated_all_or_nothing(env):
    client, store, admin, _, _ = env
    h = bearer(admin)
    bad_kind = {"queries": [QUERIES[0], {"kind": "ratings", "instruction": "x", "completions": ["y"]}]}
    error(client.post("/api/admin/queries", json=bad_kind, headers=h), 422, "invalid_request",
          "queries[1]: Unknown feedback kind 'ratings'. Did you mean 'rating'")
    missing = {"queries": [{"kind": "rating", "instruction": "x"}]}
    error(client.post("/api/admin/queries", json=missing, headers=h), 422, "invalid_request",
          "queries.0.completions: Field required")
    extra = {"queries": [{**QUERIES[0], "colour": "red"}]}
    error(client.post("/api/admin/queries", json=extra, headers=h), 422, "invalid_request",
          "queries.0.colour: Extra inputs are not permitted")
    error(client.post("/api/admin/queries", json={"queries": []}, headers=h), 422, "invalid_request", "queries:")
    assert len(store.queries()) == 3


def test_evaluator_flow_next_answer_edit_undo_skip(env):
    client, store, _, tokens, ids = env
    ann = bearer(tokens["ann"])
    reply = client.get("/api/next", headers=ann)
    assert reply.status_code == 200
    body = reply.json()
    query = body["query"]
    assert query["id"] == ids[0] and query["kind"] == "rating" and query["options"] == {"low": 1, "high": 5}
    assert set(query) == {"id", "kind", "options", "instruction", "context", "completions", "status", "answer"}
    assert "uncertainty" not in reply.text  # selector, score, gold and metadata stay hidden
    assert body["progress"] == {"answered": 0, "skipped": 0, "remaining": 2}

    submit = {"query_id": ids[0], "answer": {"rating": 4}, "idempotency_key": "abc"}
    first = client.post("/api/answers", json=submit, headers=ann)
    assert first.status_code == 201
    assert first.json()["type"] == "submit" and first.json()["replayed"] is False
    retry = client.post("/api/answers", json=submit, headers=ann)
    assert retry.status_code == 200 and retry.json()["replayed"] is True
    assert retry.json()["event_id"] == first.json()["event_id"]
    error(client.post("/api/answers", json={**submit, "idempotency_key": None}, headers=ann),
          409, "conflict", "already answered query 1")
    edited = client.post("/api/answers", json={"query_id": ids[0], "answer": {"rating": 2}, "edit": True},
                         headers={**ann, "Idempotency-Key": "e1"})
    assert edited.status_code == 201 and edited.json()["type"] == "edit"
    assert client.get(f"/api/queries/{ids[0]}", headers=ann).json()["answer"] == {"rating": 2}

    nxt = client.get("/api/next", headers=ann).json()["query"]
    assert nxt["id"] == ids[1] and sorted(nxt["completions"]) == ["go away", "hello"]
    skip = client.post("/api/skip", json={"query_id": ids[1], "reason": "not sure"}, headers=ann)
    assert skip.status_code == 201 and skip.json()["progress"] == {"answered": 1, "skipped": 1, "remaining": 0}
    error(client.post("/api/skip", json={"query_id": ids[1]}, headers=ann), 409, "conflict", "already skipped")
    assert client.get("/api/next", headers=ann).json()["query"] is None

    undo = client.post("/api/undo", headers=ann)  # no body at all
    assert undo.status_code == 201
    assert undo.json()["type"] == "undo" and undo.json()["ref"] == skip.json()["event_id"]
    assert client.get("/api/next", headers=ann).json()["query"]["id"] == ids[1]
    again = client.post("/api/undo", json={"idempotency_key": "u"}, headers=ann)
    assert again.json()["ref"] == edited.json()["event_id"]  # the edit is undone: rating 4 is back
    assert client.get(f"/api/queries/{ids[0]}", headers=ann).json()["answer"] == {"rating": 4}
    assert client.post("/api/undo", json={"idempotency_key": "u"}, headers=ann).json()["replayed"] is True
    client.post("/api/undo", headers=ann)
    error(client.post("/api/undo", headers=ann), 409, "conflict", "Nothing to undo")
    assert client.get("/api/progress", headers=ann).json() == {"answered": 0, "skipped": 0, "remaining": 2}
    types = [e.type for e in store.events_since(0)]
    assert types == ["submit", "edit", "skip", "undo", "undo", "undo"]


def test_pairwise_answers_are_blind_and_stored_in_canonical_terms(env):
    client, store, _, tokens, ids = env
    for name in ("ann", "bob"):
        h = bearer(tokens[name])
        client.post("/api/answers", json={"query_id": client.get("/api/next", headers=h).json()["query"]["id"],
                                          "answer": {"rating": 3}}, headers=h)
        shown = client.get("/api/next", headers=h).json()["query"]["completions"]
        left_is_hello = shown[0] == "hello"
        reply = client.post("/api/answers", json={"query_id": ids[1], "answer": {"choice": "A", "strength": 1}},
                            headers=h)
        assert reply.status_code == 201
        stored = [a for a in store.current_answers(kind="pairwise") if a.event_id == reply.json()["event_id"]]
        assert stored[0].answer == {"choice": "A" if left_is_hello else "B", "strength": 1}


def test_errors_for_other_evaluators_queries_and_malformed_bodies(env):
    client, _, _, tokens, ids = env
    ann, bob = bearer(tokens["ann"]), bearer(tokens["bob"])
    client.get("/api/next", headers=ann)  # query 1 is now ann's
    client.get("/api/next", headers=bob)
    client.post("/api/answers", json={"query_id": ids[0], "answer": {"rating": 5}}, headers=ann)
    client.get("/api/next", headers=ann)  # ann now holds query 2, bob does not
    error(client.post("/api/answers", json={"query_id": ids[1], "answer": {"choice": "A"}}, headers=bob),
          404, "not_found", "Query 2 is not in your queue")
    error(client.get(f"/api/queries/{ids[1]}", headers=bob), 404, "not_found", "Query 2 is not in your queue")
    error(client.post("/api/skip", json={"query_id": ids[1]}, headers=bob), 404, "not_found", "not in your queue")
    bob_view = client.get(f"/api/queries/{ids[0]}", headers=bob).json()
    assert bob_view["answer"] is None and bob_view["status"] is None  # ann's answer stays hidden
    error(client.post("/api/answers", json={"query_id": 999, "answer": {"rating": 5}}, headers=ann),
          404, "not_found", "Query 999 is not in your queue")
    error(client.get("/api/queries/999", headers=ann), 404, "not_found", "Query 999 is not in your queue")
    error(client.post("/api/answers", json={"answer": {"rating": 5}}, headers=ann),
          422, "invalid_request", "query_id: Field required")
    error(client.post("/api/answers", content=b"{not json", headers={**ann, "Content-Type": "application/json"}),
          422, "invalid_request", "JSON decode error")
    error(client.post("/api/answers", json={"query_id": "one", "answer": {}}, headers=ann),
          422, "invalid_request", "query_id: Input should be a valid integer")
    error(client.post("/api/answers", json={"query_id": ids[1], "answer": {"choice": "left"}}, headers=ann),
          422, "invalid_request", "choice must be one of 'A', 'B', 'tie', 'both_bad'; got 'left'")
    error(client.post("/api/answers", json={"query_id": ids[1], "answer": {"choice": "A"}, "idempotency_key": "x"},
                      headers={**ann, "Idempotency-Key": "y"}),
          422, "invalid_request", "Idempotency-Key header and the body's idempotency_key differ")
    error(client.post("/api/skip", json={"query_id": ids[1], "reason": "x" * 1001}, headers=ann),
          422, "invalid_request", "reason: String should have at most 1000 characters")
    error(client.post("/api/undo", json={"extra": 1}, headers=ann), 422, "invalid_request", "extra")
    error(client.get("/api/nothing-here", headers=ann), 404, "not_found", "Not Found")
    # Nothing from the failed requests was stored.
    assert [e.type for e in env[1].events_since(0)] == ["submit"]


def test_export_and_metrics(env):
    client, store, admin, tokens, ids = env
    h = bearer(admin)
    for name in ("ann", "bob"):
        t = bearer(tokens[name])
        while (q := client.get("/api/next", headers=t).json()["query"]) is not None:
            answer = {"rating": {"rating": 4}, "pairwise": {"choice": "tie"}, "thumbs": {"thumb": "up"}}[q["kind"]]
            assert client.post("/api/answers", json={"query_id": q["id"], "answer": answer}, headers=t).status_code == 201
    reply = client.get("/api/export", headers=h)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in reply.text.splitlines()]
    assert lines == [e.to_json() for e in store.events_since(0)]
    assert len(lines) == 4
    tail = client.get("/api/export", params={"since": lines[1]["id"]}, headers=h).text.splitlines()
    assert [json.loads(x)["id"] for x in tail] == [lines[2]["id"], lines[3]["id"]]
    assert client.get("/api/export", params={"format": "preferences"}, headers=h).text == ""  # ties only
    error(client.get("/api/export", params={"format": "csv"}, headers=h), 422, "invalid_request", "format:")
    error(client.get("/api/export", params={"since": -1}, headers=h), 422, "invalid_request", "since:")
    metrics = client.get("/api/admin/metrics", headers=h).json()
    assert metrics["agreement"] == {"pairwise": 1.0, "rating": 1.0}
    assert metrics["queries"] == {"total": 3, "gold": 1, "chat": 0, "complete": 2, "min_evaluators": 2}
    assert [e["answered"] for e in metrics["evaluators"]] == [0, 2, 2]


def test_openapi_documents_the_api(env):
    client = env[0]
    spec = client.get("/openapi.json").json()
    for path in ["/api/next", "/api/answers", "/api/undo", "/api/skip", "/api/progress", "/api/export",
                 "/api/admin/evaluators", "/api/admin/queries", "/api/admin/metrics"]:
        assert path in spec["paths"], path
    assert "AnswerIn" in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "/login" not in spec["paths"]


def test_pages_login_answer_skip_undo(env):
    client, store, _, tokens, ids = env
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    bad = client.post("/login", data={"token": "1.nope"})
    assert bad.status_code == 401 and "Invalid evaluator token" in bad.text
    login = client.post("/login", data={"token": tokens["ann"]}, follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and f"{COOKIE_NAME}=" in cookie
    page = client.get("/")
    assert page.status_code == 200
    assert 'data-kind="rating"' in page.text and "Guidelines" in page.text and "Rate how well" in page.text
    assert "Sort: 3 1 2" in page.text and "keydown" in page.text and 'id="help"' in page.text
    assert "Answered <b id=\"n-answered\">0</b>" in page.text

    saved = client.post("/answer", data={"query_id": ids[0], "rating": "5", "idempotency_key": "p1"},
                        follow_redirects=False)
    assert saved.status_code == 303 and "Saved" in saved.headers["location"]
    client.post("/answer", data={"query_id": ids[0], "rating": "5", "idempotency_key": "p1"})  # double submit
    page = client.get("/")
    assert 'data-kind="pairwise"' in page.text and "Response A" in page.text
    wrong = client.post("/answer", data={"query_id": ids[1], "choice": "Z"}, follow_redirects=False)
    assert "choice+must+be+one+of" in wrong.headers["location"]
    assert "choice must be one of" in client.get(wrong.headers["location"]).text
    client.post("/skip", data={"query_id": ids[1], "reason": "tired"})
    assert 'id="done"' in client.get("/").text
    client.post("/undo", data={"idempotency_key": "u1"})
    assert 'data-kind="pairwise"' in client.get("/").text
    cross = client.post("/undo", data={}, headers={"Origin": "http://evil.example"}, follow_redirects=False)
    assert "Cross-site" in cross.headers["location"]
    assert [(e.type, e.answer) for e in store.events_since(0)] == [
        ("submit", {"rating": 5}), ("skip", {"reason": "tired"}), ("undo", None)
    ]
    client.post("/logout")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_every_kind_has_a_page(tmp_path):
    store = FeedbackStore(tmp_path / "p.db", min_evaluators=1, gold_rate=0.0, synchronous="NORMAL")
    store.add_queries([
        {"kind": "thumbs", "instruction": "T <b>bold</b>", "completions": ["t"]},
        {"kind": "ranking", "instruction": "R", "completions": ["r1", "r2", "r3"]},
        {"kind": "comment", "instruction": "C", "completions": ["c"]},
        {"kind": "edit", "instruction": "E", "completions": ["model <answer>"], "context": "ctx"},
        {"kind": "rating", "instruction": "S", "completions": ["s"], "options": {"low": 0, "high": 10}},
    ])
    _, token = store.add_evaluator("ann")
    client = TestClient(create_app(store, guidelines={"thumbs": "Custom thumbs guidance."}))
    client.cookies.set(COOKIE_NAME, store.open_session(token)[1])
    answers = [
        ("thumbs", {"thumb": "down"}, ["Custom thumbs guidance.", "T &lt;b&gt;bold&lt;/b&gt;"]),
        ("ranking", {"ranking": "3,1,2"}, ["Response 3", 'data-count="3"']),
        ("comment", {"comment": "too short"}, ['textarea id="comment"']),
        ("edit", {"completion": "fixed"}, ["model &lt;answer&gt;</textarea>", "ctx"]),
        ("rating", {"rating": "10"}, ['value="10"', 'value="0" data-key="0"']),
    ]
    for qid, (kind, form, fragments) in enumerate(answers, start=1):
        page = client.get("/").text
        assert f'data-kind="{kind}"' in page
        for fragment in fragments:
            assert fragment in page, (kind, fragment)
        reply = client.post("/answer", data={"query_id": qid, **form}, follow_redirects=False)
        assert "Saved" in reply.headers["location"], reply.headers["location"]
    assert 'id="done"' in client.get("/").text
    stored = {a.query_id: a.answer for a in store.current_answers()}
    order = store.get_query(2).completions
    shown = store.view(1, 2).completions
    assert [order[i] for i in stored[2]["ranking"]] == [shown[2], shown[0], shown[1]]
    assert stored[1] == {"thumb": "down"} and stored[4] == {"completion": "fixed"} and stored[5] == {"rating": 10}
    store.close()


def test_a_retried_query_batch_gets_the_same_ids(env):
    client, store, admin, _, _ = env
    before = len(store.queries())
    body = {"queries": QUERIES[:2], "idempotency_key": "batch-7"}
    first = client.post("/api/admin/queries", json=body, headers=bearer(admin))
    again = client.post("/api/admin/queries", json=body, headers=bearer(admin))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["ids"] == first.json()["ids"] and len(store.queries()) == before + 2
    header = client.post("/api/admin/queries", json={"queries": QUERIES[:2]},
                         headers={**bearer(admin), "Idempotency-Key": "batch-7"})
    assert header.status_code == 200 and header.json()["ids"] == first.json()["ids"]
    error(client.post("/api/admin/queries", json={"queries": QUERIES[2:], "idempotency_key": "batch-7"},
                      headers=bearer(admin)), 409, "conflict", "already used for a different batch")
    assert len(store.queries()) == before + 2


def test_remote_store_retries_a_post_whose_reply_was_lost(env):
    import httpx

    from instruct_env.feedback.oracle import RemoteStore
    from instruct_env.feedback.store import Query

    client, store, admin, _, _ = env

    class LosesFirstReply:
        """Forwards every request, but the first POST's reply is lost on the way back."""

        def __init__(self):
            self.posts = 0

        def request(self, method, path, **kwargs):
            reply = client.request(method, path, **kwargs)
            if method == "POST":
                self.posts += 1
                if self.posts == 1:
                    raise httpx.ReadTimeout("reply lost")
            return reply

        def close(self):
            pass

    flaky = LosesFirstReply()
    remote = RemoteStore("http://testserver", admin, client=flaky)
    remote.retry_delay_s = 0.0
    before = len(store.queries())
    ids = remote.add_queries([Query("thumbs", f"Instruction {i}", [f"answer {i}"]) for i in range(4)])
    assert flaky.posts == 2  # sent twice...
    assert len(ids) == 4 and len(store.queries()) == before + 4  # ...stored once
    assert [store.get_query(i).instruction for i in ids] == [f"Instruction {i}" for i in range(4)]
