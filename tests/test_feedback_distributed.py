"""The feedback loop on 2 data-parallel CPU ranks (gloo) sharing one feedback server over HTTP.

The test process runs the server (uvicorn in a thread, a temporary SQLite store) and two
simulated evaluators that answer through the evaluator API (``GET /api/next``,
``POST /api/answers``), as people would. Two spawned ranks run :func:`run_feedback_loop` with
``store_url="http://..."``: each posts its own queries and reads the answers back from the event
log over HTTP; rank 0 refits the reward model and broadcasts it. The checks: every rank's queries
are stored exactly once, every answer reaches the reward model once, both ranks end with the same
reward model (version, parameters, scores) and the same policy, and only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from deadlines import deadline_s
from rl_utils import say_dataset, tiny_policy, tiny_tokenizer

pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from instruct_env.feedback import FeedbackStore, create_app  # noqa: E402
from instruct_env.feedback.kinds import make_kind  # noqa: E402
from instruct_env.feedback.oracle import FeedbackItem, SimulatedOracle  # noqa: E402

WORLD = 2
ROUNDS = 2
QUERIES = 6  # per rank and round: 3 prompts (a rank's shard of 6) x 2 completions each
EVALUATORS = 2
WORDS = ("yes", "no", "maybe", "cat", "dog", "red")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, url: str, token: str, tmp: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    from agents.common import distributed as dist
    from agents.common.logging import RunLogger
    from agents.feedback_loop import FeedbackLoopConfig, run_feedback_loop
    from agents.rl import default_config
    from instruct_env.error import ConfigError
    from instruct_env.feedback import oracle, rewards
    from instruct_env.feedback.reward_model import RewardModelConfig

    proxies = []

    class RecordedProxy(rewards.ProxyReward):  # keeps the loop's proxy reward to read its model afterwards
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            proxies.append(self)

    rewards.ProxyReward = RecordedProxy
    asked = []

    class RecordedOracle(oracle.HumanOracle):  # keeps the store ids of the queries this rank posted
        def ask(self, items, kind="rating", **options):
            ticket = super().ask(items, kind, **options)
            asked.append(list(ticket.query_ids))
            return ticket

    oracle.HumanOracle = RecordedOracle
    dist.init_distributed(timeout_s=90)
    try:
        tokenizer = tiny_tokenizer()
        config = FeedbackLoopConfig(kind="rating", queries_per_round=QUERIES, pool_prompts=3, samples_per_prompt=2,
                                    per_instruction=2, evaluators=EVALUATORS, rl_updates=2, min_holdout=2,
                                    human_timeout_s=40.0, max_prompt_tokens=16, eval_batch_size=8,
                                    reward_model=RewardModelConfig(n_heads=2, hidden=8, epochs=20), seed=0)
        rl_config = default_config("grpo", num_envs=4, group_size=2, max_new_tokens=3, lr=1e-3, total_updates=1000)
        out = Path(tmp) / "run"
        policy = tiny_policy(tokenizer, seed=rank)  # ranks start from different weights: the loop gives all rank 0's
        with RunLogger(out / "logs", rank=rank, tensorboard=False, progress=False) as log:
            records = run_feedback_loop(
                policy, tokenizer, rounds=ROUNDS, feedback="human", store_url=url, token=token, algo="grpo",
                config=config, rl_config=rl_config, train_data=say_dataset(WORDS), val_data=say_dataset(WORDS[:2]),
                workdir=out / "feedback",
                log_fn=lambda m: log.log(m, step=int(m.get("round", m.get("update", 0))), stage="feedback"))
        model = proxies[-1].model
        pairs = [FeedbackItem.from_sample(s, [w]).pairs()[0] for s in say_dataset(WORDS) for w in WORDS]
        result = {"records": [r.to_dict() for r in records], "asked": list(asked), "rm_state": model.state(),
                  "rm_scores": model.predict(pairs)[0],
                  "policy": torch.cat([p.detach().reshape(-1) for p in policy.parameters()])}
        # Simulated evaluators (on rank 0) answering in the store the ranks share on one node: workdir/feedback.db.
        asked.clear()
        simulated = run_feedback_loop(
            policy, tokenizer, rounds=1, feedback="simulated", algo="grpo",
            config=dataclasses.replace(config, rl_updates=1), rl_config=rl_config, train_data=say_dataset(WORDS),
            val_data=say_dataset(WORDS[:2]), workdir=out / "simulated")
        result["simulated"] = {"records": [r.to_dict() for r in simulated], "asked": list(asked),
                               "rm_state": proxies[-1].model.state()}
        try:
            run_feedback_loop(policy, tokenizer, feedback="human", store_url=url, token=token,
                              config=dataclasses.replace(config, background_refit=True))
        except ConfigError as exc:
            result["background_refit_error"] = str(exc)
        torch.save(result, Path(tmp) / f"rank{rank}.pt")
    finally:
        dist.destroy_distributed()


def _answer_over_http(url: str, tokens: list[str], stop: threading.Event) -> None:
    """Simulated evaluators working through the evaluator API until ``stop``: next query, judge, submit."""
    samples = {s.instruction: s for s in say_dataset(WORDS)}
    judges = [SimulatedOracle("task", noise=0.1, seed=i, name=f"sim-{i}") for i in range(len(tokens))]
    clients = [httpx.Client(base_url=url, headers={"Authorization": f"Bearer {t}"}, timeout=10) for t in tokens]
    try:
        while not stop.is_set():
            busy = False
            for judge, client in zip(judges, clients):
                query = client.get("/api/next").json()["query"]
                if query is None:
                    continue
                busy = True
                item = FeedbackItem(query["instruction"], query["completions"], query["context"],
                                    sample=samples[query["instruction"]])
                [quality] = judge.quality([item])
                answer = judge.judge(make_kind(query["kind"], **query["options"]), quality, item.references,
                                     item.completions)
                reply = client.post("/api/answers", json={"query_id": query["id"], "answer": answer})
                assert reply.status_code == 201, reply.text
            if not busy:
                time.sleep(0.05)
    finally:
        for client in clients:
            client.close()


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory):
    import uvicorn

    tmp = tmp_path_factory.mktemp("feedback_ddp")
    store = FeedbackStore(tmp / "feedback.db", min_evaluators=EVALUATORS, gold_rate=0.0, seed=0)
    _, admin = store.add_evaluator("trainer", role="admin")
    tokens = [store.add_evaluator(f"person-{i}")[1] for i in range(EVALUATORS)]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning"))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    stop = threading.Event()
    answering = threading.Thread(target=_answer_over_http, args=(url, tokens, stop), daemon=True)
    try:
        limit = deadline_s(60)  # stops a hang only
        deadline = time.monotonic() + limit
        while not server.started:
            assert time.monotonic() < deadline, f"the feedback server did not start within {limit:.0f} s"
            time.sleep(0.05)
        answering.start()
        start = time.monotonic()
        ctx = mp.start_processes(_worker, args=(_free_port(), url, admin, str(tmp)), nprocs=WORLD, join=False,
                                 start_method="spawn")
        limit = deadline_s(900)  # stops a hang only: a 2-core machine needs well under a minute
        while not ctx.join(timeout=1):
            if time.monotonic() - start > limit:
                for p in ctx.processes:
                    p.kill()
                pytest.fail(f"the 2-rank feedback loop did not finish within {limit:.0f} s")
        seconds = time.monotonic() - start
        results = [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
        yield tmp, store, results, seconds
    finally:
        stop.set()
        if answering.is_alive():
            answering.join(timeout=10)
        server.should_exit = True
        serving.join(timeout=10)
        store.close()


pytestmark = pytest.mark.usefixtures("single_thread")


def test_every_rank_posts_its_own_queries_once(shared_run):
    _, store, results, _ = shared_run
    queries = store.queries()
    origins = Counter((q.metadata["run"], q.metadata["round"], q.metadata["rank"], q.metadata["item"])
                      for q in queries.values())
    assert all(n == 1 for n in origins.values())  # no query posted twice
    assert len({run for run, *_ in origins}) == 1  # one run id, drawn by rank 0 for all ranks
    for rank, result in enumerate(results):
        assert len(result["asked"]) == ROUNDS
        for rnd, ids in enumerate(result["asked"], start=1):
            # What the rank posted is in the store under its own name, and nothing else is.
            assert 1 <= len(ids) <= QUERIES and len(set(ids)) == len(ids)
            assert sorted(ids) == sorted(qid for qid, q in queries.items()
                                         if (q.metadata["rank"], q.metadata["round"]) == (rank, rnd))
    assert len(queries) == sum(len(ids) for result in results for ids in result["asked"])
    # Ranks sample from their own shards of the prompts, so their queries differ.
    by_rank = [{(q.instruction, q.completions[0]) for q in queries.values() if q.metadata["rank"] == r}
               for r in range(WORLD)]
    assert {i for i, _ in by_rank[0]}.isdisjoint({i for i, _ in by_rank[1]})


def test_every_answer_is_collected_and_learned_from_once(shared_run):
    tmp, store, results, _ = shared_run
    events = store.events_since(0)
    assert {e.type for e in events} == {"submit"}
    answered = Counter((e.query_id, e.evaluator_id) for e in events)
    assert all(n == 1 for n in answered.values())  # no answer stored twice
    per_query = Counter(qid for qid, _ in answered)
    assert set(per_query) == set(store.queries()) and set(per_query.values()) == {EVALUATORS}  # none lost
    queries = store.queries()
    for rank_result in results:
        for record in rank_result["records"][1:]:  # answers summed over the ranks, each read by its own rank
            in_round = sum(n for qid, n in per_query.items() if queries[qid].metadata["round"] == record["round"])
            assert record["answers"] == in_round > 0
    # Rank 0's learner read the whole log over HTTP, each event once.
    read = [json.loads(line)["id"] for line in (tmp / "run" / "feedback" / "reward_model" / "events.jsonl")
            .read_text().splitlines()]
    assert read == [e.id for e in events]
    last = results[0]["records"][-1]
    # The last refit's candidate was trained on every answer (one rating label each), promoted or not;
    # a promoted one is also the model in use.
    assert last["refit"]["n_train"] + last["refit"]["n_holdout"] == len(events)
    assert last["holdout_labels"] == last["refit"]["n_holdout"]
    in_use = last["refit"]["n_train"] if last["promoted"] else results[0]["records"][-2]["labels_used"]
    assert last["labels_used"] == in_use


def test_ranks_end_with_the_same_reward_model_and_policy(shared_run):
    _, _, results, _ = shared_run
    versions = [[r["rm_version"] for r in res["records"]] for res in results]
    assert versions[0] == versions[1] and versions[0][-1] >= 1
    assert [r["rl_updates"] for r in results[0]["records"]] == [r["rl_updates"] for r in results[1]["records"]]
    states = [res["rm_state"] for res in results]
    assert states[0]["version"] == states[1]["version"] == versions[0][-1]
    assert states[0]["heads"].keys() == states[1]["heads"].keys()
    for key, value in states[0]["heads"].items():
        assert torch.equal(value, states[1]["heads"][key]), key
    # The same featurizer (rank 0's starting weights) behind it: the same scores (up to float rounding: the
    # features of texts scored during the run were computed in batches padded differently on each rank).
    assert np.allclose(results[0]["rm_scores"], results[1]["rm_scores"], rtol=0, atol=1e-6)
    assert np.ptp(results[0]["rm_scores"]) > 1e-3  # a trained model: the scores differ between texts
    assert torch.equal(results[0]["policy"], results[1]["policy"])
    for field in ("labels_used", "holdout_labels", "promoted", "val_task"):
        assert [r[field] for r in results[0]["records"]] == [r[field] for r in results[1]["records"]], field


def test_simulated_evaluators_on_rank_zero_answer_every_rank_in_a_shared_store(shared_run):
    tmp, _, results, _ = shared_run
    runs = [res["simulated"] for res in results]
    with FeedbackStore(tmp / "run" / "simulated" / "feedback.db") as store:
        queries, events = store.queries(), store.events_since(0)
        evaluators = {e.id: e.name for e in store.evaluators()}
    assert sorted(q for run in runs for ids in run["asked"] for q in ids) == sorted(queries)
    answered = Counter((e.query_id, e.evaluator_id) for e in events if e.type == "submit")
    assert set(answered.values()) == {1} and Counter(q for q, _ in answered) == dict.fromkeys(queries, EVALUATORS)
    assert sorted(evaluators.values()) == [f"simulated-{i}" for i in range(EVALUATORS)]  # one identity each
    assert runs[0]["records"][1]["answers"] == runs[1]["records"][1]["answers"] == len(answered)
    assert runs[0]["rm_state"]["version"] == runs[1]["rm_state"]["version"] >= 1
    for key, value in runs[0]["rm_state"]["heads"].items():
        assert torch.equal(value, runs[1]["rm_state"]["heads"][key]), key


def test_only_rank_zero_writes_run_outputs(shared_run):
    tmp, _, _, seconds = shared_run
    run = tmp / "run"
    written = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert written and all(p.startswith(("logs/", "feedback/reward_model/", "simulated/")) for p in written), written
    assert (run / "feedback" / "reward_model" / "state.json").exists()
    assert not (run / "feedback" / "feedback.db").exists()  # the shared store is the server's
    metrics = [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert sum(m.get("phase") == "round" for m in metrics) == ROUNDS + 1  # logged once, by rank 0


def test_background_refit_is_refused_with_several_ranks(shared_run):
    _, _, results, _ = shared_run
    for res in results:
        assert "background_refit=True refits during RL, so the 2 ranks would score with different reward models" \
            in res["background_refit_error"]


def test_a_feedback_server_needs_human_feedback_and_an_admin_token(monkeypatch):
    from agents.feedback_loop import TOKEN_ENV, run_feedback_loop
    from instruct_env.error import ConfigError

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(ConfigError, match="feedback='simulated' needs a store its simulated evaluators can answer"):
        run_feedback_loop(None, None, feedback="simulated", store_url="http://127.0.0.1:8000", token="1.x")
    with pytest.raises(ConfigError, match=f"needs an admin token; got none. Pass token= or set {TOKEN_ENV}"):
        run_feedback_loop(None, None, feedback="human", store_url="http://127.0.0.1:8000")


def test_admins_read_stored_queries_by_id(tmp_path):
    from fastapi.testclient import TestClient

    from instruct_env.feedback.oracle import RemoteStore
    from instruct_env.feedback.store import Query

    with FeedbackStore(tmp_path / "f.db", gold_rate=0.0) as store:
        _, admin = store.add_evaluator("admin", role="admin")
        _, person = store.add_evaluator("person")
        ids = store.add_queries([Query("rating", "Say yes.", ["yes"], metadata={"rank": 1, "holdout": True}),
                                 Query("thumbs", "Say no.", ["no"])])
        with TestClient(create_app(store)) as client:
            remote = RemoteStore("http://testserver", admin, client=client)
            found = remote.queries([ids[1], ids[0], 999])
            assert sorted(found) == ids
            assert found[ids[0]].metadata == {"rank": 1, "holdout": True} and found[ids[0]].completions == ("yes",)
            assert found[ids[1]] == store.get_query(ids[1])
            assert [e.name for e in remote.evaluators()] == ["admin", "person"]
            reply = client.get("/api/admin/queries", params={"ids": ids},
                               headers={"Authorization": f"Bearer {person}"})
            assert reply.status_code == 403
