"""``instruct-env sft``, ``instruct-env rl --model <dir>`` and a real ``--nproc 2`` relaunch, end to end.

One tiny SFT run (the configuration of ``test_cli.TINY``) is shared by the module: RL continues from
its saved model, in one process and in two (``torch.distributed.run``, gloo on the CPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from deadlines import deadline_s
from test_cli import TINY

from agents.cli import main

SETS = [arg for override in TINY for arg in ("--set", override)]
ROOT = Path(__file__).resolve().parents[1]


def _records(run: Path, stage: str, kind: str) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["stage"] == stage and r["kind"] == kind]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    previous = os.environ.get("INSTRUCT_ENV_CACHE")
    os.environ["INSTRUCT_ENV_CACHE"] = str(tmp / "cache")  # a fresh pre-training cache, shared by the module
    try:
        assert main(["sft", "--out", str(tmp / "sft"), *SETS]) == 0
        yield tmp, tmp / "sft"
    finally:
        if previous is None:
            os.environ.pop("INSTRUCT_ENV_CACHE", None)
        else:
            os.environ["INSTRUCT_ENV_CACHE"] = previous


pytestmark = pytest.mark.usefixtures("single_thread")


def test_sft_command_trains_evaluates_and_saves_the_model(sft_run):
    _, run = sft_run
    results = json.loads((run / "results.json").read_text())
    assert list(results) == ["zero-shot", "SFT"]  # evaluated before and after, and nothing else ran
    assert _records(run, "sft", "eval") and not _records(run, "rl", "train")
    assert (run / "model" / "config.json").exists() and (run / "model" / "model.safetensors").exists()
    report = (run / "report.md").read_text()
    assert "zero-shot task score" in report and "SFT task score" in report


def test_rl_command_continues_from_a_saved_model(sft_run):
    tmp, sft = sft_run
    run = tmp / "rl"
    assert main(["rl", "--model", str(sft / "model"), "--out", str(run), *SETS]) == 0
    results = json.loads((run / "results.json").read_text())
    assert list(results) == ["before RL", "RL"]
    assert f"- Model: {sft / 'model'}" in (run / "report.md").read_text()
    # RL started from the SFT weights: here every reward is 0, so no update moves them and the saved model
    # is the SFT model, tensor for tensor (the pre-trained default that SFT started from differs).
    from safetensors.torch import load_file

    start, end = load_file(sft / "model" / "model.safetensors"), load_file(run / "model" / "model.safetensors")
    assert all(r["reward_mean"] == 0.0 for r in _records(run, "rl", "train"))
    assert start.keys() == end.keys() and all(start[k].equal(end[k]) for k in start)
    train = _records(run, "rl", "train")
    assert [r["step"] for r in train] == [1, 2] and all(r["tokens"] > 0 for r in train)


def test_nproc_2_relaunches_and_trains_on_two_ranks(sft_run):
    tmp, sft = sft_run
    one, two = tmp / "rl_one", tmp / "rl_two"
    assert main(["rl", "--model", str(sft / "model"), "--out", str(one), *SETS]) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run([sys.executable, "-m", "agents.cli", "rl", "--nproc", "2", "--model", str(sft / "model"),
                           "--out", str(two), *SETS], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=deadline_s(600))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Report:") == 1  # rank 0 reports; rank 1 stays quiet
    single, double = _records(one, "rl", "train"), _records(two, "rl", "train")
    assert [r["step"] for r in double] == [1, 2]  # one writer, not two
    # Each rank collects num_envs completions; the logged token count is summed over the ranks.
    assert [r["tokens"] for r in double] == [2 * r["tokens"] for r in single]
    assert (two / "model" / "model.safetensors").exists()
