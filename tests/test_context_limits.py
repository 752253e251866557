"""Prompt + answer budgets beyond the model's positions give a ConfigError that says what to change.

A GPT-2-style model (the embedded default) embeds at most ``n_positions`` positions; beyond them
torch fails with a bare ``IndexError: index out of range in self`` from the position embedding.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def small_lm(tokenizer):
    from agents.common.model import DefaultModelConfig, build_default_model

    return build_default_model(tokenizer, DefaultModelConfig(n_layer=1, n_embd=32, n_head=2, n_positions=32), seed=0)


def _prompts(length: int, rows: int = 2):
    import torch

    ids = torch.full((rows, length), 5, dtype=torch.long)
    return ids, torch.ones_like(ids)


def test_generation_refuses_a_prompt_and_answer_longer_than_the_context(small_lm, tokenizer, single_thread):
    from agents.common.generation import SamplingConfig, generate
    from instruct_env.error import ConfigError

    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    ids, mask = _prompts(30)
    with pytest.raises(ConfigError, match=r"A prompt of 30 tokens plus 8 new tokens needs 38 positions, but the model "
                                          r"has 32 \(its config's n_positions\)\..*at most 32 \(max_prompt_tokens"):
        generate(small_lm, ids, mask, 8, eos, pad, SamplingConfig(temperature=0.0))
    ids, mask = _prompts(24)  # 24 + 8 = 32 positions: fits exactly
    out = generate(small_lm, ids, mask, 8, eos, pad, SamplingConfig(temperature=0.0))
    assert out.tokens.shape == (2, 8)


def test_left_padding_does_not_count_against_the_context(small_lm, tokenizer, single_thread):
    from agents.common.generation import SamplingConfig, generate

    ids, mask = _prompts(40)
    mask[:, :16] = 0  # 24 real tokens after 16 columns of padding
    out = generate(small_lm, ids, mask, 8, tokenizer.eos_token_id, tokenizer.pad_token_id,
                   SamplingConfig(temperature=0.0))
    assert out.tokens.shape == (2, 8)


def test_the_main_job_stops_at_its_first_evaluation_with_the_settings_to_change(tmp_path, single_thread):
    from agents.common.config import build_config
    from agents.pipeline import PipelineConfig, run_pipeline
    from instruct_env.error import ConfigError

    # Eight demonstrations make prompts of 200-250 tokens; the embedded model has 256 positions.
    config = build_config(PipelineConfig, {"out": str(tmp_path / "run"), "progress": False, "threads": 1},
                          ["data.max_prompt_tokens=250", "data.max_new_tokens=32", "data.num_shots=8"])
    with pytest.raises(ConfigError, match=r"A prompt of 2\d\d tokens plus 32 new tokens needs 2\d\d positions, but "
                                          r"the model has 256 .*in the main job data.max_prompt_tokens and "
                                          r"data.max_new_tokens\)\."):
        run_pipeline(config)
    assert not (tmp_path / "run" / "results.json").exists()  # nothing was trained


def test_token_level_rollouts_refuse_observations_longer_than_the_context(small_lm, single_thread):
    import numpy as np

    from agents.common.generation import SlotActor
    from agents.common.model import ActorCritic
    from instruct_env.error import ConfigError

    policy = ActorCritic(small_lm)

    def observation(prompt: int, width: int, answer: int = 8) -> dict[str, np.ndarray]:
        ids = np.zeros((2, width + answer), dtype=np.int64)  # [prompt columns | answer columns]
        mask = np.zeros_like(ids)
        ids[:, width - prompt: width], mask[:, width - prompt: width] = 5, 1
        return {"input_ids": ids, "attention_mask": mask}

    with pytest.raises(ConfigError, match=r"A prompt of 30 tokens plus 8 new tokens needs 38 positions, but the model "
                                          r"has 32 .*Token env's max_prompt_tokens and max_new_tokens"):
        SlotActor(policy, 30).start(observation(30, 30))
    actor = SlotActor(policy, 40)
    actor.start(observation(24, 40))  # 24 real prompt tokens + 8 answer tokens = 32 positions: fits
    assert actor.logits.shape[0] == 2
