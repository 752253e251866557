"""Active selection, the online learner (promotion, refusal, restarts, the worker) and the reward modes in envs."""

from __future__ import annotations

import json
import math
import pickle
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from deadlines import deadline_s

import instruct_env  # noqa: F401  (registers the environments)
from instruct_env.error import ConfigError, RewardError
from instruct_env.feedback import FeedbackStore
from instruct_env.feedback.active import ActiveSelector
from instruct_env.feedback.online import OnlineRewardLearner, labels_from_answer
from instruct_env.feedback.oracle import FeedbackItem, HumanOracle, SimulatedOracle
from instruct_env.feedback.reward_model import Label, RewardModel, RewardModelConfig
from instruct_env.feedback.rewards import DelayedHumanReward, ProxyReward
from instruct_env.tasks import BuiltinDataset, Sample


def stated_quality(completions, references, **kwargs):
    """Metric of the synthetic answers "answer <q>": their stated quality q."""
    return [float(c.split()[-1]) for c in completions]


class StatedFeatures:
    """Features of "answer <q>": [q, a prompt-dependent nuisance value]."""

    def __call__(self, pairs):
        return np.array([[float(c.split()[-1]), (len(p) % 7) / 7] for p, c in pairs], dtype=np.float32)


class WordFeatures:
    """Features of any answer: share of its words found in the prompt, its length, a constant."""

    def __call__(self, pairs):
        rows = []
        for prompt, completion in pairs:
            words = completion.split()
            found = sum(w in prompt.split() for w in words) / max(len(words), 1)
            rows.append([found, len(words) / 10, 1.0])
        return np.array(rows, dtype=np.float32)


def synthetic_pool(n_instructions=30, per=4, seed=0):
    rng = np.random.default_rng(seed)
    pool = []
    for i in range(n_instructions):
        sample = Sample(f"t/{i}", "t", f"Instruction {i}.", references=("r",))
        values = rng.random(per).round(3)
        values[-1] = values[0]  # a duplicate completion: counted once
        pool.extend(FeedbackItem.from_sample(sample, f"answer {v}", metadata={"origin": "policy"}) for v in values)
    return pool


def trained_model(seed=0, n_labels=60):
    rng = np.random.default_rng(seed)
    labels = []
    for _ in range(n_labels):
        a, b = rng.random(2).round(3)
        labels.append(Label("pairwise", (("p", f"answer {a}"), ("p", f"answer {b}")), float(a > b)))
    model = RewardModel(StatedFeatures(), RewardModelConfig(n_heads=4, hidden=8, epochs=100, seed=seed))
    model.fit(labels)
    return model


# --------------------------------------------------------------------------------------------------
# Active selection
# --------------------------------------------------------------------------------------------------


def test_qbc_dedups_per_instruction_and_keeps_the_random_share():
    torch.set_num_threads(1)
    pool = synthetic_pool()
    model = trained_model()
    selector = ActiveSelector(model, random_share=0.3, seed=0)
    chosen = selector.select(pool, 10, kind="rating")
    assert len(chosen) == 10
    assert len({item.sample.id for item in chosen}) == 10  # one per instruction
    holdout = [item for item in chosen if item.selector == "holdout"]
    active = [item for item in chosen if item.selector == "qbc"]
    assert len(holdout) == 3 and len(active) == 7
    assert all(item.metadata["holdout"] for item in holdout) and not any(item.metadata["holdout"] for item in active)
    assert all(item.metadata["origin"] == "policy" and item.score is not None for item in chosen)
    # The committee picks are the most disputed completions of the instructions left.
    used = {item.sample.id for item in chosen}
    others = [it for it in pool if it.sample.id not in used]
    _, other_std = model.predict([it.pairs()[0] for it in others])
    assert min(item.score for item in active) >= other_std.max() - 1e-12

    twice = ActiveSelector(model, random_share=0.0, per_instruction=2, seed=0).select(pool, 12)
    ids, per_sample = np.unique([it.sample.id for it in twice], return_counts=True)
    assert per_sample.max() == 2
    for sid, n in zip(ids, per_sample):  # two items of one instruction are two different completions
        assert len({it.completions for it in twice if it.sample.id == sid}) == n


def test_the_random_share_is_unbiased():
    torch.set_num_threads(1)
    pool = synthetic_pool(60, seed=1)
    model = trained_model(seed=1)
    _, std = model.predict([it.pairs()[0] for it in pool])
    selector = ActiveSelector(model, random_share=0.25, seed=3)
    holdout_scores, qbc_scores = [], []
    for _ in range(40):
        for item in selector.select(pool, 12):
            (holdout_scores if item.selector == "holdout" else qbc_scores).append(item.score)
    assert len(holdout_scores) == 40 * 3
    # Held-out picks look like the pool; the committee's picks are the disputed ones.
    assert abs(np.mean(holdout_scores) - std.mean()) < 0.25 * std.std() + 1e-3
    assert np.mean(qbc_scores) > np.mean(holdout_scores) + std.std()


def test_pairwise_and_ranking_selection_and_payload(tmp_path):
    torch.set_num_threads(1)
    pool = synthetic_pool(8)
    model = trained_model()
    pairs = ActiveSelector(model, random_share=0.25, seed=0).select(pool, 8, kind="pairwise")
    assert len(pairs) == 8 and all(len(set(it.completions)) == 2 for it in pairs)
    ranked = ActiveSelector(model, seed=0, max_ranked=3).select(pool, 4, kind="ranking")
    assert all(len(it.completions) == 3 for it in ranked)
    store = FeedbackStore(tmp_path / "f.db", min_evaluators=1, gold_rate=0.0, synchronous="NORMAL")
    ticket = HumanOracle(store).ask(pairs, "pairwise")
    stored = store.queries(ids=ticket.query_ids)
    assert {q.selector for q in stored.values()} == {"qbc", "holdout"}
    assert all(isinstance(q.score, float) for q in stored.values())
    assert sum(q.metadata["holdout"] for q in stored.values()) == 2
    store.close()


def test_selector_arguments_are_checked():
    with pytest.raises(ConfigError, match="strategy='qbc' needs a reward model"):
        ActiveSelector(None)
    with pytest.raises(Exception, match="Did you mean 'qbc'"):
        ActiveSelector(None, strategy="qcb")
    with pytest.raises(ConfigError, match="exactly one completion"):
        ActiveSelector(strategy="random").select([FeedbackItem("x", ("a", "b"))], 1)
    random_pick = ActiveSelector(strategy="random", random_share=0.0, seed=0).select(synthetic_pool(3), 5)
    assert len(random_pick) == 3 and {it.selector for it in random_pick} == {"random"} and random_pick[0].score is None


# --------------------------------------------------------------------------------------------------
# The online learner
# --------------------------------------------------------------------------------------------------


def post_and_answer(store, n, seed, holdout_every=4, evaluators=2):
    """Post n pairwise queries of synthetic answers; simulated evaluators answer them through the store."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        a, b = rng.random(2).round(3)
        items.append(FeedbackItem(f"Instruction {seed}-{i}.", (f"answer {a}", f"answer {b}"), selector="test",
                                  metadata={"holdout": i % holdout_every == 0}))
    HumanOracle(store).ask(items, "pairwise")
    for e in range(evaluators):
        SimulatedOracle(stated_quality, noise=0.05, tie_margin=0.0, seed=seed * 10 + e, name=f"sim-{e}").answer_store(store)


@pytest.fixture
def store(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db", min_evaluators=2, gold_rate=0.0, seed=0, synchronous="NORMAL")
    yield store
    store.close()


def new_learner(store, path, **kwargs):
    model = RewardModel(StatedFeatures(), RewardModelConfig(n_heads=4, hidden=8, epochs=150, seed=0))
    return OnlineRewardLearner(store, model, path, **{"refit_every": 10, "min_holdout": 5, **kwargs})


def test_learner_promotes_an_improving_model_and_refuses_a_worse_one(store, tmp_path):
    torch.set_num_threads(1)
    learner = new_learner(store, tmp_path / "rm")
    assert learner.step() is None and learner.version == 0  # nothing read yet
    post_and_answer(store, 40, seed=1)
    report = learner.step()  # 80 new answers >= refit_every: a refit
    assert report is not None and report.promoted and learner.version == 1
    assert report.n_holdout == 20 and report.n_train == 60  # queries marked holdout: all their answers
    assert report.accuracy_after >= 0.9 and math.isnan(report.accuracy_before)
    assert "first trained model" in report.reason  # untrained heads are no model to compare with
    assert (tmp_path / "rm" / "models" / "v1.pt").exists()
    train, holdout = learner.labels()
    assert {lb.evaluator for lb in train} == {"sim-0", "sim-1"}

    worse = learner.current.clone()
    with torch.no_grad():
        worse.heads.w2.neg_()  # every preference reversed
    refused = learner.offer(worse)
    assert not refused.promoted and "refused" in refused.reason and learner.version == 1
    assert refused.accuracy_after < 0.2

    post_and_answer(store, 20, seed=2)
    again = learner.step()
    assert again.promoted and learner.version == 2 and learner.current.n_fits == 2  # warm-started
    assert learner.heldout_accuracy() >= 0.9
    history = [json.loads(line) for line in (tmp_path / "rm" / "history.jsonl").read_text().splitlines()]
    assert [h["promoted"] for h in history] == [True, False, True]


def test_watermark_survives_restarts_without_missing_or_rereading(store, tmp_path):
    torch.set_num_threads(1)
    first = new_learner(store, tmp_path / "rm")
    post_and_answer(store, 10, seed=3)
    first.step(force=True)
    watermark, version = first.watermark, first.version
    pairs = [("p", "answer 0.2"), ("p", "answer 0.9")]
    before = first.current.predict(pairs)[0]
    first.close()
    assert watermark == store.last_event_id() and version == 1

    post_and_answer(store, 5, seed=4)  # arrives while no learner runs
    with open(tmp_path / "rm" / "events.jsonl", "a") as f:  # a crash after writing, before saving the watermark
        f.write(json.dumps({"id": watermark + 1, "query_id": 1, "evaluator_id": 1, "type": "submit",
                            "answer": {"choice": "A"}, "ref": None, "time": 0.0}) + "\n")
    second = new_learner(store, tmp_path / "rm")
    assert second.watermark == watermark and second.version == version
    assert np.allclose(second.current.predict(pairs)[0], before)
    assert second.read() == store.last_event_id() - watermark == 10  # exactly the new events
    train, holdout = second.labels()
    assert len(train) + len(holdout) == 30  # 15 queries x 2 evaluators, none twice
    assert second.new_answers == 10 and second.due()
    lines = (tmp_path / "rm" / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == list(range(1, store.last_event_id() + 1))


def test_refit_triggers(store, tmp_path):
    now = [100.0]
    learner = new_learner(store, tmp_path / "rm", refit_every=5, refit_interval_s=60, clock=lambda: now[0])
    post_and_answer(store, 2, seed=5)  # 4 answers
    learner.read()
    now[0] += 59
    assert learner.new_answers == 4 and not learner.due()
    now[0] += 1
    assert learner.due()  # time passed with something new
    learner.refit()
    assert learner.new_answers == 0 and not learner.due()


def test_background_worker_refits_and_reports_errors(store, tmp_path):
    torch.set_num_threads(1)
    learner = new_learner(store, tmp_path / "rm", refit_every=10)
    learner.start(poll_interval=0.05)
    post_and_answer(store, 10, seed=6)
    deadline = time.monotonic() + deadline_s(120)  # waits for the refit; stops a hang only
    while learner.version == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert learner.version == 1 and learner.running
    learner.stop()
    assert not learner.running
    learner.start(poll_interval=0.05)
    store.close()  # the worker's next read fails...
    deadline = time.monotonic() + deadline_s(120)
    while learner.running and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(ConfigError, match="FeedbackStore is closed"):
        learner.stop()  # ...and the error is raised here, not lost


def test_labels_from_every_kind():
    from instruct_env.feedback.store import Query

    rating = labels_from_answer(Query("rating", "Do.", ["x"], id=1), {"rating": 4}, "ann")
    assert rating[0].kind == "rating" and rating[0].target == 0.75 and rating[0].evaluator == "ann"
    assert labels_from_answer(Query("thumbs", "Do.", ["x"], id=1), {"thumb": "down"})[0].target == 0.0
    assert labels_from_answer(Query("pairwise", "Do.", ["x", "y"], id=1), {"choice": "both_bad"}) == []
    tie = labels_from_answer(Query("pairwise", "Do.", ["x", "y"], id=1), {"choice": "tie"})
    assert tie[0].target == 0.5
    edit = labels_from_answer(Query("edit", "Do.", ["x"], id=1), {"completion": "better"})
    assert [tuple(p[1] for p in lb.items) for lb in edit] == [("better", "x")]
    assert labels_from_answer(Query("comment", "Do.", ["x"], id=1), {"comment": "meh"}) == []


# --------------------------------------------------------------------------------------------------
# Reward modes in an environment
# --------------------------------------------------------------------------------------------------


def copy_model():
    """A reward model over WordFeatures that learned 'copying the input is good' (version 1)."""
    samples = list(BuiltinDataset(["copy"], split="train", size_per_task=30, seed=0))
    labels = []
    for s in samples:
        prompt = FeedbackItem.from_sample(s, "").prompt()
        labels.append(Label("pairwise", ((prompt, s.references[0]), (prompt, "zebra lion")), 1.0))
    model = RewardModel(WordFeatures(), RewardModelConfig(n_heads=2, hidden=0, epochs=100, seed=0))
    model.fit(labels)
    model.version = 1
    return model


def test_proxy_reward_in_an_env_reports_source_version_and_ticket(tmp_path):
    torch.set_num_threads(1)
    store = FeedbackStore(tmp_path / "f.db", min_evaluators=1, gold_rate=0.0, synchronous="NORMAL")
    reward = ProxyReward(copy_model(), oracle=HumanOracle(store), kind="thumbs", label_fraction=1.0)
    env = gym.make("InstructEnv/Completion-v0", tasks=["copy"], reward=reward)
    _, info = env.reset(seed=0)
    _, good, _, _, info = env.step(info["references"][0])
    assert info["reward_source"] == "reward_model" and info["reward_model_version"] == 1
    assert info["ticket"].kind == "thumbs" and info["ticket_index"] == 0
    assert 0 <= good <= 1 and info["reward_model_std"] >= 0
    env.reset(seed=0)
    _, bad, _, _, _ = env.step("zebra lion")
    assert good > bad
    assert len(store.queries()) == 2 and {q.selector for q in store.queries().values()} == {"proxy"}

    vector = gym.make_vec("InstructEnv/Completion-v0", num_envs=3, vectorization_mode="vector_entry_point",
                          tasks=["copy"], reward=ProxyReward(copy_model()))
    vector.reset(seed=0)
    _, rewards, _, _, infos = vector.step(["a b", "c", "d"])
    final = infos["final_info"]
    assert list(final["reward_source"]) == ["reward_model"] * 3 and list(final["reward_model_version"]) == [1] * 3
    assert "ticket" not in final  # nothing was sent to an oracle
    store.close()


def test_proxy_reward_falls_back_then_follows_the_learner(store, tmp_path):
    torch.set_num_threads(1)
    learner = new_learner(store, tmp_path / "rm")
    reward = ProxyReward(learner, fallback="exact_match")
    sample = Sample("s", "t", "Say it.", references=("answer 0.9",))
    values, _, infos = reward.compute_with_info(["answer 0.9"], [sample.references], samples=[sample])
    assert values.tolist() == [1.0] and infos[0]["reward_source"] == "fallback:exact_match"
    assert infos[0]["reward_model_version"] is None
    with pytest.raises(RewardError, match="no trained reward model yet"):
        ProxyReward(learner).compute_with_info(["x"], [[]], samples=[sample])
    with pytest.raises(RewardError, match="needs samples="):
        reward(["x"], [[]])
    post_and_answer(store, 20, seed=7)
    learner.step(force=True)
    values, _, infos = reward.compute_with_info(["answer 0.9", "answer 0.1"], [[], []], samples=[sample, sample])
    assert infos[0]["reward_source"] == "reward_model" and infos[0]["reward_model_version"] == 1
    assert values[0] > values[1]
    copy = pickle.loads(pickle.dumps(reward))  # the learner is replaced by a snapshot of its model
    assert isinstance(copy.source, RewardModel) and copy.version == 1
    assert np.allclose(copy(["answer 0.9"], [[]], samples=[sample]), values[:1])
    learner.close()


def test_delayed_reward_in_an_env_delivers_later(tmp_path):
    store = FeedbackStore(tmp_path / "f.db", min_evaluators=1, gold_rate=0.0, synchronous="NORMAL")
    delivered = []
    reward = DelayedHumanReward(HumanOracle(store), "rating", callback=lambda t, v: delivered.append((t.id, v)))
    env = gym.make("InstructEnv/Completion-v0", tasks=["copy"], reward=reward)
    _, info = env.reset(seed=0)
    reference = info["references"][0]
    _, value, _, _, info = env.step(reference)
    assert value == 0.0 and info["reward_source"] == "human:delayed" and info["reward_model_version"] is None
    ticket = info["ticket"]
    assert np.isnan(reward.collect(ticket)[info["ticket_index"]])  # nobody answered yet
    assert reward.deliver() == 0 and delivered == []
    samples = {s.id: s for s in BuiltinDataset(["copy"], split="train")}
    SimulatedOracle(noise=0.0, seed=0, name="sim").answer_store(store, samples)
    assert reward.deliver() == 1 and delivered[0][0] == ticket.id and delivered[0][1].tolist() == [1.0]
    assert reward.collect(ticket).tolist() == [1.0]  # still readable with the ticket object
    copy = pickle.loads(pickle.dumps(DelayedHumanReward(HumanOracle(store), "thumbs")))
    assert copy.oracle.store is not store
    copy.oracle.close()
    with pytest.raises(ConfigError, match="kind must be 'rating' or 'thumbs'"):
        DelayedHumanReward(HumanOracle(store), "pairwise")
    store.close()
