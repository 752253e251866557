"""Deadlines of tests that wait for other processes, generous and scaled in one place.

A deadline only stops a test that hangs; it never decides whether a slow machine passes. Each is
several times what a 2-core machine needs; ``INSTRUCT_ENV_TEST_TIMEOUT_SCALE=3`` multiplies them
all (e.g. under a debugger, or on a heavily shared machine).
"""

from __future__ import annotations

import os

SCALE_ENV = "INSTRUCT_ENV_TEST_TIMEOUT_SCALE"


def deadline_s(seconds: float) -> float:
    """``seconds`` times the scale in ``INSTRUCT_ENV_TEST_TIMEOUT_SCALE`` (default 1)."""
    raw = os.environ.get(SCALE_ENV, "1")
    try:
        scale = float(raw)
    except ValueError:
        raise ValueError(f"{SCALE_ENV} must be a positive number; got {raw!r}.") from None
    if not scale > 0:
        raise ValueError(f"{SCALE_ENV} must be a positive number; got {raw!r}.")
    return seconds * scale
