"""Helpers shared by the benchmark scripts: timing, provenance, README sections."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

README = Path(__file__).with_name("README.md")


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def commit_id() -> str:
    """The short commit hash, with ``+uncommitted`` when tracked files differ from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).parent, check=True).stdout.strip()
        commit += "+uncommitted" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return commit


def provenance() -> str:
    """One line naming the commit and the machine a result came from."""
    commit = commit_id()
    cpu = platform.processor() or platform.machine()
    return (f"commit `{commit}`, {os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}")


def write_section(title: str, body: str) -> None:
    """Replace (or append) the ``## title`` section of benchmarks/README.md."""
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + section
    README.write_text(text.rstrip() + "\n")
