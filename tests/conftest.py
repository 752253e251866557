"""Shared fixtures: the built-in tokenizer is trained once per session (and cached on disk)."""

from __future__ import annotations

import os

import pytest
from store_backends import StoreURLs, backend_params

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tokenizer():
    from instruct_env.tokenizer import builtin_tokenizer

    return builtin_tokenizer()


@pytest.fixture(autouse=True, scope="session")
def _sb3_logdir(tmp_path_factory):
    """Stable-Baselines3 makes a fresh log folder in the system temp dir per run unless told where."""
    os.environ.setdefault("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3")))


@pytest.fixture(autouse=True, scope="session")
def _threads():
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(2)


@pytest.fixture
def single_thread():
    """One torch thread for the test (tiny models: more threads only add contention on shared CI cores)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(params=backend_params())
def urls(request, tmp_path):
    """Makes fresh feedback-store URLs for the test, once per back-end (SQLite; PostgreSQL when configured)."""
    made = StoreURLs(request.param, tmp_path)
    yield made
    made.cleanup()
