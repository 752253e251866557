r"""reasoning-gym's procedural datasets as task sources, scored by their own ``score_answer``.

Needs the optional package: ``pip install 'instruct-env[reasoning]'`` (reasoning-gym 0.1.25 is
the tested version).

Example (not a doctest, as the package is optional)::

    import gymnasium as gym
    import instruct_env
    from instruct_env.tasks import from_reasoning_gym

    env = gym.make("InstructEnv/Completion-v0", dataset=from_reasoning_gym("gcd", size=50, seed=0))
    obs, info = env.reset(seed=0)
    env.step(info["references"][0])[1]  # 1.0: the reference answer, scored by gcd's own scorer

Samples:
    Each reasoning-gym entry (``{"question", "answer", "metadata"}``) becomes one
    :class:`~instruct_env.tasks.sample.Sample`: the question is the instruction and the context
    is empty. reasoning-gym questions interleave the task and its data in free text (e.g. "Sort
    these numbers in ascending order: 51.6, -91.9, ..." followed by format rules), with no field
    marking where one ends, so the question is kept whole rather than split by guesswork. The
    reference is the entry's answer (none for the datasets whose answers are ``None`` because
    many answers are valid: ``boxnet``, ``graph_color``, ``propositional_logic``, ``rubiks_cube``
    and ``rush_hour``; use ``reward="task"`` there). The whole entry is kept in
    ``metadata["entry"]``, for the scorer.

Scoring:
    The completion itself is the answer: no ``<answer>`` tags are extracted. A
    :class:`ReasoningGymVerifier` scores it in four steps:

    1. Surrounding whitespace is stripped. reasoning-gym compares strings exactly, and in 48 of
       its 105 datasets a correct answer followed by a newline loses credit (``basic_arithmetic``
       gives ``"-4\n"`` 0.67, ``gcd`` gives ``" 1\n"`` 0.33). No reasoning-gym answer starts or
       ends with whitespace, so stripping never turns a right answer wrong.
    2. A guard rejects (score 0) answers that a dataset's scorer is known to mishandle; see
       "Scorer quirks" below.
    3. ``dataset.score_answer(answer, entry)`` runs. An exception, a score that ``float()``
       rejects (``None``, a list...), NaN or an infinity scores 0; a finite score is clamped to
       ``[0, 1]``. A bad completion must not stop an RL run, and the reward must stay a number
       in ``[0, 1]``.
    4. With ``partial_credit=False`` any score below 1 becomes 0.

Scorer quirks (reasoning-gym 0.1.25; each is pinned by ``tests/test_reasoning_gym.py``):
    * Substring credit. The default scorer (used by ``basic_arithmetic``, ``gcd``,
      ``base_conversion``, ``leg_counting`` and most others) gives ``len(answer) / len(completion)``
      when the answer occurs anywhere in the completion: "The answer is -4." gets 0.12, and the
      constant "0123456789" gets 0.1 on every one-digit answer. ``chain_sum`` does the same when
      the completion is not a number. Numeric formatting is not normalised: ``-4.0`` for ``-4``
      gets 0.5 in ``basic_arithmetic`` (``chain_sum`` compares as decimals and gives 1.0).
      Pass ``partial_credit=False`` to reward exact answers only.
    * Floors for garbage. Several scorers give 0.01-0.05 to any answer, even an empty one
      (``advanced_geometry``, ``countdown``, ``fraction_simplification``, ``power_function``,
      ``puzzle24``, ``sentence_reordering``, ...). ``partial_credit=False`` removes them too.
    * ``number_sorting`` accepts a list of ``NaN`` of the right length as any sorted list (NaN
      fails every comparison, so both its order check and its tolerance check pass). Guarded:
      answers naming NaN or infinity score 0. Its tolerance of 1 per number is kept: rounding
      ``[-2.8, 0.9]`` to ``[-3, 1]`` still scores 1.0.
    * ``game_of_life_halting`` compares ``bool(answer) == bool(reference)``, and every non-empty
      string is true, so "banana" scores 1.0. Guarded: only the reference ("True"/"False", any
      case) gets through.
    * ``coin_flip`` gives credit for a shared prefix divided by the *shorter* length, so "0"
      scores 1.0 for every probability above 1e-4 and below 1, and it parses
      ``Fraction("1e999999999")``, which does not finish. Guarded: the answer must be a number
      (a decimal with an exponent of at most three digits, or a fraction) within 1e-4 of the
      reference (the scorer's own tolerance), so this dataset scores 0 or 1.
    * ``binary_matrix``, ``n_queens``, ``spiral_matrix`` and ``string_insertion`` call Python's
      ``eval`` on the completion: a completion such as ``__import__('os').system(...)`` is run,
      and ``9**9**9**9`` never finishes. Guarded: the completion must equal the reference (or a
      valid n-queens board) or be a Python literal (``ast.literal_eval`` accepts it), so
      nothing is executed.
    * ``countdown``, ``puzzle24``, ``simple_integration``, ``intermediate_integration`` and
      ``polynomial_multiplication`` parse the completion with sympy's ``parse_expr``, which
      also runs it with ``eval`` (even without quotes: ``exec(chr(105)+...)``), and computes
      integer powers exactly (``9**9**9**9``, ``1e999999999`` never finish). Guarded: the
      completion must be at most 1,000 characters of arithmetic on finite numbers, one-letter
      symbols and common functions (``sin``, ``exp``, ``sqrt``...), with no power inside the
      base of a power and exponents that are small numbers or symbols; checked on Python's
      syntax tree without running anything. Every reference passes.
    * ``prime_factorization`` raises ``ValueError`` on non-numeric answers (scored 0).
    * Scorers run in-process without a time limit. With the guards, no scorer of the 103
      datasets probed (all but ``composite``, which needs other datasets, and the slow
      ``rubiks_cube``) ran code or hung on the probes: code, power towers, huge exponents,
      10,000-character answers. They remain third-party code.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from instruct_env.error import (
    ConfigError,
    DataFormatError,
    EmptyDatasetError,
    RewardError,
    require,
    unknown_name,
)
from instruct_env.tasks.sample import Sample

__all__ = ["ReasoningGymVerifier", "from_reasoning_gym", "ReasoningGymTask", "reasoning_gym_split"]


# -- guards: answers that a dataset's scorer mishandles score 0 without calling it -------------------

_NON_FINITE = re.compile(r"nan|inf", re.IGNORECASE)
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?(/\d+)?")  # exponents: 3 digits


def _finite_numbers(answer: str, entry: Mapping[str, Any]) -> bool:
    """number_sorting: a list of NaN passes both its order and its tolerance checks.

    >>> _finite_numbers("['-1.5', '2']", {}), _finite_numbers("['NaN', 'nan']", {})
    (True, False)
    """
    return _NON_FINITE.search(answer) is None


def _same_boolean(answer: str, entry: Mapping[str, Any]) -> bool:
    """game_of_life_halting: its scorer compares ``bool(answer)``, true for any non-empty string.

    >>> _same_boolean("true", {"answer": "True"}), _same_boolean("banana", {"answer": "True"})
    (True, False)
    """
    return answer.lower() == str(entry["answer"]).lower()


def _close_number(answer: str, entry: Mapping[str, Any]) -> bool:
    """coin_flip: prefix credit gives "0" full marks, and exponents make ``Fraction`` hang.

    >>> [_close_number(a, {"answer": "0.3125"}) for a in ("5/16", "3.125e-1", "0", "1e999999999")]
    [True, True, False, False]
    """
    answer = answer.replace(",", "")
    if not _PLAIN_NUMBER.fullmatch(answer):
        return False
    try:
        value = float(Fraction(answer))
        reference = float(Fraction(str(entry["answer"]).replace(",", "")))
    except (ValueError, ZeroDivisionError, OverflowError):
        return False
    return abs(value - reference) <= 1e-4


def _no_code(answer: str, entry: Mapping[str, Any]) -> bool:
    r"""Scorers that ``eval`` the completion: let through only references and Python literals.

    >>> entry = {"answer": "0 1\n1 0", "metadata": {}}
    >>> [_no_code(a, entry) for a in ("0 1\n1 0", "[[0, 1], [1, 0]]", "__import__('os').getcwd()")]
    [True, True, False]
    """
    metadata = entry.get("metadata") or {}
    if answer == entry["answer"] or answer in metadata.get("valid_answers", ()):
        return True
    try:
        ast.literal_eval(answer)
    except Exception:  # SyntaxError, ValueError, RecursionError, MemoryError...: not a literal
        return False
    return True


_MATH_NAMES = frozenset(
    "sin cos tan cot sec csc asin acos atan acot sinh cosh tanh asinh acosh atanh "
    "exp log ln sqrt Abs pi Integral".split()
)
_MATH_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Constant, ast.Load,
               ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd)
_MAX_MATH_CHARS = 1_000  # about 8 times the longest reference of these datasets


def _is_pow(node: ast.AST) -> bool:
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow)


def _small_exponent(node: ast.AST) -> bool:
    """An exponent such as ``2``, ``-1``, ``(3/2)`` or ``n``: no power, no number above 100."""
    for part in ast.walk(node):
        if isinstance(part, ast.Constant):
            if not isinstance(part.value, (int, float)) or not abs(part.value) <= 100:
                return False
        elif not isinstance(part, (ast.Name, ast.Load, ast.UnaryOp, ast.USub, ast.UAdd, ast.BinOp, ast.Div)):
            return False
    return True


def _plain_math(answer: str, entry: Mapping[str, Any]) -> bool:
    """Scorers that parse the answer with sympy's ``parse_expr``, which runs it with ``eval``.

    Lets through only arithmetic on finite numbers, one-letter symbols and common functions
    (checked on Python's syntax tree, without running anything), at most 1,000 characters,
    and powers whose base holds no power and whose exponent is small: sympy computes integer
    powers exactly, so ``9**9**9**9`` or ``2**(10**10)`` would never finish.

    >>> [_plain_math(a, {}) for a in ("-4*(-2*x - 8)**(3/2)/3 + C", "exp(x)*sin(x)", "6*(98 - 54) - 34")]
    [True, True, True]
    >>> bad = ("9**9**9", "(9**9)**9", "2**(10*10)", "x**'a'", "1e999999999", "chr(95)", "x.y", "'x'", "5!")
    >>> [_plain_math(a, {}) for a in bad]
    [False, False, False, False, False, False, False, False, False]
    """
    if len(answer) > _MAX_MATH_CHARS:
        return False
    try:
        tree = ast.parse(answer, mode="eval")
    except Exception:  # SyntaxError, ValueError (too many digits), RecursionError, MemoryError
        return False
    for node in ast.walk(tree):
        if not isinstance(node, _MATH_NODES):
            return False
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return False
        elif isinstance(node, ast.Name):
            if len(node.id) != 1 and node.id not in _MATH_NAMES:
                return False
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.keywords:
                return False
        elif isinstance(node, ast.BinOp) and _is_pow(node):
            if any(_is_pow(part) for part in ast.walk(node.left)) or not _small_exponent(node.right):
                return False
    return True


_GUARDS: dict[str, Callable[[str, Mapping[str, Any]], bool]] = {
    "binary_matrix": _no_code,
    "coin_flip": _close_number,
    "countdown": _plain_math,
    "game_of_life_halting": _same_boolean,
    "intermediate_integration": _plain_math,
    "n_queens": _no_code,
    "number_sorting": _finite_numbers,
    "polynomial_multiplication": _plain_math,
    "puzzle24": _plain_math,
    "simple_integration": _plain_math,
    "spiral_matrix": _no_code,
    "string_insertion": _no_code,
}


# -- dataset creation ---------------------------------------------------------------------------------


def _create_dataset(name: str, config: Mapping[str, Any]) -> Any:
    """``reasoning_gym.create_dataset(name, **config)`` with its errors turned into ours."""
    reasoning_gym = require("reasoning_gym", "reasoning")
    registry = getattr(getattr(reasoning_gym, "factory", None), "DATASETS", None)
    if isinstance(registry, Mapping) and name not in registry:
        raise unknown_name("reasoning-gym dataset", name, registry)
    try:
        return reasoning_gym.create_dataset(name, **config)
    except TypeError as exc:  # an unknown option: the config dataclass rejects the keyword
        if not isinstance(registry, Mapping):
            raise
        options = [f.name for f in dataclasses.fields(registry[name][1])]
        raise ConfigError(
            f"reasoning-gym dataset {name!r} rejected its options {dict(config)!r}: {exc}. "
            f"Its options are: {', '.join(options)}."
        ) from None
    except AssertionError as exc:  # reasoning-gym validates its configs with assert
        raise ConfigError(
            f"reasoning-gym dataset {name!r} rejected its options {dict(config)!r}: {exc}."
        ) from None


class ReasoningGymVerifier:
    """Scores completions with a reasoning-gym dataset's ``score_answer`` (see the module docs).

    Always returns a float in ``[0, 1]``: whitespace around the completion is stripped, known
    scorer quirks are guarded, scorer exceptions and non-finite or non-numeric scores give 0,
    and other scores are clamped. Pickling keeps only the dataset's name and options; the
    dataset is re-created (with the same options) on first use.

    Args:
        name: The reasoning-gym dataset name, e.g. ``"gcd"``.
        config: Options of ``reasoning_gym.create_dataset`` (``size``, ``seed``, ...).
        partial_credit: If False, scores below 1 become 0 (only exact answers are rewarded).
    """

    def __init__(self, name: str, config: Mapping[str, Any], partial_credit: bool = True) -> None:
        if not isinstance(partial_credit, bool):
            raise ConfigError(f"partial_credit must be True or False, got {partial_credit!r}.")
        self.name = name
        self.config = dict(config)
        self.partial_credit = partial_credit
        self._dataset: Any = None

    @property
    def dataset(self) -> Any:
        """The reasoning-gym dataset (created on first use)."""
        if self._dataset is None:
            self._dataset = _create_dataset(self.name, self.config)
        return self._dataset

    def __call__(self, completion: str, sample: Sample) -> float:
        """Score ``completion`` as the answer to ``sample`` (a reasoning-gym entry), in ``[0, 1]``."""
        if not isinstance(completion, str):
            raise RewardError(
                f"{self!r} scores text; got a completion of type {type(completion).__name__} for sample "
                f"{sample.id!r}. Decode token ids to a string first."
            )
        dataset = self.dataset  # outside the try: a missing package must not read as a 0 score
        entry = sample.metadata["entry"]
        answer = completion.strip()
        guard = _GUARDS.get(self.name)
        try:
            if guard is not None and not guard(answer, entry):
                return 0.0
            score = float(dataset.score_answer(answer=answer, entry=entry))
        except Exception:  # a scorer crash, or a score that is None or not a number
            return 0.0
        if not math.isfinite(score):
            return 0.0
        score = min(1.0, max(0.0, score))
        if not self.partial_credit and score < 1.0:
            return 0.0
        return score

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_dataset": None}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReasoningGymVerifier) and (self.name, self.config, self.partial_credit) == (
            other.name,
            other.config,
            other.partial_credit,
        )

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        extra = "" if self.partial_credit else ", partial_credit=False"
        return f"ReasoningGymVerifier(name={self.name!r}, config={self.config!r}{extra})"


def from_reasoning_gym(
    name: str, size: int = 100, seed: int = 0, *, partial_credit: bool = True, **config: Any
) -> list[Sample]:
    """Samples from a procedural reasoning-gym dataset (needs ``pip install 'instruct-env[reasoning]'``).

    Each entry becomes ``Sample(id="<name>/<i>", task=name, instruction=entry["question"],
    context="", references=(entry["answer"],), metadata={"entry": entry, "source":
    "reasoning_gym"})`` with one shared :class:`ReasoningGymVerifier`, so ``reward="auto"``
    (or ``"task"``) scores completions with the dataset's own scorer. See the module docs for
    how completions are scored and the scorer quirks that are guarded.

    Args:
        name: The reasoning-gym dataset name, e.g. ``"basic_arithmetic"``.
        size: Number of entries.
        seed: Seed of the reasoning-gym generator.
        partial_credit: Keep the scorer's partial credit (True) or reward exact answers only.
        **config: The dataset's own options, passed to ``reasoning_gym.create_dataset``, e.g.
            ``max_terms=3`` for ``basic_arithmetic``.

    Raises:
        MissingDependency: reasoning-gym is not installed.
        UnknownNameError: no reasoning-gym dataset has that name (the message suggests close ones).
        ConfigError: bad ``size``, ``seed`` or ``partial_credit``, or options the dataset rejects.
        DataFormatError: an entry lacks ``question`` or ``answer``.
        EmptyDatasetError: the dataset yields no entries.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigError(f"size must be a positive integer, got {size!r}.")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed must be an integer, got {seed!r}.")
    verifier = ReasoningGymVerifier(name, {"size": size, "seed": seed, **config}, partial_credit)
    samples = []
    for i, entry in enumerate(verifier.dataset):
        missing = [k for k in ("question", "answer") if not isinstance(entry, Mapping) or k not in entry]
        if missing:
            raise DataFormatError(f"reasoning-gym dataset {name!r}, entry {i}: missing key {missing[0]!r}.")
        answer = entry["answer"]
        samples.append(
            Sample(
                id=f"{name}/{i}",
                task=name,
                instruction=str(entry["question"]),
                references=() if answer is None else (str(answer),),
                metadata={"entry": entry, "source": "reasoning_gym"},
                verifier=verifier,
            )
        )
    if not samples:
        raise EmptyDatasetError(f"reasoning-gym dataset {name!r} yielded no entries.")
    return samples


# -- train / validation / test splits ------------------------------------------------------------


@dataclass
class ReasoningGymTask:
    """A reasoning-gym dataset used as one more task family (rows ``rg:<name>`` in the results).

    reasoning-gym datasets have no splits: each split is generated with its own seed (derived
    from ``data.seed``), and validation and train entries whose question also occurs in the test
    split (train: or in the validation split) are dropped, so datasets with few distinct
    questions yield fewer samples than asked for (see :func:`reasoning_gym_split`).

    Attributes:
        name: The reasoning-gym dataset, e.g. ``"basic_arithmetic"``.
        options: Its own config options, e.g. ``{"max_terms": 2, "max_digits": 1}``.
        partial_credit: Keep the scorer's partial credit (see :class:`ReasoningGymVerifier`).
    """

    name: str
    options: dict[str, int | float | bool | str | list[str]] = field(default_factory=dict)
    partial_credit: bool = True


#: Seed bases of the splits of a reasoning-gym task (the seed is ``base + seed``). reasoning-gym draws
#: entry ``i`` from ``Random(seed + i)``, so nearby seeds would share entries: the bases are far apart.
_SPLIT_SEEDS = {"train": 0, "validation": 1_000_000_000, "test": 2_000_000_000}


def reasoning_gym_split(task: ReasoningGymTask, split: str, size: int, *, seed: int, validation_size: int,
                        test_size: int) -> list[Sample]:
    """``size`` entries of one split of ``task``, minus the questions of the splits held out from it.

    The test split is held out from validation and train, the validation split from train; their
    sizes are needed to regenerate them. Samples are named ``rg:<name>/<i>/<split>`` with task
    ``rg:<name>``, so they never collide with built-in families.

    Args:
        task: The reasoning-gym dataset and its options.
        split: ``"train"``, ``"validation"`` or ``"test"``.
        size: Entries to generate (fewer are returned when some repeat a held-out question).
        seed: Seed of the datasets (each split adds its own far-apart base).
        validation_size: Size of the validation split.
        test_size: Size of the test split.

    Raises:
        UnknownNameError: ``split`` is none of the three.
        ConfigError: no question of the split is left after removing the held-out ones.
    """
    if split not in _SPLIT_SEEDS:
        raise unknown_name("split", split, _SPLIT_SEEDS)

    def generate(name: str, n: int) -> list[Sample]:
        return from_reasoning_gym(task.name, size=n, seed=_SPLIT_SEEDS[name] + seed,
                                  partial_credit=task.partial_credit, **task.options)

    held_out = {"train": {"validation": validation_size, "test": test_size},
                "validation": {"test": test_size}, "test": {}}[split]
    seen = {s.instruction for other, n in held_out.items() for s in generate(other, n)}
    samples = [dataclasses.replace(s, id=f"rg:{s.id}/{split}", task=f"rg:{task.name}")
               for s in generate(split, size) if s.instruction not in seen]
    if not samples:
        raise ConfigError(
            f"reasoning-gym dataset {task.name!r} with options {task.options} has no {split} questions left after "
            f"removing those of the held-out splits; widen its options (e.g. larger value ranges)."
        )
    return samples
