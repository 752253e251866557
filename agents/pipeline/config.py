"""The configuration of the main job (:func:`agents.pipeline.run_pipeline`): one dataclass tree.

:class:`PipelineConfig` is the root; YAML files, ``--set`` overrides and ``--print-config`` are
checked against and generated from it (see :mod:`agents.common.config`).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from agents.ac.config import A2CConfig, PPOConfig
from agents.common.model_config import DefaultModelConfig, ModelKind
from agents.common.pretrain import PretrainConfig
from agents.feedback_config import FeedbackLoopConfig, FeedbackMode
from agents.pg.config import GRPOConfig, ReinforceConfig, RLOOConfig
from agents.q.config import ILQLConfig, SoftQConfig
from agents.rl import A2C, ALGORITHMS, DEFAULT_ALGORITHM, GRPO, ILQL, PPO, REINFORCE, RLOO, SOFT_Q
from agents.sft.config import SFTConfig
from instruct_env._validation import check_choice
from instruct_env.error import ConfigError, unknown_name
from instruct_env.tasks.reasoning import ReasoningGymTask

__all__ = [
    "ReasoningGymTask",
    "DataConfig",
    "ModelConfig",
    "FeedbackSection",
    "RLSection",
    "EvalConfig",
    "PipelineConfig",
]

#: Validation metrics that can pick the best RL checkpoint (``agents.common.evaluation.METRICS`` but length).
EvalMetric = Literal["task", "exact_match", "bleu", "rougeL"]


def _check_set_by(top_name: str, top_value: Any, section: str, cfg: Any, name: str) -> None:
    """Refuse ``cfg.<name>`` (``section.name`` in messages) when it is set, i.e. not its default, to other than ``top_value``.

    The pipeline sets that field from ``top_name``; a value equal to ``top_value`` is accepted, so
    a configuration printed with ``--print-config`` loads back.
    """
    value = getattr(cfg, name)
    default = {f.name: f.default for f in dataclasses.fields(cfg)}[name]
    if value != default and value != top_value:
        shown = "null" if top_value is None else repr(top_value)
        raise ConfigError(f"{section}.{name}={value!r} conflicts with {top_name}={shown}: the pipeline sets "
                          f"{section}.{name} from {top_name}. Set {top_name} instead.")


@dataclass
class DataConfig:
    """Which tasks, how prompts look, and how many samples each split contributes.

    Attributes:
        tasks: Built-in task families (``None``: the twelve English default families,
            ``instruct_env.tasks.DEFAULT_TASKS``; opt-in families such as ``zh_chars`` must be named).
        reasoning_gym: reasoning-gym datasets added to the built-in families in every split
            (needs ``pip install 'instruct-env[reasoning]'``).
        template: Prompt template (``"default"`` or ``"plain"``).
        use_chat_template: ``"auto"`` (the tokenizer's chat template when it has one), ``true``
            (required) or ``false``; applies to SFT, RL and evaluation prompts alike.
        num_shots: In-context demonstrations in every prompt (from the train split).
        max_prompt_tokens: Prompt budget (longer prompts are truncated, see ``PromptFormatter``).
        max_new_tokens: Completion budget for RL rollouts and evaluation.
        reward: The RL training reward: a registered name (``"task"``: each task's verifier,
            with partial credit), or a mapping of names to weights or to option mappings with an
            optional ``weight``, as :func:`instruct_env.rewards.make` takes it, e.g. ``{bleu:
            {tokenize: zh}}`` or ``{bleu: {weight: 0.5, tokenize: zh}, rougeL: 0.5}`` -- held-out
            evaluation always reports all metrics.
        train_size_per_task: Prompts per family that RL samples from (train split).
        val_size_per_task: Validation samples per family for RL's held-out checks.
        test_size_per_task: Test samples per family for the reported numbers.
        seed: Seed of the datasets (kept apart from the training seed, so runs with different
            training seeds are scored on the same test samples).
        dataset: Your own data instead of the built-in suite (``tasks`` must then be unset): a
            JSON/JSONL/CSV/TSV file, a folder saved with ``datasets``' ``save_to_disk``, or
            ``hf:NAME[:CONFIG]`` (see :mod:`agents.common.own_data`). Each split is used whole
            (the ``*_size_per_task`` fields size the built-in suite only); SFT takes the first
            ``sft.num_examples`` training samples of each task.
        fields: Column mapping of ``dataset``, Sample field -> column (``{instruction: prompt,
            references: answer}``); detected from the first record when empty.
        split_column: A column of ``dataset`` holding each record's split; unset: a stable hash
            of each input assigns it (80/10/10).
        sampling: How RL's training environment picks prompts: ``"stratified"`` (each run of F
            prompts covers the F task families once) or ``"uniform"`` (see ``EnvSetup``).
    """

    tasks: list[str] | None = None
    reasoning_gym: list[ReasoningGymTask] = field(default_factory=list)
    template: str = "default"
    use_chat_template: bool | str = "auto"
    num_shots: int = 0
    max_prompt_tokens: int = 128
    max_new_tokens: int = 32
    reward: dict[str, float | dict[str, bool | int | float | str]] | str = "task"
    train_size_per_task: int = 2000
    val_size_per_task: int = 32
    test_size_per_task: int = 50
    seed: int = 0
    sampling: Literal["uniform", "stratified"] = "stratified"
    dataset: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    split_column: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_prompt_tokens", "max_new_tokens", "train_size_per_task", "val_size_per_task",
                     "test_size_per_task"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be >= 1; got {getattr(self, name)}.")
        if not (self.use_chat_template == "auto" or isinstance(self.use_chat_template, bool)):
            raise ConfigError(f"data.use_chat_template must be 'auto', true or false; got {self.use_chat_template!r}.")
        if self.num_shots < 0 or self.seed < 0:
            raise ConfigError(f"data.num_shots and data.seed must be >= 0; got {self.num_shots} and {self.seed}.")
        if self.tasks is not None:
            from instruct_env.tasks import task_names

            if not self.tasks:
                raise ConfigError("data.tasks is empty; leave it unset (null) for every built-in task.")
            for name in self.tasks:
                if name not in task_names():
                    raise unknown_name("task", name, task_names())
        if self.reward != "auto":  # the envs' own default; every other value must build a reward
            from instruct_env import rewards

            try:
                rewards.make(self.reward)
            except ConfigError as exc:
                raise ConfigError(f"reward: {exc}") from exc
        if self.dataset is not None and (self.tasks is not None or self.reasoning_gym):
            raise ConfigError("data.dataset replaces the built-in suite: unset data.tasks and data.reasoning_gym, or "
                              "unset data.dataset.")
        if self.dataset is None and (self.fields or self.split_column):
            raise ConfigError("data.fields and data.split_column describe data.dataset, which is unset.")
        names = [t.name for t in self.reasoning_gym]
        if len(set(names)) != len(names):
            raise ConfigError(f"data.reasoning_gym names a dataset twice ({names}); list each dataset once.")


@dataclass
class ModelConfig:
    """The model to train.

    Attributes:
        name: A Hugging Face hub name or local folder (e.g. a previous run's ``model/``);
            ``None`` is the embedded default: a small GPT-2 pre-trained on the suite (cached).
        kind: ``"auto"``, ``"causal"`` or ``"seq2seq"`` (RL needs a causal model).
        default: Shape of the embedded default model.
        pretrain: Its pre-training.
        lora_r: Rank of a LoRA adapter (``peft``, ``pip install 'instruct-env[peft]'``) that SFT and
            RL train instead of every weight; 0 (the default) trains every weight. The RL stage's
            KL reference is the model after SFT; the saved ``model/`` has the adapter merged in, so
            ``--model <run>/model`` loads it like any model.
        lora_alpha: LoRA scaling numerator (the update is scaled by ``lora_alpha / lora_r``).
        lora_dropout: Dropout on the adapter's input.
        lora_target_modules: Module names that get an adapter (e.g. ``[c_attn]`` for GPT-2,
            ``[q_proj, v_proj]`` for Llama/Qwen2); ``None``: peft's default for the architecture.
    """

    name: str | None = None
    kind: ModelKind = "auto"
    default: DefaultModelConfig = field(default_factory=DefaultModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    lora_r: int = 0
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | None = None

    def __post_init__(self) -> None:
        check_choice("model.kind", self.kind, ModelKind, or_words=True)
        if self.lora_r < 0 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"model.lora_r must be >= 0 (0: no adapter), lora_alpha > 0 and 0 <= lora_dropout < 1; "
                              f"got {self.lora_r}, {self.lora_alpha} and {self.lora_dropout}.")


@dataclass
class FeedbackSection:
    """Rewards from people or simulated evaluators instead of the automatic reward.

    With ``mode`` set, the RL stage becomes the iterative loop of
    :func:`agents.feedback_loop.run_feedback_loop`: generate -> select (active learning) ->
    collect feedback -> update the reward model -> RL on the reward model's proxy reward, for
    ``rounds`` rounds; the report shows reward-model accuracy and held-out score per round.

    Attributes:
        mode: ``None`` (automatic reward), ``"simulated"`` or ``"human"`` (people answer on the
            feedback server -- start ``instruct-env serve --store STORE`` and add evaluators).
        store: Feedback store: a SQLite path, a ``postgresql://`` URL, or the ``http://`` URL of a
            running feedback server (what data-parallel ranks share); required for ``"human"``
            (default ``<run>/feedback/feedback.db`` for ``"simulated"``).
        rounds: Feedback + RL rounds.
        loop: How feedback is asked for and used. Its run keys are set from the keys above and
            ``rl.algo``: ``loop.rounds`` from ``rounds``, ``loop.feedback`` from ``mode``,
            ``loop.store_url`` from ``store`` (both when ``mode`` is set) and ``loop.algo`` from
            ``rl.algo``; a loop value that differs from them is an error (set the key above instead).
    """

    mode: FeedbackMode | None = None
    store: str | None = None
    rounds: int = 3
    loop: FeedbackLoopConfig = field(default_factory=FeedbackLoopConfig)

    def __post_init__(self) -> None:
        check_choice("feedback.mode", self.mode, (None, *typing.get_args(FeedbackMode)), or_words=True)
        if self.mode == "human" and not self.store:
            raise ConfigError("feedback.mode='human' needs feedback.store: the store your feedback server uses.")
        # The loop's run keys are this section's (its algo is rl.algo, set by PipelineConfig). Without a mode the
        # loop does not run, and keeps its own mode and store.
        run_keys = {"rounds": ("feedback.rounds", self.rounds), "feedback": ("feedback.mode", self.mode),
                    "store_url": ("feedback.store", self.store)}
        for name, (top_name, top_value) in run_keys.items():
            _check_set_by(top_name, top_value, "feedback.loop", self.loop, name)
        filled: dict[str, Any] = {"rounds": self.rounds}
        if self.mode is not None:
            filled.update(feedback=self.mode, store_url=self.store)
        # Checked by the loop's own rules now, before any training.
        self.loop = dataclasses.replace(self.loop, **filled)


@dataclass
class RLSection:
    """Which RL algorithm runs, and each algorithm's own config.

    Only the config of ``algo`` is used. Set fields with e.g. ``--set rl.grpo.lr=1e-5``.

    One field per entry of the algorithm table :data:`agents.rl.ALGORITHMS`, whose default is that
    algorithm's config with the main job's settings (:meth:`agents.rl.Algorithm.main_job_config`);
    written out field by field so that ``config.rl.grpo`` is typed (tests/test_algorithm_table.py
    checks that the fields and the table agree).
    """

    algo: str = DEFAULT_ALGORITHM
    grpo: GRPOConfig = field(default_factory=GRPO.main_job_config)
    ppo: PPOConfig = field(default_factory=PPO.main_job_config)
    a2c: A2CConfig = field(default_factory=A2C.main_job_config)
    reinforce: ReinforceConfig = field(default_factory=REINFORCE.main_job_config)
    rloo: RLOOConfig = field(default_factory=RLOO.main_job_config)
    ilql: ILQLConfig = field(default_factory=ILQL.main_job_config)
    sql: SoftQConfig = field(default_factory=SOFT_Q.main_job_config)

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHMS:
            raise unknown_name("RL algorithm", self.algo, ALGORITHMS)

    @property
    def selected(self):
        """The config of ``algo``."""
        return getattr(self, self.algo)


@dataclass
class EvalConfig:
    """Held-out evaluation (greedy decoding).

    Attributes:
        batch_size: Prompts decoded together.
        metric: Validation metric that picks the best RL checkpoint (``"task"`` or ``"exact_match"``).
        keep_best: End RL with the weights of the best validation check (the SFT model counts).
        metric_options: Options of the reference-based metrics, ``metric -> {option: value}``
            for ``bleu``, ``rougeL`` and ``exact_match`` (see :func:`instruct_env.rewards.options`),
            e.g. ``{bleu: {tokenize: zh}, rougeL: {tokenizer: char}}`` for Chinese answers.
    """

    batch_size: int = 128
    metric: EvalMetric = "task"
    keep_best: bool = True
    metric_options: dict[str, dict[str, bool | int | float | str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from agents.common.evaluation import check_metric_options

        if self.batch_size < 1:
            raise ConfigError(f"eval.batch_size must be >= 1; got {self.batch_size}.")
        if self.metric not in typing.get_args(EvalMetric):
            raise unknown_name("evaluation metric", self.metric, typing.get_args(EvalMetric))

        check_metric_options(self.metric_options)


@dataclass
class PipelineConfig:
    """Everything a run needs. YAML files and ``--set`` overrides are checked against it.

    ``seed`` and ``device`` are the run's; they are copied into the SFT and RL configs, and
    ``data.max_prompt_tokens`` / ``data.max_new_tokens`` likewise -- set them here, not there
    (a conflicting value in a stage config is an error rather than silently ignored). The same holds
    for ``feedback.loop.algo``, set from ``rl.algo``.

    Attributes:
        name: Run name; the default output folder is ``runs/<name>`` (a timestamp if ``None``).
        out: Output folder (overrides ``name``).
        seed: Training seed (SFT data order, RL sampling).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        threads: CPU threads for torch. ``None`` (auto): ``$INSTRUCT_ENV_THREADS`` if set, else the
            cores that are idle at start, measured from the kernel's CPU counters over 0.5 s (at
            least 1; not the load average, which still counts a job that ended a minute ago).
            Measured on 2 cores busy with other jobs, 2 torch threads ran 4x slower than 1; on
            idle cores 2 threads are faster. The report says how many were used and why.
        progress: Show progress bars.
        checkpoint_every: Write a resumable checkpoint every this many RL updates (0: only when
            the run is stopped by SIGINT/SIGTERM, which always writes one).
        checkpoint_minutes: Also write one when this many minutes passed since the last (``None``: off).
    """

    name: str | None = None
    out: str | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    checkpoint_every: int = 0
    checkpoint_minutes: float | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLSection = field(default_factory=RLSection)
    eval: EvalConfig = field(default_factory=EvalConfig)
    feedback: FeedbackSection = field(default_factory=FeedbackSection)

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0; got {self.seed}.")
        if self.checkpoint_every < 0 or self.checkpoint_minutes is not None and not self.checkpoint_minutes > 0:
            raise ConfigError(f"checkpoint_every must be >= 0 and checkpoint_minutes > 0 (or null); got "
                              f"{self.checkpoint_every} and {self.checkpoint_minutes}.")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 (or null for all cores); got {self.threads}.")
        shared = (
            ("seed", self.seed, [("sft", self.sft, "seed"), (f"rl.{self.rl.algo}", self.rl.selected, "seed")]),
            ("device", self.device, [("sft", self.sft, "device"), (f"rl.{self.rl.algo}", self.rl.selected, "device")]),
            ("data.max_prompt_tokens", self.data.max_prompt_tokens, [("sft", self.sft, "max_prompt_tokens")]),
            ("data.max_new_tokens", self.data.max_new_tokens, [(f"rl.{self.rl.algo}", self.rl.selected,
                                                                "max_new_tokens")]),
        )
        for top_name, top_value, places in shared:
            for section, cfg, name in places:
                _check_set_by(top_name, top_value, section, cfg, name)
        # The feedback loop runs the RL algorithm of this run (its other run keys are the feedback section's).
        _check_set_by("rl.algo", self.rl.algo, "feedback.loop", self.feedback.loop, "algo")
        if self.feedback.loop.algo != self.rl.algo:
            self.feedback = dataclasses.replace(self.feedback,
                                                loop=dataclasses.replace(self.feedback.loop, algo=self.rl.algo))

    def stage_configs(self) -> tuple[SFTConfig, Any]:
        """The SFT and RL configs with the run-level fields copied in."""
        sft = dataclasses.replace(self.sft, seed=self.seed, device=self.device,
                                  max_prompt_tokens=self.data.max_prompt_tokens)
        rl = dataclasses.replace(self.rl.selected, seed=self.seed, device=self.device,
                                 max_new_tokens=self.data.max_new_tokens)
        return sft, rl


