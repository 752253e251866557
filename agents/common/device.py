"""Device selection, precision and CPU threads."""

from __future__ import annotations

import contextlib
import os

import torch

from instruct_env.error import ConfigError

__all__ = ["select_device", "autocast", "configure_threads"]


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
