"""SFT: response-only labels, learning on a tiny model, seq2seq, config errors, augmentation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from agents.sft import (
    IGNORE_INDEX,
    SFTConfig,
    SFTTrainer,
    collate_causal,
    encode_example,
    paraphrase,
    response_loss,
)
from agents.sft.data import take_per_task
from instruct_env.error import ConfigError
from instruct_env.tasks import BuiltinDataset, PromptFormatter, Sample


def tiny_gpt2(tokenizer, seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=1, n_head=2,
                                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                      bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                                      pad_token_id=tokenizer.pad_token_id))


def tiny_t5(tokenizer):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    cfg = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1,
                   num_heads=2, dropout_rate=0.0, pad_token_id=tokenizer.pad_token_id,
                   eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    return T5ForConditionalGeneration(cfg)


def test_labels_cover_the_response_only(tokenizer):
    samples = list(BuiltinDataset(["copy", "arithmetic"], size_per_task=1))
    formatter = PromptFormatter()
    examples = [encode_example(s, tokenizer, formatter, max_prompt_tokens=128, max_response_tokens=64)
                for s in samples]
    batch = collate_causal(examples, tokenizer.pad_token_id)
    for row, (sample, example) in enumerate(zip(samples, examples)):
        prompt_ids, _ = formatter.encode(sample, tokenizer, 128)
        response = tokenizer.encode(sample.references[0], add_special_tokens=False) + [tokenizer.eos_token_id]
        assert list(example.prompt) == prompt_ids and list(example.response) == response
        p, n = len(prompt_ids), len(prompt_ids) + len(response)
        labels = batch["labels"][row]
        assert (labels[:p] == IGNORE_INDEX).all()  # the prompt carries no loss
        assert labels[p:n].tolist() == response  # the answer and its EOS do
        assert (labels[n:] == IGNORE_INDEX).all()  # nor does padding
        assert batch["attention_mask"][row].sum() == n
        assert batch["input_ids"][row, :n].tolist() == prompt_ids + response


def test_response_is_cut_to_the_budget(tokenizer):
    sample = BuiltinDataset(["copy"], size_per_task=1)[0]
    example = encode_example(sample, tokenizer, PromptFormatter(), max_prompt_tokens=128, max_response_tokens=2)
    assert len(example.response) == 2 and example.response[-1] != tokenizer.eos_token_id


def test_loss_decreases_on_a_tiny_model(tokenizer):
    model = tiny_gpt2(tokenizer)
    config = SFTConfig(num_examples=8, val_examples=2, max_steps=30, lr=1e-2, batch_size=8, warmup_ratio=0.0,
                       patience=0, keep_best=False, device="cpu", time_budget_s=None)
    trainer = SFTTrainer(model, tokenizer, config, tasks=["copy", "pick_word"])
    batch = trainer._collate(trainer._train_examples)
    with torch.no_grad():
        loss_sum, n = response_loss(model, batch)
    before = float(loss_sum / n)
    result = trainer.train()
    with torch.no_grad():
        loss_sum, n = response_loss(model, batch)
    after = float(loss_sum / n)
    assert result.steps == 30 and result.stopped_by == "max_steps"
    assert after < 0.75 * before
    assert result.best_val_loss < result.initial_val_loss


def test_grad_accumulation_matches_one_big_batch(tokenizer):
    samples = list(BuiltinDataset(["copy", "arithmetic"], size_per_task=4))
    grads = []
    for batch_size, accum in ((8, 1), (4, 2)):
        model = tiny_gpt2(tokenizer)
        cfg = SFTConfig(num_examples=4, val_examples=1, batch_size=batch_size, grad_accum=accum, device="cpu")
        trainer = SFTTrainer(model, tokenizer, cfg, train_data=samples, val_data=samples)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        examples = trainer._train_examples
        group = [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]
        trainer._optimizer_step(optimizer, group)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_seq2seq_sft_runs_and_evaluates(tokenizer):
    from agents.common.evaluation import evaluate

    model = tiny_t5(tokenizer)
    config = SFTConfig(num_examples=4, val_examples=2, max_steps=6, lr=3e-3, batch_size=4, device="cpu")
    result = SFTTrainer(model, tokenizer, config, tasks=["copy"]).train()
    assert result.steps == 6 and np.isfinite(result.best_val_loss)
    test = list(BuiltinDataset(["copy"], split="test", size_per_task=2))
    scores = evaluate(model, tokenizer, test, max_new_tokens=4, batch_size=2)
    assert scores.num_samples == 2 and all(r["scores"]["length"] <= 4 for r in scores.records)


def test_best_validation_weights_are_restored(tokenizer):
    model = tiny_gpt2(tokenizer)
    config = SFTConfig(num_examples=4, val_examples=2, max_steps=6, lr=0.5, batch_size=4, eval_every=1,
                       patience=0, device="cpu", warmup_ratio=0.0, schedule="constant")  # lr far too high
    trainer = SFTTrainer(model, tokenizer, config, tasks=["copy"])
    result = trainer.train()
    assert trainer.validation_loss() == pytest.approx(result.best_val_loss, rel=1e-5)


def test_early_stopping_stops(tokenizer):
    model = tiny_gpt2(tokenizer)
    config = SFTConfig(num_examples=4, val_examples=2, epochs=50, lr=1e-9, batch_size=4, patience=2,
                       min_delta=1.0, device="cpu")
    result = SFTTrainer(model, tokenizer, config, tasks=["copy"]).train()
    assert result.stopped_by == "early_stopping" and result.steps == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": 0.0}, "SFTConfig.lr must be > 0; got 0.0."),
        ({"schedule": "cosin"}, "Did you mean 'cosine'?"),
        ({"batch_size": 0}, "SFTConfig.batch_size must be >= 1; got 0."),
        ({"max_steps": 0}, "max_steps must be >= 1 or None"),
        ({"warmup_ratio": 1.0}, "warmup_ratio must be in [0, 1)"),
        ({"paraphrase_prob": 2.0}, "paraphrase_prob must be in [0, 1]"),
        ({"time_budget_s": 0.0}, "time_budget_s must be > 0 seconds"),
    ],
)
def test_config_errors_name_the_field(kwargs, message):
    with pytest.raises(ConfigError) as info:
        SFTConfig(**kwargs)
    assert message in str(info.value)


def test_paraphrase_keeps_input_and_answer():
    from agents.sft.data import _fields_of, _template

    rng = np.random.default_rng(0)
    for sample in BuiltinDataset(["keywords", "sort_numbers", "semantic_parse"], size_per_task=3):
        other = paraphrase(sample, rng)
        new, variant = other.metadata["phrasing"], sample.metadata["variant"]
        assert new != sample.metadata["phrasing"] and other.instruction != sample.instruction
        assert (other.context, other.references, other.task) == (sample.context, sample.references, sample.task)
        # the new instruction is the family's template for the new phrasing, with the same fields
        old_fields = _fields_of(_template(sample.verifier, sample.metadata["phrasing"], variant), sample.instruction)
        assert other.instruction == sample.verifier.instruction(new, variant, **old_fields)
        assert other.score(other.references[0]) == 1.0


def test_paraphrase_is_skipped_with_a_note_for_samples_without_templates(tokenizer):
    own = [Sample(f"mine/{i}", "mine", "Say hi.", "", ("hi",)) for i in range(4)]
    assert paraphrase(own[0], np.random.default_rng(0)) is own[0]
    cfg = SFTConfig(num_examples=4, val_examples=1, max_steps=1, batch_size=4, paraphrase_prob=0.5, device="cpu")
    trainer = SFTTrainer(tiny_gpt2(tokenizer), tokenizer, cfg, train_data=own, val_data=own)
    result = trainer.train()
    assert any("augmentation was requested but skipped" in note for note in result.notes)


def test_take_per_task_is_balanced():
    data = BuiltinDataset(["copy", "pick_word"], size_per_task=5)
    chosen = take_per_task(data, 2)
    assert [s.id for s in chosen] == ["copy/train/0", "pick_word/train/0", "copy/train/1", "pick_word/train/1"]


def test_trainer_does_not_modify_the_config(tokenizer):
    cfg = SFTConfig(num_examples=2, val_examples=1, max_steps=1, batch_size=2, device="cpu")
    before = dataclasses.asdict(cfg)
    SFTTrainer(tiny_gpt2(tokenizer), tokenizer, cfg, tasks=["copy"]).train()
    assert dataclasses.asdict(cfg) == before
