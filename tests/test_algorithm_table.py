"""The algorithm table (agents.rl.ALGORITHMS) and what is made from it agree."""

from __future__ import annotations

import dataclasses
import typing

from agents.cli import build_parser
from agents.common.config import build_config, to_dict
from agents.pipeline import PipelineConfig, RLSection
from agents.rl import ALGORITHMS, DEFAULT_ALGORITHM


def test_rl_section_has_one_field_per_algorithm_with_its_config_and_main_job_settings():
    hints = typing.get_type_hints(RLSection)
    fields = [f.name for f in dataclasses.fields(RLSection)]
    assert fields[0] == "algo" and sorted(fields[1:]) == sorted(ALGORITHMS)
    section = RLSection()
    assert section.algo == DEFAULT_ALGORITHM
    for name, algorithm in ALGORITHMS.items():
        assert hints[name] is algorithm.config
        assert getattr(section, name) == algorithm.main_job_config()
        assert algorithm.trainer_class().algo == name and algorithm.trainer_class().config_class is algorithm.config


def test_main_job_settings_change_only_the_named_fields():
    for algorithm in ALGORITHMS.values():
        defaults, main_job = to_dict(algorithm.config()), to_dict(algorithm.main_job_config())
        changed = {k for k in defaults if defaults[k] != main_job[k]}
        assert changed <= set(algorithm.main_job), algorithm.name


def test_rl_section_yaml_shape_and_overrides():
    config = build_config(PipelineConfig, {"rl": {"algo": "ppo", "ppo": {"clip_range": 0.1}}}, ["rl.grpo.lr=1e-5"])
    assert config.rl.algo == "ppo" and config.rl.ppo.clip_range == 0.1 and config.rl.grpo.lr == 1e-5
    assert config.rl.selected is config.rl.ppo
    assert list(to_dict(config)["rl"]) == [f.name for f in dataclasses.fields(RLSection)]


def test_cli_algo_choices_are_the_table():
    parser = build_parser()
    rl = next(a for a in parser._actions if isinstance(a.choices, dict)).choices["rl"]
    algo = next(a for a in rl._actions if a.dest == "algo")
    assert list(algo.choices) == list(ALGORITHMS)
