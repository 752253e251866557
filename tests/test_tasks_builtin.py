"""Tests of the built-in procedural task families, datasets, registry and corpora."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from instruct_env.error import ConfigError, UnknownNameError
from instruct_env.tasks import (
    BuiltinDataset,
    Sample,
    TaskFamily,
    Verifier,
    default_task_names,
    make_task,
    pretraining_corpus,
    task_names,
    tokenizer_corpus,
)
from instruct_env.tasks.builtin import (
    SPLITS,
    count_credit,
    digit_credit,
    lexicon,
    normalise_split,
    sequence_credit,
    split_of,
)

ALL = task_names()
DEFAULT = default_task_names()
# Families whose answer depends on the instruction for one and the same context.
INSTRUCTION_SENSITIVE = {
    "sort_numbers": ("ascending", "descending"),
    "arithmetic": ("add", "subtract"),
    "change_case": ("upper", "lower"),
    "count_words": ("all", "distinct"),
    "pick_word": ("first", "last"),
    "dedup": ("first", "once"),
    "keywords": ("animal", "color"),
    "semantic_parse": ("sum", "sort"),
}


def test_registry_has_at_least_ten_families_with_three_phrasings():
    assert len(ALL) >= 10
    for name in ALL:
        family = make_task(name)
        assert family.name == name
        assert family.num_phrasings >= 3
        assert 0 <= family.heldout_phrasing < family.num_phrasings
        texts = {family.instruction(p, family.variants[0], topic="animals", query="q") for p in range(3)}
        assert len(texts) == 3, f"{name}: phrasings must be worded differently"


def test_unknown_task_name_suggests():
    with pytest.raises(UnknownNameError, match=r"Unknown task 'sort_number'\. Did you mean 'sort_numbers'"):
        make_task("sort_number")


def test_bad_knob_lists_valid_knobs():
    with pytest.raises(
        ConfigError,
        match=r"Unknown knob\(s\) 'max_word'.*Did you mean 'max_words'.*Valid knobs: max_words, min_words",
    ):
        make_task("copy", max_word=3)
    with pytest.raises(ConfigError, match=r"min_words=5 is larger than max_words=3"):
        make_task("copy", min_words=5, max_words=3)
    with pytest.raises(ConfigError, match=r"knob 'max_value' must be an integer"):
        make_task("arithmetic", max_value=2.5)
    with pytest.raises(ConfigError, match=r"Valid knobs:"):
        BuiltinDataset(["copy"], bogus=1)


@pytest.mark.parametrize("name", ALL)
def test_reference_scores_one_and_wrong_answers_less(name):
    family = make_task(name)
    rng = np.random.default_rng(123)
    for _ in range(20):
        sample = family.sample(rng, "train")
        ref = sample.references[0]
        assert isinstance(sample.verifier, Verifier)
        assert family.verify(ref, sample) == 1.0
        assert sample.score(f"  {ref}\n") == 1.0  # surrounding whitespace is ignored
        assert family.verify("", sample) < 1.0
        for wrong in (ref + " 1", "zzz " + ref, "totally wrong"):
            score = family.verify(wrong, sample)
            assert 0.0 <= score < 1.0, (wrong, score)


@pytest.mark.parametrize("name", ALL)
def test_generation_is_deterministic(name):
    family = make_task(name)
    a = [family.sample(np.random.default_rng(s), "test") for s in range(5)]
    b = [family.sample(s, "test") for s in range(5)]
    assert a == b
    assert [x.metadata for x in a] == [x.metadata for x in b]


@pytest.mark.parametrize("name", sorted(INSTRUCTION_SENSITIVE))
def test_instruction_wording_changes_the_answer(name):
    family = make_task(name)
    v1, v2 = INSTRUCTION_SENSITIVE[name]
    differ = 0
    for seed in range(10):
        a = family.sample(seed, variant=v1, phrasing=0)
        b = family.sample(seed, variant=v2, phrasing=0)
        assert a.context == b.context
        assert a.instruction != b.instruction
        differ += a.references != b.references
    assert differ >= 8


def test_translate_roundtrip_and_lexicon():
    table = lexicon()
    assert len(table) >= 100
    spanish = [s for s, _ in table.values()]
    assert len(set(spanish)) == len(spanish)
    assert not set(spanish) & set(table)
    family = make_task("translate")
    to_es = family.sample(4, variant="to_spanish")
    assert to_es.references[0].split() == [table[w][0] for w in to_es.context.split()]
    to_en = family.sample(4, variant="to_english")
    assert [table[w][0] for w in to_en.references[0].split()] == to_en.context.split()


def test_partial_credit_values():
    assert sequence_credit(["a", "b"], ["a", "c"]) == pytest.approx(0.5 * 0.5 + 0.5 * 0.5)
    assert sequence_credit(["b", "a"], ["a", "b"]) == pytest.approx(0.5)
    assert digit_credit("-31", "-31") == 1.0
    assert digit_credit("31", "-31") == pytest.approx(2 / 3)
    assert count_credit("5", "4") == pytest.approx(0.75)
    assert count_credit("-", "4") == 0.0
    family = make_task("sort_numbers")
    sample = Sample("s", "sort_numbers", "Sort.", "3 1 2", ("1 2 3",), verifier=family)
    assert family.verify("1 2", sample) == pytest.approx(0.5 * 2 / 3 + 0.5 * 0.8)
    assert family.verify(None, sample) == 0.0


def test_specific_families_answers():
    case = make_task("change_case")
    s = case.sample(1, variant="lower")
    assert s.references[0] == s.context.lower() != s.context
    assert case.verify(s.context.upper(), s) < 1.0
    dedup = make_task("dedup")
    s = dedup.sample(2, variant="first")
    words = s.context.split()
    assert s.references[0].split() == list(dict.fromkeys(words))
    s = dedup.sample(2, variant="once")
    assert s.references[0].split() == [w for w in words if words.count(w) == 1]
    count = make_task("count_words")
    s = count.sample(3, variant="distinct")
    assert int(s.references[0]) == len(set(s.context.split())) < len(s.context.split())
    most = make_task("most_frequent")
    for seed in range(20):
        s = most.sample(seed)
        words = s.context.split()
        counts = sorted((words.count(w) for w in set(words)), reverse=True)
        assert counts[0] > counts[1] and words.count(s.references[0]) == counts[0]
    kw = make_task("keywords")
    s = kw.sample(5, variant="color")
    assert "colors" in s.instruction
    assert all(lexicon()[w][1] == "color" for w in s.references[0].split())


def test_semantic_parse_executes_programs():
    family = make_task("semantic_parse")
    sample = family.sample(7, variant="sum_gt")
    program = sample.references[0]
    spaced = program.replace(",", ", ")
    assert family.verify(spaced, sample) == 1.0
    # An equivalent but different program is accepted.
    n = program.split(",")[1].rstrip(")")
    assert family.verify(f"sum(filter_gt(reverse(x), {n}))", sample) == 1.0
    # A constant that happens to equal the result on x fails on the probes.
    constant = str(sample.metadata["result"])
    assert family.verify(constant, sample) < 1.0
    assert family.verify("sum(filter_gt(x,", sample) == 0.0
    assert family.verify("__import__('os')", sample) == 0.0
    assert family.verify("max(filter_gt(x, 100))", sample) == 0.0  # run-time error on every input
    no_probes = make_task("semantic_parse", num_probes=0)
    s = no_probes.sample(7, variant="sum_gt")
    assert no_probes.verify(str(s.metadata["result"]), s) == 1.0


def test_split_assignment_and_aliases():
    assert normalise_split("val") == "validation"
    with pytest.raises(
        ConfigError, match=r"Unknown split 'dev'\. Expected one of 'train', 'validation', 'test'"
    ):
        BuiltinDataset(split="dev")
    counts = {s: 0 for s in SPLITS}
    for i in range(2000):
        counts[split_of("copy", f"context {i}")] += 1
    assert 1400 < counts["train"] < 1800 and counts["validation"] > 120 and counts["test"] > 120
    family = make_task("copy")
    for split in SPLITS:
        sample = family.sample(0, split)
        assert split_of("copy", sample.context) == split == sample.metadata["split"]


def test_splits_are_disjoint():
    contexts = {}
    for split in ("train", "val", "test"):
        data = BuiltinDataset(split=split, size_per_task=60, seed=3)
        contexts[split] = {(s.task, s.context) for s in data}
    assert not contexts["train"] & contexts["val"]
    assert not contexts["train"] & contexts["test"]
    assert not contexts["val"] & contexts["test"]


def test_too_small_input_space_is_an_error():
    family = make_task("arithmetic", max_value=1)
    missing = [
        s for s in SPLITS if all(split_of("arithmetic", f"{a} {b}") != s for a in (0, 1) for b in (0, 1))
    ]
    assert missing
    with pytest.raises(ConfigError, match=r"found no .* input in 2000 tries: the knobs max_value=1"):
        family.sample(0, missing[0])


def test_dataset_interleaves_and_is_deterministic():
    data = BuiltinDataset(["sort_numbers", "copy", "pick_word"], split="test", size_per_task=4, seed=1)
    assert len(data) == 12
    assert [s.task for s in data][:6] == ["sort_numbers", "copy", "pick_word"] * 2
    assert data[5].id == "pick_word/test/1"
    assert data[-1].id == "pick_word/test/3"
    assert data.task_of(4) == data[4].task
    again = BuiltinDataset(["sort_numbers", "copy", "pick_word"], split="test", size_per_task=4, seed=1)
    assert list(again) == list(data)
    other = BuiltinDataset(["sort_numbers", "copy", "pick_word"], split="test", size_per_task=4, seed=2)
    assert list(other) != list(data)
    # A longer dataset with the same seed starts with the same samples (prefix stable).
    longer = BuiltinDataset(["sort_numbers", "copy", "pick_word"], split="test", size_per_task=8, seed=1)
    assert [longer[i] for i in range(12)][::3] == [data[i] for i in range(12)][::3]
    with pytest.raises(IndexError):
        data[12]
    with pytest.raises(ConfigError, match="size_per_task must be an integer >= 1"):
        BuiltinDataset(size_per_task=0)
    with pytest.raises(ConfigError, match="selected more than once"):
        BuiltinDataset(["copy", "copy"])
    with pytest.raises(UnknownNameError):
        BuiltinDataset(["nope"])


def test_dataset_knobs_and_instances():
    data = BuiltinDataset(["copy", "sort_numbers"], size_per_task=10, max_words=3, min_words=2)
    assert all(len(s.context.split()) <= 3 for s in data if s.task == "copy")
    custom = make_task("sort_numbers", max_value=9)
    data = BuiltinDataset([custom], size_per_task=10, max_len=3)
    assert data.families[0].max_value == 9 and data.families[0].max_len == 3
    assert custom.max_len == 6  # the caller's instance is not changed
    assert all(int(v) <= 9 and len(s.context.split()) <= 3 for s in data for v in s.context.split())


def test_pickle_round_trip():
    data = BuiltinDataset(size_per_task=1, split="validation")
    samples = list(data)
    restored = pickle.loads(pickle.dumps(samples))
    assert restored == samples
    for sample in restored:
        assert sample.verifier == make_task(sample.task)
        assert sample.score(sample.references[0]) == 1.0
    assert pickle.loads(pickle.dumps(data))[0] == data[0]


def test_family_is_immutable_dataclass():
    family = make_task("copy")
    assert isinstance(family, TaskFamily)
    with pytest.raises(dataclasses.FrozenInstanceError):
        family.max_words = 10
    assert hash(family) == hash(make_task("copy"))


def _template_prefixes(family, phrasing):
    """The fixed text of a phrasing's templates, up to the first ``{field}``."""
    template = family.instructions[phrasing]
    templates = [template] if isinstance(template, str) else list(template.values())
    return {t.split("{")[0] for t in templates}


def test_pretraining_corpus_holds_out_one_phrasing():
    for name in ALL:
        family = make_task(name)
        texts = pretraining_corpus(n_per_task=12, seed=0, tasks=[name])
        assert len(texts) == 12
        instructions = [text.split("\n")[1] for text in texts]
        held = _template_prefixes(family, family.heldout_phrasing)
        assert not [i for i in instructions if any(i.startswith(h) for h in held)]
        for p in range(family.num_phrasings):  # every other phrasing is used
            if p != family.heldout_phrasing:
                assert any(i.startswith(h) for i in instructions for h in _template_prefixes(family, p))
        for text in texts:
            assert text.startswith("### Instruction:\n") and "### Response:\n" in text
    mixed = pretraining_corpus(n_per_task=2, tasks=["copy", "pick_word"])
    assert [t.split("\n")[1] in make_task("copy").instructions for t in mixed] == [True, False, True, False]


def test_tokenizer_corpus_covers_every_phrasing():
    corpus = tokenizer_corpus(n_per_task=6, seed=0)
    joined = "\n".join(corpus)
    for name in DEFAULT:  # the default families; opt-in ones stay out of the tokenizer's corpus
        family = make_task(name)
        for p in range(family.num_phrasings):  # the held-out phrasing included
            assert any(h in joined for h in _template_prefixes(family, p))
    assert "gato" in joined and "filter_gt" in joined and "0123456789" in joined
    assert corpus == tokenizer_corpus(n_per_task=6, seed=0)


def test_pretraining_contexts_are_train_split():
    for name in ("copy", "sort_numbers", "semantic_parse"):
        for text in pretraining_corpus(n_per_task=20, tasks=[name]):
            context = text.split("### Input:\n")[1].split("\n### Response:")[0]
            assert split_of(name, context) == "train"
