"""The built-in families by name, the default selection, and turning a selection into instances."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from instruct_env.error import ConfigError, unknown_name
from instruct_env.tasks.builtin import chinese, lexical, numbers, words
from instruct_env.tasks.builtin.family import TaskFamily

__all__ = [
    "DEFAULT_TASKS",
    "task_names",
    "default_task_names",
    "make_task",
]

_REGISTRY: dict[str, type[TaskFamily]] = {
    cls.name: cls
    for cls in (
        words.CopyText,
        words.ReverseWords,
        numbers.SortNumbers,
        numbers.Arithmetic,
        words.ChangeCase,
        words.CountWords,
        words.PickWord,
        words.Dedup,
        lexical.Translate,
        lexical.Keywords,
        words.MostFrequent,
        numbers.SemanticParse,
        chinese.ChineseChars,
    )
}

#: The families used when no selection is given (``tasks=None``): the English families. Families
#: in other languages are opt-in, so that the default suite, the built-in tokenizer's corpus and
#: the default model's pre-training text stay as they are.
DEFAULT_TASKS: tuple[str, ...] = (
    "copy", "reverse_words", "sort_numbers", "arithmetic", "change_case", "count_words", "pick_word", "dedup",
    "translate", "keywords", "most_frequent", "semantic_parse",
)


def task_names() -> tuple[str, ...]:
    """Names of every built-in task family, in registry order (the opt-in ones included).

    >>> "sort_numbers" in task_names(), "zh_chars" in task_names()
    (True, True)
    """
    return tuple(_REGISTRY)


def default_task_names() -> tuple[str, ...]:
    """Names of the families selected by ``tasks=None`` (:data:`DEFAULT_TASKS`).

    >>> "zh_chars" in default_task_names(), len(default_task_names())
    (False, 12)
    """
    return DEFAULT_TASKS


def _check_knobs(owner: str, valid: Sequence[str], knobs: Mapping[str, object]) -> None:
    bad = sorted(set(knobs) - set(valid))
    if bad:
        from instruct_env.error import suggest

        hint = suggest(bad[0], valid)
        raise ConfigError(
            f"Unknown knob(s) {', '.join(map(repr, bad))} for {owner}.{hint} "
            f"Valid knobs: {', '.join(sorted(valid)) or '(none)'}."
        )


def make_task(name: str, **knobs: int) -> TaskFamily:
    """Create the built-in task family ``name`` with difficulty ``knobs``.

    Raises:
        UnknownNameError: ``name`` is not a built-in task (with "did you mean" hints).
        ConfigError: a knob is unknown or out of range.

    >>> make_task("sort_numbers", max_len=4).max_len
    4
    """
    if name not in _REGISTRY:
        raise unknown_name("task", name, _REGISTRY)
    cls = _REGISTRY[name]
    _check_knobs(f"task {name!r}", cls.knobs(), knobs)
    return cls(**knobs)


def _resolve_tasks(
    tasks: str | Sequence[str | TaskFamily] | None, knobs: Mapping[str, int]
) -> tuple[TaskFamily, ...]:
    """Turn a task selection into family instances, applying each knob where it exists."""
    if tasks is None:
        tasks = default_task_names()
    elif isinstance(tasks, (str, TaskFamily)):
        tasks = [tasks]
    selected: list[TaskFamily] = []
    for task in tasks:
        if isinstance(task, TaskFamily):
            selected.append(task)
        elif isinstance(task, str):
            if task not in _REGISTRY:
                raise unknown_name("task", task, _REGISTRY)
            selected.append(_REGISTRY[task]())
        else:
            raise ConfigError(f"A task must be a name or a TaskFamily instance, got {type(task).__name__}.")
    if not selected:
        raise ConfigError("The task selection is empty; pass tasks=None for every built-in task.")
    names = [f.name for f in selected]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"Task(s) {', '.join(map(repr, duplicated))} selected more than once.")
    all_knobs = sorted({k for f in selected for k in f.knobs()})
    _check_knobs(f"the selected tasks ({', '.join(names)})", all_knobs, knobs)
    return tuple(
        dataclasses.replace(f, **{k: v for k, v in knobs.items() if k in f.knobs()}) if knobs else f
        for f in selected
    )
