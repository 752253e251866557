"""The real server under concurrent load, and after being killed with SIGKILL mid-load.

Starts ``serve()`` with uvicorn in a subprocess on 127.0.0.1 (a free port), drives it with 20
evaluator threads using httpx, and compares what the server acknowledged with what the store holds.
Every loop is bounded and every wait has a deadline, so a hung server fails the test instead of
hanging it. Set ``FEEDBACK_RELIABILITY_REPORT=path.json`` to write the measured numbers. Both
tests run on SQLite and, when ``INSTRUCT_ENV_TEST_POSTGRES_URL`` is set, on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from deadlines import deadline_s

httpx = pytest.importorskip("httpx", reason="the reliability test drives the server with httpx")
pytest.importorskip("uvicorn", reason="the server needs the 'server' extra: pip install 'instruct-env[server]'")
pytest.importorskip("fastapi", reason="the server needs the 'server' extra: pip install 'instruct-env[server]'")


from instruct_env.feedback.store import FeedbackStore, Query, replay  # noqa: E402

N_EVALUATORS = 20
# How long the evaluators keep retrying: a guard against a hang, not a speed requirement (a 2-core
# machine needs about 10 s for the load on SQLite, 25 s on PostgreSQL).
LOAD_BUDGET_S = deadline_s(300)
ANSWERS_EACH = 50
MIN_EVALUATORS = 3
N_QUERIES = 400  # 1200 answer slots for 1000 answers: evaluators compete for the same queries
REPO = Path(__file__).resolve().parents[1]
SERVER = (
    "import sys\n"
    "from instruct_env.feedback.server import serve\n"
    "serve(sys.argv[1], port=int(sys.argv[2]), log_level='warning',\n"
    f"      min_evaluators={MIN_EVALUATORS}, gold_rate=0.0)\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``serve()`` in a subprocess; ``start`` waits until ``/api/health`` answers."""

    def __init__(self, db: str, log: Path) -> None:
        self.db, self.log, self.port = db, log, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float | None = None) -> float:
        timeout = deadline_s(120) if timeout is None else timeout  # stops a hang only
        started = time.monotonic()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SERVER, str(self.db), str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True,
            )
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/api/health", timeout=1.0).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"server did not start within {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _prepare(db: str) -> list[tuple[int, str]]:
    """Create the store with queries and evaluators; return ``(evaluator_id, token)`` pairs."""
    with FeedbackStore(db, min_evaluators=MIN_EVALUATORS, gold_rate=0.0) as store:
        store.add_queries(Query("rating", f"Rate answer {i}", [f"answer {i}"]) for i in range(N_QUERIES))
        people = [store.add_evaluator(f"evaluator-{i}") for i in range(N_EVALUATORS)]
    return [(e.id, token) for e, token in people]


class Evaluator(threading.Thread):
    """Answers up to ``ANSWERS_EACH`` queries; retries a request with the same idempotency key
    until the server acknowledges it, so a crash between commit and reply stores nothing twice."""

    def __init__(self, url: str, evaluator_id: int, token: str, deadline: float) -> None:
        super().__init__(daemon=True)
        self.url, self.evaluator_id, self.deadline = url, evaluator_id, deadline
        self.headers = {"Authorization": f"Bearer {token}"}
        self.acked: dict[int, tuple[int, dict]] = {}  # event id -> (query id, answer)
        self.latencies: list[float] = []
        self.retries = self.replayed = 0
        self.error: BaseException | None = None

    def _request(self, client, method: str, path: str, **kwargs):
        while time.monotonic() < self.deadline:
            try:
                reply = client.request(method, path, headers=self.headers, **kwargs)
            except httpx.TransportError:  # server down (killed, restarting): retry the same request
                self.retries += 1
                time.sleep(0.05)
                continue
            if reply.status_code == 503:  # the database is busy: nothing was stored, so retry with the same key
                self.retries += 1
                time.sleep(0.05)
                continue
            if reply.status_code >= 500:
                raise AssertionError(f"{method} {path} -> {reply.status_code}: {reply.text}")
            return reply
        raise TimeoutError(f"{method} {path}: no reply before the deadline")

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=10.0) as client:
                for _ in range(ANSWERS_EACH):
                    query = self._request(client, "GET", "/api/next").json()["query"]
                    assert query is not None, "ran out of queries"
                    answer = {"rating": 1 + (query["id"] + self.evaluator_id) % 5}
                    body = {"query_id": query["id"], "answer": answer, "idempotency_key": uuid.uuid4().hex}
                    started = time.perf_counter()
                    reply = self._request(client, "POST", "/api/answers", json=body)
                    self.latencies.append(time.perf_counter() - started)
                    assert reply.status_code in (200, 201), reply.text
                    receipt = reply.json()
                    self.replayed += receipt["replayed"]
                    assert receipt["event_id"] not in self.acked
                    self.acked[receipt["event_id"]] = (query["id"], answer)
        except BaseException as exc:  # reported by the test
            self.error = exc


def _run_load(url: str, people, budget: float) -> list[Evaluator]:
    deadline = time.monotonic() + budget
    workers = [Evaluator(url, eid, token, deadline) for eid, token in people]
    for w in workers:
        w.start()
    return workers


def _join(workers, timeout: float) -> None:
    end = time.monotonic() + timeout
    for w in workers:
        w.join(max(0.1, end - time.monotonic()))
    assert not any(w.is_alive() for w in workers), "evaluator threads did not finish in time"
    errors = [w.error for w in workers if w.error is not None]
    assert not errors, errors[:3]


def _check_store(db: str, workers) -> dict:
    """Every acknowledged answer is stored exactly as acknowledged, and nothing is stored twice."""
    with FeedbackStore(db, min_evaluators=MIN_EVALUATORS) as store:
        events = store.events_since(0)
        current = {(a.query_id, a.evaluator_id): a for a in store.current_answers(status=None)}
        derived = replay(events)
    by_id = {e.id: e for e in events}
    acked = 0
    for w in workers:
        for event_id, (query_id, answer) in w.acked.items():
            event = by_id.get(event_id)
            assert event is not None, f"acknowledged event {event_id} is missing"
            assert (event.type, event.query_id, event.evaluator_id, event.answer) == (
                "submit", query_id, w.evaluator_id, answer)
            acked += 1
    pairs = [(e.query_id, e.evaluator_id) for e in events]
    assert len(pairs) == len(set(pairs)), "an answer was stored twice"
    assert {p: e.id for p, e in derived.items()} == {p: a.event_id for p, a in current.items()}
    per_query: dict[int, int] = {}
    for q, _ in pairs:
        per_query[q] = per_query.get(q, 0) + 1
    assert max(per_query.values()) <= MIN_EVALUATORS
    return {"events": len(events), "acknowledged": acked}


def _latency_ms(workers) -> dict:
    values = sorted(x * 1000 for w in workers for x in w.latencies)
    return {"p50": round(statistics.median(values), 1), "p95": round(values[int(0.95 * (len(values) - 1))], 1),
            "max": round(values[-1], 1)}


def _report(name: str, numbers: dict) -> None:
    print(f"\n[reliability] {name}: {json.dumps(numbers)}")
    path = os.environ.get("FEEDBACK_RELIABILITY_REPORT")
    if path:
        existing = json.loads(Path(path).read_text()) if Path(path).exists() else {}
        Path(path).write_text(json.dumps({**existing, name: numbers}, indent=2))


def test_concurrent_evaluators_lose_nothing_and_store_nothing_twice(urls, tmp_path):
    db = urls.new("load")
    people = _prepare(db)
    server = Server(db, tmp_path / "server.log")
    try:
        startup = server.start()
        started = time.monotonic()
        workers = _run_load(server.url, people, budget=LOAD_BUDGET_S)
        _join(workers, timeout=LOAD_BUDGET_S + 10)
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    numbers = _check_store(db, workers)
    assert numbers["acknowledged"] == numbers["events"] == N_EVALUATORS * ANSWERS_EACH
    _report(f"concurrent-{urls.backend}", {
        **numbers, "evaluators": N_EVALUATORS, "seconds": round(elapsed, 2),
        "answers_per_second": round(numbers["events"] / elapsed, 1), "submit_latency_ms": _latency_ms(workers),
        "server_start_s": round(startup, 2), "retries": sum(w.retries for w in workers),
    })


def test_acknowledged_answers_survive_sigkill_mid_load(urls, tmp_path):
    db = urls.new("crash")
    people = _prepare(db)
    server = Server(db, tmp_path / "server.log")
    try:
        server.start()
        workers = _run_load(server.url, people, budget=LOAD_BUDGET_S)
        end = time.monotonic() + LOAD_BUDGET_S  # wait until the load is well under way, then kill
        while sum(len(w.acked) for w in workers) < 300 and time.monotonic() < end:
            time.sleep(0.01)
        acked_at_kill = sum(len(w.acked) for w in workers)
        assert acked_at_kill >= 300, "the load did not get going"
        server.kill()
        killed_at = time.monotonic()
        restart = server.start()  # same DB file, same port; the evaluators keep retrying
        downtime = time.monotonic() - killed_at
        _join(workers, timeout=LOAD_BUDGET_S + 10)
    finally:
        server.stop()
    numbers = _check_store(db, workers)
    # Every evaluator finished: each request was retried with its key until acknowledged.
    assert numbers["acknowledged"] == numbers["events"] == N_EVALUATORS * ANSWERS_EACH
    _report(f"sigkill-{urls.backend}", {
        **numbers, "acknowledged_before_kill": acked_at_kill, "downtime_s": round(downtime, 2),
        "restart_s": round(restart, 2), "retries": sum(w.retries for w in workers),
        "replayed_after_restart": sum(w.replayed for w in workers),
    })
