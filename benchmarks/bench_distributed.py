"""Data-parallel scaling: GRPO samples (completions) per second with 1, 2, ... processes.

Each process runs the same per-rank batch (``--num-envs`` completions) on a small default
model (2 layers, width 64) and the built-in ``copy`` task; the global batch grows with the
process count (weak scaling), gradients are all-reduced every update. On CPU the processes
use gloo and ``--threads`` threads each, so 2 processes need 2x the cores of 1; with CUDA
each process gets one GPU (nccl) and the counts go up to the GPUs present (1, 2, 4, 8).

Run: ``python -m benchmarks.bench_distributed`` (``--updates 3`` for a quick look).
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from benchmarks._common import provenance, write_section


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, result: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(args.threads)
    from agents.common import distributed as dist
    from agents.common.model import ActorCritic, DefaultModelConfig, build_default_model
    from agents.rl import default_config, make_trainer
    from instruct_env.tokenizer import builtin_tokenizer

    device = dist.init_distributed()
    try:
        tokenizer = builtin_tokenizer()
        lm = build_default_model(tokenizer, DefaultModelConfig(n_layer=2, n_embd=64, n_head=2), seed=0)
        config = default_config("grpo", num_envs=args.num_envs, group_size=4, max_new_tokens=args.max_new_tokens,
                                total_updates=args.warmup + args.updates, device=str(device), lr=1e-4)
        trainer = make_trainer("grpo", config, ActorCritic(lm), tokenizer,
                               {"tasks": ["copy"], "split": "train", "max_prompt_tokens": 64})
        for _ in range(args.warmup):
            trainer.update_step()
        dist.barrier()
        start = time.perf_counter()
        tokens = sum(trainer.update_step()["tokens"] for _ in range(args.updates))  # global counts
        if device.type == "cuda":
            torch.cuda.synchronize()
        dist.barrier()
        seconds = time.perf_counter() - start
        if dist.is_main():
            samples = world * args.num_envs * args.updates
            Path(result).write_text(f"{samples / seconds} {tokens / seconds}")
    finally:
        dist.destroy_distributed()


def _measure(world: int, args: argparse.Namespace) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        result = str(Path(tmp) / "result.txt")
        mp.start_processes(_worker, args=(world, _free_port(), args, result), nprocs=world, start_method="spawn")
        samples_per_s, tokens_per_s = map(float, Path(result).read_text().split())
    return samples_per_s, tokens_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=32, help="Completions per process per update.")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--updates", type=int, default=5, help="Timed updates.")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (CPU).")
    parser.add_argument("--no-readme", action="store_true", help="Print only; do not update benchmarks/README.md.")
    args = parser.parse_args()

    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        worlds = [w for w in (1, 2, 4, 8) if w <= n]
        hardware = f"{n} x {torch.cuda.get_device_name(0)} (nccl)"
    else:
        worlds = [w for w in (1, 2) if w * args.threads <= (os.cpu_count() or 1)] or [1]
        hardware = f"CPU only (gloo), {args.threads} thread(s) per process, {os.cpu_count()} cores"
    rows, base = [], None
    for world in worlds:
        samples_per_s, tokens_per_s = _measure(world, args)
        base = base or samples_per_s
        rows.append(f"| {world} | {world * args.num_envs} | {samples_per_s:.1f} | {tokens_per_s:.0f} | "
                    f"{samples_per_s / base:.2f}x |")
        print(rows[-1], flush=True)
    body = "\n".join([
        f"GRPO updates on a 2-layer, width-64 default model, built-in `copy` task, {args.num_envs} completions "
        f"per process per update (up to {args.max_new_tokens} new tokens), {args.updates} timed updates after "
        f"{args.warmup} warm-up; weak scaling (the global batch grows with the processes). {hardware}. "
        "Samples = completions sampled, scored and trained on, all processes together.",
        "",
        "| processes | global batch | samples/s | tokens/s | speed-up |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"{provenance()}. Reproduce: `python -m benchmarks.bench_distributed --updates {args.updates} "
        f"--num-envs {args.num_envs}`.",
    ])
    print(body)
    if not args.no_readme:
        write_section("Distributed scaling", body)


if __name__ == "__main__":
    main()
