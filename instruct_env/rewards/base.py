"""The reward contract: a batched, pure, picklable function from strings to ``float64``.

Every reward has one signature::

    reward(completions: Sequence[str], references: Sequence[Sequence[str]], **kwargs) -> np.ndarray

``references[i]`` holds the reference answers of ``completions[i]`` (a bare string counts as one
reference). The result has one float per completion. Keyword arguments a reward does not use are
ignored, so an environment can pass the same ``samples=...`` to every reward.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from instruct_env.error import ConfigError, RewardError

__all__ = ["Reward", "CallableReward", "WeightedReward", "check_inputs"]

Completions = Sequence[str]
References = Sequence[Sequence[str] | str]


def check_inputs(completions: Completions, references: References) -> tuple[list[str], list[tuple[str, ...]]]:
    """Validate a batch and normalise it to ``(list of str, list of tuples of str)``.

    A reference given as a bare string is one reference. The caller's objects are not modified.

    Raises:
        RewardError: the batch is not a sequence of strings, the lengths differ, or a reference is
            not a string.

    >>> check_inputs(["a b"], ["a b"])
    (['a b'], [('a b',)])
    """
    if isinstance(completions, (str, bytes)):
        raise RewardError(
            f"completions must be a sequence of strings, one per sample; got a single "
            f"{type(completions).__name__}. Wrap it in a list: reward([completion], [references])."
        )
    if isinstance(references, (str, bytes)):
        raise RewardError(
            f"references must be a sequence with one entry (a string or a sequence of strings) per "
            f"completion; got a single {type(references).__name__}. Wrap it in a list: "
            "reward([completion], [reference])."
        )
    completions = list(completions)
    references = list(references)
    if len(completions) != len(references):
        raise RewardError(
            f"Got {len(completions)} completions but {len(references)} reference entries; expected one "
            "entry per completion (a string or a sequence of strings). Pass references in the same order "
            "as completions, e.g. references=[['ref of 1st'], ['ref A of 2nd', 'ref B of 2nd']]."
        )
    for i, completion in enumerate(completions):
        if not isinstance(completion, str):
            raise RewardError(
                f"completions[{i}] is a {type(completion).__name__}, expected str. Decode token ids to "
                "text before scoring (env.decode_batch does this)."
            )
    refs = [_as_reference_tuple(r, i) for i, r in enumerate(references)]
    return completions, refs


def _as_reference_tuple(refs: object, index: int) -> tuple[str, ...]:
    if isinstance(refs, str):
        return (refs,)
    if not isinstance(refs, Iterable) or isinstance(refs, (bytes, Mapping)):
        raise RewardError(
            f"references[{index}] is a {type(refs).__name__}, expected a string or a sequence of strings."
        )
    out = tuple(refs)
    for j, ref in enumerate(out):
        if not isinstance(ref, str):
            raise RewardError(
                f"references[{index}][{j}] is a {type(ref).__name__}, expected str. Each entry of "
                "references is one string or a sequence of strings."
            )
    return out


class Reward:
    """Base class of every reward: batched, pure, picklable, ``float64`` out.

    Subclasses set :attr:`name` and implement :meth:`_score`, which receives validated inputs
    (a list of strings and a list of tuples of strings). :meth:`__call__` returns the values;
    :meth:`compute` also returns the named components (for a simple reward ``{name: values}``).

    Attributes:
        name: The key under which the reward reports its values.
        needs_references: If true, every completion must have at least one reference.

    >>> class Shouting(Reward):
    ...     name = "shouting"
    ...     needs_references = False
    ...     def _score(self, completions, references, **kwargs):
    ...         return np.array([float(c.isupper()) for c in completions])
    >>> Shouting()(["HI", "hi"], [[], []])
    array([1., 0.])
    >>> Shouting().compute(["HI"], [[]])
    (array([1.]), {'shouting': array([1.])})
    """

    name: str = "reward"
    needs_references: bool = True

    def __call__(self, completions: Completions, references: References, **kwargs: Any) -> np.ndarray:
        """Score a batch; returns one ``float64`` per completion."""
        return self.compute(completions, references, **kwargs)[0]

    def compute(
        self, completions: Completions, references: References, **kwargs: Any
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Score a batch; returns ``(total, components)`` with ``components = {name: total}``."""
        completions, refs = check_inputs(completions, references)
        if self.needs_references:
            for i, r in enumerate(refs):
                if not r:
                    raise RewardError(
                        f"completions[{i}] has no reference, but the {self.name!r} reward compares "
                        "against references. Give every sample at least one reference (an empty string "
                        "is allowed), or use the 'task' reward for samples scored by a verifier."
                    )
        values = np.asarray(self._score(completions, refs, **kwargs), dtype=np.float64)
        return values, {self.name: values}

    def compute_with_info(
        self, completions: Completions, references: References, **kwargs: Any
    ) -> tuple[np.ndarray, dict[str, np.ndarray], list[dict[str, Any]]]:
        """Like :meth:`compute`, plus one info dict per completion saying where its value came from.

        Environments put these dicts into the episode's ``info``. Automatic rewards report
        ``{"reward_source": name}``; rewards backed by people or a learned reward model
        override this to add e.g. the reward-model version or a ticket for a delayed label.

        >>> ExactMatchLike = type("ExactMatchLike", (Reward,), {"name": "same",
        ...     "_score": lambda self, c, r, **k: np.array([float(x in y) for x, y in zip(c, r)])})
        >>> ExactMatchLike().compute_with_info(["a"], [["a"]])[2]
        [{'reward_source': 'same'}]
        """
        total, components = self.compute(completions, references, **kwargs)
        return total, components, [{"reward_source": self.name} for _ in range(len(total))]

    def _score(self, completions: list[str], references: list[tuple[str, ...]], **kwargs: Any) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _check_signature(fn: Callable[..., Any], name: str) -> None:
    """Refuse, when the reward is made, a function that could not be called as ``fn(completions, references, **kw)``.

    The envs pass keyword arguments (``samples=...``, and more in later versions), so the function
    must take ``**kwargs``; without it the first ``step`` would fail, far from where the reward was
    made. A function whose signature cannot be read (some builtins) is accepted as is.
    """
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return
    kinds = [p.kind for p in params]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    fits = (inspect.Parameter.VAR_POSITIONAL in kinds or len(positional) >= 2) and \
        all(p.default is not p.empty for p in positional[2:])
    if not fits or inspect.Parameter.VAR_KEYWORD not in kinds:
        shown = ", ".join(str(p) for p in params)
        raise ConfigError(
            f"Reward function {name!r} has the signature ({shown}); a reward is called as "
            f"fn(completions, references, **kwargs) (the envs pass samples=... and other keywords). "
            f"Define it as def {name}(completions, references, **kwargs)."
        )


class CallableReward(Reward):
    """Adapter that turns a plain function with the reward signature into a :class:`Reward`.

    The function receives the validated batch (a list of strings and a list of tuples of strings)
    and the keyword arguments. Its output is checked: it must be one finite float per completion.
    The adapter pickles whenever the function does (a module-level function or class instance).

    Args:
        fn: ``fn(completions, references, **kwargs)`` returning a sequence of floats.
        name: Component name; defaults to the function's ``__name__``.

    >>> def length(completions, references, **kwargs):
    ...     return [float(len(c)) for c in completions]
    >>> reward = CallableReward(length)
    >>> reward(["ab", "abc"], [["x"], ["y"]])
    array([2., 3.])
    >>> reward.name
    'length'
    """

    needs_references = False

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        if not callable(fn):
            raise ConfigError(f"CallableReward needs a callable; got {type(fn).__name__}.")
        _check_signature(fn, name if name is not None else getattr(fn, "__name__", type(fn).__name__))
        self.fn = fn
        self.name = name if name is not None else getattr(fn, "__name__", type(fn).__name__)

    def _score(self, completions: list[str], references: list[tuple[str, ...]], **kwargs: Any) -> np.ndarray:
        out = self.fn(completions, references, **kwargs)
        try:
            values = np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise RewardError(
                f"Reward function {self.name!r} returned {type(out).__name__} {_short(out)}, which is not "
                f"a sequence of floats; expected {len(completions)} floats, one per completion."
            ) from exc
        if values.shape != (len(completions),):
            raise RewardError(
                f"Reward function {self.name!r} returned shape {values.shape}; expected "
                f"({len(completions)},), one float per completion."
            )
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise RewardError(
                f"Reward function {self.name!r} returned a non-finite value ({values[bad[0]]}) for "
                f"completion {int(bad[0])}; rewards must be finite floats."
            )
        return values

    def __repr__(self) -> str:
        return f"CallableReward({self.fn!r}, name={self.name!r})"


class WeightedReward(Reward):
    """A weighted sum of rewards that also reports each term.

    ``compute`` returns ``(total, components)`` where ``total = sum(weight * values)`` and
    ``components`` maps each term's name to its unweighted values. The weights are used as
    given, not normalised: make them sum to 1 to keep [0, 1] rewards in [0, 1].

    Args:
        terms: ``(reward, weight)`` pairs; reward names must be distinct, weights finite.

    >>> from instruct_env.rewards import ExactMatchReward, TokenF1Reward
    >>> reward = WeightedReward([(ExactMatchReward(), 0.5), (TokenF1Reward(), 0.5)])
    >>> total, parts = reward.compute(["a cat"], [["a dog"]])
    >>> total, parts["exact_match"], parts["token_f1"]
    (array([0.]), array([0.]), array([0.]))
    >>> reward(["the cat sat"], [["cat sat"]])
    array([0.5])
    """

    def __init__(self, terms: Iterable[tuple[Reward, float]]) -> None:
        terms = list(terms)
        if not terms:
            raise ConfigError("WeightedReward needs at least one (reward, weight) term; got none.")
        seen: set[str] = set()
        checked = []
        for reward, weight in terms:
            if not isinstance(reward, Reward):
                raise ConfigError(
                    f"WeightedReward terms must be Reward instances; got {type(reward).__name__}. "
                    "Use instruct_env.rewards.make(...) to build one from a name or a function."
                )
            if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(weight):
                raise ConfigError(f"The weight of reward {reward.name!r} must be a finite number; got {weight!r}.")
            if reward.name in seen:
                raise ConfigError(
                    f"Two terms are named {reward.name!r}; component names must be distinct. "
                    "Give callables distinct names with make(fn, name=...)."
                )
            seen.add(reward.name)
            checked.append((reward, float(weight)))
        self.terms = checked
        self.name = "+".join(f"{w:g}*{r.name}" for r, w in checked)
        self.needs_references = any(r.needs_references for r, _ in checked)

    def compute(
        self, completions: Completions, references: References, **kwargs: Any
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Score a batch; returns ``(total, components)``: the weighted sum and each term's rewards."""
        return self.compute_with_info(completions, references, **kwargs)[:2]

    def compute_with_info(
        self, completions: Completions, references: References, **kwargs: Any
    ) -> tuple[np.ndarray, dict[str, np.ndarray], list[dict[str, Any]]]:
        """Weighted total, each term's values, and the terms' info merged per completion."""
        completions, refs = check_inputs(completions, references)
        total = np.zeros(len(completions), dtype=np.float64)
        components: dict[str, np.ndarray] = {}
        infos: list[dict[str, Any]] = [{} for _ in completions]
        for reward, weight in self.terms:
            values, _, term_infos = reward.compute_with_info(completions, refs, **kwargs)
            components[reward.name] = values
            total += weight * values
            for merged, info in zip(infos, term_infos):
                for key, value in info.items():
                    merged[key] = f"{merged[key]}+{value}" if key == "reward_source" and key in merged else value
        return total, components, infos

    def __repr__(self) -> str:
        return f"WeightedReward({self.terms!r})"


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
