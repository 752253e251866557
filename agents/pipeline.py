"""The main job: (pre-trained default model) -> SFT -> RL -> held-out evaluation -> report.

:func:`run_pipeline` is what ``instruct-env pipeline`` runs; ``instruct-env sft``, ``rl`` and
``eval`` run parts of it (``stages=``). Everything a run writes goes to one folder::

    <out>/config.yaml      the resolved configuration (re-run with --config <out>/config.yaml)
    <out>/metrics.jsonl    one record per logged update and evaluation, all stages
    <out>/tensorboard/     the same as TensorBoard scalars (when tensorboard is installed)
    <out>/plots/*.png      reward, KL, entropy, (value loss), held-out metric, SFT losses
    <out>/results.json     held-out numbers of every stage
    <out>/completions.jsonl  the final model's test answers, with their scores
    <out>/model/           the final model and tokenizer (``save_pretrained``): --model <out>/model
    <out>/report.md        the report

The default configuration (no arguments) is sized to finish in about 5 minutes on 2 idle CPU
cores. Stage budgets:

- model: the embedded default model's pre-trained weights ship with the project
  (``agents/assets/default_model``, made by ``instruct-env pretrain``), so nothing is pre-trained;
  other model shapes or pre-training settings are pre-trained and cached (see ``PretrainConfig``);
- SFT: 64 examples per task family, at most 15 epochs, early stopping, at most 60 s;
- RL: GRPO (16 prompts x 8 samples per update, prompts stratified over the task families,
  advantages scaled per family, lr 1e-4) for 210 s, validation checks included;
- evaluation: greedy decoding of 50 test samples per family, three times (before SFT, after
  SFT, after RL), a few seconds each.

By default torch uses the cores that are idle at start (see ``PipelineConfig.threads``): two
torch threads competing with other jobs for two cores were measured 4x slower than one.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from agents.ac.config import A2CConfig, PPOConfig
from agents.common import distributed as dist
from agents.common.model import DefaultModelConfig
from agents.common.pretrain import PretrainConfig
from agents.feedback_loop import FeedbackLoopConfig
from agents.pg.config import GRPOConfig, ReinforceConfig, RLOOConfig
from agents.q.config import ILQLConfig, SoftQConfig
from agents.rl import ALGORITHMS
from agents.sft.config import SFTConfig
from instruct_env.error import ConfigError, unknown_name

__all__ = [
    "DataConfig",
    "ReasoningGymTask",
    "split_samples",
    "ModelConfig",
    "RLSection",
    "EvalConfig",
    "PipelineConfig",
    "PipelineResult",
    "STAGES",
    "run_pipeline",
    "load_policy_model",
]

logger = logging.getLogger(__name__)

#: Training stages, in the order they run.
STAGES = ("sft", "rl")


@dataclass
class ReasoningGymTask:
    """A reasoning-gym dataset used as one more task family (rows ``rg:<name>`` in the results).

    reasoning-gym datasets have no splits: each split is generated with its own seed (derived
    from ``data.seed``), and validation and train entries whose question also occurs in the test
    split (train: or in the validation split) are dropped, so datasets with few distinct
    questions yield fewer samples than asked for.

    Attributes:
        name: The reasoning-gym dataset, e.g. ``"basic_arithmetic"``.
        options: Its own config options, e.g. ``{"max_terms": 2, "max_digits": 1}``.
        partial_credit: Keep the scorer's partial credit (see :mod:`instruct_env.tasks.reasoning`).
    """

    name: str
    options: dict[str, int | float | bool | str | list[str]] = field(default_factory=dict)
    partial_credit: bool = True


#: Seed bases of the splits of a reasoning-gym task (the seed is ``base + data.seed``). reasoning-gym
#: draws entry ``i`` from ``Random(seed + i)``, so nearby seeds would share entries: the bases are far apart.
_RG_SPLIT_SEEDS = {"train": 0, "validation": 1_000_000_000, "test": 2_000_000_000}


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


class _Concat:
    """Read-only concatenation of indexable sample sources (built-in families, then reasoning-gym)."""

    def __init__(self, parts: Sequence[Sequence[Any]]) -> None:
        self.parts = list(parts)
        self._ends = list(itertools.accumulate(len(p) for p in self.parts))

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __getitem__(self, index: int) -> Any:
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"Index {index} is out of range for a dataset of {len(self)} samples.")
        part = bisect.bisect_right(self._ends, index)
        return self.parts[part][index - (self._ends[part - 1] if part else 0)]


def _reasoning_gym_split(task: ReasoningGymTask, data: DataConfig, split: str, size: int) -> list[Any]:
    """``size`` entries of one split of ``task``, minus questions of the splits held out from it."""
    from instruct_env.tasks import from_reasoning_gym

    def generate(name: str, n: int) -> list[Any]:
        return from_reasoning_gym(task.name, size=n, seed=_RG_SPLIT_SEEDS[name] + data.seed,
                                  partial_credit=task.partial_credit, **task.options)

    held_out = {"train": {"validation": data.val_size_per_task, "test": data.test_size_per_task},
                "validation": {"test": data.test_size_per_task}, "test": {}}[split]
    seen = {s.instruction for other, n in held_out.items() for s in generate(other, n)}
    samples = [dataclasses.replace(s, id=f"rg:{s.id}/{split}", task=f"rg:{task.name}")
               for s in generate(split, size) if s.instruction not in seen]
    if not samples:
        raise ConfigError(
            f"reasoning-gym dataset {task.name!r} with options {task.options} has no {split} questions left after "
            f"removing those of the held-out splits; widen its options (e.g. larger value ranges)."
        )
    return samples


def split_samples(data: DataConfig, split: str, size_per_task: int, seed: int | None = None) -> Sequence[Any]:
    """The samples of one split: the built-in families, then each reasoning-gym task (or ``data.dataset``'s split).

    Args:
        data: The data section (``tasks``, ``reasoning_gym``).
        split: ``"train"``, ``"validation"`` or ``"test"``.
        size_per_task: Samples per family (reasoning-gym tasks may yield fewer, see
            :class:`ReasoningGymTask`).
        seed: Seed of the built-in datasets (default ``data.seed``); reasoning-gym tasks always
            use ``data.seed``, so that their held-out splits stay apart from every training set.

    Returns:
        A :class:`~instruct_env.tasks.BuiltinDataset` when there are no reasoning-gym tasks,
        else an indexable sequence of :class:`~instruct_env.tasks.Sample`.
    """
    from instruct_env.tasks import BuiltinDataset

    if data.dataset is not None:  # your own data: each split whole
        from agents.common.own_data import load_own_data
        from instruct_env.tasks.builtin import normalise_split

        return load_own_data(data.dataset, data.fields, data.split_column).splits[normalise_split(split)]
    seed = data.seed if seed is None else seed
    builtin = BuiltinDataset(data.tasks, split=split, size_per_task=size_per_task, seed=seed)
    if not data.reasoning_gym:
        return builtin
    return _Concat([builtin] + [_reasoning_gym_split(t, data, split, size_per_task) for t in data.reasoning_gym])


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
    kind: str = "auto"
    default: DefaultModelConfig = field(default_factory=DefaultModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    lora_r: int = 0
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "causal", "seq2seq"):
            raise ConfigError(f"model.kind must be 'auto', 'causal' or 'seq2seq'; got {self.kind!r}.")
        if self.lora_r < 0 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"model.lora_r must be >= 0 (0: no adapter), lora_alpha > 0 and 0 <= lora_dropout < 1; "
                              f"got {self.lora_r}, {self.lora_alpha} and {self.lora_dropout}.")


def _default_grpo() -> GRPOConfig:
    # Sized for 2 CPU cores: 16 prompts x 8 samples per update, 210 s in all, a validation check
    # every 40 updates; beta = 0.02, temperature 0.7 (log-probabilities at the same temperature).
    # Chosen on the validation split (python -m benchmarks.rl_levers, benchmarks/README.md): from the
    # shipped model's SFT (seed 0), 120 updates raised the validation task score by +0.053 with the
    # paper's GRPO and uniform prompts, +0.066 with prompts stratified over the families (data.sampling;
    # it also makes the training reward comparable from update to update), +0.073 with advantages
    # scaled by the family's reward std instead of the group's, and +0.081 with that at lr 1e-4.
    return GRPOConfig(lr=1e-4, temperature=0.7, num_envs=128, group_size=8, kl_coef=0.02, total_updates=100_000,
                      time_budget_s=210.0, eval_every=40, advantage_scale="family")


def _default_ppo() -> PPOConfig:
    # 64 token-level envs x 16 steps (about 100 answers) per update, two epochs of two minibatches,
    # sampling at temperature 0.7 like GRPO.
    return PPOConfig(lr=5e-5, temperature=0.7, num_envs=64, n_steps=16, num_minibatches=2, update_epochs=2,
                     time_budget_s=210.0, total_updates=100_000, eval_every=10)


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
        loop: How feedback is asked for and used.
    """

    mode: str | None = None
    store: str | None = None
    rounds: int = 3
    loop: FeedbackLoopConfig = field(default_factory=FeedbackLoopConfig)

    def __post_init__(self) -> None:
        if self.mode not in (None, "simulated", "human"):
            raise ConfigError(f"feedback.mode must be null, 'simulated' or 'human'; got {self.mode!r}.")
        if self.mode == "human" and not self.store:
            raise ConfigError("feedback.mode='human' needs feedback.store: the store your feedback server uses.")
        if self.rounds < 1:
            raise ConfigError(f"feedback.rounds must be >= 1; got {self.rounds}.")


@dataclass
class RLSection:
    """Which RL algorithm runs, and each algorithm's own config.

    Only the config of ``algo`` is used. Set fields with e.g. ``--set rl.grpo.lr=1e-5``.
    """

    algo: str = "grpo"
    grpo: GRPOConfig = field(default_factory=_default_grpo)
    ppo: PPOConfig = field(default_factory=_default_ppo)
    a2c: A2CConfig = field(default_factory=lambda: A2CConfig(time_budget_s=210.0, total_updates=100_000,
                                                            eval_every=40))
    reinforce: ReinforceConfig = field(default_factory=lambda: ReinforceConfig(
        num_envs=128, temperature=0.7, time_budget_s=210.0, total_updates=100_000, eval_every=40))
    rloo: RLOOConfig = field(default_factory=lambda: RLOOConfig(
        num_envs=128, group_size=8, temperature=0.7, time_budget_s=210.0, total_updates=100_000, eval_every=40))
    # ILQL collects its offline data from the SFT model (data="rollouts": 1024 samples, 8 per prompt) when
    # it is built, then learns from that fixed set only. A run of a few hundred updates needs the heads to
    # learn fast (heads_lr) and the target Q heads to follow within ~20 updates (polyak 0.05; the paper's
    # 0.005 is for runs 100x longer): each hop of the reward back through the answer goes through them.
    ilql: ILQLConfig = field(default_factory=lambda: ILQLConfig(
        lr=5e-5, heads_lr=1e-3, polyak=0.05, temperature=0.7, rollout_episodes=1024, rollout_group_size=8,
        monitor_every=20, monitor_envs=64,
        time_budget_s=210.0, total_updates=100_000, eval_every=40))
    sql: SoftQConfig = field(default_factory=lambda: SoftQConfig(
        lr=5e-5, temperature=0.7, num_envs=64, n_steps=16, time_budget_s=210.0, total_updates=100_000,
        eval_every=10))

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
    metric: str = "task"
    keep_best: bool = True
    metric_options: dict[str, dict[str, bool | int | float | str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from agents.common.evaluation import METRICS

        if self.batch_size < 1:
            raise ConfigError(f"eval.batch_size must be >= 1; got {self.batch_size}.")
        if self.metric not in ("task", "exact_match", "bleu", "rougeL"):
            raise unknown_name("evaluation metric", self.metric, [m for m in METRICS if m != "length"])
        from agents.common.evaluation import check_metric_options

        check_metric_options(self.metric_options)


@dataclass
class PipelineConfig:
    """Everything a run needs. YAML files and ``--set`` overrides are checked against it.

    ``seed`` and ``device`` are the run's; they are copied into the SFT and RL configs, and
    ``data.max_prompt_tokens`` / ``data.max_new_tokens`` likewise -- set them here, not there
    (a conflicting value in a stage config is an error rather than silently ignored).

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
                value = getattr(cfg, name)
                default = {f.name: f.default for f in dataclasses.fields(cfg)}[name]
                if value != default and value != top_value:
                    raise ConfigError(
                        f"{section}.{name}={value!r} conflicts with {top_name}={top_value!r}: the pipeline sets "
                        f"{section}.{name} from {top_name}. Set {top_name} instead."
                    )

    def stage_configs(self) -> tuple[SFTConfig, Any]:
        """The SFT and RL configs with the run-level fields copied in."""
        sft = dataclasses.replace(self.sft, seed=self.seed, device=self.device,
                                  max_prompt_tokens=self.data.max_prompt_tokens)
        rl = dataclasses.replace(self.rl.selected, seed=self.seed, device=self.device,
                                 max_new_tokens=self.data.max_new_tokens)
        return sft, rl


@dataclass
class PipelineResult:
    """Where a run's outputs are, and its held-out numbers.

    Attributes:
        out_dir: The run folder.
        report: ``report.md``; ``metrics``: ``metrics.jsonl``; ``plots``: name -> PNG.
        results: ``stage -> EvalResult`` on the test split.
        model_dir: The saved final model (``None`` for ``eval`` runs).
        wall_time_s: Seconds from start to report.
        stage_seconds: Seconds per part of the run.
    """

    out_dir: Path
    report: Path
    metrics: Path
    plots: dict[str, Path]
    results: dict[str, Any]
    model_dir: Path | None
    wall_time_s: float
    stage_seconds: dict[str, float]
    warnings: list[str] = field(default_factory=list)


def _out_dir(config: PipelineConfig) -> Path:
    if config.out:
        path = Path(config.out)
        if (path / "metrics.jsonl").exists():
            raise ConfigError(
                f"The output folder {str(path)!r} already holds a run (metrics.jsonl); its records would mix with "
                "this run's. Choose another --out, or delete that folder."
            )
    else:
        path = Path("runs") / (config.name or datetime.now().strftime("%Y%m%d-%H%M%S"))
        base, n = path, 1
        while path.exists() and any(path.iterdir()):
            n += 1
            path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_policy_model(config: PipelineConfig, run_logger: Any = None):
    """Load ``config.model`` and its tokenizer; returns ``(model, tokenizer, pretrain_info or None)``."""
    from agents.common.device import select_device
    from agents.common.model import load_model

    device = select_device(config.device)
    if config.model.name is None:
        from agents.common.pretrain import pretrained_default_model
        from instruct_env.tokenizer import builtin_tokenizer

        tokenizer = builtin_tokenizer()
        model, info = pretrained_default_model(tokenizer, config.model.default, config.model.pretrain,
                                               device=device, run_logger=run_logger)
        return model, tokenizer, info
    from transformers import AutoTokenizer

    from agents.common.model import check_local_path

    check_local_path(config.model.name)  # a misspelled folder: say so now, not after a hub look-up
    tokenizer = AutoTokenizer.from_pretrained(config.model.name)
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"The tokenizer of {config.model.name!r} has no EOS token; answers could never end.")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # our own fresh copy, nobody else holds it
    model = load_model(config.model.name, kind=config.model.kind).to(device)
    pretrain_info = None
    info_file = Path(config.model.name) / "pretrain_info.json"
    if info_file.exists():  # a model saved by an earlier run keeps its pre-training note
        pretrain_info = json.loads(info_file.read_text())
    return model, tokenizer, pretrain_info


def auto_threads(idle: float | None = None) -> tuple[int, str]:
    """Threads for torch when none are configured, and why (see :attr:`PipelineConfig.threads`).

    Args:
        idle: Idle cores (default: measured now with :func:`~agents.common.device.idle_cores`).
    """
    import os

    from agents.common.device import idle_cores, usable_cores

    if os.environ.get("INSTRUCT_ENV_THREADS"):
        return int(os.environ["INSTRUCT_ENV_THREADS"]), "set by $INSTRUCT_ENV_THREADS"
    # Processes of one data-parallel run on this machine share its cores.
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cores = max(1, usable_cores() // local)
    idle = idle_cores() if idle is None else idle
    if idle is None:
        return cores, f"all {cores} usable core(s); idle cores could not be measured here"
    threads = max(1, min(cores, round(idle / local)))
    return threads, (f"{idle:.1f} of {usable_cores()} usable cores were idle at start"
                     + (f", shared by {local} local processes" if local > 1 else ""))


class _Run:
    """One run's shared state: config, folder, logger, data, model, results."""

    def __init__(self, config: PipelineConfig, stages: Sequence[str], resume: str | Path | None = None) -> None:
        from agents.common.config import save_yaml
        from agents.common.device import configure_threads
        from agents.common.interrupt import StopSignals
        from agents.common.logging import RunLogger
        from instruct_env.tasks import PromptFormatter

        for stage in stages:
            if stage not in STAGES:
                raise unknown_name("pipeline stage", stage, STAGES)
        self.start = time.perf_counter()
        self.config = config
        self.stages = [s for s in STAGES if s in stages]
        self.threads, self.threads_why = ((config.threads, "set by threads/--threads") if config.threads is not None
                                          else auto_threads())
        configure_threads(self.threads)
        logger.info("torch uses %d CPU thread(s): %s.", self.threads, self.threads_why)
        # Data parallel (torchrun): rank 0 picks the folder and is the only rank that writes in it.
        self.stop = StopSignals()  # SIGINT / SIGTERM: checkpoint between RL updates, see run_pipeline
        self.resumed = _resume_state(Path(resume), self.stages) if resume is not None else None
        self.last_checkpoint = time.perf_counter()
        if resume is not None:
            self.out = Path(resume)
        else:
            self.out = dist.broadcast_object(_out_dir(config) if dist.is_main() else None)
        if dist.is_main() and resume is None:
            save_yaml(config, self.out / "config.yaml")
        self.log = RunLogger(self.out, rank=dist.rank(), progress=config.progress)
        self.seconds: dict[str, float] = {}
        self.warnings: list[str] = []
        self.sections: dict[str, str] = {}
        self.results: dict[str, Any] = {}
        self.rl_training: dict[str, Any] | None = None  # training-reward summary of a (non-feedback) RL stage
        self.done: list[str] = []  # stages finished (and evaluated)
        self.interrupted_at: str | None = None
        self.model: Any = None
        self.tokenizer: Any = None
        data = config.data
        demos = split_samples(data, "train", data.train_size_per_task) \
            if data.num_shots else None
        self.formatter = PromptFormatter(template=data.template, use_chat_template=data.use_chat_template,
                                         num_shots=data.num_shots, demonstrations=demos)
        self.test = list(split_samples(data, "test", data.test_size_per_task))
        self.val = list(split_samples(data, "validation", data.val_size_per_task))
        #: The validation metric RL keeps the best weights by, and the metrics' options (see _check_own_data).
        self.metric, self.metric_options = config.eval.metric, dict(config.eval.metric_options)
        if data.dataset is not None:
            self._check_own_data()

    def _check_own_data(self) -> None:
        """Say how ``data.dataset`` was split and which reward RL uses; refuse to score trained inputs."""
        from agents.common.own_data import effective_reward, load_own_data
        from instruct_env.envs.core import auto_reward
        from instruct_env.tasks.splits import check_disjoint

        data = self.config.data
        own = load_own_data(data.dataset, data.fields, data.split_column)
        train = own.splits["train"]
        check_disjoint(train, self.test, f"the test split of {data.dataset!r}")
        check_disjoint(train, self.val, f"the validation split of {data.dataset!r}")
        lines = [own.describe() + "."]
        if self.config.eval.metric == "task" and getattr(self.val[0], "verifier", None) is None:
            # No task verifier to score with: validate on ROUGE-L, told how to split the data's script.
            reward, why = auto_reward(train)
            self.metric = "rougeL"
            if isinstance(reward, dict) and "rougeL" not in self.metric_options:
                self.metric_options["rougeL"] = dict(reward["rougeL"])
            lines.append(f"Validation metric rougeL{' (tokenizer=cjk)' if isinstance(reward, dict) else ''} instead "
                         f"of eval.metric='task': the samples have no task verifier ({why}).")
        if "rl" in self.stages:
            reward, note = effective_reward(data.reward, train)
            lines.append((note or f"RL reward {reward!r} (data.reward)") + ".")
        name = self.config.model.name
        trained = Path(name) / "trained_inputs.json" if name else None
        if trained is not None and trained.is_file():  # a model saved by an earlier run on this data
            check_disjoint(set(json.loads(trained.read_text())), self.test,
                           f"the test split of {data.dataset!r} (the model {name!r} was trained on them)")
            lines.append(f"None of the test inputs is among the {name!r} model's training inputs.")
        for line in lines:
            logger.info("%s", line)
        self.sections["Data"] = " ".join(lines)

    def timed(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    # -- checkpoints and resuming ------------------------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoint"

    def save_state(self, model: Any = None, rl: Any = "keep") -> None:
        """Write what a resumed run needs besides the RL trainer's own checkpoint (rank 0 only).

        ``checkpoint/pipeline.pkl`` holds the finished stages, their results and report sections;
        ``checkpoint/weights.pt`` the model after the last finished stage (given as ``model``);
        ``rl`` is the RL stage's own state (best-checkpoint tracker, rewards since the last check);
        ``"keep"`` keeps the one saved before (if any).
        """
        import pickle

        import torch

        if not dist.is_main():
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if isinstance(rl, str):  # "keep"
            rl = None
            if (self.checkpoint_dir / "pipeline.pkl").exists():
                with open(self.checkpoint_dir / "pipeline.pkl", "rb") as fh:
                    rl = pickle.load(fh).get("rl")
        if model is not None:
            torch.save(model.state_dict(), self.checkpoint_dir / "weights.pt")
        state = {"stages": self.stages, "done": list(self.done), "results": self.results, "sections": self.sections,
                 "seconds": self.seconds, "warnings": self.warnings, "rl": rl,
                 "finished": self.done == self.stages}
        tmp = self.checkpoint_dir / "pipeline.pkl.tmp"
        with open(tmp, "wb") as fh:
            pickle.dump(state, fh)
        tmp.replace(self.checkpoint_dir / "pipeline.pkl")
        self.last_checkpoint = time.perf_counter()

    def restore(self, model: Any) -> None:
        """Take up a resumed run's finished stages (and their model weights)."""
        import torch

        state = self.resumed
        self.done, self.results = list(state["done"]), dict(state["results"])
        self.sections, self.seconds, self.warnings = dict(state["sections"]), dict(state["seconds"]), \
            list(state["warnings"])
        if (self.checkpoint_dir / "weights.pt").exists():
            model.load_state_dict(torch.load(self.checkpoint_dir / "weights.pt", map_location="cpu"))
        logger.info("Resuming %s: finished stages %s; %s.", self.out, ", ".join(self.done) or "none",
                    f"RL continues from its checkpoint at update {state['rl']['updates']}" if state.get("rl")
                    else "the next stage starts from its beginning")

    def checkpoint_due(self, update: int) -> bool:
        """Whether ``checkpoint_every`` / ``checkpoint_minutes`` ask for a checkpoint after ``update``."""
        every, minutes = self.config.checkpoint_every, self.config.checkpoint_minutes
        return bool(every and update % every == 0) or \
            (minutes is not None and time.perf_counter() - self.last_checkpoint >= 60 * minutes)

    def evaluate(self, model: Any, tokenizer: Any, samples: list, split: str, desc: str):
        from agents.common.evaluation import evaluate

        return evaluate(model, tokenizer, samples, formatter=self.formatter,
                        max_prompt_tokens=self.config.data.max_prompt_tokens,
                        max_new_tokens=self.config.data.max_new_tokens, batch_size=self.config.eval.batch_size,
                        split=split, progress=lambda it: self.log.progress(it, desc=desc, unit="batch"),
                        metric_options=self.metric_options)

    def test_eval(self, stage: str, model: Any, tokenizer: Any) -> None:
        start = time.perf_counter()
        result = self.evaluate(model, tokenizer, self.test, "test", f"test eval ({stage})")
        self.results[stage] = result
        self.log.log(result.flat(), step=0, stage=f"test/{stage}", kind="eval")
        self.timed("evaluation", time.perf_counter() - start)
        logger.info("%s on test: task %.3f, exact match %.3f", stage, result.overall["task"],
                    result.overall["exact_match"])


def _run_sft(run: _Run, model: Any, tokenizer: Any) -> None:
    from agents.sft import SFTTrainer

    sft_config, _ = run.config.stage_configs()
    start = time.perf_counter()
    data = run.config.data
    own_data = {}
    if data.reasoning_gym or data.dataset:  # the trainer's own data is the built-in suite only
        own_data = {"train_data": split_samples(data, "train", sft_config.num_examples, seed=sft_config.seed),
                    "val_data": split_samples(data, "validation", sft_config.val_examples, seed=sft_config.seed)}
    trainer = SFTTrainer(model, tokenizer, sft_config, tasks=data.tasks, formatter=run.formatter,
                         run_logger=run.log, **own_data)
    result = trainer.train()
    run.timed("sft", time.perf_counter() - start)
    run.warnings.extend(result.notes)
    run.sections["SFT"] = (
        f"{result.num_train} training examples ({sft_config.num_examples} per task family), {result.steps} steps "
        f"({result.epochs:.1f} epochs) in {result.elapsed_s:.0f} s, stopped by {result.stopped_by.replace('_', ' ')}. "
        f"Validation loss per response token: {result.initial_val_loss:.3f} before, {result.best_val_loss:.3f} "
        f"best (step {result.best_step}{', whose weights were restored' if result.restored else ''})."
    )


def _run_rl(run: _Run, model: Any, tokenizer: Any):
    """RL from ``model`` (trained in place); returns the trained policy's language model."""
    import numpy as np

    from agents.common.evaluation import HeldOutTracker
    from agents.common.interrupt import Interrupted
    from agents.common.model import ActorCritic
    from agents.common.report import window_means
    from agents.rl import make_trainer

    cfg = run.config
    _, rl_config = cfg.stage_configs()
    metric = run.metric
    policy = ActorCritic(model)
    policy.freeze_reference()  # the KL reference is the model RL starts from (the SFT model)
    if cfg.feedback.mode:
        return _run_feedback_rl(run, policy, tokenizer, rl_config)
    tracker = HeldOutTracker(metric)
    rewards_since_eval: list[float] = []
    trainer = None

    def decoding(policy_: Any) -> Any:
        """What is evaluated, kept and returned: the LM, or ILQL's decoding (the LM perturbed by its Q and V heads)."""
        return trainer.decoder() if trainer is not None and hasattr(trainer, "decoder") else policy_.lm

    def validate(policy_: Any) -> dict[str, float]:
        result = run.evaluate(decoding(policy_), tokenizer, run.val, "validation", "validation check")
        return {f"val_{m}": result.overall[m] for m in dict.fromkeys(("task", "exact_match", "length", metric))}

    def on_update(metrics: dict[str, Any]) -> None:
        step = int(metrics["update"])
        train = {k: v for k, v in metrics.items() if not k.startswith("val_") and k != "update"}
        run.log.log(train, step=step, stage="rl")
        rewards_since_eval.append(float(metrics.get("reward_mean", math.nan)))
        progress.update(1)
        progress.set_postfix(reward=f"{metrics.get('reward_mean', math.nan):.3f}")
        if f"val_{metric}" in metrics:
            check(step, metrics, float(np.nanmean(rewards_since_eval)))
            rewards_since_eval.clear()
        if run.checkpoint_due(step):
            save_checkpoint()
        run.stop.check()  # SIGINT/SIGTERM during this update: stop here, between updates

    def save_checkpoint() -> None:
        trainer.save(run.checkpoint_dir / "rl")
        run.save_state(rl={"tracker": tracker, "rewards_since_eval": list(rewards_since_eval),
                           "updates": trainer.num_updates})

    def check(step: int, values: dict[str, Any], train_reward: float | None) -> None:
        run.log.log({"task": values["val_task"], "exact_match": values["val_exact_match"],
                     "length": values["val_length"], "train_reward": train_reward}, step=step, stage="rl", kind="eval")
        tracker.update(step, float(values[f"val_{metric}"]), train_reward,
                       model=decoding(policy) if cfg.eval.keep_best else None)

    start = time.perf_counter()
    env_kwargs = rl_env_kwargs(cfg.data)
    budget = rl_config.time_budget_s
    progress = run.log.progress(total=rl_config.total_updates if budget is None else None,
                                desc=f"RL ({cfg.rl.algo}, {budget:.0f} s)" if budget else f"RL ({cfg.rl.algo})",
                                unit="update")
    trainer = make_trainer(cfg.rl.algo, rl_config, policy, tokenizer, env_kwargs, log_fn=on_update,
                           eval_fn=validate)
    resumed = run.resumed.get("rl") if run.resumed is not None else None
    if resumed is not None:  # continue the interrupted stage from its checkpoint: weights, optimizer, RNGs, env
        trainer.load_state(run.checkpoint_dir / "rl")
        tracker.__dict__.update(resumed["tracker"].__dict__)
        rewards_since_eval[:] = resumed["rewards_since_eval"]
        progress.update(trainer.num_updates)
    else:
        # The starting point counts for the best checkpoint (checked once the trainer exists: ILQL's decoding
        # needs its heads, which start near zero, so it starts close to the SFT model).
        check(0, validate(policy), None)
    try:
        with run.stop.deferred():  # a signal lets the current update finish, then on_update stops the run
            history = trainer.train()
    except Interrupted:
        save_checkpoint()
        run.interrupted_at = f"after RL update {trainer.num_updates}"
        raise
    finally:
        progress.close()
    if history and f"val_{metric}" not in history[-1]:  # a last check on the final weights
        check(trainer.num_updates, validate(policy), float(np.nanmean(rewards_since_eval)))
    restored = cfg.eval.keep_best and tracker.best_step != trainer.num_updates and \
        tracker.restore_best(decoding(policy))
    if restored and tracker.best_step == 0:
        message = (f"The final model is the STARTING model, unchanged by RL: no validation check after update 0 "
                   f"beat its {metric} {tracker.best_value:.3f}, so eval.keep_best restored its weights after "
                   f"{trainer.num_updates} updates. Set eval.keep_best=false to keep RL's last weights.")
        logger.warning(message)
        run.warnings.append(message)
    run.timed("rl", time.perf_counter() - start)
    run.warnings.extend(tracker.warnings)
    rewards = [h.get("reward_mean", math.nan) for h in history]
    families = sorted({k.split("/", 1)[1] for h in history for k in h if k.startswith("reward/")})
    run.rl_training = {
        "reward": env_kwargs["reward"],
        "updates": trainer.num_updates,
        "train": window_means(rewards),
        "per_family": {f: window_means([h.get(f"reward/{f}", math.nan) for h in history]) for f in families},
    }
    first, last = run.rl_training["train"]
    budget_hit = rl_config.time_budget_s is not None and trainer.num_updates < rl_config.total_updates
    stopped_by = (f"stopped by the time budget of {rl_config.time_budget_s:.0f} s (rl.{cfg.rl.algo}.time_budget_s), so "
                  "the number of updates depends on the machine's speed; --updates N fixes it" if budget_hit else
                  f"the update count rl.{cfg.rl.algo}.total_updates={rl_config.total_updates}")
    logger.info("RL ran %d updates: %s.", trainer.num_updates, stopped_by)
    run.sections["RL"] = (
        f"{cfg.rl.algo.upper()}, {trainer.num_updates} updates ({stopped_by}) in {trainer.elapsed:.0f} s, training "
        f"reward `{env_kwargs['reward']}` {first:.3f} (first 10% of updates) -> {last:.3f} (last 10%). Validation {metric} "
        f"({len(run.val)} samples) checked every {rl_config.eval_every} updates; best "
        f"{tracker.best_value:.3f} at update {tracker.best_step}"
        + (" (the SFT model: RL did not improve on it)" if tracker.best_step == 0 else "")
        + (", whose weights were restored." if restored else ".")
    )
    return decoding(policy)


def rl_env_kwargs(data: DataConfig) -> dict[str, Any]:
    """Keyword arguments of the RL training environment (train split) for ``data``."""
    kwargs: dict[str, Any] = {"split": "train", "reward": data.reward, "max_prompt_tokens": data.max_prompt_tokens,
                              "template": data.template, "num_shots": data.num_shots, "sampling": data.sampling,
                              "use_chat_template": data.use_chat_template}
    if data.dataset is not None:
        from agents.common.own_data import effective_reward

        train = list(split_samples(data, "train", data.train_size_per_task))
        return {**kwargs, "dataset": train, "reward": effective_reward(data.reward, train)[0]}
    if data.reasoning_gym:
        return {**kwargs, "dataset": split_samples(data, "train", data.train_size_per_task)}
    return {**kwargs, "tasks": data.tasks,
            "dataset_kwargs": {"size_per_task": data.train_size_per_task, "seed": data.seed}}


def _run_feedback_rl(run: _Run, policy: Any, tokenizer: Any, rl_config: Any):
    """The RL stage with rewards from (simulated) people: alternate feedback and RL rounds."""
    from agents.feedback_loop import run_feedback_loop

    cfg, fb = run.config, run.config.feedback
    data = cfg.data
    train = split_samples(data, "train", data.train_size_per_task)
    start = time.perf_counter()
    records = run_feedback_loop(
        policy, tokenizer, rounds=fb.rounds, feedback=fb.mode, store_url=fb.store, algo=cfg.rl.algo,
        config=fb.loop, rl_config=rl_config, train_data=train, val_data=run.val, workdir=run.out / "feedback",
        log_fn=lambda record: run.log.log(record, step=int(record.get("round", 0)), stage="feedback"),
    )
    run.timed("rl (feedback rounds)", time.perf_counter() - start)
    direct = fb.loop.rl_reward == "direct"
    rows = ["| round | answers | labels | reward-model version | RM held-out accuracy | "
            + ("answers used as RL rewards | " if direct else "") + "validation task score |",
            "|---:|---:|---:|---:|---:|" + ("---:|" if direct else "") + "---:|"]
    for r in records:
        rows.append(f"| {r.round} | {r.answers} | {r.labels_used} | {r.rm_version} | {r.rm_heldout_accuracy:.3f} | "
                    + (f"{r.rl_judgements} | " if direct else "") + f"{r.val_task:.3f} |")
    how = (f": {cfg.rl.algo.upper()} rewarded by their {fb.loop.direct_kind} of every completion it samples (the "
           "online reward model is refitted and measured alongside)" if direct else
           f" through an online reward model ({cfg.rl.algo.upper()} on its proxy reward)")
    run.sections["Feedback rounds"] = (
        f"Rewards from {fb.mode} evaluators{how}. {len(records) - 1} rounds; round 0 is the starting policy.\n\n"
        + "\n".join(rows)
    )
    return policy.lm


def _save_interrupted(run: _Run, exc: Any, command: str) -> None:
    """After a SIGINT/SIGTERM: the state to resume from, the model so far and the report so far."""
    from agents.common.config import to_dict
    from agents.common.report import write_report

    exc.out = run.out
    exc.where = run.interrupted_at or "during " + next(
        (s.upper() for s in run.stages if s not in run.done), "the evaluation")
    if not dist.is_main():
        return
    run.save_state()  # finished stages and results; an RL checkpoint written before is kept
    if run.model is not None:
        _merged(run.model, copy_first=True).save_pretrained(run.out / "model")
        run.tokenizer.save_pretrained(run.out / "model")
    message = (f"Stopped by {exc.signal_name} {exc.where}; the model so far is in model/, the checkpoint in "
               f"checkpoint/. Resume with: instruct-env {_subcommand(run.stages)} --resume {run.out}")
    exc.message = message
    run.warnings.append(message)
    if run.results:
        write_report(run.out / "report.md", run.results, config=to_dict(run.config),
                     summary=[f"Command: `{command}`", f"INTERRUPTED: {message}"], pretrain_note=None,
                     sections=run.sections, warnings=run.warnings, plots={})


def _subcommand(stages: Sequence[str]) -> str:
    return {("sft", "rl"): "pipeline", ("sft",): "sft", ("rl",): "rl"}.get(tuple(stages), "eval")


def _with_adapter(run: _Run, model: Any) -> Any:
    """``model`` with a LoRA adapter of ``model.lora_*`` (only the adapter trains)."""
    from instruct_env.error import require

    peft = require("peft", "peft")
    m = run.config.model
    lora = peft.LoraConfig(r=m.lora_r, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout,
                           target_modules=m.lora_target_modules, task_type="CAUSAL_LM")
    try:
        model = peft.get_peft_model(model, lora)
    except ValueError as exc:
        raise ConfigError(f"model.lora_*: peft could not add the adapter: {exc} Set model.lora_target_modules to "
                          "module names of this model (e.g. [c_attn] for GPT-2, [q_proj, v_proj] for Llama).") from exc
    trained, total = model.get_nb_trainable_parameters()
    note = (f"LoRA adapter r={m.lora_r}, alpha={m.lora_alpha:g} on {sorted(model.peft_config['default'].target_modules)}: "
            f"{trained:,} of {total:,} parameters train; model/ holds the weights with the adapter merged in.")
    logger.info("%s", note)
    run.sections["Adapter"] = note
    return model


def _merged(model: Any, copy_first: bool = False) -> Any:
    """A PEFT model with its adapter merged into the base weights (a plain model is returned as is)."""
    if not hasattr(model, "merge_and_unload"):
        return model
    import copy

    return (copy.deepcopy(model) if copy_first else model).merge_and_unload()


def _resume_state(out: Path, stages: Sequence[str]) -> dict[str, Any]:
    """The saved state of the interrupted run in ``out`` (see :meth:`_Run.save_state`)."""
    import pickle

    path = out / "checkpoint" / "pipeline.pkl"
    if not path.exists():
        raise ConfigError(f"--resume {str(out)!r}: no checkpoint there (expected {path}, written when a run is stopped "
                          "by Ctrl-C/SIGTERM or every checkpoint_every RL updates). Start a new run instead.")
    with open(path, "rb") as fh:
        state = pickle.load(fh)
    if list(state["stages"]) != list(stages):
        raise ConfigError(f"--resume {str(out)!r}: that run's stages were {state['stages']}, this command runs "
                          f"{list(stages)}. Resume it with the command that started it.")
    if state["finished"]:
        raise ConfigError(f"--resume {str(out)!r}: that run finished; there is nothing to resume.")
    return state


def _train_and_evaluate(run: _Run):
    """Load the model, evaluate it, run the stages (each followed by an evaluation)."""
    start = time.perf_counter()
    if not dist.is_main():
        dist.barrier()  # rank 0 pre-trains / downloads into the cache first; the others then read it
    model, tokenizer, pretrain_info = load_policy_model(run.config, run.log)
    if dist.is_main():
        dist.barrier()
    run.timed("model (load or pre-train)", time.perf_counter() - start)
    if "rl" in run.stages and getattr(model.config, "is_encoder_decoder", False):
        raise ConfigError(
            "RL needs a causal (decoder-only) model, but this one is encoder-decoder. Run 'instruct-env sft' for it, "
            "or pass a causal model with --model."
        )
    labels = {"sft": "SFT", "rl": "SFT+RL" if "sft" in run.stages else "RL"}
    first = "zero-shot" if "sft" in run.stages else "before RL" if run.stages else "model"
    if run.config.model.lora_r:
        model = _with_adapter(run, model)
    run.model, run.tokenizer = model, tokenizer  # what an interruption saves
    if run.resumed is not None:
        run.restore(model)
    if first not in run.results:
        run.test_eval(first, model, tokenizer)
    for stage in run.stages:
        if stage in run.done:
            continue
        if stage == "sft":  # an interrupted SFT starts again from its beginning (same seed, same result)
            _run_sft(run, model, tokenizer)
        else:
            model = _run_rl(run, model, tokenizer)
        run.test_eval(labels[stage], model, tokenizer)
        run.done.append(stage)
        run.save_state(model)
    if run.rl_training is not None:
        run.sections["Did RL improve the model?"] = _rl_effect(run, before=list(run.results)[-2],
                                                               after=list(run.results)[-1])
    return model, tokenizer, pretrain_info


def _rl_effect(run: _Run, before: str, after: str) -> str:
    """The report's answer to "did RL improve the model?" (training reward and held-out score)."""
    from agents.common.evaluation import paired_bootstrap
    from agents.common.report import rl_effect_section

    a, b = run.results[before], run.results[after]
    return rl_effect_section(updates=run.rl_training["updates"], reward_name=run.rl_training.get("reward", run.config.data.reward),
                             train=run.rl_training["train"], per_family=run.rl_training["per_family"],
                             heldout=(a.overall["task"], b.overall["task"]),
                             change=paired_bootstrap(a, b, "task", seed=run.config.seed), before=before, after=after,
                             samples=b.num_samples)


def run_pipeline(config: PipelineConfig | None = None, stages: Sequence[str] = STAGES,
                 command: str = "instruct-env pipeline", resume: str | Path | None = None) -> PipelineResult:
    """Run ``stages`` (``"sft"``, ``"rl"``, both, or none for a plain evaluation) and write the report.

    The test split is evaluated before training (``zero-shot``) and after every stage.

    SIGINT (Ctrl-C) or SIGTERM during RL lets the current update finish; anywhere else the run
    stops at once. Either way the run folder gets a resumable checkpoint (``checkpoint/``), the
    model so far (``model/``) and the report so far, and
    :class:`~agents.common.interrupt.Interrupted` is raised (its ``out`` is the run folder).
    ``resume=<run folder>`` continues such a run: finished stages are kept, an interrupted RL
    stage continues from its checkpoint (the same weights, optimizer, RNG and environment state,
    so the result equals an uninterrupted run's), an interrupted SFT starts again (same seed, same
    result). ``config`` should then be the run's own ``config.yaml``.
    """
    from agents.common.config import to_dict
    from agents.common.device import select_device
    from agents.common.interrupt import Interrupted
    from agents.common.logging import read_metrics
    from agents.common.plots import plot_metrics
    from agents.common.report import write_report

    config = config if config is not None else PipelineConfig()
    run = _Run(config, stages, resume)
    try:
        with run.stop:
            model, tokenizer, pretrain_info = _train_and_evaluate(run)
    except Interrupted as exc:
        _save_interrupted(run, exc, command)
        raise
    finally:
        run.log.close()
    model = _merged(model)  # a LoRA adapter is merged in: model/ loads like any model
    # A sharded model (distributed.strategy="fsdp") is gathered whole for the save; every rank takes part.
    final_state = dist.full_state_dict(model) if run.stages and dist.is_sharded(model) else None
    if not dist.is_main():  # the model is rank 0's too; rank 0 writes the model, results and report
        return PipelineResult(out_dir=run.out, report=run.out / "report.md", metrics=run.log.path, plots={},
                              results=run.results, model_dir=run.out / "model" if run.stages else None,
                              wall_time_s=time.perf_counter() - run.start, stage_seconds=dict(run.seconds),
                              warnings=list(run.warnings))
    model_dir = None
    if run.stages:
        model_dir = run.out / "model"
        model.save_pretrained(model_dir, state_dict=final_state)  # None: the model's own (whole) weights
        tokenizer.save_pretrained(model_dir)
        if config.data.dataset is not None:  # what it was trained on, so that a later eval can refuse those inputs
            from instruct_env.tasks.splits import input_key

            keys = {input_key(s) for s in split_samples(config.data, "train", config.data.train_size_per_task)}
            earlier = Path(config.model.name) / "trained_inputs.json" if config.model.name else None
            if earlier is not None and earlier.is_file():
                keys |= set(json.loads(earlier.read_text()))
            (model_dir / "trained_inputs.json").write_text(json.dumps(sorted(keys)))
        if pretrain_info is not None:
            info = pretrain_info if isinstance(pretrain_info, dict) else dataclasses.asdict(pretrain_info)
            (model_dir / "pretrain_info.json").write_text(json.dumps(info, indent=2))
    final = run.results[list(run.results)[-1]]
    with open(run.out / "completions.jsonl", "w", encoding="utf-8") as fh:
        for record in final.records:
            fh.write(json.dumps(record) + "\n")
    (run.out / "results.json").write_text(json.dumps({k: v.to_dict() for k, v in run.results.items()}, indent=2))
    plots = plot_metrics(read_metrics(run.log.path), run.out / "plots", stages=("pretrain", "sft", "rl"))
    wall = time.perf_counter() - run.start
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in run.seconds.items())
    summary = [
        f"Command: `{command}`",
        f"Run folder: `{run.out}`; metrics: `metrics.jsonl`"
        + (", TensorBoard: `tensorboard/`" if (run.out / "tensorboard").is_dir() else "")
        + (f"; final model: `{model_dir.name}/`" if model_dir else ""),
        f"Model: {config.model.name or 'embedded default (pre-trained on the task suite, see below)'}; "
        f"device {select_device(config.device)}, {run.threads} CPU thread(s) ({run.threads_why}); seed {config.seed}",
        f"Wall time {wall:.0f} s ({timing})",
    ]
    if run.metric_options:  # the report's bleu / rougeL / exact match were computed with these
        summary.append("Evaluation metric options: " + "; ".join(
            f"{name}({', '.join(f'{k}={v!r}' for k, v in opts.items())})"
            for name, opts in run.metric_options.items()))
    note = None
    if pretrain_info is not None:
        note = pretrain_info.describe() if hasattr(pretrain_info, "describe") else (
            f"The model descends from the embedded default, pre-trained by instruct-env on the task suite's "
            f"TRAIN split with one phrasing per family held out ({pretrain_info.get('steps')} steps).")
    report = write_report(run.out / "report.md", run.results, config=to_dict(config), summary=summary,
                          pretrain_note=note, sections=run.sections, warnings=run.warnings, plots=plots)
    return PipelineResult(out_dir=run.out, report=report, metrics=run.log.path, plots=plots, results=run.results,
                          model_dir=model_dir, wall_time_s=time.perf_counter() - run.start,
                          stage_seconds=dict(run.seconds), warnings=list(run.warnings))
