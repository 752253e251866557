"""Feedback kinds (answer validation, blind display order) and the training-data exports."""

from __future__ import annotations

import io
import json

import pytest

from instruct_env.error import ConfigError, UnknownNameError
from instruct_env.feedback import (
    FeedbackStore,
    Query,
    event_records,
    make_kind,
    preference_pairs,
    sft_examples,
    unpaired_thumbs,
    write_jsonl,
)
from instruct_env.feedback.errors import InvalidAnswer
from instruct_env.tasks.prompts import PromptFormatter


@pytest.mark.parametrize(
    ("kind", "n", "answer", "message"),
    [
        ("rating", 1, {"rating": 0}, "rating must be an integer from 1 to 5; got 0"),
        ("rating", 1, {"rating": 4.0}, "rating must be an integer from 1 to 5; got 4.0"),
        ("rating", 1, {"rating": True}, "rating must be an integer from 1 to 5; got True"),
        ("rating", 1, {}, "A 'rating' answer needs the field(s) 'rating'"),
        ("rating", 1, [4], "A 'rating' answer must be a JSON object such as {\"rating\": 5}; got list"),
        ("thumbs", 1, {"thumb": "up", "why": "x"}, "unknown field(s) 'why'; allowed: 'thumb'"),
        ("pairwise", 2, {"choice": "C"}, "choice must be one of 'A', 'B', 'tie', 'both_bad'; got 'C'"),
        ("pairwise", 2, {"choice": "tie", "strength": 2}, "strength only applies to a choice of 'A' or 'B'"),
        ("pairwise", 2, {"choice": "B", "strength": 4}, "strength must be 1, 2 or 3 (or left out); got 4"),
        ("ranking", 3, {"ranking": [0, 0, 1]}, "ranking must list each of the positions [0, 1, 2] exactly once"),
        ("ranking", 3, {"ranking": [0, 1]}, "ranking must list each of the positions [0, 1, 2]"),
        ("comment", 1, {"comment": "   "}, "comment of a 'comment' answer is empty"),
        ("comment", 1, {"comment": 3}, "comment of a 'comment' answer must be a string; got int"),
        ("edit", 1, {"completion": ""}, "completion of a 'edit' answer is empty. Write the corrected answer"),
    ],
)
def test_invalid_answers_say_what_is_expected(kind, n, answer, message):
    with pytest.raises(InvalidAnswer) as info:
        make_kind(kind).validate(answer, n_completions=n)
    assert message in str(info.value)


def test_valid_answers_are_normalised():
    assert make_kind("rating", low=0, high=10).validate({"rating": 10}, 1) == {"rating": 10}
    assert make_kind("pairwise").validate({"choice": "both_bad", "strength": None}, 2) == {"choice": "both_bad"}
    assert make_kind("ranking").validate({"ranking": (2, 0, 1)}, 3) == {"ranking": [2, 0, 1]}
    assert make_kind("edit").validate({"completion": "fixed"}, 1) == {"completion": "fixed"}


def test_display_and_canonical_terms_are_inverse():
    ranking = make_kind("ranking")
    order = [2, 0, 3, 1]  # position p shows completion order[p]
    display = {"ranking": [1, 3, 0, 2]}
    canonical = ranking.to_canonical(display, order)
    assert canonical == {"ranking": [0, 1, 2, 3]}
    assert ranking.to_display(canonical, order) == display
    pairwise = make_kind("pairwise")
    for choice, swapped in (("A", "B"), ("B", "A"), ("tie", "tie"), ("both_bad", "both_bad")):
        assert pairwise.to_canonical({"choice": choice}, [1, 0]) == {"choice": swapped}
        assert pairwise.to_canonical({"choice": choice}, [0, 1]) == {"choice": choice}


def test_kind_names_and_options_are_checked():
    with pytest.raises(UnknownNameError, match="Unknown feedback kind 'ratings'. Did you mean 'rating'"):
        make_kind("ratings")
    with pytest.raises(ConfigError, match="needs integers low < high; got low=5, high=5"):
        make_kind("rating", low=5, high=5)
    with pytest.raises(ConfigError, match="'thumbs' got unknown option"):
        make_kind("thumbs", high=3)
    assert make_kind("rating", low=1, high=10).shortcuts(1)[0][0] == "1-9, 0 (= 10)"


@pytest.fixture
def filled(tmp_path):
    """Two evaluators answered one query of each kind, and a gold thumbs query (served first)."""
    store = FeedbackStore(tmp_path / "f.db", min_evaluators=2, gold_rate=1.0, seed=0, synchronous="NORMAL")
    store.add_queries([
        Query("pairwise", "Pick", ["left", "right"]),
        Query("ranking", "Rank", ["r0", "r1", "r2"]),
        Query("thumbs", "Thumb", ["t0"]),
        Query("rating", "Rate", ["s0"]),
        Query("edit", "Fix", ["broken"]),
        Query("comment", "Say", ["c0"]),
        Query("thumbs", "Gold", ["g0"], gold={"thumb": "down"}),
    ])
    canonical = {  # what each evaluator means, in canonical terms
        "ann": {1: {"choice": "A", "strength": 2}, 2: {"ranking": [2, 0, 1]}, 3: {"thumb": "up"},
                4: {"rating": 4}, 5: {"completion": "fixed"}, 6: {"comment": "fine"}, 7: {"thumb": "up"}},
        "bob": {1: {"choice": "tie"}, 2: {"ranking": [0, 1, 2]}, 3: {"thumb": "down"},
                4: {"rating": 2}, 5: {"completion": "repaired"}, 6: {"comment": "meh"}, 7: {"thumb": "down"}},
    }
    for name, answers in canonical.items():
        person, _ = store.add_evaluator(name)
        while (view := store.next_query(person.id)) is not None:
            query = store.get_query(view.id)
            order = [query.completions.index(c) for c in view.completions]
            store.submit(person.id, view.id, query.spec.to_display(answers[view.id], order))
    yield store
    store.close()


def test_preference_pairs_in_trl_format(filled):
    pairs = preference_pairs(filled, prompt=lambda q: q.instruction)
    assert pairs == [
        {"prompt": "Pick", "chosen": "left", "rejected": "right", "margin": 2.0},
        {"prompt": "Rank", "chosen": "r2", "rejected": "r0"},
        {"prompt": "Rank", "chosen": "r2", "rejected": "r1"},
        {"prompt": "Rank", "chosen": "r0", "rejected": "r1"},
        {"prompt": "Rank", "chosen": "r0", "rejected": "r1"},
        {"prompt": "Rank", "chosen": "r0", "rejected": "r2"},
        {"prompt": "Rank", "chosen": "r1", "rejected": "r2"},
    ]
    with_margin = preference_pairs(filled, prompt=lambda q: q.instruction, default_margin=0.0, with_ids=True)
    assert all("margin" in p and "query_id" in p and "evaluator_id" in p for p in with_margin)
    default = preference_pairs(filled)[0]["prompt"]
    assert default == "### Instruction:\nPick\n### Response:\n"
    assert preference_pairs(filled, prompt=PromptFormatter("plain"))[0]["prompt"].startswith("Pick")


def test_unpaired_thumbs_and_sft_examples(filled):
    assert unpaired_thumbs(filled, prompt=lambda q: q.instruction) == [
        {"prompt": "Thumb", "completion": "t0", "label": True},
        {"prompt": "Thumb", "completion": "t0", "label": False},
    ]
    with_gold = unpaired_thumbs(filled, prompt=lambda q: q.instruction, include_gold=True, rating_threshold=4)
    assert [(r["prompt"], r["label"]) for r in with_gold] == [
        ("Thumb", True), ("Thumb", False), ("Gold", True), ("Gold", False), ("Rate", True), ("Rate", False)
    ]
    assert sft_examples(filled, prompt=lambda q: q.instruction) == [
        {"prompt": "Fix", "completion": "fixed"},
        {"prompt": "Fix", "completion": "repaired"},
    ]
    with pytest.raises(ConfigError, match="prompt must be None, a PromptFormatter or a function"):
        sft_examples(filled, prompt="### {instruction}")


def test_event_records_and_jsonl(filled, tmp_path):
    records = list(event_records(filled, batch_size=5))
    assert [r["id"] for r in records] == list(range(1, 15))
    assert list(event_records(filled, since=12)) == records[12:]
    path = tmp_path / "events.jsonl"
    assert write_jsonl(records, path) == 14
    assert [json.loads(line) for line in path.read_text().splitlines()] == records
    buffer = io.StringIO()
    write_jsonl([{"prompt": "é"}], buffer)
    assert buffer.getvalue() == '{"prompt": "é"}\n'
