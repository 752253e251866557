"""Typed configuration: YAML files and command-line overrides, both checked against dataclasses.

A configuration is a tree of dataclasses (e.g. :class:`agents.pipeline.PipelineConfig`). Values
from a YAML file and from ``--set section.field=value`` overrides are merged into a plain nested
mapping first and converted once at the end, field by field, to the declared type -- so no untyped
dict ever reaches a trainer, and the dataclasses' ``__post_init__`` checks see the final values.

Conversion rules (:func:`convert`): strings from the command line are parsed for the declared type
(``"1e-4"`` for a float, ``"true"`` for a bool, ``"none"`` for an optional field, YAML flow syntax
such as ``"[copy, sort_numbers]"`` for a list); an ``int`` is accepted for a ``float`` field; every
other mismatch is a :class:`~instruct_env.error.ConfigError` naming the field. An unknown field is
an :class:`~instruct_env.error.UnknownNameError` with "did you mean" suggestions.

>>> from agents.common.model import DefaultModelConfig
>>> build_config(DefaultModelConfig, {"n_layer": 2}, ["n_embd=64", "dropout=0.1"])
DefaultModelConfig(n_layer=2, n_embd=64, n_head=4, n_positions=256, dropout=0.1)
>>> build_config(DefaultModelConfig, {}, ["dropout=high"])
Traceback (most recent call last):
...
instruct_env.error.ConfigError: dropout: expected a float, got 'high'.
>>> build_config(DefaultModelConfig, {}, ["n_layers=2"])
Traceback (most recent call last):
...
instruct_env.error.UnknownNameError: Unknown config field 'n_layers'. Did you mean 'n_layer'? ...
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from instruct_env.error import ConfigError, unknown_name

__all__ = [
    "build_config",
    "from_dict",
    "to_dict",
    "convert",
    "load_yaml",
    "save_yaml",
    "parse_overrides",
    "field_paths",
]

_NONE_WORDS = ("none", "null", "~")
_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


def _describe(tp: Any) -> str:
    if tp is type(None):
        return "None"
    if isinstance(tp, type):
        return {"int": "an integer", "float": "a float", "str": "a string", "bool": "a boolean"}.get(
            tp.__name__, tp.__name__
        )
    return str(tp).replace("typing.", "")


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _parse_text(text: str) -> Any:
    """YAML-parse a command-line string for a container field (lists, mappings)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def convert(value: Any, tp: Any, name: str) -> Any:
    """Convert ``value`` to the annotation ``tp``, or raise :class:`ConfigError` naming ``name``.

    >>> convert("1e-4", float, "lr"), convert(3, float, "lr"), convert("none", int | None, "steps")
    (0.0001, 3.0, None)
    >>> convert("2.5", int, "steps")
    Traceback (most recent call last):
    ...
    instruct_env.error.ConfigError: steps: expected an integer, got '2.5'.
    """
    if tp is Any:
        raise ConfigError(f"{name}: fields typed Any are not allowed in a configuration dataclass.")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return from_dict(tp, value, prefix=name)
        raise ConfigError(f"{name}: expected a mapping of {tp.__name__} fields, got {value!r}.")
    if _is_union(tp):
        return _convert_union(value, tp, name)
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{name}: expected None, got {value!r}.")
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return _convert_literal(value, tp, name)
    if origin in (list, tuple, dict):
        return _convert_container(value, tp, origin, name)
    if tp is bool:
        return _convert_bool(value, name)
    if tp is int:
        return _convert_int(value, name)
    if tp is float:
        return _convert_float(value, name)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name}: expected a string, got {value!r} ({type(value).__name__}).")
    raise ConfigError(f"{name}: unsupported field type {_describe(tp)} in a configuration dataclass.")


def _convert_union(value: Any, tp: Any, name: str) -> Any:
    """``None`` for a none word when ``tp`` allows it, else the first of its types that ``value`` converts to."""
    options = typing.get_args(tp)
    if type(None) in options and (value is None or isinstance(value, str) and value.lower() in _NONE_WORDS):
        return None
    for option in options:
        if option is type(None):
            continue
        try:
            return convert(value, option, name)
        except ConfigError:
            continue
    expected = " or ".join(_describe(o) for o in options)
    raise ConfigError(f"{name}: expected {expected}, got {value!r}.")


def _convert_literal(value: Any, tp: Any, name: str) -> Any:
    choices = typing.get_args(tp)
    if value in choices or isinstance(value, str) and all(isinstance(c, str) for c in choices):
        # An unknown word is left to the dataclass, whose own check names the field and the choices
        # in its words ("did you mean ..."); from_dict checks afterwards that one did.
        return value
    raise ConfigError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}.")


def _convert_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE_WORDS + _FALSE_WORDS:
        return value.lower() in _TRUE_WORDS
    raise ConfigError(f"{name}: expected a boolean (true/false), got {value!r}.")


def _convert_int(value: Any, name: str) -> int:
    """An int, a whole float, or a string of either (``"3"``, ``"1e3"``); not a bool."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number)
    raise ConfigError(f"{name}: expected an integer, got {value!r}.")


def _convert_float(value: Any, name: str) -> float:
    """A float, an int widened to float, or a string of either; not a bool."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{name}: expected a float, got {value!r}.")


def _convert_container(value: Any, tp: Any, origin: type, name: str) -> Any:
    if isinstance(value, str):
        parsed = _parse_text(value)
        if origin in (list, tuple) and not isinstance(parsed, list):
            # "a,b" or a single bare word: a comma-separated list
            parsed = [part.strip() for part in value.split(",") if part.strip()]
        value = parsed
    args = typing.get_args(tp)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}.")
        key_tp, value_tp = args or (str, Any)
        return {
            convert(k, key_tp, f"{name} key"): convert(v, value_tp, f"{name}.{k}") for k, v in value.items()
        }
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name}: expected a list, got {value!r}.")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise ConfigError(f"{name}: expected {len(args)} items, got {len(value)} ({value!r}).")
        return tuple(convert(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
    item_tp = args[0] if args else Any
    items = [convert(v, item_tp, f"{name}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type, data: Mapping[str, Any] | None, *, prefix: str = "") -> Any:
    """Build the dataclass ``cls`` from a (nested) mapping, converting every value to its field type.

    Fields absent from ``data`` keep their defaults. ``prefix`` names the section in messages.

    Raises:
        UnknownNameError: a key is not a field of ``cls`` (with suggestions).
        ConfigError: a value cannot be converted, or ``cls.__post_init__`` rejects the result.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        where = prefix or cls.__name__
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} fields, got {data!r}.")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            kind = f"{prefix!r} field" if prefix else "config field"
            raise unknown_name(kind, key, fields)
        path = f"{prefix}.{key}" if prefix else str(key)
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, Mapping):
            # A partial section starts from the field's own default (which may differ from the
            # section class's defaults), not from the class defaults.
            value = _merge(to_dict(_field_default(fields[key])), value)
        kwargs[key] = convert(value, hints[key], path)
    try:
        obj = cls(**kwargs)
    except ConfigError as exc:
        if prefix:
            raise ConfigError(f"{prefix}: {exc}") from exc
        raise
    for key in kwargs:
        _check_literal(getattr(obj, key), hints[key], f"{prefix}.{key}" if prefix else str(key))
    return obj


def _check_literal(value: Any, tp: Any, name: str) -> None:
    """Raise :class:`ConfigError` when ``tp`` is a ``Literal`` (or one or ``None``) that does not hold ``value``."""
    options = typing.get_args(tp) if _is_union(tp) else (tp,)
    literals = [o for o in options if typing.get_origin(o) is typing.Literal]
    if not literals or value is None and type(None) in options:
        return
    choices = [c for o in literals for c in typing.get_args(o)]
    if value not in choices:
        raise ConfigError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}.")


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _merge(base: Any, update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` laid over the mapping ``base``, recursively (neither is modified)."""
    merged = dict(base) if isinstance(base, Mapping) else {}
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            value = _merge(merged[key], value)
        merged[key] = value
    return merged


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain YAML-safe Python values (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def field_paths(cls: type, prefix: str = "") -> list[str]:
    """Every settable dotted path of a dataclass tree, e.g. ``["seed", "sft.lr", ...]``."""
    paths = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            paths.extend(field_paths(hints[f.name], path + "."))
        else:
            paths.append(path)
    return paths


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` (an empty file is an empty mapping)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"Config file {os.fspath(path)!r} does not exist.") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {os.fspath(path)!r} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {os.fspath(path)!r} must hold a mapping at the top level; got {data!r}.")
    return data


def save_yaml(obj: Any, path: str | os.PathLike) -> None:
    """Write a dataclass tree (or mapping) to ``path`` as YAML, in field order."""
    import yaml

    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(to_dict(obj), fh, sort_keys=False)


def parse_overrides(overrides: Iterable[str]) -> list[tuple[str, str]]:
    """Split ``"section.field=value"`` strings into ``(path, value)`` pairs.

    >>> parse_overrides(["sft.lr=1e-4", "data.tasks=[copy]"])
    [('sft.lr', '1e-4'), ('data.tasks', '[copy]')]
    """
    pairs = []
    for item in overrides:
        path, sep, value = item.partition("=")
        if not sep or not path.strip():
            raise ConfigError(f"Override {item!r} must look like 'section.field=value' (e.g. 'sft.lr=1e-4').")
        pairs.append((path.strip(), value))
    return pairs


def _set_path(cls: type, data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at the dotted ``path`` in the nested mapping ``data``, checking names on ``cls``."""
    parts = path.split(".")
    node, node_cls = data, cls
    done: list[str] = []
    for i, part in enumerate(parts):
        fields = {f.name for f in dataclasses.fields(node_cls) if f.init}
        if part not in fields:
            section = ".".join(done)
            kind = f"{section!r} field" if section else "config field"
            raise unknown_name(kind, part, fields)
        tp = _hints(node_cls)[part]
        done.append(part)
        if i == len(parts) - 1:
            node[part] = value
            return
        if not (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
            raise ConfigError(f"{'.'.join(done)} is a value, not a section; cannot set {path!r}.")
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(done)}: expected a mapping, got {child!r}.")
        node, node_cls = child, tp


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def build_config(
    cls: type,
    data: Mapping[str, Any] | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> Any:
    """Build ``cls`` from a YAML-style mapping plus overrides (later ones win).

    Args:
        cls: The root configuration dataclass.
        data: Values read from a YAML file (see :func:`load_yaml`); not modified.
        overrides: ``"a.b=value"`` strings, or a mapping ``{"a.b": value}`` of already-typed values.
    """
    merged = _deep_copy(data or {})
    pairs = overrides.items() if isinstance(overrides, Mapping) else parse_overrides(overrides)
    for path, value in pairs:
        _set_path(cls, merged, path, value)
    return from_dict(cls, merged)
