"""Reward speed: batched rewards against the reference packages called once per pair.

For each metric reward, times side by side in one run, on the same fresh batch per repeat:

* the reference loop: ``sacrebleu.sentence_bleu`` / ``sentence_chrf`` / ``sentence_ter`` per pair,
  and for ROUGE one ``rouge_score`` scorer (built once, outside the timing) called per reference;
* the batched reward ``instruct_env.rewards.make(name)`` on the whole batch, with its caches
  cleared first (cold start), so that nothing learnt on earlier repeats helps.

Every repeat draws new sentences, so no repeat sees text an earlier one saw, and each side gets its
own copies of the strings. Each call is timed after a full garbage collection with the collector
off (as ``timeit`` does), so neither side pays for the other's garbage. Values are asserted equal
within 1e-9. Single process, one thread, torch never imported. Writes the table to the "Reward speed" section of benchmarks/README.md.

Two more rows time options for Chinese text, on batches built the same way from generated Chinese
sentences: BLEU with ``tokenize="zh"`` against ``sacrebleu.BLEU(tokenize="zh", effective_order=True)``
(built once) per pair, and ROUGE-L with ``tokenizer="char"`` against
``RougeScorer(["rougeL"], tokenizer=CharTokenizer())`` per reference.

Run: ``python -m benchmarks.bench_rewards``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported

import argparse  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks._common import write_section  # noqa: E402
from instruct_env import rewards  # noqa: E402

METRICS = ["bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL", "rougeLsum"]
FILLERS = ["also", "then", "just", "really", "the", "a", "in", "of"]
SYNONYMS = {
    "the": "this", "a": "one", "is": "was", "are": "were", "can": "may", "used": "employed",
    "function": "routine", "object": "instance", "value": "result", "returns": "gives", "must": "should",
    "number": "count", "list": "sequence", "name": "identifier", "called": "invoked", "new": "fresh",
}


# Chinese words for the generated sentences (nouns, verbs, adjectives, adverbs, function words)
ZH_WORDS = (
    "我们 你们 他们 老师 学生 朋友 医生 孩子 父母 公司 学校 城市 国家 世界 问题 方法 时间 地方 工作 生活 "
    "电脑 手机 数据 模型 程序 函数 对象 结果 列表 名字 数字 文件 系统 网络 语言 文字 句子 答案 任务 环境 "
    "天气 早上 晚上 今天 明天 昨天 公园 图书馆 医院 火车 飞机 米饭 咖啡 茶 水果 书 电影 音乐 新闻 历史 "
    "学习 工作 使用 返回 调用 创建 修改 删除 检查 计算 比较 需要 知道 觉得 开始 完成 喜欢 希望 发现 讨论 "
    "重要 简单 复杂 快速 安全 新的 旧的 大的 小的 好的 正确 错误 完整 清楚 不同 相同 常见 有用 "
    "非常 已经 经常 马上 一起 仍然 可能 必须 应该 总是 "
    "的 了 在 和 是 把 被 也 都 就 还 对 从 给 跟 为 这个 那个 一些 每个"
).split()
ZH_FILLERS = ["也", "就", "都", "还", "的", "了", "非常", "一起"]
ZH_SYNONYMS = {"学生": "学员", "使用": "采用", "返回": "给出", "非常": "特别", "快速": "迅速", "问题": "难题",
               "电脑": "计算机", "需要": "要", "重要": "关键", "经常": "常常", "喜欢": "爱", "开始": "着手"}


def zh_sentences(n: int, seed: int) -> list[list[str]]:
    """``n`` distinct Chinese sentences of 8-30 words (as word lists, a "，" or "。" now and then)."""
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    while len(out) < n:
        words = [rng.choice(ZH_WORDS) for _ in range(rng.randint(8, 30))]
        for i in range(4, len(words) - 1, rng.randint(5, 9)):
            words[i] += "，"
        words[-1] += "。"
        out.setdefault("".join(words), words)
    return list(out.values())


def edit_words(rng: random.Random, words: list[str], fillers, synonyms, lower_keys: bool = False) -> list[str]:
    """1-3 random edits of a word list: swap neighbours, delete, insert a filler, or use a synonym."""
    words = list(words)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(words))
        op = rng.random()
        if op < 0.3 and i + 1 < len(words):
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op < 0.55 and len(words) > 5:
            del words[i]
        elif op < 0.75:
            words.insert(i, rng.choice(fillers))
        else:
            words[i] = synonyms.get(words[i].lower() if lower_keys else words[i], words[i])
    return words


def zh_paraphrase(rng: random.Random, words: list[str]) -> list[str]:
    """:func:`edit_words` with the Chinese fillers and synonyms."""
    return edit_words(rng, words, ZH_FILLERS, ZH_SYNONYMS)


def make_zh_batch(rng: random.Random, bases: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """As :func:`make_batch`, for Chinese sentences (words written without spaces)."""
    completions, references = [], []
    for base in bases:
        refs = [base] + [zh_paraphrase(rng, base) for _ in range(rng.randint(0, 3))]
        kind = rng.random()
        if kind < 0.25:
            completion = rng.choice(refs)
        elif kind < 0.75:
            completion = zh_paraphrase(rng, base)
        else:
            completion = zh_paraphrase(rng, rng.choice(bases))
        completions.append("".join(completion))
        references.append(["".join(r) for r in refs])
    return completions, references


#: Rows for options on Chinese text: label -> (reward spec, options).
ZH_ROWS = {
    "bleu, tokenize=zh (Chinese)": ("bleu", {"tokenize": "zh"}),
    "rougeL, tokenizer=char (Chinese)": ("rougeL", {"tokenizer": "char"}),
}


def sentences() -> list[str]:
    """English sentences of 10-40 words from the Python documentation shipped with the interpreter."""
    from pydoc_data.topics import topics

    out = set()
    for chunk in re.split(r"(?<=[.!?])\s+", " ".join(topics.values())):
        words = chunk.split()
        if 10 <= len(words) <= 40 and ">>>" not in chunk and "..." not in chunk:
            out.add(" ".join(words))
    return sorted(out)


def paraphrase(rng: random.Random, sentence: str) -> str:
    """:func:`edit_words` on an English sentence (synonyms looked up in lower case)."""
    return " ".join(edit_words(rng, sentence.split(), FILLERS, SYNONYMS, lower_keys=True))


def make_batch(rng: random.Random, bases: list[str]) -> tuple[list[str], list[list[str]]]:
    """One pair per base sentence: 1-4 references; the completion is a copy, a paraphrase or unrelated."""
    completions, references = [], []
    for base in bases:
        refs = [base] + [paraphrase(rng, base) for _ in range(rng.randint(0, 3))]
        kind = rng.random()
        if kind < 0.25:
            completion = rng.choice(refs)
        elif kind < 0.75:
            completion = paraphrase(rng, base)
        else:
            completion = paraphrase(rng, rng.choice(bases))  # most likely another pair's sentence
        completions.append(completion)
        references.append(refs)
    return completions, references


def fresh_copy(completions: list[str], references: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """New string objects (no hash cached by the other side's run)."""
    return [c.encode().decode() for c in completions], [[r.encode().decode() for r in rs] for rs in references]


def reference_loop(name: str, options: dict | None = None):
    """The reference package called once per pair, returning the reward convention's values."""
    import sacrebleu

    if options:  # the rows with options (Chinese text): the metric object is built once
        if name == "bleu":
            metric = sacrebleu.BLEU(effective_order=True, **options)
            return lambda cs, rs: [min(1.0, metric.sentence_score(c, r).score / 100) for c, r in zip(cs, rs)]
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer([name], tokenizer=rewards.CharTokenizer())
        return lambda cs, rs: [max(scorer.score(ref, c)[name].fmeasure for ref in r) for c, r in zip(cs, rs)]

    if name == "bleu":
        return lambda cs, rs: [sacrebleu.sentence_bleu(c, r).score / 100 for c, r in zip(cs, rs)]
    if name == "chrf":
        return lambda cs, rs: [sacrebleu.sentence_chrf(c, r).score / 100 for c, r in zip(cs, rs)]
    if name == "ter":
        return lambda cs, rs: [max(0.0, 1 - sacrebleu.sentence_ter(c, r).score / 100) for c, r in zip(cs, rs)]
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer([name], use_stemmer=True)
    return lambda cs, rs: [max(scorer.score(ref, c)[name].fmeasure for ref in r) for c, r in zip(cs, rs)]


def timed(fn, *args) -> tuple[float, np.ndarray]:
    """Wall time of one call, garbage collector off (as ``timeit`` does) after a full collection."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        values = fn(*args)
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return elapsed, np.asarray(values, dtype=np.float64)


def commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=root, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "instruct_env/rewards",
                                "benchmarks/bench_rewards.py"], capture_output=True, text=True, cwd=root,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+uncommitted" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--metrics", default=",".join(METRICS), help="comma-separated reward names")
    parser.add_argument("--no-chinese", action="store_true", help="leave out the rows with options on Chinese text")
    parser.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/README.md alone")
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("use at least 5 repeats")

    metrics = args.metrics.split(",")
    rng = random.Random(args.seed)
    pool = sentences()
    rng.shuffle(pool)
    needed = (args.repeats + 1) * args.batch_size
    if needed > len(pool):
        parser.error(f"{needed} distinct sentences needed, only {len(pool)} available; lower --batch-size")
    batches = [make_batch(rng, pool[i * args.batch_size : (i + 1) * args.batch_size])
               for i in range(args.repeats + 1)]  # batch 0 is the warm-up

    zh_pool = zh_sentences((args.repeats + 1) * args.batch_size, seed=args.seed)
    zh_batches = [make_zh_batch(rng, zh_pool[i * args.batch_size : (i + 1) * args.batch_size])
                  for i in range(args.repeats + 1)]
    cases = [(name, name, {}, batches) for name in metrics]
    if not args.no_chinese:
        cases += [(label, name, options, zh_batches) for label, (name, options) in ZH_ROWS.items()]

    rows = []
    for label, name, options, case_batches in cases:
        reward, loop = rewards.make(name, **options), reference_loop(name, options)
        ref_times, batched_times = [], []
        for i, batch in enumerate(case_batches):
            t_ref, expected = timed(loop, *fresh_copy(*batch))
            rewards.clear_caches()
            t_batched, got = timed(reward, *fresh_copy(*batch))
            worst = float(np.abs(got - expected).max())
            if worst > 1e-9:
                raise SystemExit(f"{label}: batched values differ from the reference by {worst:.3g}")
            if i:  # batch 0 warms up imports and first-call costs
                ref_times.append(t_ref)
                batched_times.append(t_batched)
        ref_ms, batched_ms = 1000 * statistics.median(ref_times), 1000 * statistics.median(batched_times)
        rows.append((label, ref_ms, batched_ms, ref_ms / batched_ms))
        print(f"{label:32s} reference {ref_ms:8.1f} ms   batched {batched_ms:7.1f} ms   x{ref_ms / batched_ms:.1f}",
              flush=True)
    assert "torch" not in sys.modules, "the reward benchmark must not import torch"

    table = ["| reward | reference loop (ms) | batched (ms) | speed-up |", "|---|---:|---:|---:|"]
    table += [f"| {n} | {r:.1f} | {b:.1f} | {r / b:.1f}x |" for n, r, b, _ in rows]
    n_pairs, n_refs = args.batch_size, sum(len(r) for r in batches[1][1])
    body = "\n\n".join([
        "Batched rewards (`instruct_env.rewards.make(name)` on a whole batch) against the reference packages "
        "called once per pair in a Python loop: `sacrebleu.sentence_bleu` / `sentence_chrf` / `sentence_ter`, and "
        "for ROUGE one `rouge_score.rouge_scorer.RougeScorer([type], use_stemmer=True)` (built outside the timing) "
        "called per reference, keeping the best F-measure. Times are for a whole batch.",
        f"Batches of {n_pairs} pairs (about {n_refs / n_pairs:.1f} references per pair) built from English "
        "sentences of 10-40 words (the Python documentation shipped with the interpreter): references are a "
        "sentence and 0-3 paraphrases (word swaps, deletions, fillers, synonyms); completions are exact copies "
        f"(25%), paraphrases (50%) or another pair's sentence (25%). Median of {args.repeats} repeats after one "
        "warm-up. **Every repeat uses new sentences and the batched side starts with cold caches** "
        "(`rewards.clear_caches()`), so the speed-up is not inflated by caching across calls. Each call is timed "
        "after `gc.collect()` with the garbage collector off, as `timeit` does. Values are asserted equal within "
        "1e-9 on every repeat.",
        "\n".join(table),
        "The last two rows time options on Chinese text, on batches built the same way from generated Chinese "
        "sentences of 8-30 words (written without spaces, with `，` and `。`; paraphrases swap, delete or insert "
        "words or use a synonym): `bleu` with `tokenize=\"zh\"` against `sacrebleu.BLEU(tokenize=\"zh\", "
        "effective_order=True)` (built once, outside the timing) per pair, and `rougeL` with `tokenizer=\"char\"` "
        "against `RougeScorer([\"rougeL\"], tokenizer=CharTokenizer())` per reference.",
        "The sentences are single lines, so `rougeLsum` takes its one-sentence path (the union LCS of one "
        "sentence is its LCS); multi-line texts go through the general summary-level code, which is exact but "
        "not timed here.",
        f"Command: `python -m benchmarks.bench_rewards`. Measured on commit `{commit()}`, {os.cpu_count()} CPU "
        f"cores ({platform.machine()}), Python {platform.python_version()}, numpy {np.__version__}, sacrebleu "
        f"{version('sacrebleu')}, rouge-score {version('rouge-score')}, {time.strftime('%Y-%m-%d')}; one process, "
        "one thread, torch not imported. On this shared machine timings vary by about 20% between runs; the "
        "speed-ups vary less, since both sides run interleaved on the same batches.",
    ])
    print("\n" + "\n".join(table))
    if not args.no_write:
        write_section("Reward speed", body)
        print("wrote the 'Reward speed' section of benchmarks/README.md")


if __name__ == "__main__":
    main()
