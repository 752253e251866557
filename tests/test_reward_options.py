"""Metric options: every option of BLEU, chrF, TER and ROUGE equals sacreBLEU / rouge_score (1e-9),
on text in Chinese, Japanese, Korean, Arabic, Czech, Romanian, German and English, with empty and
whitespace-only texts and several references; and options wherever a reward is named."""

from __future__ import annotations

import importlib.util
import pickle
import random

import numpy as np
import pytest

from instruct_env import rewards
from instruct_env.error import ConfigError, MissingDependency, UnknownNameError
from instruct_env.rewards import BleuReward, CharTokenizer, CJKTokenizer, RougeReward
from instruct_env.rewards._tokenizers import bleu_tokens, is_zh_char, tercom_words

# ---------------------------------------------------------------------------------------------
# A multilingual corpus
# ---------------------------------------------------------------------------------------------

SENTENCES = [
    "我爱北京天安门。",
    "今天天气很好，我们去公园散步吧！",
    "他说：“这本书非常有意思。”",
    "价格是3.5元，数量为1,000个。",
    "東京は日本の首都です。",
    "私は毎朝コーヒーを飲みます、そしてパンを食べます。",
    "カタカナとひらがなを混ぜた文",
    "오늘 날씨가 정말 좋네요.",
    "مرحبا بكم في المدينة الجميلة.",
    "القطة تجلس على الحصيرة، والكلب ينام.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Dnes je krásný den, že?",
    "Ţara şi ţăranul: ceaţă, ţintă, ţară.",
    "Țara și țăranul: ceață, țintă, țară.",
    "Die Größe der Straße ist über alles schön.",
    "Der Käse kostet 3,50 € (inkl. MwSt.).",
    "The cat's toys cost $3.50 (2-3 days), e.g. in the U.S.A.",
    "&quot;Hello&quot; &amp; goodbye — it's 10-20% off…",
    ".5 starts with a dot, and ends with one.",
    "3.",
    "中文English混合mixed文本text",
    "¿Qué tal? ¡Muy bien!",
    "line one\nline two-\nthree",
    "Ünïcödé ÄÖÜ ß ǅ İstanbul \u212aelvin",
]
ODD_TEXTS = ["", " ", "\t\n", "  \u3000 ", "。", ",", "-", "…", "🙂", "a", "我"]


def _variant(rng: random.Random, text: str) -> str:
    """A perturbed copy: characters or words dropped, swapped, repeated, or the case changed."""
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        if not chars:
            break
        i = rng.randrange(len(chars))
        op = rng.random()
        if op < 0.3:
            del chars[i]
        elif op < 0.55:
            j = rng.randrange(len(chars))
            chars[i], chars[j] = chars[j], chars[i]
        elif op < 0.75:
            chars.insert(i, chars[i])
        elif op < 0.85:
            chars.insert(i, " ")
        else:
            chars[i] = chars[i].upper() if chars[i].islower() else chars[i].lower()
    out = "".join(chars)
    if rng.random() < 0.5:
        words = out.split(" ")
        rng.shuffle(words)
        out = " ".join(words) if rng.random() < 0.5 else out
    return out


def corpus(seed: int = 0, n: int = 90) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    completions, references = [], []
    for k in range(n):
        base = SENTENCES[k % len(SENTENCES)]
        refs = [base] + [_variant(rng, base) for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.15:
            refs.append(rng.choice(ODD_TEXTS))
        rng.shuffle(refs)
        r = rng.random()
        if r < 0.2:
            completion = rng.choice(refs)
        elif r < 0.7:
            completion = _variant(rng, base)
        elif r < 0.85:
            completion = rng.choice(SENTENCES)
        else:
            completion = rng.choice(ODD_TEXTS)
        if rng.random() < 0.1:
            completion = rng.choice([" ", "\n", "  "]) + completion + rng.choice(["", " ", "\n"])
        completions.append(completion)
        references.append(refs)
    # pairs the reference packages find awkward: empty/whitespace sides, one character
    for c, rs in [("", [""]), (" ", ["\n"]), ("", ["我爱北京"]), ("我爱北京", [""]), ("我", ["我", "你"]),
                  ("。", ["。"]), ("3.", ["3 ."]), (".5", [". 5"])]:
        completions.append(c)
        references.append(rs)
    return completions, references


COMPLETIONS, REFERENCES = corpus()


def _close(got: np.ndarray, expected: list[float]) -> None:
    assert got.dtype == np.float64 and got.shape == (len(expected),)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# BLEU
# ---------------------------------------------------------------------------------------------

BUILTIN_TOKENIZERS = ["13a", "intl", "zh", "char", "none"]
BLEU_OPTIONS = [
    {},
    {"lowercase": True},
    {"smooth_method": "floor"},
    {"smooth_method": "floor", "smooth_value": 0.3},
    {"smooth_method": "add-k"},
    {"smooth_method": "add-k", "smooth_value": 2},
    {"smooth_method": "none"},
    {"max_ngram_order": 2},
    {"max_ngram_order": 6, "lowercase": True},
    {"effective_order": False},
    {"effective_order": False, "smooth_method": "floor"},
]


def _sacrebleu_bleu(options: dict, completions, references) -> list[float]:
    import sacrebleu

    options = {"effective_order": True, **options}
    metric = sacrebleu.BLEU(**options)
    return [min(1.0, metric.sentence_score(c, list(rs)).score / 100) for c, rs in zip(completions, references)]


@pytest.mark.parametrize("tokenize", BUILTIN_TOKENIZERS)
def test_bleu_tokenizers_equal_sacrebleu(tokenize):
    got = rewards.make("bleu", tokenize=tokenize)(COMPLETIONS, REFERENCES)
    _close(got, _sacrebleu_bleu({"tokenize": tokenize}, COMPLETIONS, REFERENCES))


@pytest.mark.parametrize("options", BLEU_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("tokenize", ["13a", "zh"])
def test_bleu_options_equal_sacrebleu(tokenize, options):
    options = {"tokenize": tokenize, **options}
    got = rewards.make("bleu", **options)(COMPLETIONS, REFERENCES)
    _close(got, _sacrebleu_bleu(options, COMPLETIONS, REFERENCES))


@pytest.mark.parametrize("tokenize", BUILTIN_TOKENIZERS)
def test_bleu_tokens_equal_sacrebleu_tokens(tokenize):
    import sacrebleu

    tokenizer = sacrebleu.BLEU(tokenize=tokenize).tokenizer
    rng = random.Random(5)
    alphabet = list("ab1.,-()'\"&$ ü中。，?!:;/\\[]{}<>=+*#@%^_`|~\t\n09 €—“”") + ["東京", "مرحبا", "ț"]
    lines = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))) for _ in range(2000)]
    lines += SENTENCES + ODD_TEXTS + COMPLETIONS
    for line, tokens in zip(lines, bleu_tokens(lines, tokenize)):
        assert tokens == tokenizer(line.rstrip()).split(), (tokenize, repr(line))


def test_zh_character_table_equals_sacrebleu():
    from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

    points = list(range(0x10000)) + list(range(0x10000, 0x30000, 97))
    differ = [p for p in points if is_zh_char(p) != TokenizerZh._is_chinese_char(chr(p))]
    assert differ == []


def test_bleu_zh_values_from_the_issue():
    assert rewards.make("bleu")(["我爱北京天安门"], [["我爱北京"]])[0] == 0.0
    assert rewards.make("bleu", tokenize="zh")(["我爱北京天安门"], [["我爱北京"]])[0] == pytest.approx(0.4111336169, abs=1e-9)


@pytest.mark.parametrize("name, module", [("ja-mecab", "MeCab"), ("ko-mecab", "mecab_ko")])
def test_bleu_mecab_tokenizers_where_installed(name, module):
    if importlib.util.find_spec(module) is None:
        with pytest.raises(MissingDependency, match=rf"tokenize='{name}'.*pip install 'sacrebleu\["):
            rewards.make("bleu", tokenize=name)
        pytest.skip(f"{module} is not installed")
    reward = rewards.make("bleu", tokenize=name)
    assert "sacreBLEU's" in repr(reward)
    _close(reward(COMPLETIONS, REFERENCES), _sacrebleu_bleu({"tokenize": name}, COMPLETIONS, REFERENCES))
    clone = pickle.loads(pickle.dumps(reward))
    _close(clone(COMPLETIONS[:5], REFERENCES[:5]), list(reward(COMPLETIONS[:5], REFERENCES[:5])))


@pytest.mark.parametrize("name", ["flores101", "flores200"])
def test_bleu_flores_names_what_is_missing(name, tmp_path, monkeypatch):
    if importlib.util.find_spec("sentencepiece") is None:
        with pytest.raises(MissingDependency, match="pip install sentencepiece"):
            rewards.make("bleu", tokenize=name)
        return
    import sacrebleu.utils

    monkeypatch.setattr(sacrebleu.utils, "SACREBLEU_DIR", str(tmp_path))
    with pytest.raises(MissingDependency, match=rf"SentencePiece model at {tmp_path}.*does not exist"):
        rewards.make("bleu", tokenize=name)


# ---------------------------------------------------------------------------------------------
# chrF
# ---------------------------------------------------------------------------------------------

CHRF_OPTIONS = [
    {},
    {"word_order": 2},
    {"word_order": 1, "char_order": 4},
    {"char_order": 0, "word_order": 2},
    {"beta": 1},
    {"beta": 3, "word_order": 2},
    {"lowercase": True},
    {"whitespace": True},
    {"whitespace": True, "word_order": 2, "lowercase": True},
    {"eps_smoothing": True},
    {"eps_smoothing": True, "word_order": 2},
    {"char_order": 2},
]


@pytest.mark.parametrize("options", CHRF_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_chrf_options_equal_sacrebleu(options):
    import sacrebleu

    metric = sacrebleu.CHRF(**options)
    expected = [metric.sentence_score(c, list(rs)).score / 100 for c, rs in zip(COMPLETIONS, REFERENCES)]
    _close(rewards.make("chrf", **options)(COMPLETIONS, REFERENCES), expected)


# ---------------------------------------------------------------------------------------------
# TER
# ---------------------------------------------------------------------------------------------

TER_OPTIONS = [
    {},
    {"normalized": True},
    {"no_punct": True},
    {"case_sensitive": True},
    {"normalized": True, "asian_support": True},
    {"no_punct": True, "asian_support": True},
    {"normalized": True, "no_punct": True, "asian_support": True, "case_sensitive": True},
    {"asian_support": True},
]


@pytest.mark.parametrize("options", TER_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_ter_options_equal_sacrebleu(options):
    import sacrebleu

    metric = sacrebleu.TER(**options)
    completions, references = COMPLETIONS[::2], REFERENCES[::2]  # TER's reference loop is slow
    expected = [max(0.0, 1 - metric.sentence_score(c, list(rs)).score / 100) for c, rs in zip(completions, references)]
    _close(rewards.make("ter", **options)(completions, references), expected)


def test_tercom_words_equal_sacrebleu_tokens():
    from sacrebleu.tokenizers.tokenizer_ter import TercomTokenizer

    lines = SENTENCES + ODD_TEXTS + ["it's John's", "end's", "a\n-b\nc", "、。〈〉【】・（）！？"]
    for options in TER_OPTIONS:
        tokenizer = TercomTokenizer(**options)
        for line in lines:
            assert tercom_words(line, **options) == tokenizer(line.rstrip()).split(), (options, line)


# ---------------------------------------------------------------------------------------------
# ROUGE
# ---------------------------------------------------------------------------------------------


class SpaceTokenizer:
    """A user tokenizer with rouge_score's protocol: split on whitespace, keep case."""

    def tokenize(self, text):
        return text.split()

    def __repr__(self):
        return "SpaceTokenizer()"


ROUGE_OPTIONS = [
    {"use_stemmer": False},
    {"tokenizer": "char"},
    {"tokenizer": "cjk"},
    {"tokenizer": SpaceTokenizer()},
]
_BUILT_IN = {"char": CharTokenizer(), "cjk": CJKTokenizer()}


def _rouge_expected(rouge_type: str, options: dict, completions, references) -> list[float]:
    from rouge_score import rouge_scorer

    tokenizer = options.get("tokenizer")
    tokenizer = _BUILT_IN.get(tokenizer, tokenizer) if isinstance(tokenizer, str) else tokenizer
    use_stemmer = options.get("use_stemmer", tokenizer is None)
    scorer = rouge_scorer.RougeScorer([rouge_type], use_stemmer=use_stemmer, tokenizer=tokenizer,
                                      split_summaries=options.get("split_summaries", False))
    return [max(scorer.score(r, c)[rouge_type].fmeasure for r in rs) for c, rs in zip(completions, references)]


@pytest.mark.parametrize("options", ROUGE_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("rouge_type", ["rouge1", "rouge2", "rougeL", "rougeLsum"])
def test_rouge_options_equal_rouge_score(rouge_type, options):
    got = rewards.make(rouge_type, **options)(COMPLETIONS, REFERENCES)
    _close(got, _rouge_expected(rouge_type, options, COMPLETIONS, REFERENCES))


def test_rouge_on_chinese_needs_a_tokenizer():
    assert rewards.make("rougeL")(["我爱北京天安门"], [["我爱北京"]])[0] == 0.0
    assert rewards.make("rougeL", tokenizer="char")(["我爱北京天安门"], [["我爱北京"]])[0] == pytest.approx(8 / 11)


def test_rouge_split_summaries():
    import nltk

    try:
        nltk.sent_tokenize("One. Two.")
    except LookupError:
        with pytest.raises(MissingDependency, match="punkt_tab"):
            rewards.make("rougeLsum", split_summaries=True)
        pytest.skip("NLTK's punkt_tab model is not installed")
    options = {"split_summaries": True}
    texts = ["The cat sat. The dog ran away! A bird sang.", "A bird sang. The cat sat.", "Nothing here"]
    completions, references = texts, [[texts[1], texts[2]], [texts[0]], [texts[2], "x. y."]]
    _close(rewards.make("rougeLsum", **options)(completions, references),
           _rouge_expected("rougeLsum", options, completions, references))


def test_rouge_split_summaries_uses_nltk_sentences_like_rouge_score(monkeypatch):
    """Equality on multi-sentence text whatever NLTK data is installed: both sides call
    ``nltk.sent_tokenize``, here replaced by a stand-in splitter."""
    import re

    import nltk

    monkeypatch.setattr(nltk, "sent_tokenize", lambda text: re.split(r"(?<=[.!?。！？])\s*", text))
    options = {"split_summaries": True}
    rng = random.Random(3)
    completions = [" ".join(rng.sample(SENTENCES, rng.randint(1, 4))) for _ in range(40)] + ["", "。"]
    references = [[" ".join(rng.sample(SENTENCES, rng.randint(1, 3))) for _ in range(rng.randint(1, 3))]
                  for _ in completions]
    for tokenizer in (None, "cjk"):
        opts = {**options, "tokenizer": tokenizer} if tokenizer else options
        _close(rewards.make("rougeLsum", **opts)(completions, references),
               _rouge_expected("rougeLsum", opts, completions, references))


def test_cjk_tokenizer_scripts():
    assert CJKTokenizer().tokenize("東京はTokyo、서울은 Seoul; ţară/țară 12,5") == [
        "東", "京", "は", "tokyo", "서", "울", "은", "seoul", "ţară", "țară", "12", "5"]
    assert CJKTokenizer().tokenize("The cats, running!") == ["the", "cats", "running"]


# ---------------------------------------------------------------------------------------------
# Options: validation, errors, repr, pickling, compositions
# ---------------------------------------------------------------------------------------------


def test_option_errors_name_the_accepted_options():
    with pytest.raises(ConfigError, match=r"unexpected argument\(s\) \['tokenise'\]\. Did you mean 'tokenize'\? "
                                          r"It accepts: tokenize, lowercase, smooth_method"):
        rewards.make("bleu", tokenise="zh")
    with pytest.raises(ConfigError, match=r"Did you mean 'word_order'.*It accepts: char_order, word_order"):
        rewards.make("chrf", word_orders=2)
    with pytest.raises(ConfigError, match=r"Unknown BLEU tokenize='13A'\. Did you mean '13a'"):
        rewards.make("bleu", tokenize="13A")
    with pytest.raises(ConfigError, match=r"Unknown BLEU smooth_method='add_k'\. Did you mean 'add-k'"):
        rewards.make("bleu", smooth_method="add_k")
    with pytest.raises(ConfigError, match="smooth_value=0.2 has no effect with smooth_method='exp'"):
        rewards.make("bleu", smooth_value=0.2)
    with pytest.raises(ConfigError, match="lowercase must be true or false; got 'yes'"):
        rewards.make("bleu", lowercase="yes")
    with pytest.raises(ConfigError, match="max_ngram_order must be an integer >= 1; got 0"):
        rewards.make("bleu", max_ngram_order=0)
    with pytest.raises(ConfigError, match="char_order \\+ word_order >= 1"):
        rewards.make("chrf", char_order=0)
    with pytest.raises(ConfigError, match=r"Unknown ROUGE tokenizer 'chars'\. Did you mean 'char'"):
        rewards.make("rougeL", tokenizer="chars")
    with pytest.raises(ConfigError, match="tokenize\\(text\\) -> list\\[str\\] method"):
        rewards.make("rougeL", tokenizer=42)
    with pytest.raises(ConfigError, match="use_stemmer=True has no effect with tokenizer='cjk'"):
        rewards.make("rougeL", tokenizer="cjk", use_stemmer=True)
    with pytest.raises(ConfigError, match="split_summaries applies to rougeLsum only"):
        rewards.make("rougeL", split_summaries=True)
    with pytest.raises(ConfigError, match="It accepts: normalized, no_punct, asian_support, case_sensitive"):
        rewards.make("ter", normalised=True)
    with pytest.raises(ConfigError, match="Put each term's options in the dict"):
        rewards.make({"bleu": 1.0}, tokenize="zh")
    with pytest.raises(UnknownNameError, match="Did you mean 'bleu'"):
        rewards.make({"blue": {"tokenize": "zh"}})
    with pytest.raises(ConfigError, match="Did you mean 'tokenize'"):
        rewards.make({"bleu": {"weight": 0.5, "tokenise": "zh"}})
    with pytest.raises(ConfigError, match="must be a finite number"):
        rewards.make({"bleu": {"weight": "high"}})


def test_options_listing_repr_and_path():
    assert rewards.options("bleu") == ["tokenize", "lowercase", "smooth_method", "smooth_value", "max_ngram_order",
                                       "effective_order"]
    assert rewards.options("ter") == ["normalized", "no_punct", "asian_support", "case_sensitive"]
    assert repr(rewards.make("bleu")) == "BleuReward()"
    assert repr(rewards.make("bleu", tokenize="zh", lowercase=True)) == "BleuReward(tokenize='zh', lowercase=True)"
    assert repr(rewards.make("chrf", word_order=2)) == "ChrfReward(word_order=2)"
    assert repr(rewards.make("ter", normalized=True)) == "TerReward(normalized=True)"
    assert repr(rewards.make("rougeL", tokenizer="cjk")) == "RougeReward('rougeL', tokenizer='cjk')"
    for spec in ("bleu", "chrf", "ter", "rougeL"):
        assert rewards.make(spec).path == "batched"
    assert BleuReward(tokenize=None).tokenize == "13a"


@pytest.mark.parametrize("spec, options", [("bleu", {"tokenize": "zh", "smooth_method": "floor"}),
                                           ("chrf", {"word_order": 2, "lowercase": True}),
                                           ("ter", {"normalized": True, "asian_support": True}),
                                           ("rougeL", {"tokenizer": "cjk"}),
                                           ("rouge2", {"tokenizer": SpaceTokenizer()}),
                                           ("rougeLsum", {"use_stemmer": False})])
def test_rewards_with_options_pickle_and_are_pure(spec, options):
    reward = rewards.make(spec, **options)
    before = reward(COMPLETIONS, REFERENCES)
    clone = pickle.loads(pickle.dumps(reward))
    np.testing.assert_array_equal(clone(COMPLETIONS, REFERENCES), before)
    np.testing.assert_array_equal(reward(COMPLETIONS, REFERENCES), before)
    assert repr(clone) == repr(reward)


def test_weighted_composition_with_options():
    reward = rewards.make({"bleu": {"weight": 0.25, "tokenize": "zh"}, "rougeL": {"tokenizer": "char"}, "chrf": 0.5})
    total, parts = reward.compute(COMPLETIONS, REFERENCES)
    assert list(parts) == ["bleu", "rougeL", "chrf"]
    np.testing.assert_array_equal(parts["bleu"], rewards.make("bleu", tokenize="zh")(COMPLETIONS, REFERENCES))
    np.testing.assert_array_equal(parts["rougeL"], RougeReward("rougeL", tokenizer="char")(COMPLETIONS, REFERENCES))
    np.testing.assert_allclose(total, 0.25 * parts["bleu"] + parts["rougeL"] + 0.5 * parts["chrf"], rtol=0, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# Options wherever a reward is named: envs, YAML and --set, the pipeline's evaluation metrics
# ---------------------------------------------------------------------------------------------


def test_env_reward_kwarg_takes_options():
    import gymnasium as gym

    import instruct_env  # noqa: F401

    spec = {"bleu": {"weight": 0.5, "tokenize": "zh"}, "rougeL": {"weight": 0.5, "tokenizer": "char"}}
    env = gym.make("InstructEnv/Completion-v0", tasks=["zh_chars"], reward=spec, max_new_tokens=16)
    _, info = env.reset(seed=2)
    reference = info["references"][0]
    _, reward, _, _, info = env.step(reference[:-1] if len(reference) > 1 else "天")
    expected_bleu = BleuReward(tokenize="zh")([reference[:-1] or "天"], [[reference]])[0]
    assert info["reward_components"]["bleu"] == pytest.approx(expected_bleu, abs=1e-12)
    assert 0 <= reward < 1
    assert repr(env.unwrapped.setup.reward.terms[0][0]) == "BleuReward(tokenize='zh')"
    with pytest.raises(ConfigError, match="Did you mean 'tokenize'"):
        gym.make("InstructEnv/Completion-v0", tasks=["zh_chars"], reward={"bleu": {"tokenise": "zh"}})


def test_config_yaml_and_set_take_reward_options(tmp_path):
    import yaml

    from agents.common.config import build_config, load_yaml
    from agents.pipeline import PipelineConfig, rl_env_kwargs

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"data": {"tasks": ["zh_chars"], "reward": {"bleu": {"tokenize": "zh"}}},
                                    "eval": {"metric_options": {"bleu": {"tokenize": "zh"}}}}))
    config = build_config(PipelineConfig, load_yaml(path))
    assert config.data.reward == {"bleu": {"tokenize": "zh"}}
    assert config.eval.metric_options == {"bleu": {"tokenize": "zh"}}
    assert rewards.make(rl_env_kwargs(config.data)["reward"]).terms[0][0].tokenize == "zh"
    config = build_config(PipelineConfig, {}, ["data.reward={bleu: {weight: 0.5, tokenize: zh, lowercase: true}, "
                                               "rougeL: 0.5}", "eval.metric_options={rougeL: {tokenizer: cjk}}"])
    assert config.data.reward == {"bleu": {"weight": 0.5, "tokenize": "zh", "lowercase": True}, "rougeL": 0.5}
    assert build_config(PipelineConfig, {}, ["data.reward=rougeL"]).data.reward == "rougeL"
    assert build_config(PipelineConfig, {}).data.reward == "task"
    with pytest.raises(ConfigError, match=r"reward: Reward 'bleu' got unexpected argument\(s\) \['tokenise'\]\. "
                                          r"Did you mean 'tokenize'"):
        build_config(PipelineConfig, {}, ["data.reward={bleu: {tokenise: zh}}"])
    with pytest.raises(UnknownNameError, match="Options given for 'chrf'.*Metrics that take options: exact_match, "
                                               "bleu, rougeL"):
        build_config(PipelineConfig, {}, ["eval.metric_options={chrf: {word_order: 2}}"])
    with pytest.raises(ConfigError, match="Did you mean 'zh'"):
        build_config(PipelineConfig, {}, ["eval.metric_options={bleu: {tokenize: zz}}"])


def test_evaluation_metrics_take_options():
    from agents.common.evaluation import score_completions
    from instruct_env.tasks import BuiltinDataset

    data = list(BuiltinDataset(["zh_chars"], split="test", size_per_task=6))
    answers = [s.references[0][:-1] + "天" for s in data]
    plain = score_completions(data, answers)
    chinese = score_completions(data, answers, metric_options={"bleu": {"tokenize": "zh"},
                                                                 "rougeL": {"tokenizer": "char"}})
    references = [s.references for s in data]
    assert chinese.overall["bleu"] == pytest.approx(float(np.mean(BleuReward(tokenize="zh")(answers, references))))
    assert chinese.overall["rougeL"] == pytest.approx(
        float(np.mean(RougeReward("rougeL", tokenizer="char")(answers, references))))
    assert chinese.overall["rougeL"] > plain.overall["rougeL"]
    assert chinese.overall["task"] == plain.overall["task"]
