"""Tests of the file, Hugging Face and reasoning-gym loaders, including every error message."""

from __future__ import annotations

import codecs
import json
import pickle
import sys
import types

import pytest

from instruct_env.error import ConfigError, DataFormatError, EmptyDatasetError, MissingDependency
from instruct_env.tasks import Sample, from_hf_dataset, from_reasoning_gym, load_file
from instruct_env.tasks.loaders import ReasoningGymVerifier

ALPACA = [
    {"instruction": "Add.", "input": "2 3", "output": "5"},
    {"instruction": "Say hi.", "input": "", "output": "hi"},
]


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


# -- happy paths ---------------------------------------------------------------------------------


def test_json_alpaca(tmp_path):
    path = write(tmp_path, "alpaca.json", json.dumps(ALPACA, indent=2))
    samples = load_file(path)
    assert samples[0] == Sample("alpaca/0", "alpaca", "Add.", "2 3", ("5",))
    assert samples[1].context == "" and samples[1].references == ("hi",)
    assert samples[0].metadata == {"source": str(path), "line": 2, "record": {}}
    assert samples[1].metadata["line"] == 7


def test_jsonl_dolly_with_extra_fields_and_optional_context(tmp_path):
    rows = [
        {"instruction": "Name a fruit.", "context": "", "response": "apple", "category": "open_qa"},
        {
            "instruction": "Summarise.",
            "context": "A long text.",
            "response": "Short.",
            "category": "summarization",
        },
        {"instruction": "No context key.", "response": "ok"},
    ]
    path = write(tmp_path, "dolly.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    samples = load_file(path, task="dolly")
    assert [s.task for s in samples] == ["dolly"] * 3
    assert samples[1].context == "A long text." and samples[1].references == ("Short.",)
    assert samples[0].metadata["record"] == {"category": "open_qa"}
    assert samples[2].context == ""


def test_csv_with_user_fields_and_bom(tmp_path):
    text = 'prompt,src,target\n"Copy, please.","a b","a b"\nUpper.,"multi\nline",X\n\nLower.,Ä,ä\n'
    path = write(tmp_path, "data.csv", codecs.BOM_UTF8 + text.encode("utf-8"))
    samples = load_file(path, fields={"instruction": "prompt", "context": "src", "references": "target"})
    assert [s.instruction for s in samples] == ["Copy, please.", "Upper.", "Lower."]
    assert samples[1].context == "multi\nline"
    assert samples[2].references == ("ä",)
    assert [s.metadata["line"] for s in samples] == [2, 3, 6]


def test_tsv_and_explicit_format(tmp_path):
    path = write(tmp_path, "data.txt", "instruction\toutput\nSay a.\ta\n")
    samples = load_file(path, format="tsv")
    assert samples[0].references == ("a",)


def test_native_layout_with_list_references_ids_and_tasks(tmp_path):
    rows = [
        {"id": 7, "task": "qa", "instruction": "Capital of France?", "references": ["Paris", "paris"]},
        {"id": "b", "instruction": "Hello?", "context": "x", "references": "hi"},
    ]
    samples = load_file(write(tmp_path, "native.json", json.dumps(rows)))
    assert samples[0].id == "7" and samples[0].task == "qa" and samples[0].references == ("Paris", "paris")
    assert samples[1].id == "b" and samples[1].task == "native"


def test_user_fields_without_references(tmp_path):
    path = write(tmp_path, "prompts.jsonl", '{"q": "Tell a joke."}\n')
    samples = load_file(path, fields={"instruction": "q"})
    assert samples[0].references == ()


# -- malformed files -----------------------------------------------------------------------------

JSONL_BAD = [
    (
        '{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": }\n',
        r"bad\.jsonl: line 2, column 32: invalid JSON: Expecting value",
    ),
    (
        '{"instruction": "a", "output": "b"}\n\n["not", "an", "object"]\n',
        r"bad\.jsonl: line 3: expected an object with named fields, got a list",
    ),
    (
        '{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n',
        r"bad\.jsonl: line 2: missing required field 'output' \(the references\); the record has 'instruction'",
    ),
    (
        '{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": 3}\n',
        r"bad\.jsonl: line 2: field 'output' \(the references\) must be a string or a non-empty list of strings, got a number",
    ),
    (
        '{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": []}\n',
        r"bad\.jsonl: line 2: field 'output' \(the references\) must be a string or a non-empty list",
    ),
    (
        '{"instruction": "a", "output": "b"}\n{"instruction": ["c"], "output": "d"}\n',
        r"bad\.jsonl: line 2: field 'instruction' \(the instruction\) must be a string, got a list",
    ),
    (
        '{"instruction": "a", "output": "b"}\n{"instruction": "  ", "output": "d"}\n',
        r"bad\.jsonl: line 2: field 'instruction' \(the instruction\) is empty",
    ),
    (
        '{"instruction": "a", "input": 5, "output": "b"}\n',
        r"bad\.jsonl: line 1: field 'input' \(the context\) must be a string, got a number",
    ),
    (
        '{"prompt": "a", "answer": "b"}\n',
        r"bad\.jsonl: line 1: cannot detect the field layout; the record's keys are 'prompt', 'answer'",
    ),
    (
        '{"instruction": "a", "references": "b", "id": 1}\n{"instruction": "c", "references": "d", "id": "1"}\n',
        r"bad\.jsonl: line 2: duplicate id '1' \(first used at .*bad\.jsonl: line 1\)",
    ),
    (
        '{"instruction": "a", "references": "b", "id": true}\n',
        r"bad\.jsonl: line 1: field 'id' \(the id\) must be a string or an integer, got a boolean",
    ),
    (
        '{"instruction": "a", "references": "b", "task": 3}\n',
        r"bad\.jsonl: line 1: field 'task' \(the task\) must be a non-empty string, got a number",
    ),
]


@pytest.mark.parametrize(("text", "message"), JSONL_BAD)
def test_malformed_jsonl(tmp_path, text, message):
    with pytest.raises(DataFormatError, match=message):
        load_file(write(tmp_path, "bad.jsonl", text))


JSON_BAD = [
    (
        '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c", "output": "d"\n]\n',
        r"bad\.json: line 4, column 1: invalid JSON: Expecting ',' delimiter",
    ),
    (
        '[\n  {"instruction": "a", "output": "b"},\n]\n',
        r"bad\.json: line 3, column 1: invalid JSON: Expecting value",
    ),
    (
        '{"instruction": "a", "output": "b"}\n',
        r"bad\.json: line 1: expected a JSON list of records at the top level, got an object",
    ),
    (
        '[\n {"instruction": "a", "output": "b"}\n "x"]',
        r"bad\.json: line 3: expected ',' or '\]' after a record, got '\"'",
    ),
    (
        '[\n {"instruction": "a", "output": "b"}',
        r"bad\.json: line 2: expected ',' or '\]' after a record, got the end of the file",
    ),
    (
        '[{"instruction": "a", "output": "b"}]\n[]',
        r"bad\.json: line 2: unexpected data after the closing '\]'",
    ),
    (
        '[\n  {"instruction": "a", "output": "b"},\n\n  {"instruction": "c"}\n]',
        r"bad\.json: line 4: missing required field 'output'",
    ),
    (
        '[\n  {"instruction": "a", "output": "b"},\n  42\n]',
        r"bad\.json: line 3: expected an object with named fields, got a number",
    ),
]


@pytest.mark.parametrize(("text", "message"), JSON_BAD)
def test_malformed_json(tmp_path, text, message):
    with pytest.raises(DataFormatError, match=message):
        load_file(write(tmp_path, "bad.json", text))


CSV_BAD = [
    (
        "instruction,output\nUpper.,A\nLower.,b,extra\n",
        r"bad\.csv: line 3: row has 3 fields but the header \(line 1\) has 2",
    ),
    ("\ninstruction,output\nUpper.\n", r"bad\.csv: line 3: row has 1 fields but the header \(line 2\) has 2"),
    ('instruction,output\nUpper.,"A\nB",\n', r"bad\.csv: line 2: row has 3 fields"),
    ('instruction,output\nUpper.,"A"B\n', r"bad\.csv: line 2: invalid CSV: ',' expected after '\"'"),
    ("instruction,,output\nUpper.,x,A\n", r"bad\.csv: line 1: header column 2 has no name"),
    ("instruction,output,output\nUpper.,x,A\n", r"bad\.csv: line 1: header names 'output' more than once"),
    (
        "instruction,response\nUpper.,A\n,b\n",
        r"bad\.csv: line 3: field 'instruction' \(the instruction\) is empty",
    ),
    ("question,answer\nUpper.,A\n", r"bad\.csv: line 2: cannot detect the field layout"),
]


@pytest.mark.parametrize(("text", "message"), CSV_BAD)
def test_malformed_csv(tmp_path, text, message):
    with pytest.raises(DataFormatError, match=message):
        load_file(write(tmp_path, "bad.csv", text))


def test_user_field_missing_is_an_error(tmp_path):
    path = write(tmp_path, "map.jsonl", '{"p": "a", "s": "x", "t": "b"}\n{"p": "c", "t": "d"}\n')
    with pytest.raises(
        DataFormatError, match=r"map\.jsonl: line 2: missing required field 's' \(the context\)"
    ):
        load_file(path, fields={"instruction": "p", "context": "s", "references": "t"})


def test_invalid_utf8(tmp_path):
    path = write(
        tmp_path, "latin.jsonl", b'{"instruction": "a", "output": "b"}\n{"instruction": "caf\xe9"}\n'
    )
    with pytest.raises(DataFormatError, match=r"latin\.jsonl: line 2: not valid UTF-8"):
        load_file(path)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("e.json", ""),
        ("e.json", " [ ] "),
        ("e.jsonl", "\n\n"),
        ("e.csv", ""),
        ("e.csv", "instruction,output\n"),
    ],
)
def test_empty_files(tmp_path, name, text):
    with pytest.raises(EmptyDatasetError, match=r"e\.(json|jsonl|csv) contains no records"):
        load_file(write(tmp_path, name, text))


def test_config_errors(tmp_path):
    path = write(tmp_path, "data.txt", "x")
    with pytest.raises(
        ConfigError, match=r"Cannot tell the format of .*data\.txt.* from its extension '\.txt'"
    ):
        load_file(path)
    with pytest.raises(ConfigError, match=r"Unknown format 'xml'"):
        load_file(path, format="xml")
    good = write(tmp_path, "ok.jsonl", '{"a": "b"}\n')
    with pytest.raises(ConfigError, match=r"Unknown target\(s\) 'answer' in fields"):
        load_file(good, fields={"instruction": "a", "answer": "b"})
    with pytest.raises(ConfigError, match=r"fields must map 'instruction'"):
        load_file(good, fields={"references": "b"})
    with pytest.raises(FileNotFoundError):
        load_file(tmp_path / "missing.json")


# -- Hugging Face datasets -----------------------------------------------------------------------


def test_from_hf_dataset():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(ALPACA)
    samples = from_hf_dataset(ds)
    assert (
        samples[0].instruction == "Add." and samples[0].context == "2 3" and samples[0].references == ("5",)
    )
    assert samples[1].id == "hf_dataset/1" and samples[1].metadata == {
        "source": "hf_dataset",
        "row": 1,
        "record": {},
    }
    mapped = datasets.Dataset.from_list([{"q": "Hi?", "a": ["hello", "hey"], "src": None}])
    samples = from_hf_dataset(mapped, fields={"instruction": "q", "references": "a"}, task="greet")
    assert samples[0].references == ("hello", "hey") and samples[0].task == "greet"
    bad = datasets.Dataset.from_list(
        [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": None}]
    )
    with pytest.raises(
        DataFormatError, match=r"dataset 'hf_dataset', row 1: field 'output' \(the references\) must be"
    ):
        from_hf_dataset(bad)
    with pytest.raises(ConfigError, match=r"DatasetDict with splits 'train'"):
        from_hf_dataset(datasets.DatasetDict({"train": ds}))
    with pytest.raises(EmptyDatasetError, match="has no rows"):
        from_hf_dataset(datasets.Dataset.from_list([]))


# -- reasoning-gym ---------------------------------------------------------------------------------


class FakeReasoningDataset:
    """Behaves like a reasoning-gym dataset: iterable of entries with ``score_answer``."""

    def __init__(self, size, seed):
        self.entries = [
            {"question": f"What is {i} + {seed}?", "answer": str(i + seed), "metadata": {"i": i}}
            for i in range(size)
        ]

    def __iter__(self):
        return iter(self.entries)

    def score_answer(self, answer, entry):
        if answer == "boom":
            raise RuntimeError("scorer crashed")
        if answer == "none":
            return None
        if answer == "big":
            return 7.0
        return 1.0 if answer == entry["answer"] else 0.01


@pytest.fixture
def fake_reasoning_gym(monkeypatch):
    module = types.ModuleType("reasoning_gym")
    module.calls = []

    def create_dataset(name, **kwargs):
        module.calls.append((name, kwargs))
        return FakeReasoningDataset(kwargs["size"], kwargs["seed"])

    module.create_dataset = create_dataset
    monkeypatch.setitem(sys.modules, "reasoning_gym", module)
    return module


def test_from_reasoning_gym(fake_reasoning_gym):
    samples = from_reasoning_gym("basic_arithmetic", size=3, seed=10, difficulty=2)
    assert fake_reasoning_gym.calls == [("basic_arithmetic", {"size": 3, "seed": 10, "difficulty": 2})]
    assert [s.id for s in samples] == ["basic_arithmetic/0", "basic_arithmetic/1", "basic_arithmetic/2"]
    first = samples[0]
    assert first.instruction == "What is 0 + 10?" and first.references == ("10",)
    assert first.metadata["entry"]["metadata"] == {"i": 0}
    assert first.score("10") == 1.0
    assert first.score("11") == pytest.approx(0.01)
    assert first.score("boom") == 0.0
    assert first.score("none") == 0.0
    assert first.score("big") == 1.0
    restored = pickle.loads(pickle.dumps(samples))
    assert restored[1].score("11") == 1.0
    assert isinstance(restored[1].verifier, ReasoningGymVerifier)


def test_from_reasoning_gym_errors(fake_reasoning_gym, monkeypatch):
    with pytest.raises(ConfigError, match="size must be a positive integer, got 0"):
        from_reasoning_gym("x", size=0)
    fake_reasoning_gym.create_dataset = lambda name, **kw: [{"question": "q"}]
    with pytest.raises(DataFormatError, match=r"reasoning-gym dataset 'x', entry 0: missing key 'answer'"):
        from_reasoning_gym("x", size=1)
    fake_reasoning_gym.create_dataset = lambda name, **kw: []
    with pytest.raises(EmptyDatasetError, match="yielded no entries"):
        from_reasoning_gym("x", size=1)
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)
    with pytest.raises(MissingDependency, match=r"pip install 'instruct-env\[reasoning\]'"):
        from_reasoning_gym("x", size=1)
