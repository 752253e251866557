"""Configuration files and overrides, the cached pre-training, and the command line end to end."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from agents.cli import build_parser, main
from agents.common.config import build_config, convert, field_paths, load_yaml
from agents.pipeline import PipelineConfig
from instruct_env.error import ConfigError, UnknownNameError

#: A configuration small enough to run the whole pipeline in seconds.
TINY = [
    "threads=2",
    "progress=false",
    "data.tasks=[copy, pick_word]",
    "data.test_size_per_task=3",
    "data.val_size_per_task=2",
    "data.train_size_per_task=16",
    "data.max_new_tokens=6",
    "model.default.n_layer=1",
    "model.default.n_embd=32",
    "model.default.n_head=2",
    "model.default.n_positions=128",
    "model.pretrain.steps=4",
    "model.pretrain.batch_size=8",
    "model.pretrain.n_per_task=8",
    "model.pretrain.warmup_steps=1",
    "sft.max_steps=3",
    "sft.batch_size=4",
    "sft.val_examples=2",
    "rl.grpo.num_envs=8",
    "rl.grpo.group_size=4",
    "rl.grpo.total_updates=2",
    "rl.grpo.eval_every=1",
    "eval.batch_size=8",
]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCT_ENV_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_yaml_then_overrides_are_typed(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"seed": 3, "sft": {"lr": "1e-4", "epochs": 4}, "data": {"tasks": ["copy"]}}))
    config = build_config(PipelineConfig, load_yaml(path), ["sft.epochs=7", "rl.algo=ppo", "rl.ppo.clip_range=0.1",
                                                           "model.pretrain.time_budget_s=none"])
    assert config.seed == 3 and config.sft.lr == 1e-4 and config.sft.epochs == 7
    assert config.data.tasks == ["copy"] and config.rl.algo == "ppo" and config.rl.ppo.clip_range == 0.1
    assert config.model.pretrain.time_budget_s is None
    assert isinstance(config.sft.lr, float) and isinstance(config.sft.epochs, int)


@pytest.mark.parametrize(
    "override, error, message",
    [
        ("sft.lr=fast", ConfigError, "sft.lr: expected a float, got 'fast'."),
        ("sft.epochs=2.5", ConfigError, "sft.epochs: expected an integer, got '2.5'."),
        ("sft.keep_best=maybe", ConfigError, "sft.keep_best: expected a boolean (true/false), got 'maybe'."),
        ("sft.lrr=1", UnknownNameError, "Unknown 'sft' field 'lrr'. Did you mean 'lr'?"),
        ("sftt.lr=1", UnknownNameError, "Unknown config field 'sftt'. Did you mean 'sft'?"),
        ("seed.x=1", ConfigError, "seed is a value, not a section"),
        ("rl.algo=grp", UnknownNameError, "Did you mean 'grpo'?"),
        ("sft.lr=0", ConfigError, "sft: SFTConfig.lr must be > 0; got 0.0."),
        ("data.tasks=[copy, sort]", UnknownNameError, "Unknown task 'sort'."),
        ("sft.seed=5", ConfigError, "sft.seed=5 conflicts with seed=0"),
        ("sft.lr", ConfigError, "must look like 'section.field=value'"),
    ],
)
def test_override_errors_name_the_field(override, error, message):
    with pytest.raises(error) as info:
        build_config(PipelineConfig, {}, [override])
    assert message in str(info.value)


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="sft: expected a mapping"):
        build_config(PipelineConfig, {"sft": 3})
    with pytest.raises(ConfigError, match="sft.lr: expected a float, got True"):
        build_config(PipelineConfig, {"sft": {"lr": True}})


def test_convert_rules():
    assert convert("true", bool, "x") is True and convert(2, float, "x") == 2.0
    assert convert("copy,add", list[str], "x") == ["copy", "add"]
    assert convert({"a": "1"}, dict[str, int], "x") == {"a": 1}
    with pytest.raises(ConfigError, match="x: expected a string, got 3"):
        convert(3, str, "x")
    assert "sft.lr" in field_paths(PipelineConfig) and "rl.grpo.kl_coef" in field_paths(PipelineConfig)


def test_help_works(capsys):
    for argv in (["--help"], ["pipeline", "--help"], ["rl", "--help"], ["sft", "--help"], ["eval", "--help"]):
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(argv)
        assert info.value.code == 0
    assert "--algo" in capsys.readouterr().out


def test_print_config_round_trips(capsys):
    assert main(["pipeline", "--print-config", "--seed", "4", "--num-examples", "8", "--set", "sft.lr=1e-3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed"] == 4 and printed["sft"]["num_examples"] == 8 and printed["sft"]["lr"] == 0.001
    assert build_config(PipelineConfig, printed) == build_config(PipelineConfig, {}, [
        "seed=4", "sft.num_examples=8", "sft.lr=1e-3"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["feedback.loop.algo=rloo"],
         "feedback.loop.algo='rloo' conflicts with rl.algo='grpo': the pipeline sets feedback.loop.algo from rl.algo. "
         "Set rl.algo instead."),
        (["feedback.rounds=2", "feedback.loop.rounds=4"], "feedback.loop.rounds=4 conflicts with feedback.rounds=2"),
        (["feedback.mode=simulated", "feedback.store=a.db", "feedback.loop.feedback=human",
          "feedback.loop.store_url=a.db"], "feedback.loop.feedback='human' conflicts with feedback.mode='simulated'"),
        (["feedback.mode=simulated", "feedback.loop.store_url=b.db"],
         "feedback.loop.store_url='b.db' conflicts with feedback.store=null"),
    ],
)
def test_feedback_loop_run_keys_that_differ_from_the_pipeline_are_refused(overrides, message):
    with pytest.raises(ConfigError) as info:
        build_config(PipelineConfig, {}, overrides)
    assert message in str(info.value)


def test_feedback_loop_run_keys_are_filled_in_and_printed_configs_load_back(capsys):
    overrides = ["rl.algo=rloo", "feedback.mode=human", "feedback.store=fb.db", "feedback.rounds=2"]
    config = build_config(PipelineConfig, {}, overrides)
    loop = config.feedback.loop
    assert (loop.rounds, loop.feedback, loop.store_url, loop.algo) == (2, "human", "fb.db", "rloo")
    assert main(["pipeline", "--print-config", *[a for o in overrides for a in ("--set", o)]]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert {k: printed["feedback"]["loop"][k] for k in ("rounds", "feedback", "store_url", "algo")} == {
        "rounds": 2, "feedback": "human", "store_url": "fb.db", "algo": "rloo"}
    assert build_config(PipelineConfig, printed) == config
    # Equal values are accepted; without a mode the loop keeps its own (default) mode and store.
    assert build_config(PipelineConfig, {}, overrides + ["feedback.loop.algo=rloo", "feedback.loop.rounds=2"]) == config
    unset = build_config(PipelineConfig, {}, ["feedback.store=fb.db"]).feedback.loop
    assert (unset.feedback, unset.store_url) == ("simulated", None)


def test_cli_reports_config_errors(capsys):
    assert main(["sft", "--set", "sft.lrr=1", "--print-config"]) == 2
    assert "Did you mean 'lr'?" in capsys.readouterr().err


def test_pretraining_is_cached(cache, tokenizer):
    from agents.common.model import DefaultModelConfig
    from agents.common.pretrain import PretrainConfig, pretrained_default_model

    shape = DefaultModelConfig(n_layer=1, n_embd=32, n_head=2, n_positions=128)
    settings = PretrainConfig(steps=3, batch_size=4, n_per_task=4, warmup_steps=1, tasks=["copy"])
    first, info = pretrained_default_model(tokenizer, shape, settings, device="cpu")
    second, again = pretrained_default_model(tokenizer, shape, settings, device="cpu")
    assert not info.from_cache and again.from_cache and info.path == again.path and info.steps == 3
    assert all((a == b).all() for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    _, other = pretrained_default_model(tokenizer, shape, PretrainConfig(steps=4, batch_size=4, n_per_task=4,
                                                                         warmup_steps=1, tasks=["copy"]))
    assert other.path != info.path and not other.from_cache  # the step count is part of the key
    assert "held out" in info.describe() and "few-shot" in info.describe()


def test_pipeline_end_to_end(cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pipeline", "--out", str(out), *[a for o in TINY for a in ("--set", o)]]) == 0
    printed = capsys.readouterr().out
    assert f"Report:  {out / 'report.md'}" in printed
    report = (out / "report.md").read_text()
    for stage in ("zero-shot", "SFT", "SFT+RL"):
        assert f"{stage} task score" in report
    assert "pre-trained from random initialisation" in report and "## Configuration" in report
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    stages = {(r["stage"], r["kind"]) for r in records}
    assert {("sft", "eval"), ("rl", "train"), ("rl", "eval"), ("test/SFT+RL", "eval")} <= stages
    rl_updates = [r for r in records if r["stage"] == "rl" and r["kind"] == "train"]
    assert len(rl_updates) == 2 and "reward_mean" in rl_updates[0]
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert {"rl_reward.png", "rl_kl.png", "rl_heldout.png", "sft_val_loss.png"} <= set(pngs)
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["zero-shot", "SFT", "SFT+RL"] and results["SFT"]["num_samples"] == 6
    assert (out / "model" / "config.json").exists() and (out / "config.yaml").exists()

    # The saved model can be evaluated on its own, and the saved config re-read.
    again = tmp_path / "eval"
    assert main(["eval", "--model", str(out / "model"), "--out", str(again), "--config", str(out / "config.yaml")]) == 0
    text = (again / "report.md").read_text()
    assert "model task score" in text and "pre-trained by instruct-env" in text


def test_a_partial_section_keeps_the_pipeline_defaults():
    default = PipelineConfig().rl.grpo
    changed = build_config(PipelineConfig, {"rl": {"grpo": {"lr": 1e-4}}}, ["rl.grpo.kl_coef=0.1"]).rl.grpo
    assert (changed.lr, changed.kl_coef) == (1e-4, 0.1)
    assert (changed.num_envs, changed.time_budget_s, changed.eval_every) == (
        default.num_envs, default.time_budget_s, default.eval_every)


def test_interrupted_pretraining_resumes_to_the_same_weights(cache, tokenizer):
    from agents.common.model import DefaultModelConfig
    from agents.common.pretrain import PretrainConfig, pretrained_default_model

    shape = DefaultModelConfig(n_layer=1, n_embd=32, n_head=2, n_positions=128)
    settings = dict(steps=4, batch_size=4, n_per_task=6, warmup_steps=1, tasks=["copy"])
    whole, _ = pretrained_default_model(tokenizer, shape, PretrainConfig(cache=False, **settings), device="cpu")
    _, cut = pretrained_default_model(tokenizer, shape, PretrainConfig(time_budget_s=1e-9, **settings),
                                      device="cpu")  # stops after its first step
    assert cut.steps == 1 and not cut.complete and cut.path is None and "resumes" in cut.describe()
    resumed, info = pretrained_default_model(tokenizer, shape, PretrainConfig(**settings), device="cpu")
    assert info.resumed_from_step == 1 and info.steps == 4 and info.path is not None
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rl_reward", ["proxy", "direct"])
def test_pipeline_with_simulated_feedback(cache, tmp_path, capsys, rl_reward):
    out = tmp_path / "fb"
    loop = ["feedback.rounds=1", "feedback.loop.kind=rating", "feedback.loop.queries_per_round=8",
            "feedback.loop.pool_prompts=4", "feedback.loop.samples_per_prompt=2", "feedback.loop.per_instruction=2",
            "feedback.loop.evaluators=2", "feedback.loop.rl_updates=2", "feedback.loop.min_holdout=1",
            "feedback.loop.max_prompt_tokens=64", "feedback.loop.reward_model.n_heads=2",
            "feedback.loop.reward_model.hidden=8", "feedback.loop.reward_model.epochs=5",
            f"feedback.loop.rl_reward={rl_reward}"]
    args = ["pipeline", "--out", str(out), "--feedback", "simulated"]
    assert main(args + [a for o in TINY + loop for a in ("--set", o)]) == 0
    report = (out / "report.md").read_text()
    assert "Feedback rounds" in report and "Rewards from simulated evaluators" in report
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rounds = [r for r in records if r["stage"] == "feedback" and r.get("phase") == "round"]
    assert [r["round"] for r in rounds] == [0, 1] and rounds[1]["rl_updates"] == 2
    if rl_reward == "direct":  # every completion RL sampled was rated by both evaluators
        assert "rewarded by their rating of every completion" in report and "answers used as RL rewards" in report
        assert rounds[1]["rl_judgements"] > 0 and rounds[1]["rl_judgements"] % 4 == 0
    else:
        assert "through an online reward model" in report and rounds[1]["rl_judgements"] == 0
    assert (out / "feedback" / "feedback.db").exists()
