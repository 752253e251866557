"""Batched rewards: strings in, one ``float64`` per completion out.

Every reward has the signature
``reward(completions, references, **kwargs) -> np.ndarray`` and a
``compute(...) -> (total, components)`` method. Build them with :func:`make`::

    >>> from instruct_env import rewards
    >>> reward = rewards.make({"exact_match": 0.5, "token_f1": 0.5})
    >>> total, parts = reward.compute(["Paris"], [["Paris", "paris, France"]])
    >>> total, sorted(parts)
    (array([1.]), ['exact_match', 'token_f1'])

Reference-based metrics give the same values as the reference packages (sacreBLEU, rouge_score),
which are imported only when such a reward is first called. They take those packages' options under
the same names (:func:`options` lists them; the table is in ``docs/rewards.md``)::

    >>> rewards.make("bleu", tokenize="zh")(["我爱北京天安门"], [["我爱北京"]]).round(3)
    array([0.411])
"""

from __future__ import annotations

from instruct_env.rewards.base import CallableReward, Reward, WeightedReward, check_inputs
from instruct_env.rewards.bleu import BleuReward, ChrfReward
from instruct_env.rewards.registry import RewardSpec, make, names, options
from instruct_env.rewards.rouge import CharTokenizer, CJKTokenizer, RougeReward, clear_caches
from instruct_env.rewards.task import TaskReward
from instruct_env.rewards.ter import TerReward
from instruct_env.rewards.text import ExactMatchReward, LengthPenaltyReward, TokenF1Reward

__all__ = [
    "Reward",
    "CallableReward",
    "WeightedReward",
    "make",
    "names",
    "options",
    "RewardSpec",
    "check_inputs",
    "clear_caches",
    "BleuReward",
    "ChrfReward",
    "TerReward",
    "RougeReward",
    "CharTokenizer",
    "CJKTokenizer",
    "ExactMatchReward",
    "TokenF1Reward",
    "LengthPenaltyReward",
    "TaskReward",
]
