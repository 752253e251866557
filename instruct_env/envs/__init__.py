"""Gymnasium environments: ``InstructEnv/Token-v0`` and ``InstructEnv/Completion-v0``.

Both are registered with Gymnasium when :mod:`instruct_env` is imported, with native
batched vector versions for ``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")``.
The environment classes themselves (which need numpy, and a tokenizer when created) are
imported lazily.
"""

from __future__ import annotations

import gymnasium

__all__ = ["register_envs", "ENV_IDS"]

ENV_IDS = ("InstructEnv/Token-v0", "InstructEnv/Completion-v0")


def register_envs() -> None:
    """Register the environment ids with Gymnasium (idempotent)."""
    specs = {
        "InstructEnv/Token-v0": ("instruct_env.envs.token_env:TokenEnv", "instruct_env.envs.token_env:TokenVectorEnv"),
        "InstructEnv/Completion-v0": (
            "instruct_env.envs.completion_env:CompletionEnv",
            "instruct_env.envs.completion_env:CompletionVectorEnv",
        ),
    }
    for env_id, (entry, vector_entry) in specs.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry, vector_entry_point=vector_entry)
