"""Text beyond English: the opt-in Chinese family, the multilingual example file, the built-in
tokenizer and prompt truncation on CJK and Arabic text; and the defaults that must not move."""

from __future__ import annotations

import hashlib
import json

import gymnasium as gym
import numpy as np
import pytest

import instruct_env  # noqa: F401  (registers the environments)
from instruct_env import rewards
from instruct_env.error import UnknownNameError
from instruct_env.tasks import (
    BuiltinDataset,
    PromptFormatter,
    Sample,
    default_task_names,
    example_file,
    load_file,
    make_task,
    pretraining_corpus,
    task_names,
    tokenizer_corpus,
)

ENGLISH_FAMILIES = ("copy", "reverse_words", "sort_numbers", "arithmetic", "change_case", "count_words", "pick_word",
                    "dedup", "translate", "keywords", "most_frequent", "semantic_parse")


# ---------------------------------------------------------------------------------------------
# The defaults stay byte-identical (pre-trained weights are tied to them)
# ---------------------------------------------------------------------------------------------


def test_default_family_list_is_unchanged_and_excludes_the_opt_in_family():
    assert default_task_names() == ENGLISH_FAMILIES
    assert BuiltinDataset(None, size_per_task=1).task_names == ENGLISH_FAMILIES
    assert "zh_chars" in task_names() and "zh_chars" not in default_task_names()


def test_tokenizer_corpus_and_its_file_hash_are_unchanged():
    corpus = tokenizer_corpus(seed=0)
    assert hashlib.sha256("\n".join(corpus).encode()).hexdigest() == \
        "3291bd34542e02ae9fabe03b16df950fd2292d326dd2d2643b3bfbd4c434eb1d"
    # the digest in the cached tokenizer's file name (instruct_env.tokenizer.builtin_tokenizer, vocab 512)
    digest = hashlib.sha256(json.dumps([1, 512]).encode())
    for line in corpus:
        digest.update(line.encode("utf-8"))
        digest.update(b"\0")
    assert digest.hexdigest()[:16] == "6ce5cf64d7826230"
    assert not any("请" in line or "汉" in line for line in corpus)


def test_pretraining_corpus_is_unchanged():
    texts = pretraining_corpus(n_per_task=50, seed=0)
    assert hashlib.sha256("\n".join(texts).encode()).hexdigest() == \
        "a618630436a21c12117670a9b77faf5d292fbe55d8e3ca82d46388b6af598c36"


# ---------------------------------------------------------------------------------------------
# The Chinese family
# ---------------------------------------------------------------------------------------------


def test_zh_chars_answers_and_verifier():
    family = make_task("zh_chars")
    for seed in range(8):
        copy = family.sample(seed, variant="copy")
        reverse = family.sample(seed, variant="reverse")
        count = family.sample(seed, variant="count")
        first, last = family.sample(seed, variant="first"), family.sample(seed, variant="last")
        text = copy.context
        assert text == reverse.context == count.context and " " not in text
        assert [copy.references[0], reverse.references[0], count.references[0], first.references[0],
                last.references[0]] == [text, text[::-1], str(len(text)), text[0], text[-1]]
        assert copy.score(" ".join(text)) == 1.0  # whitespace between characters is ignored
        assert copy.score(text[:-1]) < 1.0 and count.score(str(len(text) + 1)) < 1.0
        assert "请" in copy.instruction or "写" in copy.instruction or "抄" in copy.instruction
    assert family.sample(0, variant="count").score("三") == 0.0


def test_zh_chars_is_selectable_in_an_env_with_zh_bleu():
    env = gym.make("InstructEnv/Completion-v0", tasks=["zh_chars"], reward={"bleu": {"tokenize": "zh"}},
                   max_new_tokens=16)
    obs, info = env.reset(seed=0)
    assert info["task"] == "zh_chars"
    _, reward, terminated, _, info = env.step(info["references"][0])
    assert terminated and reward == pytest.approx(1.0)
    assert list(info["reward_components"]) == ["bleu"]
    env.close()


def test_unknown_example_file_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'multilingual'"):
        example_file("multilingal")


# ---------------------------------------------------------------------------------------------
# Tokenizer and prompts on non-English text
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    from instruct_env.tokenizer import builtin_tokenizer

    return builtin_tokenizer()


def _texts() -> list[str]:
    samples = load_file(example_file("multilingual")) + list(BuiltinDataset(["zh_chars"], size_per_task=5))
    return [t for s in samples for t in (s.instruction, s.context, s.references[0])] + ["Ţară țară ščř äöüß 😀"]


def test_builtin_tokenizer_round_trips_non_english_text(tokenizer):
    for text in _texts():
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text


def test_prompt_truncation_cuts_cjk_text_between_characters(tokenizer):
    sample = Sample(id="zh/long", task="zh", instruction="请总结。", context="今天天气很好我们去公园散步吧" * 4,
                    references=("好",))
    formatter = PromptFormatter()
    full, _ = formatter.encode(sample, tokenizer)
    ids, info = formatter.encode(sample, tokenizer, max_tokens=len(full) - 10)
    assert info["truncated"] and len(ids) <= len(full) - 10
    text = tokenizer.decode(ids)
    assert "\ufffd" not in text
    kept = text.split("### Input:\n")[1].split(" ...")[0]
    assert sample.context.startswith(kept) and 0 < len(kept) < len(sample.context)


def test_multilingual_file_with_text_rewards(tokenizer):
    samples = load_file(example_file("multilingual"))
    assert len(samples) == 18
    assert [s.metadata["record"]["language"] for s in samples] == ["zh"] * 6 + ["ja"] * 6 + ["ar"] * 6
    env = gym.make("InstructEnv/Completion-v0", dataset=example_file("multilingual"), tokenizer=tokenizer,
                   reward={"chrf": 0.5, "rougeL": {"weight": 0.5, "tokenizer": "cjk"}}, max_new_tokens=128)
    _, info = env.reset(seed=1, options={"index": 3})
    _, reward, _, _, info = env.step(info["references"][0])
    assert reward == pytest.approx(1.0)
    cjk = rewards.CJKTokenizer()
    longer = [s for s in samples if len(cjk.tokenize(s.references[0])) >= 3]  # some overlap once cut short
    values = rewards.make("rougeL", tokenizer="cjk")([s.references[0][:-2] for s in longer],
                                                     [s.references for s in longer])
    assert len(longer) >= 12 and np.all((values > 0) & (values < 1))
    env.close()


# ---------------------------------------------------------------------------------------------
# The pipeline with the Chinese family, a reward with options and evaluation metric options
# ---------------------------------------------------------------------------------------------


def test_pipeline_runs_on_the_chinese_family(tmp_path, monkeypatch):
    import yaml
    from test_cli import TINY

    from agents.cli import main

    monkeypatch.setenv("INSTRUCT_ENV_CACHE", str(tmp_path / "cache"))
    overrides = [item for t in TINY if not t.startswith("data.tasks") for item in ("--set", t)]
    assert main(["pipeline", "--out", str(tmp_path / "run"), *overrides, "--tasks", "zh_chars,copy",
                 "--set", "data.reward={bleu: {weight: 0.5, tokenize: zh}, task: 0.5}",
                 "--set", "eval.metric_options={bleu: {tokenize: zh}, rougeL: {tokenizer: char}}"]) == 0
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Evaluation metric options: bleu(tokenize='zh'); rougeL(tokenizer='char')" in report
    assert "| zh_chars |" in report
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"]["reward"] == {"bleu": {"weight": 0.5, "tokenize": "zh"}, "task": 0.5}
    assert saved["eval"]["metric_options"] == {"bleu": {"tokenize": "zh"}, "rougeL": {"tokenizer": "char"}}
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["SFT+RL"]["per_task"]) == {"zh_chars", "copy"}
