"""The feedback store: event log, current answers, assignment, gold mixing, tokens, watermarks.

Store tests run on SQLite and, when ``INSTRUCT_ENV_TEST_POSTGRES_URL`` is set, on PostgreSQL too
(see ``store_backends.py``).
"""

from __future__ import annotations

import importlib.util
import random
import threading
import time
import urllib.parse

import pytest

from instruct_env.error import ConfigError, MissingDependency
from instruct_env.feedback import store as store_module
from instruct_env.feedback.errors import (
    FeedbackConflict,
    InvalidAnswer,
    InvalidToken,
    QueryNotFound,
    StoreUnavailable,
)
from instruct_env.feedback.store import EventCounts, FeedbackStore, Query, parse_store_url, redact_url, replay


@pytest.fixture
def db(urls):
    return urls.new()


def thumbs(n, gold=None, start=0):
    return [
        Query("thumbs", f"Instruction {i}", [f"answer {i}"], gold=gold)
        for i in range(start, start + n)
    ]


def current(store):
    return {(a.query_id, a.evaluator_id): (a.status, a.answer, a.event_id) for a in store.current_answers(status=None)}


def replayed(store):
    return {
        pair: ("skipped" if e.type == "skip" else "answered", e.answer, e.id)
        for pair, e in replay(store.events_since(0)).items()
    }


def test_current_answers_always_match_a_replay_of_the_log(db):
    store = FeedbackStore(db, min_evaluators=3, gold_rate=0.0, seed=1)
    store.add_queries(thumbs(12))
    people = [store.add_evaluator(f"e{i}")[0] for i in range(3)]
    rng = random.Random(0)
    counts = dict.fromkeys(("submit", "edit", "undo", "skip", "conflict"), 0)
    for _ in range(200):
        person = rng.choice(people)
        action = rng.choice(["submit", "submit", "edit", "undo", "skip"])
        view = store.next_query(person.id)
        try:
            if action == "undo":
                store.undo(person.id)
            elif action == "edit":
                answered = [a for a in store.current_answers() if a.evaluator_id == person.id]
                if not answered:
                    continue
                store.submit(person.id, rng.choice(answered).query_id, {"thumb": "down"}, edit=True)
            elif view is None:
                continue
            elif action == "skip":
                store.skip(person.id, view.id, reason="unsure")
            else:
                store.submit(person.id, view.id, {"thumb": rng.choice(["up", "down"])})
            counts[action] += 1
        except FeedbackConflict:
            counts["conflict"] += 1
        assert current(store) == replayed(store)
    assert all(counts[k] > 5 for k in ("submit", "edit", "undo", "skip")), counts
    ids = [e.id for e in store.events_since(0)]
    assert ids == sorted(set(ids))
    store.close()


def test_undo_walks_back_through_the_evaluators_answers(db):
    store = FeedbackStore(db, min_evaluators=1, gold_rate=0.0)
    q1, q2 = store.add_queries(thumbs(2))
    ann, _ = store.add_evaluator("ann")
    assert store.next_query(ann.id).id == q1
    store.submit(ann.id, q1, {"thumb": "up"})
    assert store.next_query(ann.id).id == q2
    store.submit(ann.id, q2, {"thumb": "down"})
    store.submit(ann.id, q2, {"thumb": "up"}, edit=True)

    undo = store.undo(ann.id).event  # cancels the edit: the first answer to q2 comes back
    assert (undo.type, undo.query_id, undo.answer) == ("undo", q2, None)
    assert store.view(ann.id, q2).answer == {"thumb": "down"}
    store.undo(ann.id)  # cancels the answer to q2: q2 is open again
    assert store.view(ann.id, q2).status is None
    assert store.next_query(ann.id).id == q2
    store.undo(ann.id)  # then q1; the most recently re-opened query comes first
    assert store.current_answers() == []
    assert store.next_query(ann.id).id == q1
    with pytest.raises(FeedbackConflict, match="Nothing to undo"):
        store.undo(ann.id)
    types = [e.type for e in store.events_since(0)]
    assert types == ["submit", "submit", "edit", "undo", "undo", "undo"]
    assert store.progress(ann.id).to_json() == {"answered": 0, "skipped": 0, "remaining": 2}
    store.close()


def test_skip_edit_and_double_answers_conflict(db):
    store = FeedbackStore(db, min_evaluators=1, gold_rate=0.0)
    q1, q2 = store.add_queries(thumbs(2))
    ann, _ = store.add_evaluator("ann")
    store.next_query(ann.id)
    with pytest.raises(FeedbackConflict, match="Cannot edit your answer to query 1: you have not answered it"):
        store.submit(ann.id, q1, {"thumb": "up"}, edit=True)
    store.skip(ann.id, q1, reason="  I do not read Spanish ")
    assert store.events_since(0)[-1].answer == {"reason": "I do not read Spanish"}
    with pytest.raises(FeedbackConflict, match="already skipped query 1; undo that first"):
        store.skip(ann.id, q1)
    with pytest.raises(FeedbackConflict, match="already skipped query 1"):
        store.submit(ann.id, q1, {"thumb": "up"})
    with pytest.raises(FeedbackConflict, match="you have skipped it"):
        store.submit(ann.id, q1, {"thumb": "up"}, edit=True)
    assert store.next_query(ann.id).id == q2
    store.submit(ann.id, q2, {"thumb": "up"})
    with pytest.raises(FeedbackConflict, match="already answered query 2; to change your answer submit with edit=true"):
        store.submit(ann.id, q2, {"thumb": "down"})
    store.submit(ann.id, q2, {"thumb": "down"}, edit=True)
    assert store.progress(ann.id).to_json() == {"answered": 1, "skipped": 1, "remaining": 0}
    with pytest.raises(InvalidAnswer, match="skip reason must be a string of at most 1000"):
        store.skip(ann.id, q1, reason="x" * 1001)
    store.close()


def test_access_is_limited_to_the_evaluators_own_queue(db):
    store = FeedbackStore(db, min_evaluators=1, gold_rate=0.0)
    [q] = store.add_queries(thumbs(1))
    ann, _ = store.add_evaluator("ann")
    bob, _ = store.add_evaluator("bob")
    store.next_query(ann.id)
    # Someone else's query and an unknown id get the same answer: nobody can probe which ids exist.
    with pytest.raises(QueryNotFound, match="Query 1 is not in your queue"):
        store.submit(bob.id, q, {"thumb": "up"})
    with pytest.raises(QueryNotFound, match="Query 1 is not in your queue"):
        store.view(bob.id, q)
    with pytest.raises(QueryNotFound, match="Query 99 is not in your queue"):
        store.submit(ann.id, 99, {"thumb": "up"})
    with pytest.raises(QueryNotFound, match="No query has id 99"):
        store.get_query(99)
    with pytest.raises(QueryNotFound, match="No evaluator has id 42"):
        store.next_query(42)
    with pytest.raises(InvalidAnswer, match="thumb must be 'up' or 'down'; got 'maybe'"):
        store.submit(ann.id, q, {"thumb": "maybe"})
    assert store.events_since(0) == []
    store.close()


def test_idempotency_key_stores_a_retried_submit_once(db):
    store = FeedbackStore(db, min_evaluators=1, gold_rate=0.0)
    [q] = store.add_queries(thumbs(1))
    ann, _ = store.add_evaluator("ann")
    store.next_query(ann.id)
    first = store.submit(ann.id, q, {"thumb": "up"}, idempotency_key="k1")
    again = store.submit(ann.id, q, {"thumb": "up"}, idempotency_key="k1")
    assert (first.replayed, again.replayed) == (False, True)
    assert again.event == first.event
    with pytest.raises(FeedbackConflict, match="Idempotency key 'k1' was already used for a different request"):
        store.submit(ann.id, q, {"thumb": "down"}, edit=True, idempotency_key="k1")
    undo = store.undo(ann.id, idempotency_key="u1")
    assert store.undo(ann.id, idempotency_key="u1").event == undo.event
    assert [e.type for e in store.events_since(0)] == ["submit", "undo"]
    store.close()


def test_a_failed_write_leaves_nothing_behind(db, monkeypatch):
    store = FeedbackStore(db, min_evaluators=1, gold_rate=0.0)
    [q] = store.add_queries(thumbs(1))
    ann, _ = store.add_evaluator("ann")
    store.next_query(ann.id)

    def broken(events):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store_module.core, "replay", broken)  # fails after the event row is inserted
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.submit(ann.id, q, {"thumb": "up"})
    monkeypatch.undo()
    assert store.events_since(0) == [] and store.current_answers(status=None) == []
    with pytest.raises(ConfigError, match=r"queries\[1\]: A 'pairwise' query needs 2 completion\(s\); got 1"):
        store.add_queries([Query("thumbs", "ok", ["x"]), {"kind": "pairwise", "instruction": "i", "completions": ["a"]}])
    assert len(store.queries()) == 1
    store.submit(ann.id, q, {"thumb": "up"})
    assert len(store.events_since(0)) == 1
    store.close()


def test_watermark_reads_every_event_exactly_once_across_reopening(db):
    store = FeedbackStore(db, min_evaluators=2, gold_rate=0.0)
    store.add_queries(thumbs(6))
    people = [store.add_evaluator(name)[0] for name in ("ann", "bob")]

    def answer_one(store, person):
        view = store.next_query(person.id)
        store.submit(person.id, view.id, {"thumb": "up"})

    seen = []
    watermark = 0
    for _ in range(3):
        for person in people:
            answer_one(store, person)
        store.undo(people[0].id)
        batch = store.events_since(watermark)
        assert batch and all(e.id > watermark for e in batch)
        seen += batch
        watermark = batch[-1].id
        assert store.events_since(watermark) == []
        store.close()
        store = FeedbackStore(db, min_evaluators=2, gold_rate=0.0)  # a restart of either side
        people = store.evaluators()
    assert [e.id for e in seen] == [e.id for e in store.events_since(0)]
    assert len({e.id for e in seen}) == len(seen) == 9
    assert store.last_event_id() == watermark
    assert [e.id for e in store.events_since(2, limit=3)] == [3, 4, 5]
    store.close()


def test_each_query_is_assigned_to_min_evaluators(db):
    store = FeedbackStore(db, min_evaluators=2, gold_rate=0.0, assignment_ttl=3600)
    ids = store.add_queries(thumbs(3))
    ann, bob, cy, dee = (store.add_evaluator(n)[0] for n in ("ann", "bob", "cy", "dee"))
    # Open (unanswered) fresh assignments count: ann and bob both hold query 1, so cy gets query 2.
    assert store.next_query(ann.id).id == ids[0]
    assert store.next_query(bob.id).id == ids[0]
    assert store.next_query(cy.id).id == ids[1]
    for person in (ann, bob, cy):
        while (view := store.next_query(person.id)) is not None:
            store.submit(person.id, view.id, {"thumb": "up"})
    answered = {}
    for a in store.current_answers():
        answered.setdefault(a.query_id, set()).add(a.evaluator_id)
    assert {q: len(who) for q, who in answered.items()} == {ids[0]: 2, ids[1]: 2, ids[2]: 2}
    assert store.next_query(dee.id) is None
    assert store.progress(dee.id).remaining == 0
    assert store.metrics()["queries"]["complete"] == 3
    # A skip does not count: after cy skips... cy answered; undo cy's last and skip instead.
    receipt = store.undo(cy.id)
    store.skip(cy.id, receipt.event.query_id)
    assert store.next_query(dee.id).id == receipt.event.query_id
    store.close()


def test_stale_assignments_stop_counting(db):
    now = [1_000_000.0]
    store = FeedbackStore(db, min_evaluators=1, gold_rate=0.0, assignment_ttl=600, clock=lambda: now[0])
    [q] = store.add_queries(thumbs(1))
    ann, bob = (store.add_evaluator(n)[0] for n in ("ann", "bob"))
    assert store.next_query(ann.id).id == q
    now[0] += 599
    assert store.next_query(bob.id) is None  # ann's fresh assignment fills the quota
    now[0] += 2
    assert store.next_query(bob.id).id == q  # ann walked away
    assert store.next_query(ann.id).id == q  # ann still may answer
    store.close()


def test_gold_queries_are_mixed_in_at_the_configured_rate(db, urls):
    store = FeedbackStore(db, min_evaluators=1, gold_rate=0.3, seed=3, synchronous="NORMAL")
    regular = set(store.add_queries(thumbs(300)))
    gold = set(store.add_queries(thumbs(200, gold={"thumb": "up"}, start=300)))
    ann, _ = store.add_evaluator("ann")
    served = []
    while (view := store.next_query(ann.id)) is not None:
        served.append(view.id)
        store.submit(ann.id, view.id, {"thumb": "up" if view.id % 2 else "down"})
    assert regular <= set(served)  # every regular query, then done
    n_gold = len(set(served) & gold)
    rate = n_gold / len(served)
    assert 0.22 < rate < 0.38, rate
    assert served[-1] in regular or n_gold < len(gold)  # never gold once regular queries run out
    metrics = store.metrics()
    stats = metrics["evaluators"][0]
    assert stats["gold_answered"] == n_gold
    assert stats["gold_accuracy"] == pytest.approx(sum(q % 2 == 1 for q in set(served) & gold) / n_gold)
    store.close()

    for rate, expect_gold in ((0.0, 0), (1.0, 5)):
        other = FeedbackStore(urls.new(f"feedback{rate}"), min_evaluators=1, gold_rate=rate, seed=0)
        other.add_queries(thumbs(5))
        gold_ids = set(other.add_queries(thumbs(5, gold={"thumb": "up"}, start=5)))
        bob, _ = other.add_evaluator("bob")
        first = []
        for _ in range(5):
            view = other.next_query(bob.id)
            first.append(view.id)
            other.skip(bob.id, view.id)
        assert len(set(first) & gold_ids) == expect_gold
        other.close()


def test_display_order_is_random_per_evaluator_and_stored(db):
    store = FeedbackStore(db, min_evaluators=20, gold_rate=0.0, seed=7)
    [q] = store.add_queries([Query("pairwise", "Which is kinder?", ["first", "second"])])
    orders = {}
    for i in range(20):
        person, _ = store.add_evaluator(f"e{i}")
        view = store.next_query(person.id)
        assert store.next_query(person.id).completions == view.completions  # stable on reload
        orders[person.id] = view.completions
        store.submit(person.id, q, {"choice": "A", "strength": 3})  # always the left one
    assert set(orders.values()) == {("first", "second"), ("second", "first")}
    for a in store.current_answers():
        left = orders[a.evaluator_id][0]
        assert a.answer == {"choice": "A" if left == "first" else "B", "strength": 3}
        assert store.view(a.evaluator_id, q).answer == {"choice": "A", "strength": 3}
    store.close()


def test_tokens_are_hashed_and_never_stored(db, urls, tmp_path):
    store = FeedbackStore(db)
    ann, token = store.add_evaluator("ann")
    admin, admin_token = store.add_evaluator("root", role="admin")
    assert store.authenticate(token) == ann and store.authenticate(admin_token).is_admin
    secrets_ = [t.split(".", 1)[1] for t in (token, admin_token)]
    if not urls.is_postgres:  # the database files hold no secret
        raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("feedback.db"))
        for secret in secrets_:
            assert secret.encode() not in raw
    stored = " ".join(str(v) for row in urls.rows(db, "SELECT * FROM evaluators") for v in row)
    assert not any(secret in stored for secret in secrets_)
    rows = urls.rows(db, "SELECT token_hash, token_salt FROM evaluators")
    assert all(len(h) == 64 and len(s) == 32 for h, s in rows)
    assert len({h for h, _ in rows}) == 2
    with pytest.raises(InvalidToken, match="Invalid evaluator token"):
        store.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B"))
    with pytest.raises(InvalidToken, match="Malformed evaluator token"):
        store.authenticate("not-a-token")
    with pytest.raises(InvalidToken, match="No evaluator token given"):
        store.authenticate(None)
    new = store.reset_token(ann.id)
    assert store.authenticate(new) == ann
    with pytest.raises(InvalidToken):
        store.authenticate(token)
    with pytest.raises(FeedbackConflict, match="An evaluator named 'ann' already exists"):
        store.add_evaluator("ann")
    with pytest.raises(ConfigError, match="role must be one of 'evaluator', 'admin'; got 'admn'. Did you mean 'admin'"):
        store.add_evaluator("cy", role="admn")
    store.close()


def test_store_survives_concurrent_threads_and_sqlite_is_in_wal_mode(db, urls):
    store = FeedbackStore(db, min_evaluators=1, gold_rate=0.0)
    store.add_queries(thumbs(80))
    people = [store.add_evaluator(f"e{i}")[0] for i in range(8)]
    errors = []

    def work(person):
        try:
            while (view := store.next_query(person.id)) is not None:
                store.submit(person.id, view.id, {"thumb": "up"})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(store.current_answers()) == 80 and len(store.events_since(0)) == 80
    ids = [e.id for e in store.events_since(0)]
    assert ids == sorted(set(ids))
    if not urls.is_postgres:
        assert urls.rows(db, "PRAGMA journal_mode") == [("wal",)]
    store.close()
    with pytest.raises(ConfigError, match="closed"):
        store.events_since(0)



def test_close_lets_transactions_in_flight_finish_and_refuses_new_ones(db):
    store = FeedbackStore(db, min_evaluators=1, gold_rate=0.0, seed=1)
    inside, release, done = threading.Event(), threading.Event(), []

    def slow_write():  # a transaction that is half-way through when close() is called
        with store._transaction(write=True) as tx:
            tx.run("INSERT INTO meta (key, value) VALUES (?, ?)", ("probe", "1"))
            inside.set()
            release.wait(10)
        done.append("committed")

    writer = threading.Thread(target=slow_write)
    writer.start()
    assert inside.wait(10)
    closer = threading.Thread(target=store.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive()  # close() waits for the writer...
    with pytest.raises(ConfigError, match="FeedbackStore is closed"):
        store.events_since(0)  # ...while new work is refused at once
    release.set()
    writer.join(10)
    closer.join(10)
    assert done == ["committed"] and not closer.is_alive()
    reopened = FeedbackStore(db, min_evaluators=1, gold_rate=0.0)
    with reopened._transaction(write=False) as tx:
        assert tx.one("SELECT value FROM meta WHERE key = ?", ("probe",))[0] == "1"
    reopened.close()


def test_close_under_load_raises_only_the_closed_error(db):
    store = FeedbackStore(db, min_evaluators=1, gold_rate=0.0, seed=1)
    store.add_queries(thumbs(400))
    people = [store.add_evaluator(f"e{i}")[0] for i in range(4)]
    errors, working = [], threading.Barrier(len(people) + 1)

    def work(person):
        try:
            view = store.next_query(person.id)
            store.submit(person.id, view.id, {"thumb": "up"})
            working.wait(60)  # every worker is in the middle of its work...
            while True:  # ...and stays busy until the store closes under it
                view = store.next_query(person.id)
                if view is not None:
                    store.submit(person.id, view.id, {"thumb": "up"})
                store.events_since(0, limit=10)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,), daemon=True) for p in people]
    for t in threads:
        t.start()
    working.wait(60)
    store.close()
    for t in threads:
        t.join(30)
    assert len(errors) == len(people)  # every worker was still busy, and each stopped with the clear error
    assert all(isinstance(e, ConfigError) and "FeedbackStore is closed" in str(e) for e in errors), errors


def test_store_urls(tmp_path):
    assert parse_store_url(tmp_path / "a.db").target == str(tmp_path / "a.db")
    assert parse_store_url("sqlite:///rel/a.db").target == "rel/a.db"
    assert parse_store_url("postgres://u@h/db").target == "postgresql://u@h/db"
    with pytest.raises(ConfigError, match="in-memory database"):
        parse_store_url("sqlite:///:memory:")
    with pytest.raises(ConfigError, match="Malformed SQLite URL"):
        parse_store_url("sqlite://a.db")
    with pytest.raises(ConfigError, match="Unknown store URL scheme 'sqlit'.*Did you mean 'sqlite'"):
        parse_store_url("sqlit:///a.db")
    with pytest.raises(ConfigError, match="does not exist"):
        FeedbackStore(tmp_path / "missing" / "a.db")
    with pytest.raises(ConfigError, match="min_evaluators must be an integer >= 1; got 0"):
        FeedbackStore(tmp_path / "a.db", min_evaluators=0)
    with pytest.raises(ConfigError, match=r"gold_rate must be a number in \[0, 1\]; got 1.5"):
        FeedbackStore(tmp_path / "a.db", gold_rate=1.5)
    if importlib.util.find_spec("psycopg") is None:
        with pytest.raises(MissingDependency, match=r"psycopg.*pip install 'instruct-env\[postgres\]'"):
            FeedbackStore("postgresql://nobody@127.0.0.1:1/none")
    else:  # with the driver, the same URL reaches for a server that is not there
        with pytest.raises(StoreUnavailable, match="Cannot connect to the PostgreSQL feedback store"):
            FeedbackStore("postgresql://nobody@127.0.0.1:1/none?connect_timeout=5")


def test_query_validation():
    with pytest.raises(ConfigError, match="'comment' queries cannot have a gold answer"):
        Query("comment", "Say hi.", ["hi"], gold={"comment": "ok"})
    with pytest.raises(ConfigError, match="Invalid gold answer: rating must be an integer from 1 to 5; got 9"):
        Query("rating", "Say hi.", ["hi"], gold={"rating": 9})
    with pytest.raises(ConfigError, match="instruction is empty"):
        Query("rating", "  ", ["hi"])
    with pytest.raises(ConfigError, match="metadata must be JSON-serialisable"):
        Query("rating", "Say hi.", ["hi"], metadata={"x": object()})
    q = Query("rating", "Say hi.", ("hi",), options={"high": 10})
    assert q.options == {"low": 1, "high": 10} and q.completions == ("hi",)


def test_metrics_report_counts_and_agreement(db):
    store = FeedbackStore(db, min_evaluators=3, gold_rate=0.0)
    store.add_queries([Query("rating", f"Rate {i}", [f"a{i}"]) for i in range(4)])
    people = [store.add_evaluator(f"e{i}")[0] for i in range(3)]
    for person in people:
        while (view := store.next_query(person.id)) is not None:
            store.submit(person.id, view.id, {"rating": 1 + view.id})  # everyone agrees
    store.undo(people[0].id)
    metrics = store.metrics()
    assert metrics["agreement"] == {"rating": 1.0}
    assert [e["answered"] for e in metrics["evaluators"]] == [3, 4, 4]
    assert [e["undos"] for e in metrics["evaluators"]] == [1, 0, 0]
    assert metrics["queries"] == {"total": 4, "gold": 0, "chat": 0, "complete": 3, "min_evaluators": 3}
    assert metrics["watermark"] == store.last_event_id() == 13
    store.close()


def test_event_counts_agree_with_counting_the_log(db):
    store = FeedbackStore(db, min_evaluators=2, gold_rate=0.0, seed=2)
    assert store.event_counts() == EventCounts({}, 0)
    store.add_queries(thumbs(6))
    ann, bob = (store.add_evaluator(name)[0] for name in ("ann", "bob"))
    for person in (ann, bob):
        first = store.next_query(person.id).id
        store.submit(person.id, first, {"thumb": "up"})
        store.submit(person.id, store.next_query(person.id).id, {"thumb": "up"})
        store.skip(person.id, store.next_query(person.id).id, "unsure")
        store.submit(person.id, first, {"thumb": "down"}, edit=True)
    store.undo(ann.id)
    store.undo(ann.id)
    counted: dict[tuple[int, str], int] = {}
    for event in store.events_since(0):
        counted[event.evaluator_id, event.type] = counted.get((event.evaluator_id, event.type), 0) + 1
    counts = store.event_counts()
    assert counts == EventCounts(counted, store.last_event_id())
    assert counts.counts[ann.id, "undo"] == 2 and (bob.id, "undo") not in counts.counts
    assert {t for _, t in counts.counts} == {"submit", "edit", "skip", "undo"}
    store.close()


def test_metrics_know_every_query_an_answer_names_while_evaluators_keep_answering(db):
    # Metrics read the answers before the queries (which are never deleted): a query added and
    # answered after the queries were read is in neither read, never answered but unknown.
    class AnsweredDuringMetrics(FeedbackStore):
        def queries(self, ids=None, kind=None):
            found = super().queries(ids, kind)
            if self.during_metrics:
                self.during_metrics = False
                self.add_queries(thumbs(1))
                self.submit(ann.id, self.next_query(ann.id).id, {"thumb": "up"})
            return found

    store = AnsweredDuringMetrics(db, min_evaluators=1, gold_rate=0.0, seed=0)
    store.during_metrics = False
    ann, _ = store.add_evaluator("ann")
    store.add_queries(thumbs(1))
    store.submit(ann.id, store.next_query(ann.id).id, {"thumb": "up"})
    store.during_metrics = True
    metrics = store.metrics()
    assert metrics["queries"]["total"] == 1 and metrics["evaluators"][0]["answered"] == 1
    assert store.metrics()["queries"]["total"] == 2
    store.close()


def test_a_reader_polling_during_writes_from_two_stores_sees_every_event_once(db):
    # Two stores on one database stand for two server processes: only the database orders them.
    stores = [FeedbackStore(db, min_evaluators=2, gold_rate=0.0) for _ in range(2)]
    stores[0].add_queries(thumbs(60))
    people = [stores[0].add_evaluator(f"e{i}")[0] for i in range(4)]
    done = threading.Event()
    errors, seen = [], []

    def write(store, person):
        try:
            while (view := store.next_query(person.id)) is not None:
                store.submit(person.id, view.id, {"thumb": "up"})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def read():
        watermark = 0
        while True:
            finished = done.is_set()  # read once more after the writers finished
            batch = stores[1].events_since(watermark)
            seen.extend(e.id for e in batch)
            watermark = batch[-1].id if batch else watermark
            if finished:
                return
            time.sleep(0.001)

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(stores[i % 2], p)) for i, p in enumerate(people)]
    reader.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join(timeout=120)
    done.set()
    reader.join(timeout=60)
    assert not errors
    everything = [e.id for e in stores[0].events_since(0)]
    assert len(everything) == 120  # 60 queries x min_evaluators
    assert seen == everything  # nothing missed, nothing twice, in order
    for store in stores:
        store.close()


def test_postgres_connection_errors_name_the_url_without_its_password():
    pytest.importorskip("psycopg", reason="needs psycopg: pip install 'instruct-env[postgres]'")
    url = "postgresql://ann:s3cret@127.0.0.1:1/none?connect_timeout=2"
    with pytest.raises(ConfigError, match=r"Cannot connect to the PostgreSQL feedback store 'postgresql://ann:\*\*\*@127\.0\.0\.1:1/none") as info:
        FeedbackStore(url)
    assert "s3cret" not in str(info.value)
    assert redact_url("postgres://bob@db/feedback") == "postgres://bob@db/feedback"


def test_chat_turns_are_thumbs_queries_that_queue_for_nobody(db, urls):
    store = FeedbackStore(db, min_evaluators=1, gold_rate=0.0)
    [queued] = store.add_queries(thumbs(1))
    ann, bob = (store.add_evaluator(n)[0] for n in ("ann", "bob"))
    first = store.add_chat_turn(ann.id, None, 0, "Hi", "Hello!")
    second = store.add_chat_turn(ann.id, first.conversation, 1, "Sort 2 1", "1 2", {"policy": "p"})
    other = store.add_chat_turn(ann.id, None, 0, "New topic", "Sure.")
    assert first.conversation == first.query_id and second.conversation == first.conversation
    assert [c.conversation for c in store.conversations(ann.id)] == [other.conversation, first.conversation]
    query = store.get_query(second.query_id)
    assert (query.instruction, query.context, query.completions) == ("Sort 2 1", "User: Hi\nAssistant: Hello!", ("1 2",))
    assert query.metadata == {"policy": "p", "source": "chat", "turn": 1}
    with pytest.raises(FeedbackConflict, match="answers turn 1, but the conversation has 2 turn"):
        store.add_chat_turn(ann.id, first.conversation, 1, "again", "r")
    with pytest.raises(QueryNotFound, match="You have no conversation"):
        store.add_chat_turn(bob.id, first.conversation, 2, "mine now", "r")
    with pytest.raises(ConfigError, match="chat message must be a non-empty string"):
        store.add_chat_turn(ann.id, None, 0, " ", "r")
    # Only ann may rate her replies; they never show up in anybody's queue.
    assert store.next_query(bob.id).id == queued
    assert store.next_query(ann.id) is None  # bob's fresh assignment fills the quota; chats do not count
    store.submit(ann.id, second.query_id, {"thumb": "down"})
    with pytest.raises(QueryNotFound, match="not in your queue"):
        store.submit(bob.id, first.query_id, {"thumb": "up"})
    assert [(t.turn, t.thumb) for t in store.chat(ann.id, first.conversation)] == [(0, None), (1, "down")]
    store.undo(ann.id)
    assert store.chat(ann.id, first.conversation)[1].thumb is None
    assert store.next_query(ann.id) is None  # the undone reply went back to no queue
    assert store.metrics()["queries"] == {"total": 4, "gold": 0, "chat": 3, "complete": 0, "min_evaluators": 1}
    store.close()


def test_an_older_store_is_upgraded_in_place(db, urls):
    store = FeedbackStore(db)
    ann, token = store.add_evaluator("ann")
    store.close()
    if urls.is_postgres:
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("DROP TABLE chat_turns")
            conn.execute("DROP TABLE query_batches")
            conn.execute("DROP TABLE sessions")
            conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    else:
        import sqlite3

        with sqlite3.connect(db) as conn:
            conn.execute("DROP TABLE chat_turns")
            conn.execute("DROP TABLE query_batches")
            conn.execute("DROP TABLE sessions")
            conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    store = FeedbackStore(db)
    assert store.authenticate(token) == ann
    assert store.add_chat_turn(ann.id, None, 0, "Hi", "Hello").turn == 0
    assert store.add_queries(thumbs(1), idempotency_key="k").replayed is False
    assert store.add_queries(thumbs(1), idempotency_key="k").replayed is True
    _, key = store.open_session(token)  # version 4: logins of the pages live in the sessions table
    assert store.session(key) == ann
    assert urls.rows(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(store_module.SCHEMA_VERSION),)]
    assert store_module.SCHEMA_VERSION == 4
    store.close()


def test_a_broken_postgres_connection_is_replaced_on_the_next_call(db, urls):
    if not urls.is_postgres:
        pytest.skip("PostgreSQL only: SQLite has no server connection to lose")
    import psycopg

    store = FeedbackStore(db, min_evaluators=1, gold_rate=0.0)
    ann, token = store.add_evaluator("ann")
    [pid] = store._connection().execute("SELECT pg_backend_pid()").fetchone()
    with psycopg.connect(db, autocommit=True) as admin:  # what a database restart does to us
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StoreUnavailable, match="cannot serve the request now") as info:
        store.authenticate(token)  # the call that finds the connection broken fails (503 in the server)...
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    assert store.authenticate(token) == ann  # ...and the next one reconnects
    password = urllib.parse.urlsplit(db).password
    assert ":***@" in repr(store) and (password is None or f":{password}@" not in repr(store))
    store.close()


def test_a_retried_query_batch_with_the_same_key_is_stored_once(db):
    store = FeedbackStore(db, min_evaluators=1, gold_rate=0.0)
    first = store.add_queries(thumbs(3), idempotency_key="batch-1")
    assert first.replayed is False and len(first) == 3
    again = store.add_queries(thumbs(3), idempotency_key="batch-1")
    assert list(again) == list(first) and again.replayed is True
    assert len(store.queries()) == 3
    other = store.add_queries(thumbs(2, start=3), idempotency_key="batch-2")
    assert len(store.queries()) == 5 and set(other).isdisjoint(first)
    with pytest.raises(FeedbackConflict, match="already used for a different batch"):
        store.add_queries(thumbs(3, start=10), idempotency_key="batch-1")
    with pytest.raises(InvalidAnswer, match="idempotency key must be a string"):
        store.add_queries(thumbs(1), idempotency_key="")
    assert len(store.queries()) == 5  # the refused calls stored nothing
    # Without a key every call is a new batch.
    store.add_queries(thumbs(1))
    store.add_queries(thumbs(1))
    assert len(store.queries()) == 7
    store.close()


def test_queries_by_id_reads_only_the_rows_asked_for(db):
    import numpy as np

    store = FeedbackStore(db)
    ids = store.add_queries(thumbs(5) + [Query("rating", "Rate it", ["a"])])
    everything = store.queries()
    assert store.queries([ids[3], ids[0], ids[3]]) == {i: everything[i] for i in (ids[0], ids[3])}
    # Ids that equal a stored id name it (5.0, numpy integers); others name nothing, as before.
    odd = [float(ids[1]), np.int64(ids[2]), str(ids[4]), ids[4] + 0.5, -1, 0, 2**70, float("nan"), None]
    assert list(store.queries(odd)) == [ids[1], ids[2]]
    assert store.queries([ids[0], ids[5]], kind="rating") == {ids[5]: everything[ids[5]]}
    assert store.queries([]) == {}
    many = list(range(1, 1201))  # more than one statement's worth of ids
    assert store.queries(many) == everything
    store.close()
