"""RL speed against plain-PyTorch floors and TRL, measured side by side in one run.

(a) Rollout throughput: PPO's rollout through the ``InstructEnv/Token-v0`` vector env
    (one env step per token, a KV cache per env slot) against the textbook KV-cached decode
    loop (:func:`plain_decode`) on the same model and batch; also against our ``generate``.
(b) One GRPO update against a plain-PyTorch floor on the same batch: sample with the same
    KV-cached ``generate``, one forward/backward of ``-A * log p``, one optimizer step.
(c) One GRPO update against one step of TRL's ``GRPOTrainer`` on the same tiny model, batch,
    completion length and reward (needs the ``trl`` extra; skipped with a message without it).

All use the embedded default model's shape (4 layers, width 128) from a random init, fp32,
a fixed number of torch threads, medians over repeats.

Run: ``python -m benchmarks.bench_rl_speed``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from benchmarks._common import provenance, write_section


class Clock:
    """Wall and CPU seconds of repeated calls; medians of each.

    The CPU time of the process (all its threads) is the work done; on a machine shared with
    other jobs it varies far less than the wall time, which also counts waiting for a core.
    """

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def time(self, fn: Callable[[], object]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(time.process_time() - cpu)

    def medians(self, skip: int = 0) -> tuple[float, float]:
        """(wall, CPU) medians, leaving out the first ``skip`` calls."""
        return statistics.median(self.wall[skip:]), statistics.median(self.cpu[skip:])


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int,
                        warmup: int = 1) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each function, the functions run in turn in every repeat.

    Taking turns, rather than all repeats of one then all of the other, exposes every side to
    the same drift in machine load.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    clocks = {name: Clock() for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            clocks[name].time(fn)
    return {name: clock.medians() for name, clock in clocks.items()}


def _policy(tokenizer, seed: int = 0):
    from agents.common.model import ActorCritic, DefaultModelConfig, build_default_model

    lm = build_default_model(tokenizer, DefaultModelConfig(n_layer=4, n_embd=128, n_head=4, n_positions=256), seed=seed)
    return ActorCritic(lm).eval()


@torch.no_grad()
def plain_decode(lm, input_ids, attention_mask, T: int, eos_id: int, pad_id: int, generator) -> torch.Tensor:
    """The textbook KV-cached decode loop: the model's own cache grown by one column per token, 2-D mask.

    Samples like :func:`agents.common.generation.generate` (same sampler, same early stop) and
    returns the (B, T) tokens.
    """
    from agents.common.generation import SamplingConfig, sample_tokens, trim_left_padding
    from agents.common.model import lm_forward, output_cache, position_ids_from_mask

    ids, mask = trim_left_padding(input_ids, attention_mask)
    B = ids.shape[0]
    positions = position_ids_from_mask(mask)
    out = lm_forward(lm, ids, mask, positions, use_cache=True)
    cache, logits, next_pos = output_cache(out), out.logits[:, -1], positions[:, -1:] + 1
    tokens = torch.full((B, T), pad_id, dtype=torch.long)
    done = torch.zeros(B, dtype=torch.bool)
    for t in range(T):
        tok, _ = sample_tokens(logits, SamplingConfig(), generator)
        tokens[:, t] = torch.where(done, torch.full_like(tok, pad_id), tok)
        done = done | (tok == eos_id)
        if bool(done.all()) or t == T - 1:
            break
        mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype)], dim=1)
        out = lm_forward(lm, tok[:, None], mask, next_pos, cache, use_cache=True)
        cache, logits, next_pos = output_cache(out), out.logits[:, -1], next_pos + 1
    return tokens


def rollout_ratio(tokenizer, num_envs: int, T: int, repeats: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU) tokens/s of PPO's rollout through the Token env ("env"), of the textbook decode loop
    ("plain") and of ``generate`` ("generate")."""
    from agents.common.generation import SamplingConfig, generate
    from agents.rl import default_config, make_trainer

    policy = _policy(tokenizer)
    config = default_config("ppo", num_envs=num_envs, n_steps=T, max_new_tokens=T, seed=0)
    # Steady state: a 600-sample dataset, generated and tokenised during the warm-up rollouts.
    trainer = make_trainer("ppo", config, policy, tokenizer,
                           {"max_prompt_tokens": 64, "dataset_kwargs": {"size_per_task": 50}})
    obs = trainer._obs
    ids = torch.as_tensor(obs["input_ids"][:, :64])
    mask = torch.as_tensor(obs["attention_mask"][:, :64])
    gen = torch.Generator().manual_seed(0)
    eos, pad = trainer.env.setup.eos_token_id, trainer.env.setup.pad_token_id

    def plain():
        plain_decode(policy.lm, ids, mask, T, eos, pad, gen)

    def ours_generate():
        generate(policy.lm, ids, mask, T, eos, pad, SamplingConfig(), gen)

    t = interleaved_medians({"env": trainer.collect_rollout, "plain": plain, "generate": ours_generate},
                            repeats=repeats, warmup=3)
    tokens = num_envs * T
    return {name: (tokens / wall, tokens / cpu) for name, (wall, cpu) in t.items()}


def grpo_ratio(tokenizer, prompts: int, group: int, T: int, repeats: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds per GRPO update at KL weight 0 ("beta=0.0") and 0.02 ("beta=0.02"), and per
    step of the plain-PyTorch floor ("floor")."""
    from agents.common.generation import SamplingConfig, generate
    from agents.common.scoring import score_tokens
    from agents.rl import default_config, make_trainer

    N = prompts * group
    steps = {}
    for beta in (0.0, 0.02):
        config = default_config("grpo", num_envs=N, group_size=group, max_new_tokens=T, kl_coef=beta, lr=1e-5,
                                total_updates=10_000, seed=0)
        trainer = make_trainer("grpo", config, _policy(tokenizer), tokenizer, {"max_prompt_tokens": 64})
        steps[f"beta={beta}"] = trainer.update_step

    policy = _policy(tokenizer)
    optimizer = torch.optim.AdamW(policy.lm.parameters(), lr=1e-5)
    eos, pad = trainer.env.setup.eos_token_id, trainer.env.setup.pad_token_id
    gen_rng = torch.Generator().manual_seed(0)
    # The floor trains on the same sequence of prompt batches as the trainers: a twin of their env,
    # reset with the same seed and stepped ahead (the prompts drawn do not depend on the answers).
    twin = make_trainer("grpo", config, _policy(tokenizer), tokenizer, {"max_prompt_tokens": 64})
    batches = []
    for _ in range(repeats + 1):  # one warm-up call, then the repeats
        batches.append((torch.as_tensor(twin._obs["input_ids"]), torch.as_tensor(twin._obs["attention_mask"])))
        twin._obs = twin.env.step(np.full((N, T), eos))[0]
    calls = iter(batches)

    def floor():
        ids, mask = next(calls)
        out = generate(policy.lm, ids, mask, T, eos, pad, SamplingConfig(), gen_rng)
        advantages = torch.randn(N)
        K = int(out.lengths.max())  # score only up to the longest answer, as any sensible update does
        scores = score_tokens(policy.lm, ids, mask, out.tokens[:, :K], out.mask[:, :K])
        loss = -(advantages[:, None] * scores.logprobs * out.mask[:, :K]).sum() / N
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return interleaved_medians({**steps, "floor": floor}, repeats=repeats)


def _trl_dataset(setup, n: int):
    """The first ``n`` samples of ``setup``'s dataset whose prompts fit untruncated, as a TRL prompt dataset."""
    from datasets import Dataset

    from instruct_env.envs.core import PromptBank

    bank = PromptBank(setup)
    texts, ids = [], []
    for sample in setup.dataset:
        _, text, info = bank.get(sample)
        if not info.get("truncated"):
            texts.append(text)
            ids.append(sample.id)
        if len(texts) == n:
            break
    return Dataset.from_dict({"prompt": texts, "sample_id": ids})


def trl_ratio(tokenizer, prompts: int, group: int, T: int,
              repeats: int) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """(wall, CPU) seconds of one step of our GRPO trainer and of TRL's ``GRPOTrainer``; None without TRL.

    Same tiny model (random init), prompts per step, group size, completion length, learning
    rate and reward (the task verifier), KL weight 0, fp32, no gradient checkpointing, no vLLM,
    logging and saving off. TRL is set to one generation and one optimizer step per training
    step over the same ``prompts * group`` completions, with the GRPO loss (per-completion token
    mean, then the mean over completions) and group-standardised rewards, as ours.
    """
    try:
        from transformers import TrainerCallback
        from trl import GRPOConfig, GRPOTrainer
    except ImportError:
        return None
    import contextlib
    import io
    import tempfile

    from agents.rl import default_config, make_trainer

    N = prompts * group
    config = default_config("grpo", num_envs=N, group_size=group, max_new_tokens=T, kl_coef=0.0, lr=1e-5,
                            total_updates=10_000, seed=0)
    ours = make_trainer("grpo", config, _policy(tokenizer), tokenizer, {"max_prompt_tokens": 64})
    ours.update_step()  # warm-up

    setup = ours.env.setup
    by_id = {sample.id: sample for sample in setup.dataset}

    def verifier_reward(prompts, completions, sample_id, **kwargs):
        return setup.score(completions, [by_id[i] for i in sample_id])[0].tolist()

    class TakeTurns(TrainerCallback):
        """Times each TRL step (``on_step_begin`` to ``on_step_end``), then one of our updates."""

        def __init__(self) -> None:
            self.trl, self.ours = Clock(), Clock()

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            self.trl.wall.append(time.perf_counter() - self.start[0])
            self.trl.cpu.append(time.process_time() - self.start[1])
            self.ours.time(ours.update_step)

    warmup = 1
    timer = TakeTurns()
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(
            output_dir=out, per_device_train_batch_size=N, num_generations=group, steps_per_generation=1,
            gradient_accumulation_steps=1, num_iterations=1, max_completion_length=T, temperature=1.0, top_k=0,
            beta=0.0, loss_type="grpo", scale_rewards="group", learning_rate=1e-5, max_steps=warmup + repeats,
            bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True, use_vllm=False,
            report_to="none", logging_strategy="no", save_strategy="no", disable_tqdm=True, seed=0,
            dataloader_num_workers=0,
        )
        trl_trainer = GRPOTrainer(model=_policy(tokenizer).lm, reward_funcs=verifier_reward, args=args,
                                  train_dataset=_trl_dataset(setup, N * (warmup + repeats)),
                                  processing_class=tokenizer, callbacks=[timer])
        torch.set_num_threads(threads)  # in case the trainer's setup changed it
        with contextlib.redirect_stdout(io.StringIO()):  # TRL prints its end-of-training metrics
            trl_trainer.train()
    return timer.ours.medians(skip=warmup), timer.trl.medians(skip=warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from instruct_env.tokenizer import builtin_tokenizer

    tokenizer = builtin_tokenizer()
    roll = rollout_ratio(tokenizer, num_envs=64, T=32, repeats=args.repeats)
    grpo = grpo_ratio(tokenizer, prompts=8, group=8, T=32, repeats=args.repeats)
    trl = trl_ratio(tokenizer, prompts=8, group=8, T=32, repeats=args.repeats)

    def row(label, ours, floor, target, per_s=False, floor_name=""):
        """A table row: values (wall), ratio wall / CPU; ``per_s``: throughputs (ratio ours/floor either way)."""
        fmt = (lambda v: f"{v:,.0f}") if per_s else (lambda v: f"{v:.3f}")
        ratio = [o / f for o, f in zip(ours, floor)]
        print(f"{label}: ours {fmt(ours[0])} (CPU {fmt(ours[1])}), {floor_name or 'floor'} {fmt(floor[0])} "
              f"(CPU {fmt(floor[1])}), ratio {ratio[0]:.2f} wall / {ratio[1]:.2f} CPU")
        return f"| {label} | {fmt(ours[0])} | {fmt(floor[0])}{floor_name} | {ratio[0]:.2f} | {ratio[1]:.2f} | {target} |\n"

    rows = [
        row("rollout, 64 envs x 32 tokens, warm data (tokens/s): PPO rollout through the Token env vs the "
            "textbook KV-cached decode loop", roll["env"], roll["plain"], ">= 0.9", per_s=True),
        row("same rollout vs our `generate` (tokens/s)", roll["env"], roll["generate"], "-", per_s=True),
        row("GRPO update, 8 prompts x 8 samples x 32 tokens, KL weight 0 (s)", grpo["beta=0.0"], grpo["floor"],
            "<= 1.15"),
        row("GRPO update, same, KL weight 0.02 (reference forward included) (s)", grpo["beta=0.02"], grpo["floor"],
            "-"),
    ]
    if trl is None:
        print("trl: skipped (TRL is not installed: pip install -e '.[trl]')")
        rows.append("| GRPO update vs one TRL `GRPOTrainer` step, same settings (s) | - | - | not measured: TRL "
                    "not installed (`pip install -e '.[trl]'`) | - | <= 0.7 |\n")
    else:
        rows.append(row("GRPO update vs one TRL `GRPOTrainer` step, same settings, KL weight 0 (s)", trl[0], trl[1],
                        "<= 0.7", floor_name=" (TRL)"))
    trl_note = ""
    if trl is not None:
        floor_vs_trl = grpo["floor"][0] / trl[1][0]
        trl_note = (
            f"\n\nAgainst TRL: on this tiny model both trainers spend a step on the same work (sampling, one "
            f"forward/backward, one optimizer step), and the plain-PyTorch floor itself costs {floor_vs_trl:.2f}x "
            "a TRL step (the two measurements come from separate pairings in this run). A step at most 0.7x "
            "TRL's would have to be cheaper than the floor, which an update that still does that work cannot "
            "be; TRL's own overhead per step is small at this scale.")
    body = (
        f"Embedded default model shape (4 layers, width 128, random init), fp32, {args.threads} torch "
        f"thread(s), medians of {args.repeats} repeats; the sides of each ratio take turns in every repeat "
        "(one of our updates after each TRL step, run from a TRL callback), all in one process. Values are "
        "wall time; the CPU ratio uses the process's CPU time, which on a machine shared with other jobs "
        "varies less than the wall time.\n\n"
        "| measurement | ours | floor | ratio (wall) | ratio (CPU) | target |\n|---|---:|---:|---:|---:|---|\n"
        + "".join(rows) + "\n"
        "Rollout: every token is one `env.step` of the 64-slot Token vector env and one one-token forward "
        "of `SlotActor` (keys/values written in place into compact per-slot buffers, the slots that restart "
        "in a step prefilled together in one to a few forwards grouped by prompt length). The textbook loop "
        "(`plain_decode` here) samples the same batch with the model's own cache, which grows by a copy per "
        "token; `generate` is our sampler for whole completions, with the same in-place buffers.\n\n"
        "GRPO floor: sample with `generate`, one forward/backward over the prompts and the answers up to the "
        "longest one, one optimizer step. Our GRPO update "
        "additionally steps the Completion env (rewards) and, with a KL weight, scores the batch under the "
        "reference model; with one epoch and one minibatch its old log-probs come from the update's own "
        "forward pass. TRL: `GRPOTrainer` on the same model, 8 prompts x `num_generations=8`, "
        "`per_device_train_batch_size=64`, `steps_per_generation=1` (one generation and one optimizer step per "
        "training step), `max_completion_length=32`, `loss_type='grpo'`, `scale_rewards='group'`, `beta=0`, "
        "lr 1e-5, a plain reward function calling the task verifier, `use_cpu`, no bf16, no gradient "
        "checkpointing, no vLLM, logging and saving off; a step is timed from `on_step_begin` to `on_step_end`."
        + trl_note + "\n\n"
        f"Command: `python -m benchmarks.bench_rl_speed` (TRL row: `pip install -e '.[trl]'`). Measured on "
        f"{provenance()}."
    )
    write_section("RL speed against plain-PyTorch floors", body)


if __name__ == "__main__":
    main()
