"""Configs import without torch, so a config can be built, checked and printed on a machine without it."""

from __future__ import annotations

import subprocess
import sys
import typing

TORCH_FREE = ["agents.rl", "agents.pg.config", "agents.ac.config", "agents.q.config", "agents.sft.config",
              "agents.common.rl_config", "agents.common.distributed_config", "instruct_env._validation",
              "agents.common.model_config", "agents.feedback_config", "instruct_env.feedback.reward_model_config",
              "agents.pipeline", "agents.pipeline.config"]


def test_configs_import_without_torch():
    code = f"import sys, {', '.join(TORCH_FREE)}; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_old_import_paths_still_work():
    from agents.ac import A2CTrainer, PPOConfig
    from agents.common.distributed import DistributedConfig as FromDistributed
    from agents.common.distributed_config import DistributedConfig
    from agents.common.rl_config import RLConfig
    from agents.common.trainer import RLConfig as FromTrainer
    from agents.common.trainer import check_positive_int, check_range
    from agents.pg import GRPOTrainer
    from agents.q import ILQLTrainer
    from agents.sft import SFTTrainer

    assert FromTrainer is RLConfig and FromDistributed is DistributedConfig
    assert (A2CTrainer.algo, GRPOTrainer.algo, ILQLTrainer.algo) == ("a2c", "grpo", "ilql")
    assert PPOConfig().distributed == DistributedConfig() and callable(SFTTrainer)
    assert callable(check_positive_int) and callable(check_range)


def test_moved_configs_keep_their_old_import_paths():
    from agents.common.model import DefaultModelConfig as FromModel
    from agents.common.model_config import DefaultModelConfig
    from agents.feedback_config import FEEDBACK_MODES, FeedbackLoopConfig
    from agents.feedback_loop import FEEDBACK_MODES as LOOP_MODES
    from agents.feedback_loop import FeedbackLoopConfig as FromLoop
    from instruct_env.feedback.reward_model import POOLINGS
    from instruct_env.feedback.reward_model import RewardModelConfig as FromRewardModel
    from instruct_env.feedback.reward_model_config import Pooling, RewardModelConfig

    assert FromModel is DefaultModelConfig and FromLoop is FeedbackLoopConfig and FromRewardModel is RewardModelConfig
    assert LOOP_MODES == FEEDBACK_MODES == ("simulated", "human") and POOLINGS == typing.get_args(Pooling)


def test_kl_estimator_choices_are_the_estimators():
    from agents.common.kl import KL_ESTIMATORS
    from agents.common.rl_config import KLEstimator

    assert typing.get_args(KLEstimator) == tuple(KL_ESTIMATORS)


def test_eval_metric_choices_are_the_evaluation_metrics_but_length():
    from agents.common.evaluation import METRICS
    from agents.pipeline.config import EvalMetric

    assert typing.get_args(EvalMetric) == tuple(m for m in METRICS if m != "length")
