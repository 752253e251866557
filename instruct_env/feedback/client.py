"""How learners reach a feedback store: in this process, or through the feedback server's admin API.

Both are a :class:`~instruct_env.feedback.log.FeedbackSource`: post queries, read the event log
from a watermark, read stored queries and the evaluators.

* :class:`RemoteStore`: a store in another process or on another machine, through the feedback
  server (``pip install 'instruct-env[server]'`` for ``httpx``).
* ``_LocalStore``: a :class:`~instruct_env.feedback.store.FeedbackStore` in this process, as
  :class:`~instruct_env.feedback.oracle.HumanOracle` holds it (it pickles as what reopens it).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from typing import Any

from instruct_env.error import ConfigError, require
from instruct_env.feedback.store import Evaluator, Event, FeedbackStore, Query

__all__ = ["RemoteStore"]


class _LocalStore:
    """A :class:`FeedbackStore` in this process as a learner's source.

    Opened from a URL (and then closed here) or shared; read in batches of 5,000 events; pickled
    as what reopens it.
    """

    def __init__(self, store: FeedbackStore | str | os.PathLike[str]) -> None:
        if isinstance(store, FeedbackStore):
            self.store, self.owned = store, False
        else:
            self.store, self.owned = FeedbackStore(store), True

    def add_queries(self, queries: list[Query]) -> list[int]:
        return self.store.add_queries(queries)

    def events_since(self, watermark: int = 0, limit: int | None = None) -> list[Event]:
        return self.store.events_since(watermark, limit=5000 if limit is None else limit)

    def queries(self, ids: Iterable[int]) -> dict[int, Query]:
        return self.store.queries(ids)

    def evaluators(self) -> list[Evaluator]:
        return self.store.evaluators()

    def min_evaluators(self) -> int:
        return self.store.min_evaluators

    def close(self) -> None:
        if self.owned:
            self.store.close()

    def __getstate__(self) -> dict[str, Any]:
        # A database connection does not pickle: keep what reopens the store.
        s = self.store
        return {"url": s.url.target, "min_evaluators": s.min_evaluators,
                "gold_rate": s.gold_rate, "assignment_ttl": s.assignment_ttl}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.store = FeedbackStore(state["url"], min_evaluators=state["min_evaluators"], gold_rate=state["gold_rate"],
                                   assignment_ttl=state["assignment_ttl"])
        self.owned = True


class RemoteStore:
    """The part of a :class:`FeedbackStore` that training code uses, through the feedback server's admin API.

    Posts queries (``POST /api/admin/queries``), reads the event log from a watermark
    (``GET /api/export?format=events&since=``), stored queries by id (``GET /api/admin/queries``)
    and the evaluators (``GET /api/admin/evaluators``). :class:`HumanOracle` uses it with
    ``url=``; an :class:`~instruct_env.feedback.online.OnlineRewardLearner` given one learns from
    a store that lives in another process or on another machine (e.g. several data-parallel
    ranks sharing one feedback server). Needs ``httpx`` (``pip install 'instruct-env[server]'``).

    A request that fails in transport (refused, reset, timed out) is sent again, up to
    :attr:`attempts` times with growing pauses. That is safe: every batch of queries carries its
    own idempotency key, so a batch whose reply was lost is stored once and its ids come back.

    Args:
        url: The server's base URL, e.g. ``http://127.0.0.1:8000``.
        token: An admin token.
        client: An ``httpx.Client`` to use instead of a new one (e.g. FastAPI's ``TestClient``).
        timeout: Seconds per request.
    """

    def __init__(self, url: str, token: str | None, client: Any = None, timeout: float = 30.0) -> None:
        if not isinstance(token, str) or not token:
            raise ConfigError(f"The feedback server's API needs an admin token (token='12.<secret>'); got {token!r}. "
                              "Create one with `instruct-env add-evaluator --store STORE --admin NAME`.")
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout
        self.client = client if client is not None else self._client()
        self._min_evaluators: int | None = None

    def _client(self) -> Any:
        httpx = require("httpx", "server")
        return httpx.Client(base_url=self.url, timeout=self.timeout)

    #: Attempts of a request that fails in transport (connection refused or reset, timeout): every request
    #: this class makes is safe to repeat (reads, and query batches carrying an idempotency key).
    attempts = 4
    retry_delay_s = 0.5

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        httpx = require("httpx", "server")
        for attempt in range(self.attempts):
            try:
                reply = self.client.request(method, path, headers={"Authorization": f"Bearer {self.token}"}, **kwargs)
                break
            except httpx.TransportError:
                if attempt == self.attempts - 1:
                    raise
                time.sleep(self.retry_delay_s * 2**attempt)
        if reply.status_code >= 400:
            try:
                detail = reply.json().get("detail", reply.text)
            except ValueError:
                detail = reply.text
            raise ConfigError(f"The feedback server at {self.url} answered {method} {path} with "
                              f"{reply.status_code}: {detail}")
        return reply

    #: Largest request body a batch of queries is cut to (the server refuses bodies over its
    #: ``max_body_bytes``, 1 MiB by default, with 413), and most queries in one batch.
    batch_bytes = 512 * 1024
    batch_queries = 10_000

    def add_queries(self, queries: list[Query]) -> list[int]:
        """Store queries (in batches under the server's body limit, each with an idempotency key); return their ids."""
        fields = ("kind", "instruction", "completions", "context", "options", "selector", "score", "metadata")
        batches: list[list[dict[str, Any]]] = [[]]
        size = 0
        for q in queries:
            item = {f: (list(getattr(q, f)) if f == "completions" else
                        dict(getattr(q, f)) if f in ("options", "metadata") else getattr(q, f)) for f in fields}
            item_size = len(json.dumps(item)) + 1
            if batches[-1] and (size + item_size > self.batch_bytes or len(batches[-1]) >= self.batch_queries):
                batches.append([])
                size = 0
            batches[-1].append(item)
            size += item_size
        ids: list[int] = []
        for body in batches if batches[0] else []:
            # One key per batch: a retry after a lost reply gets the stored ids back instead of a second copy.
            key = uuid.uuid4().hex
            ids.extend(self._request("POST", "/api/admin/queries",
                                     json={"queries": body, "idempotency_key": key}).json()["ids"])
        return ids

    def events_since(self, watermark: int = 0, limit: int | None = None) -> list[Event]:
        """Log events with ``id > watermark``, in id order (the first ``limit`` of them)."""
        text = self._request("GET", "/api/export", params={"format": "events", "since": watermark}).text
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        events = [Event(r["id"], r["query_id"], r["evaluator_id"], r["type"], r["answer"], r["ref"], r["time"])
                  for r in rows]
        return events if limit is None else events[:limit]

    def queries(self, ids: Iterable[int]) -> dict[int, Query]:
        """Stored queries by id (unknown ids are left out)."""
        wanted = sorted({int(i) for i in ids})
        found: dict[int, Query] = {}
        for start in range(0, len(wanted), 500):
            reply = self._request("GET", "/api/admin/queries", params={"ids": wanted[start:start + 500]}).json()
            for q in reply["queries"]:
                found[q["id"]] = Query(q["kind"], q["instruction"], q["completions"], context=q["context"],
                                       options=q["options"], gold=q["gold"], selector=q["selector"],
                                       score=q["score"], metadata=q["metadata"], id=q["id"], created=q["created"])
        return found

    def evaluators(self) -> list[Evaluator]:
        """Every evaluator (``created`` is not sent by the server and reads 0)."""
        return [Evaluator(e["id"], e["name"], e["role"], 0.0) for e in self._request("GET", "/api/admin/evaluators").json()]

    def min_evaluators(self) -> int:
        """The store's ``min_evaluators`` (read once from the server's metrics)."""
        if self._min_evaluators is None:
            self._min_evaluators = int(self._request("GET", "/api/admin/metrics").json()["queries"]["min_evaluators"])
        return self._min_evaluators

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "token": self.token, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.client = self._client()
        self._min_evaluators = None
