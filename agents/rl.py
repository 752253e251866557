"""One entry point for every RL algorithm: :func:`make_trainer` and :func:`load_trainer`.

Typical use, after SFT (``lm`` and ``tokenizer`` from the SFT stage)::

    policy = ActorCritic(lm)
    policy.freeze_reference()                       # the KL reference is the SFT model
    config = default_config("grpo", kl_coef=0.02, time_budget_s=180)
    trainer = make_trainer("grpo", config, policy, tokenizer, {"tasks": ["copy"], "split": "train"},
                           log_fn=print)
    history = trainer.train()                       # one metrics dict per update
    trainer.save("runs/rl/ckpt")                    # ... later: load_trainer("runs/rl/ckpt", policy, tokenizer)

Actor-critic trainers (``ppo``, ``a2c``) act token by token in ``InstructEnv/Token-v0``;
policy-gradient trainers (``reinforce``, ``grpo``, ``rloo``) answer whole completions in
``InstructEnv/Completion-v0``; Q-learning trainers are ``ilql`` (offline, from token-level
episodes: ``ILQLConfig.data``) and ``sql`` (online soft Q-learning, token by token).

>>> sorted(ALGORITHMS)
['a2c', 'grpo', 'ilql', 'ppo', 'reinforce', 'rloo', 'sql']
>>> type(default_config("grpo")).__name__
'GRPOConfig'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from instruct_env.error import ConfigError, unknown_name

if TYPE_CHECKING:  # pragma: no cover
    from agents.common.model import ActorCritic

__all__ = ["ALGORITHMS", "make_trainer", "load_trainer", "default_config", "config_class"]

#: Algorithm name -> (module, trainer class name, config class name).
ALGORITHMS = {
    "ppo": ("agents.ac", "PPOTrainer", "PPOConfig"),
    "a2c": ("agents.ac", "A2CTrainer", "A2CConfig"),
    "reinforce": ("agents.pg", "ReinforceTrainer", "ReinforceConfig"),
    "grpo": ("agents.pg", "GRPOTrainer", "GRPOConfig"),
    "rloo": ("agents.pg", "RLOOTrainer", "RLOOConfig"),
    "ilql": ("agents.q", "ILQLTrainer", "ILQLConfig"),
    "sql": ("agents.q", "SoftQTrainer", "SoftQConfig"),
}


def _lookup(algo: str) -> tuple[type, type]:
    import importlib

    if algo not in ALGORITHMS:
        raise unknown_name("RL algorithm", algo, ALGORITHMS)
    module, trainer, config = ALGORITHMS[algo]
    mod = importlib.import_module(module)
    return getattr(mod, trainer), getattr(mod, config)


def config_class(algo: str) -> type:
    """The config dataclass of ``algo`` (e.g. ``PPOConfig`` for ``"ppo"``)."""
    return _lookup(algo)[1]


def default_config(algo: str, **overrides: Any):
    """``algo``'s config with its defaults, and ``overrides`` applied (validated)."""
    return config_class(algo)(**overrides)


def make_trainer(algo: str, config, policy: ActorCritic, tokenizer, env_kwargs: Mapping[str, Any] | None = None,
                 log_fn: Callable[[dict[str, Any]], None] | None = None,
                 eval_fn: Callable[[Any], Mapping[str, Any]] | None = None):
    """Build the trainer of ``algo`` (a name of :data:`ALGORITHMS`: ``ppo``, ``a2c``, ``reinforce``, ``grpo``, ``rloo``, ``ilql``, ``sql``).

    Args:
        algo: Algorithm name.
        config: That algorithm's config (``PPOConfig``...); ``None`` for its defaults.
        policy: An :class:`~agents.common.model.ActorCritic`, already on its device (it is
            trained in place; its KL reference is frozen here if the caller has not done so).
        tokenizer: The policy's tokenizer.
        env_kwargs: Environment arguments (``tasks``, ``split``, ``reward``, ``max_prompt_tokens``...).
        log_fn: ``log_fn(metrics)`` after every update.
        eval_fn: ``eval_fn(policy) -> dict`` every ``config.eval_every`` updates.

    Returns:
        A trainer with ``train() -> list[dict]``, ``update_step() -> dict``, ``save(dir)``
        and ``load_state(dir)``.
    """
    trainer_cls, cfg_cls = _lookup(algo)
    if config is None:
        config = cfg_cls()
    if not isinstance(config, cfg_cls):
        raise ConfigError(
            f"make_trainer({algo!r}, ...) needs a {cfg_cls.__name__}; got {type(config).__name__}. "
            f"Build one with agents.rl.default_config({algo!r}, ...)."
        )
    return trainer_cls(config, policy, tokenizer, env_kwargs, log_fn=log_fn, eval_fn=eval_fn)


def load_trainer(directory: str | Path, policy: ActorCritic, tokenizer, env_kwargs: Mapping[str, Any] | None = None,
                 log_fn: Callable[[dict[str, Any]], None] | None = None,
                 eval_fn: Callable[[Any], Mapping[str, Any]] | None = None, **config_overrides: Any):
    """Rebuild a trainer from a checkpoint written by ``trainer.save(directory)``.

    The algorithm and config are read from the checkpoint (``config_overrides`` may change
    fields, e.g. ``total_updates`` to train longer); ``policy`` must have the checkpoint's
    architecture. All state (weights, optimizer, RNGs, environment) is then restored.
    """
    import torch

    path = Path(directory) / "trainer.pt"
    if not path.exists():
        raise ConfigError(f"No checkpoint in {str(directory)!r}: expected trainer.pt and env.pkl written by save().")
    state = torch.load(path, map_location="cpu", weights_only=False)
    _, cfg_cls = _lookup(state["algo"])
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    config = cfg_cls(**{**{k: v for k, v in state["config"].items() if k in fields}, **config_overrides})
    trainer = make_trainer(state["algo"], config, policy, tokenizer, env_kwargs, log_fn=log_fn, eval_fn=eval_fn)
    trainer.load_state(directory)
    return trainer
