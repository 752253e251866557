"""The benchmark command: the quality suite end to end (quick mode), reasoning-gym data, tuning, CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from instruct_env.error import ConfigError, UnknownNameError

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:  # benchmarks/ is a folder of the repository, not an installed package
    sys.path.insert(0, ROOT)

pytest.importorskip("reasoning_gym")
pytest.importorskip("stable_baselines3")


@pytest.fixture
def one_thread(tmp_path, monkeypatch, single_thread):
    """One torch thread, and a fresh model cache (the quick runs pre-train a tiny model of their own)."""
    monkeypatch.setenv("INSTRUCT_ENV_CACHE", str(tmp_path / "cache"))


def test_quick_suite_writes_score_matrices_curves_and_summary(tmp_path, one_thread):
    from benchmarks.suite import quick_config, run_suite

    suite = quick_config(str(tmp_path / "small"))
    written = run_suite(suite, readme=False, log=lambda _: None)
    out = tmp_path / "small"
    methods = ["zero-shot", "sft", "sft+ppo", "sft+grpo", "sft+reinforce", "sft+sb3-ppo"]
    for method in methods:
        record = json.loads(written[f"scores_{method}"].read_text())
        assert record["method"] == method
        assert record["seeds"] == [0] and record["tasks"] == ["copy", "rg:gcd"]
        assert len(record["scores"]) == 1 and len(record["scores"][0]) == 2
        assert all(0.0 <= v <= 1.0 for v in record["scores"][0])
        assert record["commit"] and record["machine"]
    curves = json.loads((out / "curves.json").read_text())
    assert set(curves) == set(methods[2:])
    for runs in curves.values():
        assert len(runs) == 1 and runs[0]["update"][0] == 0 and runs[0]["update"][-1] == 2
        assert all(0.0 <= v <= 1.0 for v in runs[0]["val_task"])
    for name in ("curves_val_task.png", "curves_train_reward.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    summary = (out / "summary.md").read_text()
    for label in ("| zero-shot |", "| SFT+GRPO |", "| SFT+SB3-PPO |", "| rg:gcd |", "seeds improved"):
        assert label in summary

    # A second run with the same settings reuses the seed's saved results (seeds can run as separate
    # processes and be merged); a method whose settings changed runs again, alone, from the same SFT model.
    logs: list[str] = []
    again = run_suite(suite, readme=False, log=logs.append)
    assert sum("reusing" in line for line in logs) == 4 and not any("done in" in line for line in logs[:-1])
    for method in methods:
        assert json.loads(again[f"scores_{method}"].read_text())["scores"] == \
            json.loads(written[f"scores_{method}"].read_text())["scores"]
    saved_path = out / "runs" / "seed0" / "results.json"
    saved = json.loads(saved_path.read_text())
    saved["sft+grpo"]["fingerprint"]["updates"] += 1  # as if grpo had been run with other settings
    saved_path.write_text(json.dumps(saved))
    logs.clear()
    run_suite(suite, readme=False, log=logs.append)
    ran = [line for line in logs if "done in" in line and line.startswith("seed")]
    assert len(ran) == 1 and "SFT+grpo" in ran[0], logs
    assert json.loads(saved_path.read_text())["sft+grpo"]["sft_id"] == saved["sft"]["sft_id"]


def test_older_whole_seed_results_are_converted_and_only_sb3_runs_again(tmp_path):
    from benchmarks.suite import SuiteConfig, _fingerprint, _legacy_fingerprint, _load_results

    suite = SuiteConfig(out=str(tmp_path))
    runs = tmp_path / "runs" / "seed1"
    runs.mkdir(parents=True)
    scores = {m: {"copy": 0.5} for m in suite.methods}
    curves = {m: {"update": [0, 1], "val_task": [0.1, 0.2]} for m in suite.methods[2:]}
    (runs / "seed_results.json").write_text(json.dumps({"fingerprint": _legacy_fingerprint(suite, 1),
                                                        "scores": scores, "curves": curves}))
    results = _load_results(suite, 1, runs, log=lambda _: None)
    assert results["sft"]["fingerprint"] == _fingerprint(suite, 1)
    assert results["sft"]["scores"] == {"zero-shot": {"copy": 0.5}, "sft": {"copy": 0.5}}
    for algo in ("ppo", "grpo", "reinforce"):
        assert results[f"sft+{algo}"]["fingerprint"] == _fingerprint(suite, 1, f"sft+{algo}")
        assert results[f"sft+{algo}"]["curve"] == curves[f"sft+{algo}"]
    # The old SB3-PPO runs sampled at temperature 1; the suite now samples at our PPO's temperature.
    assert results["sft+sb3-ppo"]["fingerprint"] != _fingerprint(suite, 1, "sft+sb3-ppo")
    assert results["sft+sb3-ppo"]["fingerprint"]["settings"]["temperature"] == 1.0
    assert _fingerprint(suite, 1, "sft+sb3-ppo")["settings"]["temperature"] == 0.7
    # A file written with other settings is not used at all.
    other = SuiteConfig(out=str(tmp_path), test_size_per_task=7)
    assert _load_results(other, 1, runs, log=lambda _: None) == {}


def test_reasoning_gym_splits_are_disjoint_and_named():
    from agents.pipeline import DataConfig, ReasoningGymTask, split_samples
    from instruct_env.tasks import BuiltinDataset

    assert isinstance(split_samples(DataConfig(tasks=["copy"]), "test", 3), BuiltinDataset)
    data = DataConfig(tasks=["copy"], reasoning_gym=[ReasoningGymTask("gcd", {"max_value": 12})],
                      test_size_per_task=20, val_size_per_task=10)
    test = split_samples(data, "test", 20)
    val = split_samples(data, "validation", 10)
    train = split_samples(data, "train", 200)
    questions = {split: {s.instruction for s in samples if s.task == "rg:gcd"}
                 for split, samples in (("test", test), ("val", val), ("train", train))}
    assert len(questions["test"]) > 0 and len(questions["val"]) > 0 and len(questions["train"]) > 0
    assert not questions["val"] & questions["test"]
    assert not questions["train"] & (questions["test"] | questions["val"])
    gcd = [s for s in train if s.task == "rg:gcd"]
    assert gcd[0].id.startswith("rg:gcd/") and gcd[0].score(gcd[0].references[0]) == 1.0
    assert len(gcd) < 200  # only 144 pairs exist: the held-out questions were removed


def test_reasoning_gym_split_that_empties_is_an_error():
    from agents.pipeline import DataConfig, ReasoningGymTask, split_samples

    data = DataConfig(tasks=["copy"], reasoning_gym=[ReasoningGymTask("gcd", {"max_value": 2})])
    with pytest.raises(ConfigError, match="no validation questions left"):
        split_samples(data, "validation", 5)


def test_suite_config_errors():
    from benchmarks.suite import SuiteConfig

    with pytest.raises(UnknownNameError, match="Did you mean 'ppo'"):
        SuiteConfig(rl_methods=["ppoo"])
    with pytest.raises(ConfigError, match=r"updates\['rloo'\] must be >= 1"):
        SuiteConfig(rl_methods=["rloo"], updates={"rloo": 0})
    with pytest.raises(ConfigError, match="distinct non-negative"):
        SuiteConfig(seeds=[0, 0])


def test_tune_uses_validation_only_and_writes_a_pipeline_config(tmp_path, monkeypatch, one_thread):
    pytest.importorskip("optuna")
    from agents.common.config import build_config, load_yaml
    from agents.pipeline import PipelineConfig
    from benchmarks.tune import run_tune
    from instruct_env.tasks import builtin

    splits = []
    original = builtin.BuiltinDataset.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        splits.append(self.split)

    monkeypatch.setattr(builtin.BuiltinDataset, "__init__", recording_init)
    best = run_tune(algo="grpo", trials=2, updates=1, tasks=["copy"], out=str(tmp_path), threads=1, quick=True,
                    log=lambda _: None)
    assert splits and "test" not in splits and "validation" in splits
    assert set(best) == {"lr", "kl_coef", "temperature", "group_size", "clip_range"}
    config = build_config(PipelineConfig, load_yaml(tmp_path / "best.yaml"), [])
    assert config.rl.algo == "grpo" and config.rl.grpo.lr == pytest.approx(best["lr"])
    assert config.rl.grpo.group_size == best["group_size"]
    rows = (tmp_path / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("trial,lr,") and len(rows) == 3


def test_cli_lists_the_suites(capsys):
    from benchmarks.__main__ import main

    main(["run", "--suite", "speed", "--list"])
    listed = capsys.readouterr().out.split("\n")
    assert [line.split()[1] for line in listed if line] == [
        "benchmarks.bench_rewards", "benchmarks.bench_env", "benchmarks.bench_rl_speed", "benchmarks.bench_distributed"]
    main(["run", "--suite", "small", "--seeds", "3,4", "--methods", "grpo,rloo", "--list"])
    assert "seeds [3, 4]; methods ['zero-shot', 'sft', 'sft+grpo', 'sft+rloo']" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="Unknown RL method 'ppo2'"):
        main(["run", "--suite", "small", "--methods", "ppo2", "--list"])


def test_paired_table_differences_are_per_seed_against_sft():
    from benchmarks.suite import paired_table

    matrices = {"zero-shot": [[0.0, 0.0], [0.0, 0.0]], "sft": [[0.2, 0.4], [0.3, 0.5]],
                "sft+grpo": [[0.3, 0.5], [0.3, 0.4]]}
    table = paired_table(matrices, ["a", "b"], [0, 1])
    row = next(line for line in table.splitlines() if line.startswith("| SFT+GRPO"))
    # seed 0: 0.3 -> 0.4 (+0.1); seed 1: 0.4 -> 0.35 (-0.05); mean +0.025, std 0.106
    assert "0.300 -> 0.400" in row and "0.400 -> 0.350" in row
    assert "+0.025 ± 0.106" in row and "| 1/2 |" in row
    # per family: a +0.05, b 0.0 -> 1 of 2 improved
    assert row.endswith("| 1/2 |")
    rows = [line.split(" | ")[0] for line in table.splitlines()[2:]]
    assert rows == ["| SFT+GRPO"]  # only RL methods are compared with SFT
