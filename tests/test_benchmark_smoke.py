"""Smoke runs of the speed benchmark scripts: each runs end to end on tiny settings and leaves the README alone.

What they measure is reported in benchmarks/README.md by their full runs; here only that they run
and print their tables.
"""

from __future__ import annotations

import sys

import pytest


def _no_readme(monkeypatch, module) -> None:
    def refuse(title, body):
        raise AssertionError(f"a smoke run wrote the README section {title!r}")

    monkeypatch.setattr(module, "write_section", refuse)


def test_bench_env_runs_and_warms_every_sample(monkeypatch, capsys, single_thread):
    from benchmarks import bench_env

    _no_readme(monkeypatch, bench_env)
    bench_env.main(["--envs", "1", "--steps", "10", "--no-write", "--threads", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 1 |")]
    assert [row.split("|")[2].strip() for row in rows] == ["cold", "warm"]
    assert all(float(row.split("|")[3].replace(",", "")) > 0 for row in rows)


def test_bench_env_warm_data_is_all_tokenised_before_timing(monkeypatch):
    from benchmarks import bench_env
    from instruct_env.envs.core import PromptBank

    seen: set[str] = set()
    encoded_while_timed: list[str] = []
    original = PromptBank.get
    timing = [False]

    def get(self, sample):
        if timing[0] and sample.id not in self._cache:
            encoded_while_timed.append(sample.id)
        seen.add(sample.id)
        return original(self, sample)

    monkeypatch.setattr(PromptBank, "get", get)
    real_median = bench_env.median_time

    def timed(fn, repeats, warmup):
        timing[0] = True
        try:
            return real_median(fn, repeats=repeats, warmup=warmup)
        finally:
            timing[0] = False

    monkeypatch.setattr(bench_env, "median_time", timed)
    assert bench_env._env_steps_per_s(1, 10, warm=True) > 0
    assert len(seen) == 600 and encoded_while_timed == []  # all 600 samples, none left for the timed runs


def test_bench_server_flood_quick(monkeypatch, capsys):
    if not sys.platform.startswith("linux"):
        pytest.skip("reads the server's memory from /proc")
    pytest.importorskip("uvicorn", reason="the server needs the 'server' extra: pip install 'instruct-env[server]'")
    from benchmarks import bench_server_flood

    _no_readme(monkeypatch, bench_server_flood)
    assert bench_server_flood.main(["--quick", "--no-readme"]) == 0
    out = capsys.readouterr().out
    for mode in bench_server_flood.MODES:
        assert f"| {mode} |" in out


def test_bench_rewards_quick():
    # In a process of its own: the benchmark checks that rewards never import torch.
    import subprocess
    from pathlib import Path

    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_rewards", "--batch-size", "8", "--repeats", "5",
                           "--metrics", "bleu", "--no-chinese", "--no-write"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("bleu") and "batched" in done.stdout


def test_bench_scaling_quick(monkeypatch, capsys, single_thread):
    from benchmarks import bench_scaling

    _no_readme(monkeypatch, bench_scaling)
    bench_scaling.main(["--quick"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [tuple(row.split("|")[1:3]) for row in rows] == [(" 1 ", " 32 "), (" 4 ", " 32 ")]
