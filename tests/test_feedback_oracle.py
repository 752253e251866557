"""Oracles: blocking / non-blocking / timeout, simulated evaluator statistics, pools, the store and HTTP."""

from __future__ import annotations

import pickle
import threading
import time

import numpy as np
import pytest

from instruct_env.error import ConfigError, UnknownNameError
from instruct_env.feedback import FeedbackStore
from instruct_env.feedback.oracle import (
    FeedbackItem,
    FeedbackTimeout,
    HumanOracle,
    OraclePool,
    SimulatedOracle,
    answer_value,
)
from instruct_env.tasks import BuiltinDataset


@pytest.fixture(scope="module")
def samples():
    return list(BuiltinDataset(["copy"], split="validation", size_per_task=40, seed=0))


def good_and_bad(samples, n=None):
    """Items with the reference (quality 1) and with a wrong answer (quality 0), alternating."""
    items = []
    for s in samples[:n]:
        items.append(FeedbackItem.from_sample(s, s.references[0]))
        items.append(FeedbackItem.from_sample(s, "zebra"))
    return items


def test_items_must_fit_the_kind(samples):
    oracle = SimulatedOracle(seed=0)
    with pytest.raises(ConfigError, match=r"items\[0\]: A 'pairwise' query needs 2 completion\(s\); got 1"):
        oracle.ask([FeedbackItem.from_sample(samples[0], "one")], "pairwise")
    with pytest.raises(UnknownNameError, match="Did you mean 'rating'"):
        oracle.ask([FeedbackItem.from_sample(samples[0], "one")], "ratin")
    with pytest.raises(ConfigError, match="Wrap one item in a list"):
        oracle.ask(FeedbackItem.from_sample(samples[0], "one"), "rating")


def test_simulated_oracle_blocking_non_blocking_and_timeout(samples):
    oracle = SimulatedOracle(noise=0.0, latency=0.3, seed=0)
    items = good_and_bad(samples, 2)
    ticket = oracle.ask(items, "thumbs")
    assert ticket.n_items == 4 and ticket.kind == "thumbs"
    early = oracle.poll(ticket)  # non-blocking: nothing yet
    assert not early.complete and early.judgements == ()
    with pytest.raises(FeedbackTimeout, match="after 0.05 s") as caught:
        oracle.wait(ticket, timeout=0.05)
    assert caught.value.partial.ticket == ticket and not caught.value.partial.complete
    start = time.monotonic()
    result = oracle.wait(ticket, timeout=5.0)  # blocks until the answers arrive
    assert 0.1 < time.monotonic() - start < 2.0
    assert result.complete
    assert [j.answer["thumb"] for j in result.judgements] == ["up", "down", "up", "down"]
    assert np.array_equal(result.values(), [1.0, 0.0, 1.0, 0.0])
    with pytest.raises(ConfigError, match="timeout must be"):
        oracle.wait(ticket, timeout=-1)


def test_simulated_oracle_is_seeded_and_picklable(samples):
    items = good_and_bad(samples)
    a = SimulatedOracle(noise=0.3, skip_rate=0.1, flip_rate=0.1, seed=7)
    b = pickle.loads(pickle.dumps(SimulatedOracle(noise=0.3, skip_rate=0.1, flip_rate=0.1, seed=7)))
    answers = [[j.answer for j in o.wait(o.ask(items, "rating")).judgements] for o in (a, b)]
    assert answers[0] == answers[1]


def test_simulated_noise_bias_skip_and_flip_statistics(samples):
    items = good_and_bad(samples) * 10  # 800 items, half quality 1, half quality 0
    quality = np.tile([1.0, 0.0], len(items) // 2)

    def ratings(**kwargs):
        oracle = SimulatedOracle(seed=1, **kwargs)
        result = oracle.wait(oracle.ask(items, "rating"))
        return result, np.array([np.nan if j.skipped else j.answer["rating"] for j in result.judgements])

    _, exact = ratings(noise=0.0)
    assert np.array_equal(exact, np.where(quality == 1, 5, 1))  # noiseless: quality 1 -> 5, 0 -> 1
    _, noisy = ratings(noise=0.2)
    # Perceived quality ~ N(q, 0.2) clipped: a good answer is rated 5 when p >= 0.875 (P = 0.73).
    assert abs(np.mean(noisy[quality == 1] == 5) - 0.73) < 0.07
    assert 1 <= noisy.min() and noisy.max() <= 5
    _, lenient = ratings(noise=0.0, bias=0.25)
    assert np.all(lenient[quality == 0] == 2)  # 0 + 0.25 -> round(1 + 0.25 * 4) = 2
    result, skipping = ratings(noise=0.0, skip_rate=0.2)
    skipped = np.isnan(skipping)
    assert abs(skipped.mean() - 0.2) < 0.05  # 800 draws: 3 standard errors ~ 0.042
    assert result.complete and np.array_equal(result.n_answers(), ~skipped)
    _, adversarial = ratings(noise=0.0, flip_rate=1.0)
    assert np.array_equal(adversarial, np.where(quality == 1, 1, 5))

    pairs = [FeedbackItem.from_sample(s, (s.references[0], "zebra")) for s in samples] * 20  # 800 pairs, A better
    for flip_rate in (0.0, 0.3):
        oracle = SimulatedOracle(noise=0.1, flip_rate=flip_rate, seed=2)
        choices = [j.answer["choice"] for j in oracle.wait(oracle.ask(pairs, "pairwise")).judgements]
        assert set(choices) <= {"A", "B"}
        assert abs(np.mean([c == "B" for c in choices]) - flip_rate) < 0.05
    biased = SimulatedOracle(noise=0.0, position_bias=0.5, tie_margin=0.0, seed=0)
    same = [FeedbackItem.from_sample(samples[0], ("zebra", "lion"))]  # equally bad: position decides
    assert biased.wait(biased.ask(same, "pairwise")).judgements[0].answer["choice"] == "A"


def test_simulated_oracle_answers_every_kind(samples):
    s = samples[0]
    oracle = SimulatedOracle(noise=0.0, seed=0)
    ranking = oracle.wait(oracle.ask([FeedbackItem.from_sample(s, ("zebra", s.references[0], "lion"))], "ranking"))
    assert ranking.judgements[0].answer["ranking"][0] == 1
    edit = oracle.wait(oracle.ask([FeedbackItem.from_sample(s, "zebra")], "edit"))
    assert edit.judgements[0].answer == {"completion": s.references[0]}
    comment = oracle.wait(oracle.ask([FeedbackItem.from_sample(s, "zebra")], "comment"))
    assert "0.00" in comment.judgements[0].answer["comment"]
    seven = oracle.wait(oracle.ask([FeedbackItem.from_sample(s, s.references[0])], "rating", high=7))
    assert seven.judgements[0].answer == {"rating": 7} and seven.values()[0] == 1.0
    with pytest.raises(ConfigError, match="values\\(\\) is defined for rating"):
        ranking.values()
    assert answer_value("pairwise", {"choice": "both_bad"}) != answer_value("pairwise", {"choice": "both_bad"})  # nan


def test_reference_metric_without_samples():
    oracle = SimulatedOracle("exact_match", noise=0.0, seed=0)
    items = [FeedbackItem("Say hi.", "hi", metadata={"references": ["hi"]}), FeedbackItem("Say hi.", "bye",
                                                                                         metadata={"references": ["hi"]})]
    assert oracle.wait(oracle.ask(items, "thumbs")).values().tolist() == [1.0, 0.0]
    task = SimulatedOracle(seed=0)
    with pytest.raises(Exception, match="scores with each sample's verifier"):
        task.ask(items, "thumbs")


def test_pool_waits_for_min_evaluators_and_keeps_answers_per_evaluator(samples):
    items = good_and_bad(samples, 3)
    fast = [SimulatedOracle(noise=0.0, seed=i, name=f"fast-{i}") for i in range(2)]
    slow = SimulatedOracle(noise=0.0, latency=1e9, seed=9, name="slow")  # never answers within the test
    pool = OraclePool([*fast, slow], min_evaluators=2)
    ticket = pool.ask(items, "thumbs")
    result = pool.wait(ticket, timeout=5.0)  # complete with two answers each; the slow one is not awaited
    assert result.complete
    assert result.n_answers().tolist() == [2] * len(items)
    assert {j.evaluator for j in result.judgements} == {"fast-0", "fast-1"}
    assert [len(js) for js in result.by_item()] == [2] * len(items)
    strict = OraclePool([*fast, slow], min_evaluators=3)
    with pytest.raises(FeedbackTimeout) as caught:
        strict.wait(strict.ask(items, "thumbs"), timeout=0.1)
    assert caught.value.partial.n_answers().tolist() == [2] * len(items)
    # Two of three members per item, chosen at random: every item still gets two answers.
    sampled = OraclePool([SimulatedOracle(seed=i, name=f"s{i}") for i in range(3)], per_item=2, seed=0)
    counts = sampled.wait(sampled.ask(items, "thumbs")).n_answers()
    assert counts.tolist() == [2] * len(items)


def test_pool_validates_its_members():
    with pytest.raises(ConfigError, match="distinct names"):
        OraclePool([SimulatedOracle(), SimulatedOracle()])
    with pytest.raises(ConfigError, match=r"min_evaluators must be an integer in \[1, per_item=2\]"):
        OraclePool([SimulatedOracle(name="a"), SimulatedOracle(name="b")], min_evaluators=3)
    with pytest.raises(ConfigError, match="non-empty list"):
        OraclePool([])


@pytest.fixture
def store(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db", min_evaluators=2, gold_rate=0.0, seed=0, synchronous="NORMAL")
    yield store
    store.close()


def test_human_oracle_blocks_until_people_answer(store, samples):
    oracle = HumanOracle(store)
    items = [FeedbackItem.from_sample(s, (s.references[0], "zebra"), selector="qbc", score=0.4) for s in samples[:3]]
    ticket = oracle.ask(items, "pairwise")
    assert len(ticket.query_ids) == 3
    stored = store.get_query(ticket.query_ids[0])
    assert (stored.selector, stored.score, stored.metadata["sample_id"]) == ("qbc", 0.4, samples[0].id)
    assert not oracle.poll(ticket).complete  # non-blocking, nobody answered
    with pytest.raises(FeedbackTimeout, match="3 item\\(s\\) without an answer"):
        oracle.wait(ticket, timeout=0.1)
    ann, _ = store.add_evaluator("ann")
    bob, _ = store.add_evaluator("bob")

    def people():
        time.sleep(0.3)
        for who in (ann, bob):
            while (view := store.next_query(who.id)) is not None:
                better = "B" if view.completions[0] == "zebra" else "A"
                store.submit(who.id, view.id, {"choice": better})

    worker = threading.Thread(target=people)
    worker.start()
    result = oracle.wait(ticket, timeout=10.0)
    worker.join()
    assert result.complete and result.n_answers().tolist() == [2, 2, 2]
    # Whatever order each evaluator saw, the answers are canonical: completions[0] (the reference) is better.
    assert {j.answer["choice"] for j in result.judgements} == {"A"}
    assert {j.evaluator for j in result.judgements} == {"ann", "bob"}
    assert all(j.query_id in ticket.query_ids and j.event_id for j in result.judgements)


def test_human_oracle_applies_edits_undos_and_skips(store, samples):
    oracle = HumanOracle(store, min_answers=1)
    ticket = oracle.ask([FeedbackItem.from_sample(s, s.references[0]) for s in samples[:2]], "rating")
    ann, _ = store.add_evaluator("ann")
    first = store.next_query(ann.id)
    store.submit(ann.id, first.id, {"rating": 2})
    assert oracle.poll(ticket).values()[0] == 0.25
    store.submit(ann.id, first.id, {"rating": 5}, edit=True)
    second = store.next_query(ann.id)
    store.skip(ann.id, second.id)
    result = oracle.poll(ticket)
    assert result.values()[0] == 1.0 and result.by_item()[1][0].skipped and not result.complete
    store.undo(ann.id)  # the skip
    store.undo(ann.id)  # the edit: the first answer is back
    result = oracle.poll(ticket)
    assert result.values()[0] == 0.25 and result.by_item()[1] == []


def test_human_oracle_pickles_and_reconnects(store, samples, tmp_path):
    oracle = HumanOracle(store, min_answers=1)
    ticket = oracle.ask([FeedbackItem.from_sample(samples[0], "x")], "thumbs")
    ann, _ = store.add_evaluator("ann")
    store.submit(ann.id, store.next_query(ann.id).id, {"thumb": "down"})
    assert oracle.poll(ticket).complete
    copy = pickle.loads(pickle.dumps(oracle))
    assert copy.watermark == oracle.watermark and copy.store is not store
    assert copy.poll(ticket).values().tolist() == [0.0]
    copy.close()


def test_simulated_evaluators_answer_through_the_store(store, samples):
    oracle = HumanOracle(store)
    ticket = oracle.ask([FeedbackItem.from_sample(s, (s.references[0], "zebra")) for s in samples[:10]], "pairwise")
    by_id = {s.id: s for s in samples}
    for i in range(2):
        assert SimulatedOracle(noise=0.0, seed=i, name=f"sim-{i}").answer_store(store, by_id) == 10
    result = oracle.poll(ticket)
    assert result.complete
    assert {j.answer["choice"] for j in result.judgements} == {"A"}  # canonical, despite shuffled displays
    with pytest.raises(ConfigError, match="not in samples="):
        oracle.ask([FeedbackItem.from_sample(samples[0], "z")], "thumbs")
        SimulatedOracle(name="sim-9").answer_store(store, {})


def test_human_oracle_over_http(tmp_path, samples):
    pytest.importorskip("fastapi", reason="the server needs the 'server' extra")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from instruct_env.feedback import create_app

    store = FeedbackStore(tmp_path / "http.db", min_evaluators=1, gold_rate=0.0, seed=0, synchronous="NORMAL")
    _, admin = store.add_evaluator("root", role="admin")
    client = TestClient(create_app(store))
    oracle = HumanOracle(url="http://testserver", token=admin, client=client)
    ticket = oracle.ask([FeedbackItem.from_sample(s, s.references[0]) for s in samples[:2]], "thumbs")
    assert not oracle.poll(ticket).complete
    token = client.post("/api/admin/evaluators", json={"name": "ann"}, headers={"Authorization": f"Bearer {admin}"}
                        ).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    for thumb in ("up", "down"):
        query = client.get("/api/next", headers=auth).json()["query"]
        assert client.post("/api/answers", json={"query_id": query["id"], "answer": {"thumb": thumb}},
                           headers=auth).status_code == 201
    result = oracle.wait(ticket, timeout=5.0)
    assert result.values().tolist() == [1.0, 0.0]
    assert {j.evaluator for j in result.judgements} == {"ann"}
    with pytest.raises(ConfigError, match="answered GET /api/export with 401"):
        HumanOracle(url="http://testserver", token="1.wrong", client=client).poll(ticket)
    store.close()
