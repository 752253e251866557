"""Tests of prompt formatting: templates, chat templates, demonstrations and truncation."""

from __future__ import annotations

import copy
import pickle

import pytest

from instruct_env.error import ConfigError, UnknownNameError
from instruct_env.tasks import BuiltinDataset, PromptFormatter, Sample, tokenizer_corpus
from instruct_env.tasks.prompts import PromptTemplate

SAMPLE = Sample("t/0", "t", "Copy the text.", "one two three four five six", ("one two three four five six",))


class WhitespaceTokenizer:
    """One token per whitespace-separated chunk; enough to count prompt tokens."""

    def __init__(self):
        self.vocab: dict[str, int] = {}

    def encode(self, text, add_special_tokens=False):
        assert add_special_tokens is False
        return [self.vocab.setdefault(word, len(self.vocab)) for word in text.split()]


@pytest.fixture(scope="module")
def hf_tokenizer():
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]", "</s>", "<|user|>", "<|assistant|>"])
    tok.train_from_iterator(tokenizer_corpus(n_per_task=30) + [SAMPLE.context], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="</s>")


@pytest.fixture(scope="module")
def chat_tokenizer(hf_tokenizer):
    tokenizer = copy.deepcopy(hf_tokenizer)
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|> {% endif %}"
    )
    return tokenizer


def test_default_template():
    formatter = PromptFormatter()
    assert formatter.format(SAMPLE) == (
        "### Instruction:\nCopy the text.\n### Input:\none two three four five six\n### Response:\n"
    )
    no_context = Sample("t/1", "t", "Say hi.", "", ("hi",))
    assert formatter.format(no_context) == "### Instruction:\nSay hi.\n### Response:\n"


def test_plain_and_custom_templates():
    assert PromptFormatter("plain").format(SAMPLE) == "Copy the text.\none two three four five six\nAnswer: "
    custom = PromptTemplate("Q: {instruction}\n", "In: {context}\n", "A:", " ;")
    assert PromptFormatter(custom).format(SAMPLE) == "Q: Copy the text.\nIn: one two three four five six\nA:"
    braces = Sample("t/2", "t", "Print {x}.", "{y}", ("z",))
    assert "Print {x}." in PromptFormatter().format(braces)
    with pytest.raises(UnknownNameError, match=r"Unknown prompt template 'defualt'\. Did you mean 'default'"):
        PromptFormatter("defualt")


def test_argument_validation():
    with pytest.raises(ConfigError, match="num_shots=2 needs a source of solved examples"):
        PromptFormatter(num_shots=2)
    with pytest.raises(ConfigError, match="num_shots must be an integer >= 0"):
        PromptFormatter(num_shots=-1)
    with pytest.raises(ConfigError, match="use_chat_template must be 'auto', True or False"):
        PromptFormatter(use_chat_template="yes")
    with pytest.raises(ConfigError, match="demonstrations source is empty"):
        PromptFormatter(num_shots=1, demonstrations=[])
    with pytest.raises(ConfigError, match="max_tokens must be a positive integer"):
        PromptFormatter().encode(SAMPLE, WhitespaceTokenizer(), max_tokens=0)


def test_demonstrations_are_deterministic_same_task_and_never_the_sample():
    train = BuiltinDataset(["copy", "sort_numbers"], split="train", size_per_task=20)
    formatter = PromptFormatter(num_shots=3, demonstrations=train, seed=5)
    sample = train[2]  # a copy sample that is itself in the source
    demos = formatter.demonstrations_for(sample)
    assert len(demos) == 3
    assert all(d.task == "copy" and d.id != sample.id for d in demos)
    assert demos == PromptFormatter(num_shots=3, demonstrations=train, seed=5).demonstrations_for(sample)
    assert demos != PromptFormatter(num_shots=3, demonstrations=train, seed=6).demonstrations_for(sample)
    text = formatter.format(sample)
    assert text.count("### Instruction:") == 4
    first = demos[0]
    assert text.startswith(PromptFormatter().format(first) + first.references[0] + "\n### Instruction:")
    assert text.endswith(PromptFormatter().format(sample))
    # A source of only the sample itself (and an identical copy) yields no demonstrations.
    twin = Sample("other", sample.task, sample.instruction, sample.context, sample.references)
    alone = PromptFormatter(num_shots=2, demonstrations=[sample, twin])
    assert alone.demonstrations_for(sample) == []
    # With no sample of the same task, any sample may be used.
    other = PromptFormatter(num_shots=1, demonstrations=[train[1]])
    assert other.demonstrations_for(sample) == [train[1]]
    assert pickle.loads(pickle.dumps(formatter)).format(sample) == text


def test_encode_without_truncation():
    tok = WhitespaceTokenizer()
    ids, info = PromptFormatter().encode(SAMPLE, tok, max_tokens=100)
    assert info == {"truncated": False, "num_shots_used": 0, "prompt_tokens": len(ids)}
    assert len(ids) == len(PromptFormatter().format(SAMPLE).split())
    ids2, info2 = PromptFormatter().encode(SAMPLE, tok)  # no limit
    assert ids2 == ids and info2 == info


def test_truncation_drops_demonstrations_last_first():
    tok = WhitespaceTokenizer()
    demos = [Sample(f"d/{i}", "t", f"Demo {i}.", "x y", ("x y",)) for i in range(3)]
    formatter = PromptFormatter(num_shots=3, demonstrations=demos)
    chosen = formatter.demonstrations_for(SAMPLE)
    full_ids, full_info = formatter.encode(SAMPLE, tok)
    assert full_info["num_shots_used"] == 3
    bare = len(PromptFormatter().format(SAMPLE).split())
    per_demo = (len(full_ids) - bare) // 3  # every demo has the same length here
    ids, info = formatter.encode(SAMPLE, tok, max_tokens=bare + per_demo)
    assert info == {"truncated": True, "num_shots_used": 1, "prompt_tokens": bare + per_demo}
    kept = formatter._render(SAMPLE.instruction, SAMPLE.context, chosen[:1], None)
    assert ids == tok.encode(kept)  # the first demonstration is the one kept
    ids, info = formatter.encode(SAMPLE, tok, max_tokens=bare)
    assert info == {"truncated": True, "num_shots_used": 0, "prompt_tokens": bare}


def test_truncation_cuts_context_on_word_boundaries():
    tok = WhitespaceTokenizer()
    formatter = PromptFormatter()
    bare = len(formatter.format(SAMPLE).split())  # context has 6 words = 6 tokens here
    for budget, kept_words in [(bare - 1, 4), (bare - 3, 2), (bare - 5, 0)]:
        ids, info = formatter.encode(SAMPLE, tok, max_tokens=budget)
        assert info == {"truncated": True, "num_shots_used": 0, "prompt_tokens": budget}
        head = " ".join(SAMPLE.context.split()[:kept_words])
        expected = formatter.format(
            Sample("t/0", "t", SAMPLE.instruction, (head + " ..." if head else "..."))
        )
        assert ids == tok.encode(expected)
    with pytest.raises(ConfigError, match=r"needs at least 10 tokens .* but max_tokens=9"):
        formatter.encode(SAMPLE, tok, max_tokens=9)
    no_context = Sample("t/1", "t", "Say hi now please.", "", ("hi",))
    with pytest.raises(
        ConfigError,
        match=r"needs at least 8 tokens \(instruction and response marker, no demonstrations\) but max_tokens=3",
    ):
        formatter.encode(no_context, tok, max_tokens=3)


def test_truncation_with_real_tokenizer_never_splits_tokens(hf_tokenizer):
    long = Sample("l/0", "t", "Copy the text.", "cat dog bird horse fish " * 10, ("x",))
    formatter = PromptFormatter()
    words = long.context.split()

    def encoded_with(n):  # the prompt whose context is the first n words + " ..."
        head = Sample("l/0", "t", long.instruction, " ".join(words[:n]) + " ..." if n else "...")
        return hf_tokenizer.encode(formatter.format(head), add_special_tokens=False)

    full = hf_tokenizer.encode(formatter.format(long), add_special_tokens=False)
    budget = len(full) - 7
    ids, info = formatter.encode(long, hf_tokenizer, max_tokens=budget)
    assert info["truncated"] and info["prompt_tokens"] == len(ids) <= budget
    assert hf_tokenizer.unk_token_id not in ids
    n = max(n for n in range(len(words)) if len(encoded_with(n)) <= budget)  # largest head that fits
    assert ids == encoded_with(n)
    assert n == len(words) - 8 and hf_tokenizer.decode(ids).endswith(" fish cat dog ... ### Response :")


def test_chat_template(chat_tokenizer, hf_tokenizer):
    before = (chat_tokenizer.chat_template, chat_tokenizer.padding_side, len(chat_tokenizer))
    text = PromptFormatter().format(SAMPLE, chat_tokenizer)
    assert text == "<|user|> Copy the text.\n\none two three four five six\n<|assistant|> "
    assert (chat_tokenizer.chat_template, chat_tokenizer.padding_side, len(chat_tokenizer)) == before
    demos = [Sample("d/0", "t", "Demo.", "", ("ok",))]
    text = PromptFormatter(num_shots=1, demonstrations=demos).format(SAMPLE, chat_tokenizer)
    assert text.startswith("<|user|> Demo.\n<|assistant|> ok\n<|user|> Copy the text.")
    ids, info = PromptFormatter(num_shots=1, demonstrations=demos).encode(
        SAMPLE, chat_tokenizer, max_tokens=1000
    )
    assert ids == chat_tokenizer.encode(text, add_special_tokens=False) and info["num_shots_used"] == 1
    assert (
        PromptFormatter(use_chat_template=False).format(SAMPLE, chat_tokenizer).startswith("### Instruction:")
    )
    assert PromptFormatter().format(SAMPLE, hf_tokenizer).startswith("### Instruction:")  # no chat template
    with pytest.raises(ConfigError, match="use_chat_template=True but the tokenizer has no chat_template"):
        PromptFormatter(use_chat_template=True).format(SAMPLE, hf_tokenizer)
    with pytest.raises(ConfigError, match="use_chat_template=True but no tokenizer was given"):
        PromptFormatter(use_chat_template=True).format(SAMPLE)


def test_chat_template_truncation(chat_tokenizer):
    long = Sample("l/0", "t", "Copy the text.", "cat dog bird horse fish " * 10, ("x",))
    formatter = PromptFormatter()
    full, _ = formatter.encode(long, chat_tokenizer)
    ids, info = formatter.encode(long, chat_tokenizer, max_tokens=len(full) - 10)
    assert info["truncated"] and len(ids) <= len(full) - 10
    decoded = chat_tokenizer.decode(ids)
    assert decoded.startswith("<|user|>") and decoded.rstrip().endswith("<|assistant|>")
