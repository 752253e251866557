"""The pre-trained default weights shipped in ``agents/assets/default_model``: the manifest matches the
file, the main job's defaults load them without pre-training, and the pre-training command reproduces
the manifest's first logged losses."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import numpy as np
import pytest
import torch

from agents.common.model import DefaultModelConfig, build_default_model
from agents.common.pretrain import (
    LOGGED_FIRST_STEPS,
    PretrainConfig,
    _tokenizer_digest,
    _train,
    encode_corpus,
)
from agents.common.shipped import SHIPPED_DIR, file_sha256, load_shipped, read_manifest, settings_key
from agents.pipeline import PipelineConfig
from instruct_env.tokenizer import builtin_tokenizer


@pytest.fixture(scope="module")
def manifest():
    found = read_manifest()
    assert found is not None, f"no manifest.json in {SHIPPED_DIR}"
    return found


def test_manifest_describes_the_shipped_file(manifest):
    weights = SHIPPED_DIR / manifest["weights_file"]
    assert weights.exists() and weights.stat().st_size < 8 * 2**20  # a few MB
    assert file_sha256(weights) == manifest["weights_sha256"]
    assert manifest["tokenizer_sha256"] == _tokenizer_digest(builtin_tokenizer())
    assert manifest["steps"] == manifest["pretrain_config"]["steps"]  # pre-training ran to the end
    assert len(manifest["first_losses"]) == LOGGED_FIRST_STEPS
    assert manifest["command"].startswith("instruct-env pretrain")
    for key in ("torch_version", "data_seed", "final_loss", "model_config", "loss_curve"):
        assert key in manifest
    # the loss fell from ln(vocab) ~ 6.2 to well below it
    assert manifest["first_losses"][0] > 5.5 and manifest["final_loss"] < 1.5


def test_main_job_defaults_load_the_shipped_weights_without_pretraining(manifest):
    config = PipelineConfig()
    assert dataclasses.asdict(config.model.default) == manifest["model_config"]
    assert settings_key(config.model.pretrain) == manifest["pretrain_config"]
    tokenizer = builtin_tokenizer()
    loaded = load_shipped(tokenizer, config.model.default, config.model.pretrain, torch.device("cpu"))
    assert loaded is not None
    model, info = loaded
    assert info.shipped and info.from_cache and info.elapsed_s == 0.0
    assert "shipped with instruct-env" in info.describe()
    assert sum(p.numel() for p in model.parameters()) == manifest["parameters"]


def test_other_settings_or_a_damaged_file_are_not_served_the_shipped_weights(manifest, tmp_path, caplog):
    tokenizer = builtin_tokenizer()
    cpu = torch.device("cpu")
    wider = DefaultModelConfig(n_embd=64, n_head=2)
    assert load_shipped(tokenizer, wider, PretrainConfig(), cpu) is None
    assert load_shipped(tokenizer, DefaultModelConfig(), PretrainConfig(steps=10), cpu) is None
    assert load_shipped(tokenizer, DefaultModelConfig(), PretrainConfig(shipped=False), cpu) is None
    copy = tmp_path / "default_model"
    shutil.copytree(SHIPPED_DIR, copy)
    with open(copy / manifest["weights_file"], "r+b") as fh:  # flip one byte of the weights
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 1]))
    with caplog.at_level(logging.WARNING):
        assert load_shipped(tokenizer, DefaultModelConfig(), PretrainConfig(), cpu, folder=copy) is None
    assert "does not match the sha256" in caplog.text


def test_pretraining_command_reproduces_the_first_logged_losses(manifest):
    """The first steps of pre-training with the manifest's settings give its logged losses.

    The losses are fp32 means over a few thousand tokens; a different thread count or SIMD width
    changes reduction orders and moves them by ~1e-7 relative (8e-8 measured between 1 and 2
    threads), and eight Adam steps amplify that little. A relative tolerance of 1e-3 is far above
    that noise and far below what any change of data, order, initialisation or optimiser does
    (the first steps change the loss by ~1e-2 each).
    """
    from instruct_env.tasks import pretraining_corpus

    torch.set_num_threads(1)
    config = PretrainConfig(**manifest["pretrain_config"])
    model_config = DefaultModelConfig(**manifest["model_config"])
    tokenizer = builtin_tokenizer()
    corpus = pretraining_corpus(n_per_task=config.n_per_task, seed=config.seed, tasks=config.tasks)
    corpus_ids, pad = encode_corpus(tokenizer, corpus, model_config.n_positions)
    assert len(corpus) == manifest["corpus_examples"]
    model = build_default_model(tokenizer, model_config, seed=config.seed)
    steps = 8  # inside the warm-up, whose learning rates do not depend on the total number of steps
    assert steps <= config.warmup_steps
    state = _train(model, corpus_ids, pad, dataclasses.replace(config, steps=steps, time_budget_s=None),
                   torch.device("cpu"), None)
    np.testing.assert_allclose(state["first_losses"], manifest["first_losses"][:steps], rtol=1e-3)


def test_pretrain_command_writes_weights_and_a_consistent_manifest(tmp_path, monkeypatch):
    from agents.cli import main

    monkeypatch.setenv("INSTRUCT_ENV_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "made"
    code = main(["pretrain", "--out", str(out), "--threads", "1", "--set", "model.default.n_layer=1",
                 "--set", "model.default.n_embd=32", "--set", "model.default.n_head=2",
                 "--set", "model.pretrain.steps=3", "--set", "model.pretrain.n_per_task=4",
                 "--set", "model.pretrain.batch_size=8", "--set", "model.pretrain.warmup_steps=1"])
    assert code == 0
    made = json.loads((out / "manifest.json").read_text())
    assert made["steps"] == 3 and len(made["first_losses"]) == 3
    assert made["weights_sha256"] == file_sha256(out / "model.safetensors")
    assert made["model_config"]["n_embd"] == 32 and made["pretrain_config"]["steps"] == 3
    assert made["command"].startswith("instruct-env pretrain --out")
    # a folder made this way is served back when the request matches it exactly
    loaded = load_shipped(builtin_tokenizer(), DefaultModelConfig(**made["model_config"]),
                          PretrainConfig(**made["pretrain_config"]), torch.device("cpu"), folder=out)
    assert loaded is not None and loaded[1].steps == 3
