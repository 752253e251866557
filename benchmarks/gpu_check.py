"""GPU check: short SFT, PPO and GRPO runs on a ~100M-parameter GPT-2 in bf16 autocast.

The model is built from a config (default 14 layers, width 768, 12 heads, the built-in
tokenizer's vocabulary; the exact parameter count is printed), trained from scratch on the
built-in ``copy`` task through the library's own trainers: :class:`~agents.sft.SFTTrainer`,
then PPO and GRPO from :func:`agents.rl.make_trainer`. For every stage it prints tokens/s, the
step (update) times and the peak GPU memory (``torch.cuda.max_memory_allocated``), and one JSON
line with all of it at the end. Each stage also has a time budget, so the whole check finishes
in a few minutes whatever the GPU.

This checks that the code runs and scales on a GPU; it does not measure learning (the model is
untrained and the runs are short).

Run: ``bash benchmarks/gpu_check.sh`` (or ``python -m benchmarks.gpu_check``). Without a CUDA
device it exits with status 2 and a message; ``--device cpu --tiny`` runs a tiny model for a few
steps on the CPU (a smoke test of this script).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import torch

#: Model shape and run lengths of the full check and of ``--tiny``.
FULL = {"n_layer": 14, "n_embd": 768, "n_head": 12, "sft_steps": 30, "sft_batch": 32, "rl_updates": 5,
        "num_envs": 64, "n_steps": 32, "group_size": 8, "max_new_tokens": 32, "stage_budget_s": 100.0}
TINY = {"n_layer": 2, "n_embd": 64, "n_head": 2, "sft_steps": 3, "sft_batch": 4, "rl_updates": 2,
        "num_envs": 4, "n_steps": 4, "group_size": 2, "max_new_tokens": 4, "stage_budget_s": 30.0}
ENV_KWARGS = {"tasks": ["copy"], "split": "train", "max_prompt_tokens": 64}


class StepClock:
    """Stands in for a run logger: records the time of every SFT training-loss record (one per step)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: list[float] = []

    def log(self, record: dict[str, Any], *, step: int, stage: str = "train", kind: str = "train") -> None:
        if kind == "train":
            _sync(self.device)
            self.times.append(time.perf_counter())

    def progress(self, *args: Any, **kwargs: Any):
        from tqdm.auto import tqdm

        return tqdm(disable=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def _summary(name: str, step_times: list[float], tokens: int, seconds: float, device: torch.device,
             **extra: Any) -> dict[str, Any]:
    row = {"stage": name, "steps": len(step_times), "tokens": tokens, "seconds": round(seconds, 3),
           "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
           "step_s_first": round(step_times[0], 4) if step_times else None,
           "step_s_median": round(statistics.median(step_times), 4) if step_times else None,
           "peak_gpu_gib": None if _peak_gib(device) is None else round(_peak_gib(device), 3), **extra}
    peak = "n/a (CPU)" if row["peak_gpu_gib"] is None else f"{row['peak_gpu_gib']:.2f} GiB"
    print(f"[{name}] {row['steps']} steps, {tokens} tokens in {seconds:.1f} s: {row['tokens_per_s']:.0f} tokens/s; "
          f"step time first {row['step_s_first']} s, median {row['step_s_median']} s; peak GPU memory {peak}",
          flush=True)
    return row


def run_sft(lm, tokenizer, sizes: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Train ``lm`` for ``sft_steps`` SFT steps; tokens are the (padded) sequence tokens processed."""
    from agents.sft import SFTConfig, SFTTrainer

    config = SFTConfig(max_steps=sizes["sft_steps"], batch_size=sizes["sft_batch"], num_examples=sizes["sft_batch"]
                       * sizes["sft_steps"], val_examples=8, keep_best=False, patience=0, log_every=1,
                       device=str(device), time_budget_s=sizes["stage_budget_s"], warmup_ratio=0.0)
    clock = StepClock(device)
    trainer = SFTTrainer(lm, tokenizer, config, tasks=["copy"], run_logger=clock)
    examples = trainer._train_examples  # the encoded training examples (prompt and response token ids)
    tokens_per_example = statistics.mean(len(e.prompt) + len(e.response) for e in examples)
    _reset_peak(device)
    _sync(device)
    start = time.perf_counter()
    result = trainer.train()
    _sync(device)
    seconds = time.perf_counter() - start
    marks = [start] + clock.times
    step_times = [b - a for a, b in zip(marks, marks[1:])]  # the first includes the initial validation loss
    tokens = int(result.steps * sizes["sft_batch"] * tokens_per_example)
    return _summary("sft", step_times, tokens, seconds, device, train_loss=round(result.final_train_loss, 4))


def run_rl(algo: str, lm, tokenizer, sizes: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """``rl_updates`` updates of ``algo`` (``"ppo"`` or ``"grpo"``) on a policy around ``lm``."""
    from agents.common.model import ActorCritic
    from agents.rl import default_config, make_trainer

    common = {"total_updates": sizes["rl_updates"], "max_new_tokens": sizes["max_new_tokens"], "device": str(device),
              "time_budget_s": sizes["stage_budget_s"], "lr": 1e-5, "num_envs": sizes["num_envs"]}
    if algo == "ppo":
        config = default_config("ppo", n_steps=sizes["n_steps"], **common)
    else:
        config = default_config("grpo", group_size=sizes["group_size"], **common)
    policy = ActorCritic(lm)
    policy.freeze_reference()
    trainer = make_trainer(algo, config, policy, tokenizer, dict(ENV_KWARGS))
    _reset_peak(device)
    start = time.perf_counter()
    history = trainer.train()
    _sync(device)
    seconds = time.perf_counter() - start
    tokens = sum(int(h["tokens"]) for h in history)
    return _summary(algo, [h["update_time"] for h in history], tokens, seconds, device,
                    rollout_s_median=round(statistics.median(h["rollout_time"] for h in history), 4),
                    reward_mean=round(float(history[-1]["reward_mean"]), 4))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu.")
    parser.add_argument("--tiny", action="store_true", help="A tiny model and a few steps (a smoke test).")
    parser.add_argument("--n-layer", type=int, help="Transformer blocks (default 14; 2 with --tiny).")
    parser.add_argument("--stages", default="sft,ppo,grpo", help="Comma-separated stages to run, in order.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = dict(TINY if args.tiny else FULL)
    if args.n_layer is not None:
        sizes["n_layer"] = args.n_layer
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - {"sft", "ppo", "grpo"})
    if unknown or not stages:
        print(f"gpu_check: error: --stages takes sft, ppo and grpo; got {args.stages!r}.", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device is available (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}, built with CUDA {torch.version.cuda}). Run it on a machine with an NVIDIA GPU "
              "and a CUDA build of torch, or pass --device cpu --tiny for the CPU smoke test.", file=sys.stderr)
        return 2
    if device.type not in ("cuda", "cpu"):
        print(f"gpu_check: error: --device must be cuda, cuda:N or cpu; got {args.device!r}.", file=sys.stderr)
        return 2

    from agents.common.model import DefaultModelConfig, build_default_model
    from instruct_env.tokenizer import builtin_tokenizer

    tokenizer = builtin_tokenizer()
    model_config = DefaultModelConfig(n_layer=sizes["n_layer"], n_embd=sizes["n_embd"], n_head=sizes["n_head"],
                                      n_positions=256)
    lm = build_default_model(tokenizer, model_config, seed=args.seed).to(device)
    n_params = sum(p.numel() for p in lm.parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; precision: "
          f"{'bf16 autocast' if device.type == 'cuda' else 'fp32 (autocast is CUDA-only)'}", flush=True)
    print(f"model: GPT-2, {model_config.n_layer} layers, width {model_config.n_embd}, {model_config.n_head} heads, "
          f"vocabulary {len(tokenizer)}, {model_config.n_positions} positions: {n_params:,} parameters", flush=True)
    start = time.perf_counter()
    rows = []
    for stage in stages:
        rows.append(run_sft(lm, tokenizer, sizes, device) if stage == "sft" else
                    run_rl(stage, lm, tokenizer, sizes, device))
    total = time.perf_counter() - start
    print(f"total: {total:.1f} s", flush=True)
    print(json.dumps({"device": name, "parameters": n_params, "tiny": args.tiny, "total_s": round(total, 2),
                      "stages": rows}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
