"""Held-out evaluation numbers, the reward-hacking guard, logging, plots and the report."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from agents.common.evaluation import HeldOutTracker, evaluate, score_completions
from agents.common.logging import RunLogger, read_metrics
from agents.common.plots import plot_metrics
from agents.common.report import render_report, write_report
from instruct_env.error import ConfigError
from instruct_env.tasks import BuiltinDataset, Sample, make_task


def hand_made():
    """Two families, two samples each, with verifiers."""
    copy, pick = make_task("copy"), make_task("pick_word")
    return [
        Sample("copy/0", "copy", "Copy the text.", "cat dog", ("cat dog",), {"heldout_phrasing": False}, copy),
        Sample("copy/1", "copy", "Repeat the input exactly.", "red sun", ("red sun",), {"heldout_phrasing": True},
               copy),
        Sample("pick/0", "pick_word", "Return the first word.", "a b c", ("a",), {"heldout_phrasing": False}, pick),
        Sample("pick/1", "pick_word", "Return the first word.", "x y z", ("x",), {"heldout_phrasing": False}, pick),
    ]


def test_answering_the_reference_scores_one_everywhere():
    samples = list(BuiltinDataset(split="test", size_per_task=3))
    result = score_completions(samples, [s.references[0] for s in samples])
    for metric in ("task", "exact_match", "bleu", "rougeL"):
        assert result.overall[metric] == 1.0
        assert all(per[metric] == 1.0 for per in result.per_task.values())
    assert result.num_samples == len(samples) and set(result.counts.values()) == {3}


def test_exact_numbers_on_a_hand_made_dataset():
    samples = hand_made()
    completions = ["cat dog", "sun red", "a", "wrong"]
    result = score_completions(samples, completions, lengths=[2, 2, 1, 1])
    assert result.per_task["copy"]["exact_match"] == 0.5
    assert result.per_task["pick_word"]["exact_match"] == 0.5
    assert result.overall["exact_match"] == 0.5
    # copy/1 reversed: the verifier's partial credit (positional 0/2 and bag F1 1.0) is 0.5
    assert result.per_task["copy"]["task"] == pytest.approx((1.0 + 0.5) / 2)
    assert result.per_task["pick_word"]["task"] == pytest.approx(0.5)
    assert result.overall["length"] == pytest.approx((2.0 + 1.0) / 2)
    # held-out phrasing: only copy/1; seen phrasings: macro over copy (1 sample) and pick_word (2)
    assert result.heldout_phrasing["exact_match"] == 0.0
    assert result.seen_phrasing["exact_match"] == pytest.approx((1.0 + 0.5) / 2)
    assert [r["completion"] for r in result.records] == completions


def test_overall_is_the_mean_over_families_not_samples():
    samples = hand_made()[:1] + [hand_made()[2]] * 3
    result = score_completions(samples, ["cat dog", "no", "no", "no"])
    assert result.overall["exact_match"] == 0.5  # (1.0 + 0.0) / 2, not 1/4


def test_score_completions_errors():
    samples = hand_made()
    with pytest.raises(ConfigError, match="Got 1 completions for 4 samples"):
        score_completions(samples, ["x"])
    with pytest.raises(ConfigError, match="empty"):
        score_completions([], [])


def test_samples_without_verifier_get_nan_task_score():
    samples = [Sample("s/0", "mine", "Say hi.", "", ("hi",))]
    result = score_completions(samples, ["hi"])
    assert np.isnan(result.overall["task"]) and result.overall["exact_match"] == 1.0
    assert result.heldout_phrasing is None


def test_evaluate_a_tiny_model_greedy(tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=1, n_head=2,
                                    bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id))
    samples = list(BuiltinDataset(["copy", "arithmetic"], split="test", size_per_task=3))
    lm.train()
    first = evaluate(lm, tokenizer, samples, max_new_tokens=5, batch_size=4)
    assert lm.training  # the mode is restored
    second = evaluate(lm, tokenizer, samples, max_new_tokens=5, batch_size=6)
    assert [r["completion"] for r in first.records] == [r["completion"] for r in second.records]  # greedy, batched
    assert [r["id"] for r in first.records] == [s.id for s in samples]  # original order
    assert all(0 <= r["scores"]["length"] <= 5 for r in first.records)


def test_tracker_keeps_best_and_warns_on_reward_hacking(caplog):
    model = torch.nn.Linear(2, 1)
    tracker = HeldOutTracker("task")
    with torch.no_grad():
        model.weight.fill_(1.0)
    tracker.update(0, heldout=0.40, train_reward=None, model=model)
    with torch.no_grad():
        model.weight.fill_(2.0)
    tracker.update(10, heldout=0.60, train_reward=0.5, model=model)
    with torch.no_grad():
        model.weight.fill_(3.0)
    with caplog.at_level(logging.WARNING):
        tracker.update(20, heldout=0.50, train_reward=0.7, model=model)  # reward up, held-out down
    tracker.update(30, heldout=0.55, train_reward=0.6, model=model)  # both move the same way: fine
    assert tracker.best_step == 10 and tracker.best_value == 0.60
    assert len(tracker.warnings) == 1 and "between steps 10 and 20" in tracker.warnings[0]
    assert "Possible reward hacking" in caplog.text
    assert tracker.restore_best(model) and float(model.weight[0, 0].detach()) == 2.0


def test_run_logger_jsonl_and_ranks(tmp_path):
    with RunLogger(tmp_path / "a", tensorboard=True) as log:
        log.log({"reward_mean": np.float32(0.5), "kl": torch.tensor(0.1), "nan": float("nan")}, step=1, stage="rl")
        log.log({"task": 0.3}, step=1, stage="rl", kind="eval")
        assert len(read_metrics(log.path)) == 2  # flushed while still open
    records = read_metrics(tmp_path / "a" / "metrics.jsonl")
    assert records[0]["reward_mean"] == 0.5 and records[0]["nan"] is None and records[1]["kind"] == "eval"
    assert (tmp_path / "a" / "tensorboard").is_dir()
    with RunLogger(tmp_path / "b", rank=1) as log:
        log.log({"x": 1}, step=0)
    assert not (tmp_path / "b").exists()


def test_plots_and_report(tmp_path):
    records = [{"stage": "rl", "kind": "train", "step": s, "reward_mean": 0.1 * s, "kl": 0.01 * s,
                "entropy": 1.0 - 0.1 * s} for s in range(1, 6)]
    records += [{"stage": "rl", "kind": "eval", "step": s, "task": 0.5 + 0.01 * s} for s in (0, 5)]
    records += [{"stage": "sft", "kind": "eval", "step": s, "val_loss": 2.0 - s} for s in (0, 1)]
    plots = plot_metrics(records, tmp_path / "plots")
    assert set(plots) == {"rl/reward", "rl/kl", "rl/entropy", "rl/heldout", "sft/val_loss"}
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in plots.values())

    samples = hand_made()
    before = score_completions(samples, ["x", "x", "x", "x"])
    after = score_completions(samples, [s.references[0] for s in samples])
    path = write_report(tmp_path / "report.md", {"zero-shot": before, "SFT": after, "SFT+RL": after},
                        config={"seed": 0, "sft": {"lr": 0.001}}, pretrain_note="PRETRAIN NOTE",
                        warnings=["Possible reward hacking between steps 1 and 2"], plots=plots,
                        summary=["Wall time 1 s"])
    text = path.read_text()
    assert "| copy | 2 | 0.000 | 0.000 | 1.000 | 1.000 | 1.000 | 1.000 |" in text
    assert "held-out phrasing" in text and "PRETRAIN NOTE" in text
    assert "- Possible reward hacking between steps 1 and 2" in text
    assert "](plots/rl_reward.png)" in text and "lr: 0.001" in text


def test_report_without_warnings_says_so():
    result = score_completions(hand_made(), ["x"] * 4)
    text = render_report({"model": result}, config={})
    assert "- None: the held-out metric never fell" in text
    assert "was not the embedded default" in text


def test_eval_result_to_dict_is_json():
    result = score_completions(hand_made(), ["cat dog", "x", "a", "y"])
    data = json.loads(json.dumps(result.to_dict(with_records=True)))
    assert data["overall"]["exact_match"] == 0.5 and len(data["records"]) == 4


# ----------------------------------------------------------------------------- "did RL improve the model?"
def _result(scores: dict[str, list[float]]):
    from agents.common.evaluation import EvalResult

    records = [{"id": f"{task}/{i}", "task": task, "scores": {"task": v}}
               for task, values in scores.items() for i, v in enumerate(values)]
    per_task = {t: {"task": float(np.mean(v))} for t, v in scores.items()}
    return EvalResult(per_task, {"task": float(np.mean([m["task"] for m in per_task.values()]))},
                      {t: len(v) for t, v in scores.items()}, records=records)


def test_paired_bootstrap_is_paired_and_stratified_by_family():
    from agents.common.evaluation import paired_bootstrap

    before = _result({"a": [0.0] * 20, "b": [0.5] * 4})
    after = _result({"a": [1.0] * 10 + [0.0] * 10, "b": [0.5] * 4})
    change, low, high = paired_bootstrap(before, after, seed=0)
    assert change == pytest.approx((0.5 + 0.0) / 2)  # macro average: family a +0.5, family b 0
    assert 0.0 < low < change < high < 0.5
    # the same samples improved by the same amount everywhere: no spread at all
    shifted = _result({"a": [0.25] * 20, "b": [0.75] * 4})
    assert paired_bootstrap(before, shifted) == pytest.approx((0.25, 0.25, 0.25))
    with pytest.raises(ConfigError, match="same samples"):
        paired_bootstrap(before, _result({"a": [0.0] * 3}))


@pytest.mark.parametrize("change, verdict", [((0.04, 0.02, 0.06), "**Yes: RL improved"),
                                             ((0.01, -0.01, 0.03), "**Not shown"),
                                             ((-0.04, -0.06, -0.02), "**No: RL made")])
def test_rl_effect_section_says_plainly_whether_rl_helped(change, verdict):
    from agents.common.report import rl_effect_section, window_means

    text = rl_effect_section(updates=100, reward_name="task", train=window_means([0.3] * 10 + [0.4] * 90),
                             per_family={"copy": (0.5, 0.7), "dedup": (0.4, 0.35)}, heldout=(0.40, 0.40 + change[0]),
                             change=change, before="SFT", after="SFT+RL", samples=600)
    assert text.startswith(verdict)
    assert "0.300 over the first 10% of updates -> 0.400 over the last 10% (+0.100)" in text
    assert text.index("| copy | 0.500 | 0.700 | +0.200 |") < text.index("| dedup | 0.400 | 0.350 | -0.050 |")
    report = render_report({}, config={}, sections={"RL": "details", "Did RL improve the model?": text})
    assert report.index("## Did RL improve the model?") < report.index("## RL")
