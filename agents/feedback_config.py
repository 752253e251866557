"""The settings of the feedback loop (:class:`agents.feedback_loop.FeedbackLoop`), importable without torch.

:class:`FeedbackLoopConfig` is also the ``feedback.loop`` section of the main job's configuration
(:class:`agents.pipeline.PipelineConfig`), which is built, checked and printed without torch;
:mod:`agents.feedback_loop` re-exports it with :data:`FEEDBACK_MODES`.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal

from agents.rl import ALGORITHMS, GRPO
from instruct_env._validation import check_choice, check_int_fields
from instruct_env.error import ConfigError, unknown_name
from instruct_env.feedback.reward_model_config import Pooling, RewardModelConfig

__all__ = ["FeedbackLoopConfig", "FeedbackMode", "QueryKind", "Selection", "RLReward", "DirectKind",
           "FEEDBACK_MODES"]

#: Where the feedback comes from.
FeedbackMode = Literal["simulated", "human"]
#: What evaluators are asked about the selected items.
QueryKind = Literal["pairwise", "rating", "thumbs"]
#: How the items to ask about are picked.
Selection = Literal["qbc", "random"]
#: What RL learns from in the loop.
RLReward = Literal["proxy", "direct"]
#: Feedback asked for each completion RL samples in ``"direct"`` mode (answers that are numbers).
DirectKind = Literal["rating", "thumbs"]
#: The feedback modes, in the order of :data:`FeedbackMode`.
FEEDBACK_MODES: tuple[str, ...] = typing.get_args(FeedbackMode)


@dataclass
class FeedbackLoopConfig:
    """Every setting of a :class:`~agents.feedback_loop.FeedbackLoop`: where feedback comes from, how it is asked for and used.

    In the main job's configuration this is the ``feedback.loop`` section, whose run keys are set
    from the rest of the configuration: ``rounds`` from ``feedback.rounds``, ``feedback`` from
    ``feedback.mode``, ``store_url`` from ``feedback.store`` and ``algo`` from ``rl.algo``.

    Attributes:
        rounds: Feedback + RL rounds.
        feedback: ``"simulated"`` (simulated evaluators answer through the store) or ``"human"``
            (people answer through the feedback server on ``store_url``).
        store_url: The feedback store (``sqlite:///feedback.db``, a path, ``postgresql://...``) or a
            feedback server (``http://host:8000``, with ``"human"`` only); required for ``"human"``;
            ``None``: ``<workdir>/feedback.db``.
        algo: RL algorithm (``grpo``, ``rloo``, ``reinforce``, ``ppo``, ``a2c``).
        kind: Feedback asked for: ``"pairwise"``, ``"rating"`` or ``"thumbs"``.
        queries_per_round: Items sent to evaluators per round.
        pool_prompts: Training prompts the policy answers per round (the selection pool).
        samples_per_prompt: Completions sampled per prompt.
        pool_temperature: Sampling temperature of the pool.
        selection: ``"qbc"`` (ensemble disagreement) or ``"random"``.
        random_share: Share of each round's items drawn at random and held out (the learner
            judges candidate reward models on them).
        per_instruction: Most items per instruction per round.
        evaluators: Answers wanted per item; with ``feedback="simulated"`` also the number of
            simulated evaluators.
        metric: What simulated evaluators judge by: ``"task"`` (each sample's verifier) or a
            reward name such as ``"rougeL"``.
        noise: Simulated evaluators' perception noise.
        bias: Simulated evaluators' leniency (+) or harshness (-).
        skip_rate: Simulated evaluators' probability of skipping an item.
        flip_rate: Simulated evaluators' probability of an adversarial (reversed) judgement.
        human_timeout_s: How long a round waits for people (``feedback="human"``).
        rl_updates: RL updates per round.
        uncertainty_penalty: The proxy reward subtracts this times the ensemble's disagreement.
        rl_reward: What RL learns from: ``"proxy"`` (the promoted reward model) or ``"direct"``
            (the evaluators' answers to every completion, through
            :class:`~instruct_env.feedback.rewards.HumanReward`; costs ``evaluators`` answers per
            completion, so with people it suits small batches).
        direct_kind: Feedback asked for each completion in ``"direct"`` mode: ``"rating"`` or
            ``"thumbs"``.
        promotion_tolerance: A refitted reward model may be this much less accurate on the
            held-out labels than the current one and still be promoted (the hold-out is small and
            noisy in early rounds).
        background_refit: Keep refitting in a background thread during RL (useful with people,
            whose late answers then count before the next round): after every
            ``max(1, queries_per_round // 4)`` new answers. Without it the reward model is refitted
            once per round, between collecting and RL.
        reward_model: Ensemble shape and training.
        pooling: Feature pooling, ``"mean"``, ``"completion"`` or ``"last"``.
        logprob_features: Add the completion's likelihood under the frozen model to the features.
        min_holdout: Held-out labels needed to judge (and possibly refuse) a candidate.
        max_prompt_tokens: Prompt budget of the environment and of generation.
        eval_batch_size: Prompts per batch in validation.
        seed: Seed of the pool, the selection, the simulated evaluators and the reward model.
    """

    rounds: int = 3
    feedback: FeedbackMode = "simulated"
    store_url: str | None = None
    algo: str = GRPO.name
    kind: QueryKind = "pairwise"
    queries_per_round: int = 64
    pool_prompts: int = 64
    samples_per_prompt: int = 4
    pool_temperature: float = 1.0
    selection: Selection = "qbc"
    random_share: float = 0.2
    per_instruction: int = 1
    evaluators: int = 3
    metric: str = "task"
    noise: float = 0.1
    bias: float = 0.0
    skip_rate: float = 0.0
    flip_rate: float = 0.0
    human_timeout_s: float = 600.0
    rl_updates: int = 20
    uncertainty_penalty: float = 0.0
    rl_reward: RLReward = "proxy"
    direct_kind: DirectKind = "rating"
    promotion_tolerance: float = 0.0
    background_refit: bool = False
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    pooling: Pooling = "mean"
    logprob_features: bool = True
    min_holdout: int = 10
    max_prompt_tokens: int = 128
    eval_batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        self._check_source()
        self._check_names()
        self._check_counts()
        self._check_ranges()

    @property
    def remote(self) -> bool:
        """Whether ``store_url`` is a feedback server (its HTTP API) rather than a store."""
        return self.store_url is not None and str(self.store_url).startswith(("http://", "https://"))

    def _check_source(self) -> None:
        """Where the feedback comes from: the mode, the store, the rounds."""
        if self.feedback not in FEEDBACK_MODES:
            raise unknown_name("feedback mode", self.feedback, FEEDBACK_MODES)
        if self.feedback == "human" and self.store_url is None:
            raise ConfigError(
                "feedback='human' needs store_url= (the store the feedback server uses, e.g. 'sqlite:///feedback.db'); "
                "start the server with `instruct-env serve <store_url>` and give evaluators their tokens."
            )
        if self.remote and self.feedback == "simulated":
            raise ConfigError(
                f"feedback='simulated' needs a store its simulated evaluators can answer in this process; got the "
                f"feedback server {str(self.store_url)!r}. Pass the server's store URL (e.g. 'sqlite:///feedback.db'), "
                "or use feedback='human' with the server."
            )
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise ConfigError(f"rounds must be an integer >= 1 (feedback + RL rounds); got {self.rounds!r}. "
                              "Set at least one round (in a pipeline config: feedback.rounds).")

    def _check_names(self) -> None:
        """Settings that name one of a few choices."""
        if self.algo not in ALGORITHMS:
            raise unknown_name("RL algorithm", self.algo, ALGORITHMS)
        if self.kind not in typing.get_args(QueryKind):
            raise unknown_name("feedback kind for the loop", self.kind, typing.get_args(QueryKind))
        if self.rl_reward not in typing.get_args(RLReward):
            raise unknown_name("loop RL reward", self.rl_reward, typing.get_args(RLReward))
        check_choice("FeedbackLoopConfig.direct_kind", self.direct_kind, DirectKind, or_words=True,
                     hint=" Direct mode rewards RL with each answer, so it needs answers that are numbers.")
        if self.selection not in typing.get_args(Selection):
            raise unknown_name("selection strategy", self.selection, typing.get_args(Selection))
        check_choice("FeedbackLoopConfig.pooling", self.pooling, Pooling, or_words=True)

    def _check_counts(self) -> None:
        """Settings that count something."""
        check_int_fields(self, "queries_per_round", "pool_prompts", "samples_per_prompt", "per_instruction",
                         "evaluators", "max_prompt_tokens", "eval_batch_size")
        check_int_fields(self, "rl_updates", "min_holdout", "seed", minimum=0)
        if self.kind == "pairwise" and self.samples_per_prompt < 2:
            raise ConfigError(
                f"FeedbackLoopConfig: kind='pairwise' compares completions of one prompt, so samples_per_prompt must "
                f"be >= 2; got {self.samples_per_prompt}."
            )

    def _check_ranges(self) -> None:
        """Shares, rates and other numbers with bounds."""
        if isinstance(self.promotion_tolerance, bool) or not isinstance(self.promotion_tolerance, (int, float)) \
                or not 0 <= self.promotion_tolerance < 1:
            raise ConfigError(f"FeedbackLoopConfig.promotion_tolerance must be in [0, 1); got {self.promotion_tolerance!r}.")
        for name in ("random_share", "skip_rate", "flip_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"FeedbackLoopConfig.{name} must be in [0, 1]; got {getattr(self, name)!r}.")
        if not self.pool_temperature > 0 or not self.human_timeout_s >= 0 or self.noise < 0 or self.uncertainty_penalty < 0:
            raise ConfigError(
                "FeedbackLoopConfig: pool_temperature must be > 0, and human_timeout_s, noise and uncertainty_penalty "
                f">= 0; got {self.pool_temperature}, {self.human_timeout_s}, {self.noise}, {self.uncertainty_penalty}."
            )
