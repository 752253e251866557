"""The shipped instruction file (``example_file()``) as an environment's dataset with text rewards."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest

import instruct_env
from instruct_env.tasks import example_file, load_file

REWARD = {"bleu": 0.5, "rougeL": 0.5}


@pytest.fixture(scope="module")
def samples():
    return load_file(example_file())


def test_example_file_is_package_data():
    path = example_file()
    assert isinstance(path, Path) and path.is_file()
    assert path.parent == Path(instruct_env.__file__).parent / "data"
    assert "example_file" in instruct_env.tasks.__all__


def test_example_file_is_alpaca_jsonl(samples):
    lines = example_file().read_text("utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len(samples) == 40
    assert all(set(r) == {"instruction", "input", "output"} for r in records)
    assert all(r["instruction"].strip() and r["input"].strip() and r["output"].strip() for r in records)
    assert len({(r["instruction"], r["input"]) for r in records}) == 40
    for sample, record in zip(samples, records):
        assert sample.task == "mini_instructions" and sample.verifier is None
        assert (sample.instruction, sample.context, sample.references) == (
            record["instruction"], record["input"], (record["output"],))


def test_prompts_and_references_fit_the_documented_budgets(samples, tokenizer):
    """example_file() documents max_new_tokens=64 with the built-in tokenizer (its 128-token prompt default fits)."""
    from instruct_env.tasks import PromptFormatter

    formatter = PromptFormatter()
    assert max(len(tokenizer.encode(s.references[0], add_special_tokens=False)) for s in samples) <= 64
    assert max(len(formatter.encode(s, tokenizer, 10_000)[0]) for s in samples) <= 128


def test_env_from_path_gives_one_for_the_reference(samples):
    from instruct_env.tasks.splits import select_split

    env = gym.make("InstructEnv/Completion-v0", dataset=str(example_file()), reward=REWARD, max_new_tokens=64)
    samples = select_split(samples, "train")  # a file's split="train" (the default) is its train split
    assert len(env.unwrapped.setup.dataset) == len(samples) == 33
    wrong = "I would rather not answer that today."
    for index in range(len(samples)):
        _, info = env.reset(options={"index": index})
        assert info["references"] == samples[index].references
        _, reward, terminated, truncated, info = env.step(samples[index].references[0])
        assert (reward, terminated, truncated) == (1.0, True, False)
        assert info["reward_components"] == {"bleu": 1.0, "rougeL": 1.0}
        env.reset(options={"index": index})
        _, reward, *_, info = env.step(wrong)
        assert reward < 0.5 and set(info["reward_components"]) == {"bleu", "rougeL"}
        assert reward == pytest.approx(0.5 * info["reward_components"]["bleu"] + 0.5 * info["reward_components"]["rougeL"])
    env.close()


def test_env_partial_answer_scores_between(samples):
    env = gym.make("InstructEnv/Completion-v0", dataset=example_file(), reward=REWARD, max_new_tokens=64)
    _, info = env.reset(options={"sample_id": "mini_instructions/0"})
    _, reward, *_, info = env.step("She walked to the shop every evening.")
    assert 0.0 < reward < 1.0 and 0.0 < info["reward_components"]["rougeL"] < 1.0
    env.close()


def test_env_auto_reward_is_rouge_for_the_file():
    env = gym.make("InstructEnv/Completion-v0", dataset=example_file(), max_new_tokens=64)
    _, info = env.reset(seed=0)
    _, reward, *_, info = env.step(info["references"][0])
    assert reward == 1.0 and set(info["reward_components"]) == {"rougeL"}
    env.close()
