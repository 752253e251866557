"""Stopping a run on SIGINT (Ctrl-C) or SIGTERM without losing it.

:class:`StopSignals` installs handlers for both signals while a run is in progress. Inside a
:meth:`StopSignals.deferred` block (an RL stage, where the trainer's state can be saved between
updates), the first signal only records the request: the current update finishes, the caller
sees it at its next :meth:`StopSignals.check` and saves a checkpoint. Anywhere else, and on a
second signal, :class:`Interrupted` is raised at once. :class:`Interrupted` is a
``KeyboardInterrupt``, so code that cleans up after Ctrl-C cleans up after it too.

>>> import os, signal
>>> stop = StopSignals()
>>> with stop, stop.deferred():
...     os.kill(os.getpid(), signal.SIGINT)  # recorded; the "update" goes on
...     try:
...         stop.check()
...     except Interrupted as exc:
...         print(exc.signal_name, exc.exit_code)
SIGINT 130
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

__all__ = ["Interrupted", "StopSignals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A run was stopped by a signal. ``exit_code`` is the shell's ``128 + signal number``."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + self.signum
        super().__init__(f"stopped by {self.signal_name}")


class StopSignals:
    """SIGINT / SIGTERM handlers for the duration of a ``with`` block (main thread only; elsewhere a no-op)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._deferring = False
        self._previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if not (self._deferring and first):
            raise Interrupted(signum)

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.signum is not None

    def check(self) -> None:
        """Raise :class:`Interrupted` if a stop was asked for."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Within this block the first signal is only recorded (see the module docs)."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
