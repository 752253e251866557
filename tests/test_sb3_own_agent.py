"""The bring-your-own-agent example (``benchmarks/own_agent.py``), the alternative to SB3, runs."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def test_own_agent_trains_for_a_few_iterations():
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.own_agent import train
    finally:
        sys.path.remove(str(ROOT))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        history = train(iterations=3, num_envs=4, steps=4, log_every=0)
    finally:
        torch.set_num_threads(threads)
    assert len(history) == 3 and all(math.isfinite(h) and 0.0 <= h <= 1.0 for h in history)


def test_own_agent_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "benchmarks.own_agent", "--iterations", "2"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=True)
    assert "iter    1" in result.stdout and "mean reward, first 1 iterations" in result.stdout
