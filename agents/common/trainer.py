"""What every RL trainer shares: the train loop, logging, checkpoints.

The common config fields are :class:`~agents.common.rl_config.RLConfig` (defined without torch in
:mod:`agents.common.rl_config` and re-exported here).

A trainer owns a vector environment it builds from ``env_kwargs``, the optimizer, the
KL controller and its random generators; the *policy* (an
:class:`~agents.common.model.ActorCritic`) is the caller's and is trained in place.
Subclasses implement :meth:`RLTrainer._update` (collect one batch of experience and
learn from it) and the environment they need.

Data parallelism (see :mod:`agents.common.distributed`): under torchrun every rank builds the
same trainer; rank 0's weights are broadcast at construction, each rank runs its own vector env
(seeded ``seed + rank``, on its shard ``dataset[rank::world_size]`` of the instructions)
and sampling generator, gradients are averaged across ranks before each optimizer step (by
DDP's backward hooks when the losses' forward passes call ``self.train_module``, the policy's
trained module wrapped per ``config.distributed.strategy``; or in
:meth:`RLTrainer._clip_and_step`), and the statistics that must be global are reduced. The
per-rank batch is ``num_envs`` slots, so the global batch is ``world_size * num_envs``.

With ``strategy="fsdp"`` the trained module is sharded in place at construction (the frozen
reference stays whole), the subclasses run their rollouts on the gathered module, and
checkpoints gather the full weights and optimizer state on rank 0, so they load with any
strategy and process count.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from agents.common import distributed as dist
from agents.common.device import select_device
from agents.common.kl import KLController
from agents.common.rl_config import RLConfig, check_positive_int, check_range
from instruct_env.error import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from agents.common.model import ActorCritic

__all__ = ["RLConfig", "RLTrainer", "check_positive_int", "check_range"]

LogFn = Callable[[dict[str, Any]], None]
EvalFn = Callable[[Any], Mapping[str, Any]]


class RLTrainer:
    """Base of every RL trainer: train loop, metrics, evaluation hook and checkpoints.

    The constructor freezes the KL reference (``policy.freeze_reference()``) if the caller
    has not done so -- normally the caller does it right after SFT. Dropout is switched off
    (``policy.eval()``) for the whole of RL so that rollout and update see the same
    distribution and the first importance ratio is exactly 1.

    Args:
        config: The algorithm's config dataclass.
        policy: The :class:`~agents.common.model.ActorCritic` to train (in place).
        tokenizer: The tokenizer the policy was built for (passed to the environment).
        env_kwargs: Keyword arguments of the environment (``tasks``, ``split``, ``reward``,
            ``max_prompt_tokens``...); ``max_new_tokens`` comes from the config.
        log_fn: Called with each update's metrics, on every rank (the metrics are global, so
            they agree); give it a :class:`~agents.common.logging.RunLogger` (which writes on
            rank 0 only) or check :func:`agents.common.distributed.is_main`.
        eval_fn: ``eval_fn(policy) -> dict``, called every ``config.eval_every`` updates;
            its result is merged into that update's metrics.
    """

    algo: ClassVar[str]
    config_class: ClassVar[type[RLConfig]]
    env_id: ClassVar[str]

    def __init__(self, config: RLConfig, policy: ActorCritic, tokenizer, env_kwargs: Mapping[str, Any] | None = None,
                 log_fn: LogFn | None = None, eval_fn: EvalFn | None = None) -> None:
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}; got {type(config).__name__}. "
                f"Build one with {self.config_class.__name__}(...)."
            )
        self.config = config
        self.seed = dist.rank_seed(config.seed)  # this rank's env/sampling seed (config.seed on rank 0)
        self.policy = policy
        self.tokenizer = tokenizer
        self.log_fn, self.eval_fn = log_fn, eval_fn
        if config.device is not None:
            policy.to(select_device(config.device))
        self.device = next(policy.parameters()).device
        if not getattr(policy, "uses_adapter", False) and getattr(policy, "_reference", None) is None:
            policy.freeze_reference()
        dist.broadcast_module(policy)  # every rank starts from rank 0's weights (and reference)
        policy.eval()
        self.env_kwargs = self._env_kwargs(env_kwargs, tokenizer)
        self.env = self._make_env(self.env_kwargs)
        vocab = int(policy.config.vocab_size)
        if self.env.setup.vocab_size > vocab:
            raise ConfigError(
                f"The tokenizer has {self.env.setup.vocab_size} tokens but the policy's vocabulary has {vocab}: "
                "pass the tokenizer the policy was built for."
            )
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self.np_rng = np.random.default_rng(self.seed)
        self.kl_ctl = KLController(config.kl_coef, config.kl_target, config.kl_horizon)
        # What the back-propagated forward passes call (DDP-wrapped or FSDP-sharded under torchrun; see
        # _trained_module). Sharding replaces the parameters, so the optimizer is built after it.
        trained = self._trained_module()
        # Under fsdp, an LM that is also called alone (the PEFT reference of a whole-policy trainer) is its own unit.
        units = [policy.lm] if trained is policy else []
        self.train_module = dist.wrap_module(trained, config.distributed.strategy, units=units)
        params = [p for p in self.trainable_parameters()]
        self.optimizer = torch.optim.Adam(params, lr=config.lr, eps=config.adam_eps)
        self.num_updates = 0
        self.elapsed = 0.0
        self.history: list[dict[str, Any]] = []
        self._start()

    # ----------------------------------------------------------------- subclass hooks
    def _make_env(self, env_kwargs: dict[str, Any]):
        raise NotImplementedError

    def _start(self) -> None:
        """Reset the environment (and whatever acts in it) at construction."""
        raise NotImplementedError

    def _update(self) -> dict[str, Any]:
        """Collect one batch, learn from it, return its metrics."""
        raise NotImplementedError

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters the optimizer updates (the LM's trainable ones; subclasses add the value head)."""
        return [p for p in self.policy.lm.parameters() if p.requires_grad]

    def _trained_module(self) -> torch.nn.Module:
        """The module whose forward the losses back-propagate through (the LM; subclasses: the whole policy)."""
        return self.policy.lm

    def _extra_state(self) -> dict[str, Any]:
        """Picklable state beyond the env (e.g. the current observation), saved with the env."""
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    # ----------------------------------------------------------------- public API
    def _env_kwargs(self, env_kwargs: Mapping[str, Any] | None, tokenizer) -> dict[str, Any]:
        kwargs = dict(env_kwargs or {})
        T = kwargs.get("max_new_tokens", self.config.max_new_tokens)
        if T != self.config.max_new_tokens:
            raise ConfigError(
                f"env_kwargs['max_new_tokens']={T} conflicts with {type(self.config).__name__}.max_new_tokens="
                f"{self.config.max_new_tokens}: set it in the config only."
            )
        if kwargs.get("tokenizer", tokenizer) is not tokenizer:
            raise ConfigError(
                "env_kwargs['tokenizer'] differs from the tokenizer argument: pass it once, as tokenizer=."
            )
        kwargs["max_new_tokens"] = self.config.max_new_tokens
        kwargs["tokenizer"] = tokenizer
        if dist.world_size() > 1:  # this rank's own shard of the instructions
            if kwargs.get("dataset") is None:
                from instruct_env.tasks import BuiltinDataset

                tasks = kwargs.pop("tasks", None)
                kwargs["dataset"] = BuiltinDataset(tasks=[tasks] if isinstance(tasks, str) else tasks,
                                                   split=kwargs.get("split", "train"),
                                                   **dict(kwargs.pop("dataset_kwargs", None) or {}))
            elif isinstance(kwargs["dataset"], (str, bytes)) or hasattr(kwargs["dataset"], "__fspath__"):
                from instruct_env.tasks import load_file

                kwargs["dataset"] = load_file(kwargs["dataset"])
            kwargs["dataset"] = dist.shard(kwargs["dataset"])
        return kwargs

    def train(self) -> list[dict[str, Any]]:
        """Run updates until ``total_updates`` or ``time_budget_s``; return the metrics history."""
        budget = self.config.time_budget_s
        while self.num_updates < self.config.total_updates:
            # Every rank must stop at the same update (or the others would wait in a collective).
            if budget is not None and dist.any_rank(self.elapsed >= budget):
                break
            self.update_step()
        return self.history

    def update_step(self) -> dict[str, Any]:
        """One update; returns (and logs) its metrics."""
        start = time.perf_counter()
        metrics = self._update()
        self.num_updates += 1
        seconds = time.perf_counter() - start
        metrics = {
            "update": self.num_updates,
            **metrics,
            "kl_coef": metrics.get("kl_coef", self.kl_ctl.value),
            "kl_estimator": self.config.kl_estimator,
            "tokens_per_s": metrics.get("tokens", 0) / max(seconds, 1e-9),
            "update_time": seconds,
        }
        if self.eval_fn is not None and self.config.eval_every and self.num_updates % self.config.eval_every == 0:
            metrics.update(dict(self.eval_fn(self.policy)))
            self.policy.eval()  # in case eval_fn switched modes
        self.elapsed += time.perf_counter() - start
        metrics["time"] = self.elapsed
        self.history.append(metrics)
        if self.log_fn is not None:
            self.log_fn(metrics)
        return metrics

    def _clip_and_step(self) -> float:
        """Average gradients over ranks, clip their norm (if configured), step; return the pre-clip norm."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        dist.sync_gradients(self.train_module, params)  # no-op in a single process or when DDP/FSDP averaged them
        norm = dist.clip_grad_norm(params, self.config.max_grad_norm)
        self.optimizer.step()
        return norm

    # ----------------------------------------------------------------- checkpoints
    def save(self, directory: str | Path) -> Path:
        """Write a checkpoint to ``directory``: ``trainer.pt`` and ``env.pkl``.

        ``trainer.pt`` holds the policy (LM, value head and frozen reference), the optimizer,
        the KL controller, the update counter, elapsed time and every RNG state;
        ``env.pkl`` pickles the vector environment with the trainer's in-flight state
        (current observations, unfinished episodes). Load only checkpoints you trust.

        In a multi-process run rank 0 writes both files (the weights and optimizer are the same
        on every rank) and rank ``r > 0`` writes its own env, in-flight state and RNG states to
        ``env.rank<r>.pkl``; every rank must call ``save``. A single process resumes from
        rank 0's files and ignores the others; see :meth:`load_state` for the reverse. With
        ``strategy="fsdp"`` the shards are gathered first (every rank takes part), so the files
        hold whole tensors as in any other run.
        """
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        policy_state = dist.full_state_dict(self.policy)  # collectives when sharded: every rank calls them
        optimizer_state = dist.full_optimizer_state_dict(self.optimizer)
        if not dist.is_main():
            with open(path / f"env.rank{dist.rank()}.pkl", "wb") as f:
                pickle.dump({"env": self.env, "extra": self._extra_state(), "history": self.history,
                             "rng": self._rng_state()}, f)
            dist.barrier()
            return path
        state = {
            "algo": self.algo,
            "config": dataclasses.asdict(self.config),
            "policy": policy_state,
            "optimizer": optimizer_state,
            "kl_controller": self.kl_ctl.state_dict(),
            "num_updates": self.num_updates,
            "elapsed": self.elapsed,
            "rng": self._rng_state(),
            "world_size": dist.world_size(),
        }
        torch.save(state, path / "trainer.pt")
        with open(path / "env.pkl", "wb") as f:
            pickle.dump({"env": self.env, "extra": self._extra_state(), "history": self.history}, f)
        dist.barrier()
        return path

    def _rng_state(self) -> dict[str, Any]:
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "generator": self.generator.get_state(),
            "numpy": self.np_rng.bit_generator.state,
        }

    def _set_rng_state(self, rng: dict[str, Any]) -> None:
        torch.set_rng_state(rng["torch"].cpu())
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        self.generator.set_state(rng["generator"].cpu())
        self.np_rng.bit_generator.state = rng["numpy"]

    def load_state(self, directory: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save` into this trainer (same algorithm and model shape).

        Every rank loads the weights, optimizer and KL controller from ``trainer.pt``. Rank 0
        restores ``env.pkl``; rank ``r > 0`` restores ``env.rank<r>.pkl`` when the checkpoint
        has it, and otherwise (a checkpoint from a run with fewer processes) keeps the fresh
        environment and generators it was built with (seeded ``seed + r``). A sharded (FSDP)
        trainer keeps its shard of the saved whole tensors.
        """
        path = Path(directory)
        if not (path / "trainer.pt").exists():
            raise ConfigError(f"No checkpoint in {str(path)!r}: expected trainer.pt and env.pkl written by save().")
        state = torch.load(path / "trainer.pt", map_location=self.device, weights_only=False)
        if state["algo"] != self.algo:
            raise ConfigError(
                f"The checkpoint in {str(path)!r} was written by a {state['algo']!r} trainer; this is {self.algo!r}."
            )
        dist.load_full_state_dict(self.policy, state["policy"])
        dist.load_full_optimizer_state_dict(self.optimizer, state["optimizer"])
        self.kl_ctl.load_state_dict(state["kl_controller"])
        self.num_updates, self.elapsed = int(state["num_updates"]), float(state["elapsed"])
        if dist.is_main():
            self._set_rng_state(state["rng"])
            env_file = path / "env.pkl"
        else:
            env_file = path / f"env.rank{dist.rank()}.pkl"
        if env_file.exists():
            with open(env_file, "rb") as f:
                saved = pickle.load(f)
            if "rng" in saved:
                self._set_rng_state(saved["rng"])
            self.env = saved["env"]
            self.history = list(saved["history"])
            self._load_extra_state(saved["extra"])
        else:  # a rank the saving run did not have: fresh env, but the shared history and counters
            with open(path / "env.pkl", "rb") as f:
                self.history = list(pickle.load(f)["history"])
