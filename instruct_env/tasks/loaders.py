"""Loading instruction data from files, Hugging Face datasets and reasoning-gym.

The reasoning-gym loader lives in :mod:`instruct_env.tasks.reasoning` (its scorer guards are
documented there) and is re-exported here.

Field layouts:
    Without ``fields``, the layout is detected from the keys of the first record, trying in
    order (``source key -> Sample field``):

    * instruct-env: ``instruction``, ``references`` (a string or a list of strings),
      optional ``context``, ``id`` and ``task``;
    * Alpaca: ``instruction``, ``output``, optional ``input`` (the context);
    * Dolly: ``instruction``, ``response``, optional ``context``.

    With ``fields`` you map Sample fields to source keys, e.g. ``{"instruction": "prompt",
    "context": "src", "references": "target"}`` (targets: ``instruction`` (required),
    ``context``, ``references``, ``id``, ``task``). Every key named in ``fields`` is then
    required in every record. Without a ``references`` mapping samples have no references.

Records:
    Nothing is skipped silently. A record that is not an object, lacks a required key, or
    holds a value of the wrong type raises :class:`~instruct_env.error.DataFormatError`
    naming the file (or dataset), the line (or row) and the key. Types: the instruction is a
    non-empty string; the context a string (``null``/``None`` counts as empty for an
    optional context); references a string or a non-empty list of strings; an id a string
    or an integer, unique in the file. Keys not mapped to a Sample field are kept in
    ``metadata["record"]``; ``metadata["source"]`` and ``metadata["line"]`` (``"row"`` for
    datasets) say where the sample came from. Blank lines (JSONL, CSV) are not records.

Files:
    JSON (a list of objects), JSONL (one object per line) and CSV/TSV (a header row, then
    one record per row; all values are strings). The format comes from the extension
    (``.json``, ``.jsonl``/``.ndjson``, ``.csv``, ``.tsv``) unless ``format`` is given.
    Files are read as UTF-8, with or without a byte-order mark. A file with no records
    raises :class:`~instruct_env.error.EmptyDatasetError`.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from instruct_env.error import ConfigError, DataFormatError, EmptyDatasetError
from instruct_env.tasks.reasoning import ReasoningGymVerifier, from_reasoning_gym
from instruct_env.tasks.sample import Sample

__all__ = ["load_file", "from_hf_dataset", "from_reasoning_gym", "ReasoningGymVerifier", "FORMATS"]

FORMATS: tuple[str, ...] = ("json", "jsonl", "csv", "tsv")
_EXTENSIONS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}
_TARGETS = ("instruction", "context", "references", "id", "task")


@dataclass(frozen=True)
class _Layout:
    """How source keys map to Sample fields (``target -> source key``)."""

    name: str
    keys: Mapping[str, str]
    required: frozenset[str]


_LAYOUTS = (
    _Layout(
        "instruct-env",
        {t: t for t in _TARGETS},
        frozenset({"instruction", "references"}),
    ),
    _Layout(
        "Alpaca",
        {"instruction": "instruction", "context": "input", "references": "output"},
        frozenset({"instruction", "references"}),
    ),
    _Layout(
        "Dolly",
        {"instruction": "instruction", "context": "context", "references": "response"},
        frozenset({"instruction", "references"}),
    ),
)


def _user_layout(fields: Mapping[str, str] | None) -> _Layout | None:
    if fields is None:
        return None
    if not isinstance(fields, Mapping):
        raise ConfigError(
            f"fields must be a mapping of Sample field -> source key, got {type(fields).__name__}."
        )
    unknown = sorted(set(fields) - set(_TARGETS))
    if unknown:
        raise ConfigError(
            f"Unknown target(s) {', '.join(map(repr, unknown))} in fields; the Sample fields that can be "
            f"mapped are {', '.join(_TARGETS)}."
        )
    if "instruction" not in fields:
        raise ConfigError("fields must map 'instruction', e.g. fields={'instruction': 'prompt', ...}.")
    bad = [k for k, v in fields.items() if not isinstance(v, str)]
    if bad:
        raise ConfigError(
            f"fields values must be source key names (strings); {bad[0]!r} maps to {fields[bad[0]]!r}."
        )
    return _Layout("custom", dict(fields), frozenset(fields))


def _detect_layout(record: Any, where: str) -> _Layout:
    if isinstance(record, Mapping):
        for layout in _LAYOUTS:
            if all(layout.keys[t] in record for t in layout.required):
                return layout
        keys = ", ".join(map(repr, record)) or "(none)"
    else:
        keys = f"(not an object: {_type_name(record)})"
    raise DataFormatError(
        f"{where}: cannot detect the field layout; the record's keys are {keys}. Expected instruct-env "
        "(instruction, references[, context]), Alpaca (instruction, output[, input]) or Dolly "
        "(instruction, response[, context]) keys. Pass fields={'instruction': ..., 'context': ..., "
        "'references': ...} to name them."
    )


def _type_name(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _convert(
    record: Any,
    layout: _Layout,
    where: str,
    default_task: str,
    task_override: str | None,
    index: int,
    origin: Mapping[str, Any],
) -> Sample:
    """One record -> Sample, or a DataFormatError naming ``where`` and the key."""
    if not isinstance(record, Mapping):
        raise DataFormatError(f"{where}: expected an object with named fields, got {_type_name(record)}.")
    values: dict[str, Any] = {}
    for target, key in layout.keys.items():
        value = record.get(key)
        if key not in record or (value is None and target not in layout.required):
            if target in layout.required:
                raise DataFormatError(
                    f"{where}: missing required field {key!r} (the {target}); the record has "
                    f"{', '.join(map(repr, record)) or 'no fields'}."
                )
            continue
        values[target] = value

    def wrong(target: str, expected: str) -> DataFormatError:
        return DataFormatError(
            f"{where}: field {layout.keys[target]!r} (the {target}) must be {expected}, "
            f"got {_type_name(values[target])}."
        )

    instruction = values["instruction"]
    if not isinstance(instruction, str):
        raise wrong("instruction", "a string")
    if not instruction.strip():
        raise DataFormatError(f"{where}: field {layout.keys['instruction']!r} (the instruction) is empty.")
    context = values.get("context", "")
    if not isinstance(context, str):
        raise wrong("context", "a string")
    references: tuple[str, ...] = ()
    if "references" in values:
        refs = values["references"]
        if isinstance(refs, str):
            references = (refs,)
        elif isinstance(refs, (list, tuple)) and refs and all(isinstance(r, str) for r in refs):
            references = tuple(refs)
        else:
            raise wrong("references", "a string or a non-empty list of strings")
    task = task_override
    if task is None and "task" in values:
        if not isinstance(values["task"], str) or not values["task"]:
            raise wrong("task", "a non-empty string")
        task = values["task"]
    task = task or default_task
    if "id" in values:
        if isinstance(values["id"], bool) or not isinstance(values["id"], (str, int)):
            raise wrong("id", "a string or an integer")
        sample_id = str(values["id"])
    else:
        sample_id = f"{task}/{index}"
    used = {layout.keys[t] for t in values}
    metadata = {**origin, "record": {k: v for k, v in record.items() if k not in used}}
    return Sample(sample_id, task, instruction, context, references, metadata)


def _build(
    records: Iterable[tuple[int, Any]],
    layout: _Layout | None,
    where: Callable[[int], str],
    origin: Callable[[int], dict],
    default_task: str,
    task_override: str | None,
) -> list[Sample]:
    samples: list[Sample] = []
    first_line_of: dict[str, int] = {}
    for index, (position, record) in enumerate(records):
        if layout is None:
            layout = _detect_layout(record, where(position))
        sample = _convert(
            record, layout, where(position), default_task, task_override, index, origin(position)
        )
        if sample.id in first_line_of:
            raise DataFormatError(
                f"{where(position)}: duplicate id {sample.id!r} (first used at {where(first_line_of[sample.id])})."
            )
        first_line_of[sample.id] = position
        samples.append(sample)
    return samples


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

_JSON_WS = re.compile(r"[ \t\n\r]*")


def _skip_json_ws(text: str, pos: int = 0) -> int:
    """The position of the first character at or after ``pos`` that is not JSON whitespace."""
    match = _JSON_WS.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _json_records(text: str, path: str) -> Iterator[tuple[int, Any]]:
    """Yield ``(line, record)`` for each element of a top-level JSON list."""
    decoder = json.JSONDecoder()
    counted_pos, line = 0, 1

    def line_at(pos: int) -> int:
        nonlocal counted_pos, line
        line += text.count("\n", counted_pos, pos)
        counted_pos = pos
        return line

    def decode(pos: int) -> tuple[Any, int]:
        try:
            return decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataFormatError(
                f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}."
            ) from None

    pos = _skip_json_ws(text)
    if pos == len(text):
        return
    if text[pos] != "[":
        value, _ = decode(pos)
        raise DataFormatError(
            f"{path}: line {line_at(pos)}: expected a JSON list of records at the top level, got "
            f"{_type_name(value)}. (For one object per line use a .jsonl file.)"
        )
    pos = _skip_json_ws(text, pos + 1)
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            start = pos
            record, pos = decode(pos)
            yield line_at(start), record
            pos = _skip_json_ws(text, pos)
            if text.startswith(",", pos):
                pos = _skip_json_ws(text, pos + 1)
            elif text.startswith("]", pos):
                pos += 1
                break
            else:
                where = "the end of the file" if pos == len(text) else repr(text[pos])
                raise DataFormatError(
                    f"{path}: line {line_at(pos)}: expected ',' or ']' after a record, got {where}."
                )
    pos = _skip_json_ws(text, pos)
    if pos != len(text):
        raise DataFormatError(f"{path}: line {line_at(pos)}: unexpected data after the closing ']'.")


def _jsonl_records(text: str, path: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(
                f"{path}: line {number}, column {exc.colno}: invalid JSON: {exc.msg}."
            ) from None


def _csv_records(text: str, path: str, delimiter: str) -> Iterator[tuple[int, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    header_line = 0
    previous_end = 0
    try:
        for row in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not row:  # a blank line
                continue
            if header is None:
                header, header_line = row, start
                empty = [i + 1 for i, name in enumerate(row) if not name.strip()]
                if empty:
                    raise DataFormatError(f"{path}: line {start}: header column {empty[0]} has no name.")
                duplicated = sorted({n for n in row if row.count(n) > 1})
                if duplicated:
                    raise DataFormatError(
                        f"{path}: line {start}: header names {duplicated[0]!r} more than once."
                    )
                continue
            if len(row) != len(header):
                raise DataFormatError(
                    f"{path}: line {start}: row has {len(row)} fields but the header (line {header_line}) "
                    f"has {len(header)}."
                )
            yield start, dict(zip(header, row))
    except csv.Error as exc:
        raise DataFormatError(f"{path}: line {reader.line_num}: invalid CSV: {exc}.") from None


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataFormatError(
            f"{path}: line {line}: not valid UTF-8 ({exc.reason}); save the file as UTF-8."
        ) from None


def load_file(
    path: str | PathLike[str],
    format: str | None = None,
    fields: Mapping[str, str] | None = None,
    task: str | None = None,
) -> list[Sample]:
    """Load instruction data from a JSON, JSONL, CSV or TSV file (see the module docs).

    Args:
        path: The file.
        format: ``"json"``, ``"jsonl"``, ``"csv"`` or ``"tsv"``; from the extension if None.
        fields: Map of Sample field -> source key; auto-detected if None.
        task: Task name of every sample; else a record's ``task`` key, else the file stem.

    Returns:
        One sample per record, ids from the ``id`` key or ``"<task>/<record index>"``.

    Raises:
        ConfigError: unknown format, or bad ``fields``.
        DataFormatError: malformed file or record (the message names file, line and key).
        EmptyDatasetError: the file holds no records.
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    if format is None:
        format = _EXTENSIONS.get(path.suffix.lower())
        if format is None:
            raise ConfigError(
                f"Cannot tell the format of {str(path)!r} from its extension {path.suffix!r}; "
                f"pass format= one of {', '.join(map(repr, FORMATS))}."
            )
    elif format not in FORMATS:
        raise ConfigError(f"Unknown format {format!r}; expected one of {', '.join(map(repr, FORMATS))}.")
    layout = _user_layout(fields)
    text = _read_text(path)
    name = str(path)
    if format == "json":
        records = _json_records(text, name)
    elif format == "jsonl":
        records = _jsonl_records(text, name)
    else:
        records = _csv_records(text, name, "," if format == "csv" else "\t")
    samples = _build(
        records,
        layout,
        where=lambda line: f"{name}: line {line}",
        origin=lambda line: {"source": name, "line": line},
        default_task=path.stem,
        task_override=task,
    )
    if not samples:
        raise EmptyDatasetError(f"{name} contains no records; expected at least one {format.upper()} record.")
    return samples


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets
# ---------------------------------------------------------------------------------------------


def from_hf_dataset(
    dataset: Any, fields: Mapping[str, str] | None = None, task: str | None = None
) -> list[Sample]:
    """Convert an already loaded Hugging Face ``datasets.Dataset`` to samples.

    Any iterable of row mappings works too; the layouts and checks are those of :func:`load_file`.
    Nothing is downloaded. Errors name the row (0-based) instead of a line.

    Args:
        dataset: One split, e.g. ``load_dataset(...)["train"]``.
        fields: Map of Sample field -> column; auto-detected if None.
        task: Task name of every sample; else a ``task`` column, else the dataset's
            ``info.dataset_name``, else ``"hf_dataset"``.

    Raises:
        ConfigError: a ``DatasetDict`` (several splits) was passed, or bad ``fields``.
        DataFormatError: a row lacks a required column or has a wrong type.
        EmptyDatasetError: the dataset has no rows.
    """
    if not hasattr(dataset, "column_names") and isinstance(dataset, Mapping):
        raise ConfigError(
            f"Got a mapping with keys {', '.join(map(repr, dataset))} (a DatasetDict?); pass one split, "
            "e.g. dataset['train']."
        )
    if hasattr(dataset, "keys") and isinstance(getattr(dataset, "column_names", None), Mapping):
        raise ConfigError(
            f"Got a DatasetDict with splits {', '.join(map(repr, dataset.keys()))}; pass one split, "
            "e.g. dataset['train']."
        )
    layout = _user_layout(fields)
    info = getattr(dataset, "info", None)
    name = getattr(info, "dataset_name", None) or "hf_dataset"
    samples = _build(
        enumerate(dataset),
        layout,
        where=lambda row: f"dataset {name!r}, row {row}",
        origin=lambda row: {"source": name, "row": row},
        default_task=name,
        task_override=task,
    )
    if not samples:
        raise EmptyDatasetError(f"Dataset {name!r} has no rows.")
    return samples
