"""The command line with the Q-learners: --algo ilql (its own rollouts, or --data) and --algo sql, end to end."""

from __future__ import annotations

import json
import os

import pytest
from test_cli import TINY

from agents.cli import build_parser, main
from agents.rl import ALGORITHMS

ILQL = ["rl.algo=ilql", "rl.ilql.rollout_episodes=16", "rl.ilql.rollout_group_size=4", "rl.ilql.batch_size=4",
        "rl.ilql.total_updates=2", "rl.ilql.eval_every=1", "rl.ilql.monitor_every=1", "rl.ilql.monitor_envs=4"]
SQL = ["rl.algo=sql", "rl.sql.num_envs=4", "rl.sql.n_steps=8", "rl.sql.learning_starts=1", "rl.sql.batch_size=4",
       "rl.sql.total_updates=2", "rl.sql.eval_every=1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One pre-training cache for the module's runs (the tiny default model is pre-trained once)."""
    previous = os.environ.get("INSTRUCT_ENV_CACHE")
    os.environ["INSTRUCT_ENV_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield os.environ["INSTRUCT_ENV_CACHE"]
    if previous is None:
        del os.environ["INSTRUCT_ENV_CACHE"]
    else:
        os.environ["INSTRUCT_ENV_CACHE"] = previous


def _sets(options):
    return [a for o in options for a in ("--set", o)]


def test_algo_choices_come_from_the_table(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["rl", "--algo", "dqn"])
    err = capsys.readouterr().err
    assert "invalid choice: 'dqn'" in err and all(repr(a) in err for a in ALGORITHMS)


def test_data_needs_ilql(capsys):
    assert main(["rl", "--algo", "ppo", "--data", "x.jsonl", "--print-config"]) == 2
    assert "--data is the offline data of --algo ilql" in capsys.readouterr().err


@pytest.mark.usefixtures("cache")
def test_pipeline_ilql_collects_its_own_data(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pipeline", "--out", str(out), *_sets(TINY + ILQL)]) == 0
    report = (out / "report.md").read_text()
    assert "ILQL, 2 updates" in report and "SFT+RL task score" in report
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    updates = [r for r in records if r["stage"] == "rl" and r["kind"] == "train"]
    assert len(updates) == 2 and all(0.0 <= r["reward_mean"] <= 1.0 for r in updates)  # monitored every update
    assert (out / "model" / "ilql_heads.pt").exists() and (out / "model" / "config.json").exists()


@pytest.mark.usefixtures("cache")
def test_rl_ilql_from_a_file_and_sql(tmp_path):
    data = tmp_path / "episodes.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"Copy: {w}\nAnswer:", "completion": w, "reward": r})
                              for w, r in (("cat", 1.0), ("dog", 0.0), ("red", 0.5))) + "\n")
    out = tmp_path / "ilql"
    assert main(["rl", "--algo", "ilql", "--data", str(data), "--out", str(out),
                 *_sets(TINY + ILQL[1:])]) == 0
    assert "ILQL, 2 updates" in (out / "report.md").read_text()
    out = tmp_path / "sql"
    assert main(["rl", "--out", str(out), *_sets(TINY + SQL)]) == 0
    assert "SQL, 2 updates" in (out / "report.md").read_text()
