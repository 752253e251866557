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

from agents.pipeline.config import (
    DataConfig,
    EvalConfig,
    FeedbackSection,
    ModelConfig,
    PipelineConfig,
    ReasoningGymTask,
    RLSection,
)
from agents.pipeline.data import rl_env_kwargs, split_samples
from agents.pipeline.run import STAGES, PipelineResult, auto_threads, load_policy_model, run_pipeline

__all__ = [
    "DataConfig",
    "ReasoningGymTask",
    "split_samples",
    "rl_env_kwargs",
    "ModelConfig",
    "FeedbackSection",
    "RLSection",
    "EvalConfig",
    "PipelineConfig",
    "PipelineResult",
    "STAGES",
    "run_pipeline",
    "load_policy_model",
    "auto_threads",
]
