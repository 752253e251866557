"""Device selection, precision and CPU threads."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable

import torch

from instruct_env.error import ConfigError

__all__ = ["select_device", "autocast", "configure_threads", "idle_cores", "usable_cores"]


def select_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return ``device``, or for ``"auto"``/``None`` the best available: CUDA, then MPS, then CPU."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got {device!r}.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was requested but CUDA is not available here; use 'auto' or 'cpu'.")
    return dev


def autocast(device: torch.device):
    """bf16 autocast on CUDA; plain fp32 elsewhere (CPU bf16 is slow and less accurate)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads deliberately (default: ``$INSTRUCT_ENV_THREADS`` or all cores)."""
    if num_threads is None:
        num_threads = int(os.environ.get("INSTRUCT_ENV_THREADS", 0)) or (os.cpu_count() or 1)
    if num_threads < 1:
        raise ConfigError(f"num_threads must be >= 1; got {num_threads}.")
    torch.set_num_threads(num_threads)
    return num_threads


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one, else all cores)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cpu_times(path: str = "/proc/stat") -> tuple[float, float] | None:
    """(idle, total) jiffies of all cores from ``/proc/stat`` (``None`` where there is no such file)."""
    try:
        with open(path, encoding="ascii") as fh:
            fields = [float(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 5:
        return None
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user..steal


def idle_cores(sample_s: float = 0.5, *, read: Callable[[], tuple[float, float] | None] = _cpu_times,
               sleep: Callable[[float], None] = time.sleep, cores: int | None = None) -> float | None:
    """How many cores are idle right now, measured over ``sample_s`` seconds (``None`` if unknown).

    Reads the kernel's CPU counters before and after a short sleep, so it sees what other
    processes are doing *now* -- unlike the load average, which still counts a job that ended
    a minute ago (a package install just before a run, say).
    """
    cores = usable_cores() if cores is None else cores
    before = read()
    if before is None:
        return None
    sleep(sample_s)
    after = read()
    if after is None or after[1] <= before[1]:
        return None
    idle_share = (after[0] - before[0]) / (after[1] - before[1])
    n_all = os.cpu_count() or cores
    return max(0.0, min(float(cores), idle_share * n_all))
