"""RL on Chinese answers with BLEU's ``zh`` tokenizer: the training reward rises to a known optimum.

Task: "Say 你好 ." -> "你好" and "Say 谢谢 ." -> "谢谢" with a tiny vocabulary in which every Chinese
character is its own token (decoded with spaces between tokens, which the ``zh`` tokenizer
ignores between Chinese characters). Reward: ``{"bleu": {"tokenize": "zh"}}`` -- 1 for exactly
the two characters, partial credit for one of them (BLEU's brevity penalty) -- where the default
13a tokenizer would see one token per answer. Tiny policy, GRPO; the test stops as soon as the
mean reward of the last five updates reaches the threshold.
"""

from __future__ import annotations

import numpy as np
import torch
from rl_utils import tiny_policy

from agents.rl import default_config, make_trainer
from instruct_env import rewards
from instruct_env.tasks.sample import Sample

WORDS = ["<|pad|>", "<|eos|>", "<unk>", "###", "Instruction", "Response", "Input", ":", ".", "Say",
         "你", "好", "谢", "我", "是", "不"]
THRESHOLD = 0.8
REWARD = {"bleu": {"tokenize": "zh"}}


def zh_tokenizer():
    """Word-level tokenizer; each Chinese character is a pre-token of its own."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                 pre_tokenizers.Split(Regex("[\u4e00-\u9fff]"), "isolated")])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|eos|>", pad_token="<|pad|>", unk_token="<unk>")


def samples() -> list[Sample]:
    return [Sample(id=f"zh/{w}", task="zh_say", instruction=f"Say {w} .", references=(w,)) for w in ("你好", "谢谢")]


def test_the_zh_reward_sees_characters_where_13a_sees_words():
    tokenizer = zh_tokenizer()
    answer = tokenizer.decode(tokenizer.encode("你好", add_special_tokens=False))
    assert answer == "你 好"
    # one of two characters: precision 1 at order 1 (the only order), brevity penalty exp(1 - 2/1);
    # sacreBLEU's exp(log(100)) / 100 costs a few ulps, hence rtol 1e-14
    np.testing.assert_allclose(rewards.make(REWARD)([answer, "你", "谢谢"], [["你好"]] * 3), [1.0, np.exp(-1), 0.0],
                               rtol=1e-14, atol=0)
    assert rewards.make("bleu")([answer], [["你好"]])[0] == 0.0


def test_grpo_learns_chinese_answers_with_zh_bleu():
    torch.set_num_threads(1)
    tokenizer = zh_tokenizer()
    config = default_config("grpo", num_envs=32, group_size=8, max_new_tokens=3, lr=1e-3, kl_coef=0.01, seed=0)
    env_kwargs = {"dataset": samples(), "reward": REWARD, "max_prompt_tokens": 16}
    trainer = make_trainer("grpo", config, tiny_policy(tokenizer, seed=0), tokenizer, env_kwargs)
    history = []
    for _ in range(400):
        history.append(trainer.update_step()["reward_mean"])
        if len(history) >= 5 and np.mean(history[-5:]) >= THRESHOLD:
            break
    assert np.mean(history[:3]) < 0.3, history[:3]
    assert np.mean(history[-5:]) >= THRESHOLD, history
