"""Run logging: a JSONL file always, TensorBoard when installed, tqdm progress bars.

One :class:`RunLogger` per run directory. Every record is one JSON line of ``metrics.jsonl``,
written and flushed immediately (a crashed run keeps everything logged so far). Numeric values
also go to TensorBoard as ``<stage>/<key>`` when ``torch.utils.tensorboard`` can be imported.
Only rank 0 writes anything: other ranks get a logger whose methods do nothing, so distributed
code can call it unconditionally.

>>> import json, tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> with RunLogger(out, tensorboard=False) as log:
...     log.log({"loss": 1.5}, step=1, stage="sft")
>>> json.loads((out / "metrics.jsonl").read_text())["loss"]
1.5
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["RunLogger", "read_metrics", "to_jsonable"]

logger = logging.getLogger(__name__)


def to_jsonable(value: Any) -> Any:
    """Plain JSON values for numpy/torch scalars and arrays, paths and nested containers.

    Non-finite floats become ``None`` (JSON has no NaN).
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy and torch scalars and arrays
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read back the records of a ``metrics.jsonl`` file (skipping a torn last line)."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("Skipping an unreadable line in %s: %.80s", path, line)
    return records


class RunLogger:
    """Writes one run's metrics to ``<out_dir>/metrics.jsonl`` and ``<out_dir>/tensorboard/``.

    Args:
        out_dir: Run directory (created on rank 0).
        rank: Process rank; only rank 0 writes files or shows progress bars.
        tensorboard: Also write TensorBoard scalars when ``torch.utils.tensorboard`` is importable.
        progress: Show tqdm progress bars (see :meth:`progress`).
        filename: Name of the JSONL file.

    Every record gets ``stage``, ``kind`` (``"train"`` or ``"eval"``), ``step`` and ``time``
    (seconds since the logger was created) fields in front of the logged values.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        rank: int = 0,
        tensorboard: bool = True,
        progress: bool = True,
        filename: str = "metrics.jsonl",
    ) -> None:
        self.out_dir = Path(out_dir)
        self.rank = rank
        self.enabled = rank == 0
        self.show_progress = progress and self.enabled
        self.path = self.out_dir / filename
        self._start = time.perf_counter()
        self._file = None
        self._tb = None
        if not self.enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.info("TensorBoard is not installed; logging to %s only (pip install 'instruct-env[bench]').",
                            self.path)
            else:
                self._tb = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))

    @property
    def tensorboard_dir(self) -> Path | None:
        """Where TensorBoard events go (``None`` when TensorBoard is off)."""
        return self.out_dir / "tensorboard" if self._tb is not None else None

    def log(self, record: Mapping[str, Any], *, step: int, stage: str = "train", kind: str = "train") -> None:
        """Append one record (e.g. one update or one evaluation) and flush it."""
        if not self.enabled or self._file is None:
            return
        row = {"stage": stage, "kind": kind, "step": int(step), "time": round(time.perf_counter() - self._start, 3)}
        row.update(to_jsonable(dict(record)))
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            prefix = stage if kind == "train" else f"{stage}/{kind}"
            for key, value in row.items():
                if key in ("step", "time") or isinstance(value, bool):
                    continue
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f"{prefix}/{key}", value, int(step))
            self._tb.flush()

    def progress(self, iterable: Iterable[Any] | None = None, *, total: float | None = None,
                 desc: str | None = None, unit: str = "it", initial: int = 0):
        """A tqdm progress bar (a silent one on other ranks or with ``progress=False``).

        ``initial`` is where a resumed loop starts (it does not count toward the shown rate).
        """
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=not self.show_progress,
                    leave=False, dynamic_ncols=True)

    def close(self) -> None:
        """Close the files (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
