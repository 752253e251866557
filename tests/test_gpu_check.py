"""The GPU check script: its tiny CPU mode runs every stage, and it refuses clearly without CUDA."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import gpu_check  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")


def _report(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_tiny_cpu_mode_runs_sft_ppo_and_grpo(capsys):
    from agents.common.model import DefaultModelConfig, build_default_model
    from instruct_env.tokenizer import builtin_tokenizer

    assert gpu_check.main(["--device", "cpu", "--tiny"]) == 0
    out = capsys.readouterr().out
    report = _report(out)
    tiny = gpu_check.TINY
    lm = build_default_model(builtin_tokenizer(), DefaultModelConfig(n_layer=tiny["n_layer"], n_embd=tiny["n_embd"],
                                                                     n_head=tiny["n_head"], n_positions=256))
    assert report["parameters"] == sum(p.numel() for p in lm.parameters())
    assert f"{report['parameters']:,} parameters" in out
    assert [row["stage"] for row in report["stages"]] == ["sft", "ppo", "grpo"]
    steps = {"sft": tiny["sft_steps"], "ppo": tiny["rl_updates"], "grpo": tiny["rl_updates"]}
    for row in report["stages"]:
        assert row["steps"] == steps[row["stage"]]
        assert row["tokens"] > 0 and row["tokens_per_s"] > 0
        assert 0 < row["step_s_median"] <= row["seconds"]
        assert row["peak_gpu_gib"] is None  # CPU: no GPU memory to report
        assert f"[{row['stage']}] {row['steps']} steps" in out
    ppo = report["stages"][1]
    assert ppo["tokens"] == tiny["rl_updates"] * tiny["num_envs"] * tiny["n_steps"]  # one token per env step


def test_full_model_is_about_100m_parameters():
    from agents.common.model import DefaultModelConfig, build_default_model
    from instruct_env.tokenizer import builtin_tokenizer

    full = gpu_check.FULL
    with torch.device("meta"):  # shapes only, no memory
        lm = build_default_model(builtin_tokenizer(), DefaultModelConfig(n_layer=full["n_layer"],
                                                                         n_embd=full["n_embd"],
                                                                         n_head=full["n_head"], n_positions=256))
    assert 95e6 < sum(p.numel() for p in lm.parameters()) < 105e6


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when CUDA is missing")
def test_without_cuda_the_python_part_exits_2_with_a_message(capsys):
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device is available" in err and "--device cpu --tiny" in err


def test_bad_stage_names_are_rejected(capsys):
    assert gpu_check.main(["--device", "cpu", "--tiny", "--stages", "sft,dpo"]) == 2
    assert "--stages takes sft, ppo and grpo; got 'sft,dpo'" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="checks the message given without a GPU")
def test_shell_script_exits_2_without_a_gpu():
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "gpu_check: error: no NVIDIA GPU found" in done.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_shell_script_launches_the_python_part_on_cpu():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SCRIPT), "--device", "cpu", "--tiny", "--stages", "grpo"], capture_output=True,
                          text=True, timeout=120, env=env, cwd="/")
    assert done.returncode == 0, done.stderr
    report = _report(done.stdout)
    assert report["tiny"] and [row["stage"] for row in report["stages"]] == ["grpo"]
