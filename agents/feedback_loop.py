"""RL from (simulated or human) feedback: alternate feedback rounds and RL rounds.

A :class:`FeedbackLoop` is built from one :class:`FeedbackLoopConfig` (defined, without torch, in
:mod:`agents.feedback_config`) and the objects it works on (the policy, its tokenizer, the data, a
log function); :meth:`FeedbackLoop.run` runs ``rounds`` rounds, each a call of one method per step
(:func:`run_feedback_loop` does all of it in one call):

1. **generate** (:meth:`~FeedbackLoop.generate`) -- sample ``samples_per_prompt`` completions for
   ``pool_prompts`` training prompts with the current policy (temperature ``pool_temperature``);
2. **select** (:meth:`~FeedbackLoop.select`) -- an :class:`~instruct_env.feedback.active.ActiveSelector`
   picks ``queries_per_round`` items by ensemble disagreement (``selection="qbc"``) or at random,
   with a random share held out;
3. **collect** (:meth:`~FeedbackLoop.collect`) -- the items go to the feedback store as queries (a
   :class:`~instruct_env.feedback.oracle.HumanOracle`). With ``feedback="simulated"``,
   ``evaluators`` :class:`~instruct_env.feedback.oracle.SimulatedOracle` evaluators answer them
   through the store, like people would; with ``feedback="human"`` the loop waits up to
   ``human_timeout_s`` for people answering through the feedback server
   (``instruct-env serve <store_url>``) and goes on with whatever arrived;
4. **refit the reward model** (:meth:`~FeedbackLoop.refit`) -- an
   :class:`~instruct_env.feedback.online.OnlineRewardLearner` reads the new answers from the
   store's event log and refits (warm-started); the new model is promoted only if its held-out
   accuracy does not drop;
5. **train** (:meth:`~FeedbackLoop.train`) -- ``rl_updates`` updates of ``algo`` on
   ``InstructEnv/Completion-v0`` whose reward is a :class:`~instruct_env.feedback.rewards.ProxyReward`
   reading the promoted reward model (``rl_reward="proxy"``, the default), or, with ``rl_reward="direct"``, a
   :class:`~instruct_env.feedback.rewards.HumanReward`: every completion RL samples is rated by the
   evaluators and the step waits for their answer (simulated evaluators answer at once; people answer
   through the store, each RL batch waiting up to ``human_timeout_s``). The reward model is still
   refitted and measured every round, so the two modes can be compared on the same records.

After each round the policy is validated (:meth:`~FeedbackLoop.validate`): evaluated greedily on
the validation samples (:func:`agents.common.evaluation.evaluate`, each sample's task verifier),
which no reward model and no evaluator ever sees. The reward model's features come from a frozen
copy of the policy taken before the first round.

Everything the loop writes goes to ``workdir``: ``feedback.db`` (unless ``store_url`` points
elsewhere) and ``reward_model/`` (the learner's watermark, events read, promoted versions and refit
reports), so an interrupted human-feedback run loses nothing already answered.

The store can also be a feedback server's HTTP API: ``store_url="http://host:8000"`` and an admin
token (``token=``, else the ``INSTRUCT_ENV_FEEDBACK_TOKEN`` environment variable). Queries are then
posted with ``POST /api/admin/queries`` and answers read back from the event log
(``GET /api/export?format=events&since=<watermark>``); the reward model reads the queries it
learns from with ``GET /api/admin/queries``. Simulated evaluators answer through a store in this
process, so ``feedback="simulated"`` needs a store URL, not a server.

Data parallel (torchrun, see :mod:`agents.common.distributed`): every rank runs the loop on its
own share of the work, and the feedback store is shared. The design:

* rank 0's policy weights are broadcast first, so every rank's frozen reward-model featurizer
  (a copy of the starting policy) is the same;
* every rank samples its pool from its own shard of ``train_data`` with its own seed
  (``seed + rank``), selects its ``queries_per_round`` items and posts them itself, so the store
  gets ``world_size * queries_per_round`` distinct queries per round. Each query's metadata
  names its origin -- ``run`` (an id rank 0 draws once per run), ``round``, ``rank`` and
  ``item`` (its position in the rank's batch) -- and the store gives every query its own id, so
  nothing collides when several ranks (or several runs) post to one store at once;
* every rank reads the answers to its own queries back from the store's event log from its
  own watermark (with a server: through the HTTP API). With ``feedback="simulated"`` the
  simulated evaluators run on rank 0 only and answer every rank's queries once all ranks have
  posted theirs (two barriers), so each evaluator is one identity in the store;
* the reward model is refitted on **rank 0 only**, after every rank has finished collecting
  (an all-reduce of the answer counts is the meeting point, so the refit sees every rank's
  answers), and rank 0 broadcasts the promoted model (its heads, normalisation and version) to
  the other ranks, which load it into a copy sharing their own (identical) frozen featurizer.
  All ranks therefore score with the same reward-model version, decide identically whether to
  run RL, and take the same number of RL updates (whose collectives must match);
* only rank 0 keeps the learner's state (``reward_model/``) in ``workdir`` (rank 0 picks it
  when none is given) and the default ``feedback.db`` is created by rank 0 before the others
  open it. ``log_fn`` is called on every rank, like the trainers' (give it a rank-aware logger
  such as :class:`~agents.common.logging.RunLogger`). The returned records are the same on every
  rank except ``rm_verifier_agreement`` and ``pool_task``, measured on the rank's own pool.

A store every rank can reach is needed: on one node the default ``workdir/feedback.db`` is; across
nodes use PostgreSQL or a feedback server. ``background_refit`` is refused with several ranks
(a refit in the middle of RL would give the ranks different reward models), and a round's
``human_timeout_s`` must stay below the process group's collective timeout (30 min by default).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from agents.common import distributed as dist
from agents.feedback_config import FEEDBACK_MODES, FeedbackLoopConfig
from agents.rl import GRPO
from instruct_env.error import ConfigError
from instruct_env.tasks.sample import Sample

if TYPE_CHECKING:
    from instruct_env.feedback import FeedbackStore
    from instruct_env.feedback.online import OnlineRewardLearner
    from instruct_env.feedback.oracle import FeedbackItem, HumanOracle, SimulatedOracle
    from instruct_env.feedback.reward_model import FeatureExtractor

__all__ = ["FeedbackLoopConfig", "FeedbackLoop", "RoundRecord", "run_feedback_loop", "generate_pool",
           "verifier_agreement", "FEEDBACK_MODES", "TOKEN_ENV"]

#: Environment variable holding the admin token of a feedback server given as ``store_url="http://..."``.
TOKEN_ENV = "INSTRUCT_ENV_FEEDBACK_TOKEN"
#: The loop's default RL config where it differs from the algorithm's (GRPO: 8 prompts x 4, seconds on 2 cores).
_RL_DEFAULTS: dict[str, dict[str, Any]] = {GRPO.name: {"num_envs": 32, "group_size": 4, "lr": 2e-5, "kl_coef": 0.02}}


@dataclass
class RoundRecord:
    """What one round did and measured (round 0: the starting policy, before any feedback).

    Attributes:
        round: Round number.
        answers: Answers (not skips) collected this round (summed over data-parallel ranks).
        labels_used: Training labels the current reward model was fitted on (all rounds so far).
        holdout_labels: Held-out labels so far.
        rm_version: The promoted reward model's version after this round's refit.
        promoted: Whether this round's refit was promoted.
        rm_heldout_accuracy: The promoted model's accuracy on the held-out labels.
        rm_verifier_agreement: On this round's pool of fresh outputs (this rank's), the share of same-prompt
            pairs with different task scores that the reward model orders like the verifier
            (``nan`` without verifiers).
        pool_task: Mean task score of the pool (the sampling policy's quality).
        rl_updates: RL updates run this round.
        rl_reward: Mean reward over those updates (the proxy, or the evaluators' answers in ``"direct"`` mode).
        rl_judgements: Evaluators' answers used as rewards this round (``"direct"`` mode; 0 otherwise).
        val_task: Validation task score (greedy) after this round.
        val_exact_match: Validation exact match after this round.
        val_task_sampled: Validation task score of one completion per sample drawn at
            ``pool_temperature`` (the policy as RL samples it).
        seconds: Duration of the round.
        refit: The learner's refit report (as a dict), if it refitted.
    """

    round: int
    answers: int = 0
    labels_used: int = 0
    holdout_labels: int = 0
    rm_version: int = 0
    promoted: bool = False
    rm_heldout_accuracy: float = math.nan
    rm_verifier_agreement: float = math.nan
    pool_task: float = math.nan
    rl_updates: int = 0
    rl_reward: float = math.nan
    rl_judgements: int = 0
    val_task: float = math.nan
    val_exact_match: float = math.nan
    val_task_sampled: float = math.nan
    seconds: float = 0.0
    refit: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict (what ``log_fn`` receives, with ``"phase": "round"``)."""
        return dataclasses.asdict(self)


class FeedbackLoop:
    """Alternate feedback rounds and RL rounds (see the module docstring); one method per step.

    The loop opens the feedback store and the reward-model learner when it is built; use it as a
    context manager (or call :meth:`close`) so they are closed however the run ends::

        with FeedbackLoop(FeedbackLoopConfig(rounds=2), policy, tokenizer) as loop:
            records = loop.run()

    Args:
        config: Every setting of the loop.
        policy: An :class:`~agents.common.model.ActorCritic` (trained in place) or a causal LM
            (wrapped in one; its KL reference is the LM as given).
        tokenizer: The policy's tokenizer.
        rl_config: The algorithm's config (its ``max_new_tokens`` is the completion budget
            everywhere; the loop runs ``config.rl_updates`` updates per round itself, so its
            ``total_updates`` and ``time_budget_s`` are not used); default: a small one for 2 CPU cores.
        tasks: Built-in task families for the default train / validation data (``None``: all).
        train_data: Prompts RL and the pool draw from (default: 200 per family of the train split);
            any iterable of samples (a list, a :class:`~instruct_env.tasks.BuiltinDataset`), read
            once into a list.
        val_data: Held-out samples for the task score (default: 16 per family of the validation
            split); any iterable of samples, read once into a list.
        workdir: Folder for the store and the learner's state (default: a new temporary folder).
        log_fn: Called with every RL update's metrics (``"phase": "rl"``) and every round record
            (``"phase": "round"``), on every rank.
        token: Admin token of the feedback server when ``config.store_url`` is ``http(s)://...``
            (default: the ``INSTRUCT_ENV_FEEDBACK_TOKEN`` environment variable).
    """

    def __init__(self, config: FeedbackLoopConfig, policy: Any, tokenizer: Any, *, rl_config: Any = None,
                 tasks: Sequence[str] | None = None, train_data: Iterable[Sample] | None = None,
                 val_data: Iterable[Sample] | None = None, workdir: str | Path | None = None,
                 log_fn: Callable[[dict[str, Any]], None] | None = None, token: str | None = None) -> None:
        from agents.rl import default_config

        cfg = self.config = config
        self.token = _admin_token(cfg, token)
        if cfg.background_refit and dist.world_size() > 1:
            raise ConfigError(
                f"background_refit=True refits during RL, so the {dist.world_size()} ranks would score with different "
                "reward models; set background_refit=False for a data-parallel run (rank 0 refits between rounds)."
            )
        # The loop runs its updates itself, so the default config's update limit does not apply.
        self.rl_config = rl_config if rl_config is not None else \
            default_config(cfg.algo, seed=cfg.seed, **_RL_DEFAULTS.get(cfg.algo, {}))
        self.max_new_tokens: int = self.rl_config.max_new_tokens
        self.train_data = list(train_data) if train_data is not None else _builtin(tasks, "train", 200, cfg.seed)
        self.val_data = list(val_data) if val_data is not None else _builtin(tasks, "validation", 16, cfg.seed)
        if not self.train_data or not self.val_data:
            raise ConfigError("The feedback loop needs non-empty train_data and val_data; got "
                              f"{len(self.train_data)} train and {len(self.val_data)} validation samples.")
        self.policy, self.tokenizer = _actor_critic(policy), tokenizer
        self.log = log_fn or (lambda record: None)
        self.workdir, self.run_id = _shared_workdir(workdir)
        self._resources = contextlib.ExitStack()  # what close() releases, in the reverse order of opening
        self.learner: OnlineRewardLearner | None = None  # rank 0's; the others score with a replica of its model
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        """Open the store, seed the random sources, build the reward model, the evaluators and the trainer."""
        from agents.rl import make_trainer

        cfg = self.config
        self.store = self._open_store()
        self.oracle = self._human_oracle()
        self.rng = np.random.default_rng(dist.rank_seed(cfg.seed))
        self.pool_source = dist.shard(self.train_data)  # every rank samples its pool from its own prompts
        device = next(self.policy.parameters()).device
        self.generator = torch.Generator(device=device).manual_seed(dist.rank_seed(cfg.seed))
        self.val_generator = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        self.features, self.source = self._reward_model()
        self.simulated = self._simulated_evaluators(lambda i: cfg.seed * 1000 + i, "simulated") \
            if cfg.feedback == "simulated" and dist.is_main() else []
        # The samples the simulated evaluators judge, by id (train_data does not change between rounds).
        self.samples_by_id = {s.id: s for s in self.train_data} if self.simulated else {}
        self.reward = self._rl_reward()
        env_kwargs = {"dataset": self.train_data, "reward": self.reward, "max_prompt_tokens": cfg.max_prompt_tokens}
        self.trainer = make_trainer(cfg.algo, self.rl_config, self.policy, self.tokenizer, env_kwargs,
                                    log_fn=lambda metrics: self.log({"phase": "rl", **metrics}))

    def _open_store(self) -> FeedbackStore | None:
        """The store of this process (``None`` with a feedback server); rank 0 creates it first."""
        from instruct_env.feedback import FeedbackStore

        cfg = self.config
        if cfg.remote:
            return None
        if not dist.is_main():
            dist.barrier()  # rank 0 creates the store (its schema) first
        store = FeedbackStore(cfg.store_url if cfg.store_url is not None else self.workdir / "feedback.db",
                              min_evaluators=cfg.evaluators, gold_rate=0.0, seed=cfg.seed)
        self._resources.callback(store.close)
        if dist.is_main():
            dist.barrier()
        return store

    def _human_oracle(self) -> HumanOracle:
        """An oracle posting queries to the store (or the server) and reading the answers back."""
        from instruct_env.feedback.oracle import HumanOracle

        if self.store is None:
            oracle = HumanOracle(url=str(self.config.store_url), token=self.token, min_answers=self.config.evaluators)
        else:
            oracle = HumanOracle(self.store, min_answers=self.config.evaluators)
        self._resources.callback(oracle.close)
        return oracle

    def _reward_model(self) -> tuple[FeatureExtractor, Any]:
        """The frozen featurizer and what reads the promoted reward model (rank 0: the learner)."""
        from instruct_env.feedback.online import OnlineRewardLearner
        from instruct_env.feedback.oracle import RemoteStore
        from instruct_env.feedback.reward_model import FeatureExtractor, RewardModel

        cfg = self.config
        features = FeatureExtractor(self.policy, self.tokenizer, pooling=cfg.pooling,
                                    logprob_features=cfg.logprob_features,
                                    max_tokens=cfg.max_prompt_tokens + self.max_new_tokens + 1)  # frozen copy
        reward_model = RewardModel(features, dataclasses.replace(cfg.reward_model, seed=cfg.seed))
        if not dist.is_main():
            return features, _Replica(reward_model)
        store: FeedbackStore | RemoteStore
        if self.store is None:  # the learner reads the queries and answers through the server's admin API
            store = RemoteStore(str(cfg.store_url), self.token)
            self._resources.callback(store.close)
        else:
            store = self.store
        # Refits happen between rounds (forced) or, with background_refit, after enough new answers;
        # never because time passed.
        learner = OnlineRewardLearner(store, reward_model, self.workdir / "reward_model",
                                      refit_every=max(1, cfg.queries_per_round // 4), refit_interval_s=math.inf,
                                      min_holdout=cfg.min_holdout, tolerance=cfg.promotion_tolerance, seed=cfg.seed)
        self._resources.callback(learner.close)
        self.learner = learner
        return features, learner

    def _simulated_evaluators(self, seed_of: Callable[[int], int], prefix: str) -> list[SimulatedOracle]:
        from instruct_env.feedback.oracle import SimulatedOracle

        cfg = self.config
        return [SimulatedOracle(cfg.metric, noise=cfg.noise, bias=cfg.bias, skip_rate=cfg.skip_rate,
                                flip_rate=cfg.flip_rate, seed=seed_of(i), name=f"{prefix}-{i}")
                for i in range(cfg.evaluators)]

    def _rl_reward(self) -> Any:
        """RL's reward: the proxy of the promoted reward model, or the evaluators' answers (``"direct"``)."""
        from instruct_env.feedback.oracle import OraclePool
        from instruct_env.feedback.rewards import HumanReward, ProxyReward

        cfg = self.config
        if cfg.rl_reward == "proxy":
            return ProxyReward(self.source, uncertainty_penalty=cfg.uncertainty_penalty)
        if cfg.feedback == "simulated":
            # Simulated evaluators rate RL's completions at once (on every rank: they are functions of the sample),
            # with their own seeds so the store's evaluators keep their random streams.
            pool = OraclePool(self._simulated_evaluators(lambda i: dist.rank_seed(cfg.seed * 1000 + 500 + i), "direct"))
            self._resources.callback(pool.close)
            return HumanReward(pool, cfg.direct_kind)
        # People rate RL's completions through the store (an oracle of its own, with its own log watermark).
        return HumanReward(self._human_oracle(), cfg.direct_kind, timeout=cfg.human_timeout_s or None)

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> list[RoundRecord]:
        """Measure the starting policy, then run ``config.rounds`` rounds; one record per round (round 0: the start)."""
        records = [self._finish(RoundRecord(round=0), time.perf_counter())]
        for r in range(1, self.config.rounds + 1):
            records.append(self.run_round(r))
        return records

    def run_round(self, r: int) -> RoundRecord:
        """Round ``r``: generate, select, collect, refit, train (once RL has a reward), validate."""
        start = time.perf_counter()
        record = RoundRecord(round=r)
        pool = self.generate()
        items = self.select(pool, r)
        record.answers = self.collect(items)
        self.refit(record)
        record.rm_verifier_agreement, record.pool_task = verifier_agreement(self.source.current, pool)
        # RL needs a reward: a promoted reward model, or the evaluators themselves.
        if (record.rm_version >= 1 or self.config.rl_reward == "direct") and self.config.rl_updates:
            self.train(record)
        return self._finish(record, start)

    def _finish(self, record: RoundRecord, start: float) -> RoundRecord:
        """Validate, time and log ``record``."""
        self.validate(record)
        record.seconds = time.perf_counter() - start
        self.log({"phase": "round", **record.to_dict()})
        return record

    def generate(self) -> list[FeedbackItem]:
        """The candidate pool: ``samples_per_prompt`` sampled completions of ``pool_prompts`` of this rank's prompts."""
        cfg, source = self.config, self.pool_source
        prompts = [source[int(i)] for i in self.rng.choice(len(source), min(cfg.pool_prompts, len(source)),
                                                           replace=False)]
        return generate_pool(self.policy, self.tokenizer, prompts, cfg.samples_per_prompt,
                             max_prompt_tokens=cfg.max_prompt_tokens, max_new_tokens=self.max_new_tokens,
                             temperature=cfg.pool_temperature, generator=self.generator)

    def select(self, pool: Sequence[FeedbackItem], r: int) -> list[FeedbackItem]:
        """Active learning: the ``queries_per_round`` items of ``pool`` to ask about, tagged with their origin."""
        from instruct_env.feedback.active import ActiveSelector

        cfg = self.config
        selector = ActiveSelector(self.source if cfg.selection == "qbc" else None, strategy=cfg.selection,
                                  random_share=cfg.random_share, per_instruction=cfg.per_instruction,
                                  seed=int(self.rng.integers(2**31)))
        items = selector.select(pool, cfg.queries_per_round, kind=cfg.kind)
        origin = {"run": self.run_id, "round": r, "rank": dist.rank()}
        return [dataclasses.replace(item, metadata={**item.metadata, **origin, "item": i})
                for i, item in enumerate(items)]

    def collect(self, items: Sequence[FeedbackItem]) -> int:
        """Ask the evaluators about ``items``; the number of answers every rank collected (summed)."""
        from instruct_env.feedback.oracle import FeedbackTimeout

        ticket = self.oracle.ask(items, self.config.kind)
        if self.config.feedback == "simulated":
            assert self.store is not None  # a simulated run has a store of its own (checked by the config)
            dist.barrier()  # every rank's queries are stored before rank 0's evaluators answer them
            for evaluator in self.simulated:
                evaluator.answer_store(self.store, self.samples_by_id)
            dist.barrier()
            result = self.oracle.poll(ticket)
        else:
            try:
                result = self.oracle.wait(ticket, timeout=self.config.human_timeout_s)
            except FeedbackTimeout as exc:  # go on with what people answered so far
                result = exc.partial
        # Every rank has finished collecting once this sum is known, so rank 0's refit sees all their answers.
        return int(dist.all_reduce_sum(float(result.n_answers().sum())))

    def refit(self, record: RoundRecord) -> None:
        """Refit the reward model on the new answers (rank 0), give every rank the promoted one, note it in ``record``."""
        update = dist.broadcast_object(_refit(self.learner) if self.learner is not None else {})
        if self.learner is None:
            self.source.load(update["state"], self.features)
        record.refit, record.promoted, record.rm_version = update["refit"], update["promoted"], update["version"]
        record.labels_used, record.holdout_labels = update["labels_used"], update["holdout_labels"]
        record.rm_heldout_accuracy = update["rm_heldout_accuracy"]

    def train(self, record: RoundRecord) -> None:
        """``rl_updates`` RL updates on the loop's reward; their count, mean reward and answers used go in ``record``."""
        judged = getattr(self.reward, "judgements", 0)
        with self._refitting_in_background():
            rewards = [self.trainer.update_step().get("reward_mean", math.nan) for _ in range(self.config.rl_updates)]
        record.rl_updates, record.rl_reward = len(rewards), float(np.nanmean(rewards))
        record.rl_judgements = int(dist.all_reduce_sum(float(getattr(self.reward, "judgements", 0) - judged)))

    @contextlib.contextmanager
    def _refitting_in_background(self) -> Iterator[None]:
        """With ``background_refit``, the learner refits in a thread while the block runs."""
        if not self.config.background_refit or self.learner is None:
            yield
            return
        self.learner.start(poll_interval=5.0)
        try:
            yield
        finally:
            self.learner.stop()

    def validate(self, record: RoundRecord) -> None:
        """Score the policy on the validation samples, greedy and sampled at ``pool_temperature``."""
        from agents.common.evaluation import evaluate

        cfg = self.config
        result = evaluate(self.policy.lm, self.tokenizer, self.val_data, max_prompt_tokens=cfg.max_prompt_tokens,
                          max_new_tokens=self.max_new_tokens, batch_size=cfg.eval_batch_size, split="validation",
                          keep_records=False)
        record.val_task, record.val_exact_match = result.overall["task"], result.overall["exact_match"]
        sampled = generate_pool(self.policy, self.tokenizer, self.val_data, 1, max_prompt_tokens=cfg.max_prompt_tokens,
                                max_new_tokens=self.max_new_tokens, temperature=cfg.pool_temperature,
                                generator=self.val_generator)
        record.val_task_sampled = _macro_task(sampled)
        self.policy.eval()

    def close(self) -> None:
        """Stop the learner and close the store, the oracles and the server connections (idempotent)."""
        self._resources.close()

    def __enter__(self) -> FeedbackLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_feedback_loop(
    policy: Any,
    tokenizer: Any,
    rounds: int | None = None,
    feedback: str | None = None,
    store_url: str | None = None,
    algo: str | None = None,
    *,
    config: FeedbackLoopConfig | None = None,
    rl_config: Any = None,
    tasks: Sequence[str] | None = None,
    train_data: Iterable[Sample] | None = None,
    val_data: Iterable[Sample] | None = None,
    workdir: str | Path | None = None,
    log_fn: Callable[[dict[str, Any]], None] | None = None,
    token: str | None = None,
) -> list[RoundRecord]:
    """Run a :class:`FeedbackLoop` from start to end; one record per round (round 0: the start).

    Args:
        policy: The policy (see :class:`FeedbackLoop`).
        tokenizer: The policy's tokenizer.
        rounds: Feedback + RL rounds (``None``: ``config.rounds``, 3 by default).
        feedback: ``"simulated"`` or ``"human"`` (``None``: ``config.feedback``, ``"simulated"`` by default).
        store_url: The feedback store or server (``None``: ``config.store_url``).
        algo: RL algorithm (``None``: ``config.algo``, ``"grpo"`` by default).
        config: A :class:`FeedbackLoopConfig`; the four arguments above replace its fields when given.
        rl_config: See :class:`FeedbackLoop`.
        tasks: See :class:`FeedbackLoop`.
        train_data: See :class:`FeedbackLoop`.
        val_data: See :class:`FeedbackLoop`.
        workdir: See :class:`FeedbackLoop`.
        log_fn: See :class:`FeedbackLoop`.
        token: See :class:`FeedbackLoop`.

    Returns:
        ``rounds + 1`` :class:`RoundRecord`, the first for the starting policy.
    """
    given: dict[str, Any] = {"rounds": rounds, "feedback": feedback, "store_url": store_url, "algo": algo}
    config = dataclasses.replace(config if config is not None else FeedbackLoopConfig(),
                                 **{name: value for name, value in given.items() if value is not None})
    with FeedbackLoop(config, policy, tokenizer, rl_config=rl_config, tasks=tasks, train_data=train_data,
                      val_data=val_data, workdir=workdir, log_fn=log_fn, token=token) as loop:
        return loop.run()


def _admin_token(config: FeedbackLoopConfig, token: str | None) -> str | None:
    """The feedback server's admin token (given, else from the environment); required with a server."""
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    if config.remote and not token:
        raise ConfigError(
            f"store_url={str(config.store_url)!r} is a feedback server, whose API needs an admin token; got none. "
            f"Pass token= or set {TOKEN_ENV} (create an admin with "
            "`instruct-env add-evaluator --store STORE --admin NAME`)."
        )
    return token


def _actor_critic(policy: Any) -> Any:
    """``policy`` with rank 0's weights, as an :class:`~agents.common.model.ActorCritic`.

    Every rank starts from (and takes its frozen reward-model features from) rank 0's weights.
    """
    from agents.common.model import ActorCritic

    dist.broadcast_module(policy)
    if not hasattr(policy, "value_head"):
        policy = ActorCritic(policy)
        policy.freeze_reference()
    return policy


def _shared_workdir(workdir: str | Path | None) -> tuple[Path, str]:
    """Rank 0's folder (a new temporary one when ``None``) and run id (in every query's metadata), on every rank."""
    chosen: Path | None = None
    if dist.is_main():  # the only rank that writes in it
        chosen = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="instruct-env-feedback-"))
        chosen.mkdir(parents=True, exist_ok=True)
    folder, run_id = dist.broadcast_object((chosen, uuid.uuid4().hex[:12]))
    assert folder is not None  # rank 0 chose it
    return folder, run_id


def _builtin(tasks: Sequence[str] | None, split: str, size: int, seed: int) -> list[Sample]:
    from instruct_env.tasks import BuiltinDataset

    return list(BuiltinDataset(list(tasks) if tasks is not None else None, split=split, size_per_task=size, seed=seed))


def generate_pool(policy: Any, tokenizer: Any, samples: Sequence[Sample], per_prompt: int, *, max_prompt_tokens: int,
                  max_new_tokens: int, temperature: float, generator: torch.Generator, formatter: Any = None,
                  batch_size: int = 64) -> list[FeedbackItem]:
    """Sample ``per_prompt`` completions per sample with the policy; one single-completion item each.

    The rows (each sample ``per_prompt`` times in a row) are generated in their order, ``batch_size``
    at a time, so the items and the draws from ``generator`` follow the samples' order.
    """
    from agents.common.evaluation import generate_batched
    from agents.common.generation import SamplingConfig
    from instruct_env.feedback.oracle import FeedbackItem
    from instruct_env.tasks import PromptFormatter

    formatter = formatter if formatter is not None else PromptFormatter()
    rows = [s for s in samples for _ in range(per_prompt)]
    prompts = [formatter.encode(s, tokenizer, max_prompt_tokens)[0] for s in rows]
    completions = generate_batched(dist.unwrap(policy, lm=True), tokenizer, prompts, max_new_tokens=max_new_tokens,
                                   batch_size=batch_size, sampling=SamplingConfig(temperature=temperature),
                                   generator=generator, sort_by_length=False, mixed_precision=False)
    return [FeedbackItem.from_sample(sample, tokenizer.decode(seq, skip_special_tokens=True))
            for sample, seq in zip(rows, completions)]


def _macro_task(items: Sequence[Any]) -> float:
    """Task score of single-completion items, averaged per family then over families (as in evaluation)."""
    by_task: dict[str, list[float]] = {}
    for it in items:
        if it.sample.verifier is not None:
            by_task.setdefault(it.sample.task, []).append(it.sample.score(it.completions[0]))
    return float(np.mean([np.mean(v) for v in by_task.values()])) if by_task else math.nan


def verifier_agreement(model: Any, items: Sequence[Any], formatter: Any = None) -> tuple[float, float]:
    """``(agreement, mean task score)`` of a reward model with the task verifiers on single-completion items.

    Agreement: over pairs of items of the same sample whose task scores differ, the share the
    model orders the same way (``nan`` when there is no such pair or no verifier).
    """
    scored = [(it, it.sample.score(it.completions[0])) for it in items
              if it.sample is not None and it.sample.verifier is not None]
    if not scored:
        return math.nan, math.nan
    truth = np.array([s for _, s in scored])
    mean, _ = model.predict([it.pairs(formatter)[0] for it, _ in scored])
    groups: dict[str, list[int]] = {}
    for k, (it, _) in enumerate(scored):
        groups.setdefault(it.sample.id, []).append(k)
    right = total = 0.0
    for members in groups.values():
        for i, j in itertools.combinations(members, 2):
            if truth[i] != truth[j]:
                total += 1
                gap = (mean[i] - mean[j]) * np.sign(truth[i] - truth[j])
                right += 0.5 if gap == 0 else float(gap > 0)
    return (right / total if total else math.nan), float(truth.mean())


def _refit(learner: Any) -> dict[str, Any]:
    """Refit ``learner`` on everything new in the store; what every rank needs of the result (picklable)."""
    report = learner.step(force=True)
    _, holdout = learner.labels()
    model = learner.current
    return {"refit": report.to_dict() if report is not None else None,
            "promoted": bool(report is not None and report.promoted), "version": learner.version,
            "state": model.state(), "labels_used": model.n_labels, "holdout_labels": len(holdout),
            "rm_heldout_accuracy": model.accuracy(holdout).overall}


class _Replica:
    """A rank's copy of rank 0's promoted reward model (read by the proxy reward and the selector as ``.current``)."""

    def __init__(self, model: Any) -> None:
        self.current = model

    @property
    def version(self) -> int:
        return self.current.version

    def load(self, state: dict[str, Any], featurizer: Any) -> None:
        """Take rank 0's model ``state`` (a :meth:`RewardModel.state`) unless it is the version held already."""
        from instruct_env.feedback.reward_model import RewardModel

        if state["version"] != self.current.version:
            self.current = RewardModel.from_state(state, featurizer)
