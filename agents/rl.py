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

:data:`ALGORITHMS` is the one table of algorithms: each :class:`Algorithm` names its trainer and
config and carries the main job's settings for it. The command line's ``--algo`` choices, the
pipeline's ``rl`` section and the benchmark suite's methods are made from it.

>>> sorted(ALGORITHMS)
['a2c', 'grpo', 'ilql', 'ppo', 'reinforce', 'rloo', 'sql']
>>> type(default_config("grpo")).__name__
'GRPOConfig'
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from agents.ac.config import A2CConfig, PPOConfig
from agents.common.rl_config import RLConfig
from agents.pg.config import GRPOConfig, ReinforceConfig, RLOOConfig
from agents.q.config import ILQLConfig, SoftQConfig
from instruct_env.error import ConfigError, unknown_name

if TYPE_CHECKING:  # pragma: no cover
    from agents.common.model import ActorCritic
    from agents.common.trainer import RLTrainer

__all__ = ["Algorithm", "ALGORITHMS", "DEFAULT_ALGORITHM", "PPO", "A2C", "REINFORCE", "GRPO", "RLOO", "ILQL",
           "SOFT_Q", "algorithm", "make_trainer", "load_trainer", "default_config", "config_class"]

C = TypeVar("C", bound=RLConfig)


@dataclass(frozen=True)
class Algorithm(Generic[C]):
    """One RL algorithm: its name, trainer and config, and its settings in the main job.

    Attributes:
        name: What ``--algo``, ``rl.algo``, :func:`make_trainer` and checkpoints call it.
        trainer: ``"module:Class"`` of its trainer (imported when used: trainers need torch).
        config: Its config dataclass.
        main_job: The main job's changes to ``config``'s defaults (the defaults of ``rl.<name>`` in
            :class:`agents.pipeline.PipelineConfig`), sized for 2 CPU cores and a 210 s RL stage.
    """

    name: str
    trainer: str
    config: type[C]
    main_job: Mapping[str, Any]

    def trainer_class(self) -> type[RLTrainer]:
        """The trainer class (imports it, and torch)."""
        module, _, cls = self.trainer.partition(":")
        trainer: type[RLTrainer] = getattr(importlib.import_module(module), cls)
        return trainer

    def main_job_config(self) -> C:
        """``config`` with the main job's settings."""
        return self.config(**self.main_job)


#: The main job's RL stage: a time budget, not an update count.
_BUDGET = {"time_budget_s": 210.0, "total_updates": 100_000}

PPO = Algorithm("ppo", "agents.ac.ppo:PPOTrainer", PPOConfig, {
    # 64 token-level envs x 16 steps (about 100 answers) per update, two epochs of two minibatches,
    # sampling at temperature 0.7 like GRPO.
    "lr": 5e-5, "temperature": 0.7, "num_envs": 64, "n_steps": 16, "num_minibatches": 2, "update_epochs": 2,
    **_BUDGET, "eval_every": 10})
A2C = Algorithm("a2c", "agents.ac.a2c:A2CTrainer", A2CConfig, {**_BUDGET, "eval_every": 40})
REINFORCE = Algorithm("reinforce", "agents.pg.reinforce:ReinforceTrainer", ReinforceConfig, {
    "num_envs": 128, "temperature": 0.7, **_BUDGET, "eval_every": 40})
GRPO = Algorithm("grpo", "agents.pg.grpo:GRPOTrainer", GRPOConfig, {
    # 16 prompts x 8 samples per update, a validation check every 40 updates; beta = 0.02, temperature
    # 0.7 (log-probabilities at the same temperature). Chosen on the validation split (python -m
    # benchmarks.rl_levers, benchmarks/README.md): from the shipped model's SFT (seed 0), 120 updates
    # raised the validation task score by +0.053 with the paper's GRPO and uniform prompts, +0.066 with
    # prompts stratified over the families (data.sampling; it also makes the training reward comparable
    # from update to update), +0.073 with advantages scaled by the family's reward std instead of the
    # group's, and +0.081 with that at lr 1e-4.
    "lr": 1e-4, "temperature": 0.7, "num_envs": 128, "group_size": 8, "kl_coef": 0.02, **_BUDGET,
    "eval_every": 40, "advantage_scale": "family"})
RLOO = Algorithm("rloo", "agents.pg.rloo:RLOOTrainer", RLOOConfig, {
    "num_envs": 128, "group_size": 8, "temperature": 0.7, **_BUDGET, "eval_every": 40})
ILQL = Algorithm("ilql", "agents.q.ilql:ILQLTrainer", ILQLConfig, {
    # ILQL collects its offline data from the SFT model (data="rollouts": 1024 samples, 8 per prompt) when
    # it is built, then learns from that fixed set only. A run of a few hundred updates needs the heads to
    # learn fast (heads_lr) and the target Q heads to follow within ~20 updates (polyak 0.05; the paper's
    # 0.005 is for runs 100x longer): each hop of the reward back through the answer goes through them.
    "lr": 5e-5, "heads_lr": 1e-3, "polyak": 0.05, "temperature": 0.7, "rollout_episodes": 1024,
    "rollout_group_size": 8, "monitor_every": 20, "monitor_envs": 64, **_BUDGET, "eval_every": 40})
SOFT_Q = Algorithm("sql", "agents.q.soft_q:SoftQTrainer", SoftQConfig, {
    "lr": 5e-5, "temperature": 0.7, "num_envs": 64, "n_steps": 16, **_BUDGET, "eval_every": 10})

#: Algorithm name -> :class:`Algorithm`: the one list of RL algorithms (the CLI's ``--algo`` choices,
#: the pipeline's ``rl`` section and the benchmark suite's methods are made from it).
ALGORITHMS: dict[str, Algorithm[Any]] = {a.name: a for a in (PPO, A2C, REINFORCE, GRPO, RLOO, ILQL, SOFT_Q)}
#: What the main job runs unless ``rl.algo`` says otherwise.
DEFAULT_ALGORITHM = GRPO.name


def algorithm(algo: str) -> Algorithm[Any]:
    """The :class:`Algorithm` named ``algo`` (an :class:`~instruct_env.error.UnknownNameError` with suggestions if none)."""
    if algo not in ALGORITHMS:
        raise unknown_name("RL algorithm", algo, ALGORITHMS)
    return ALGORITHMS[algo]


def config_class(algo: str) -> type[RLConfig]:
    """The config dataclass of ``algo`` (e.g. ``PPOConfig`` for ``"ppo"``)."""
    return algorithm(algo).config


def default_config(algo: str, **overrides: Any) -> RLConfig:
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
    spec = algorithm(algo)
    trainer_cls, cfg_cls = spec.trainer_class(), spec.config
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
    cfg_cls = config_class(state["algo"])
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    config = cfg_cls(**{**{k: v for k, v in state["config"].items() if k in fields}, **config_overrides})
    trainer = make_trainer(state["algo"], config, policy, tokenizer, env_kwargs, log_fn=log_fn, eval_fn=eval_fn)
    trainer.load_state(directory)
    return trainer
