"""Built-in procedural tasks: offline, seeded, small enough for a tiny model to learn.

Each task *family* (a :class:`TaskFamily` subclass) generates instruction-following
samples from a random generator and scores completions with its own verifier. The
families are designed so that the instruction has to be read: the same input gives a
different answer under "ascending" and "descending", "first word" and "last word",
"upper case" and "lower case", and so on.

Splits:
    Every generated input is assigned to ``train`` (80%), ``validation`` (10%) or ``test``
    (10%) by a SHA-256 hash of ``(family name, context)``; generation for a split rejects
    inputs that hash elsewhere. The same context therefore never appears in two splits,
    whatever the seed, the knobs or the instruction wording.

Phrasings:
    Each family has at least three differently worded instruction *phrasings*. One of them,
    ``heldout_phrasing``, is left out of :func:`pretraining_corpus` so that an evaluation
    can report how a model copes with wording it was not pre-trained on; every sample
    records ``metadata["phrasing"]`` and ``metadata["heldout_phrasing"]``.

Verifiers:
    A family instance is the sample's ``verifier``. Scores are in ``[0, 1]``; an exact
    answer scores ``1.0`` and near misses get partial credit (see :func:`sequence_credit`,
    :func:`digit_credit`, :func:`count_credit`). Surrounding whitespace is ignored and
    words are compared after splitting on whitespace; comparisons are case-sensitive.

>>> from instruct_env.tasks import make_task
>>> task = make_task("sort_numbers", max_len=4)
>>> sample = task.sample(0, variant="descending")
>>> task.verify(sample.references[0], sample)
1.0
>>> task.verify(" ".join(sorted(sample.context.split(), key=int)), sample) < 1.0
True
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ClassVar

import numpy as np

from instruct_env.error import ConfigError, unknown_name
from instruct_env.tasks import minilang
from instruct_env.tasks.sample import Sample

__all__ = [
    "SPLITS",
    "TaskFamily",
    "Problem",
    "CopyText",
    "ReverseWords",
    "SortNumbers",
    "Arithmetic",
    "ChangeCase",
    "CountWords",
    "PickWord",
    "Dedup",
    "Translate",
    "Keywords",
    "MostFrequent",
    "SemanticParse",
    "ChineseChars",
    "BuiltinDataset",
    "DEFAULT_TASKS",
    "task_names",
    "default_task_names",
    "make_task",
    "tokenizer_corpus",
    "pretraining_corpus",
    "normalise_split",
    "split_of",
    "lexicon",
    "sequence_credit",
    "digit_credit",
    "count_credit",
]

SPLITS: tuple[str, ...] = ("train", "validation", "test")
_SPLIT_ALIASES = {"val": "validation"}
# Cumulative upper bounds of each split on the unit interval: train 80%, validation 10%, test 10%.
_SPLIT_BOUNDS = (("train", 0.8), ("validation", 0.9), ("test", 1.0))
_MAX_TRIES = 2000


# ---------------------------------------------------------------------------------------------
# Helpers: splits, seeds, lexicon, scoring
# ---------------------------------------------------------------------------------------------


def normalise_split(split: str) -> str:
    """Return the canonical split name (``"val"`` is accepted for ``"validation"``).

    Raises:
        ConfigError: ``split`` is not a known split.

    >>> normalise_split("val")
    'validation'
    """
    name = _SPLIT_ALIASES.get(split, split) if isinstance(split, str) else split
    if name not in SPLITS:
        raise ConfigError(
            f"Unknown split {split!r}. Expected one of {', '.join(map(repr, SPLITS))} "
            "(or 'val' for 'validation')."
        )
    return name


def _digest(*parts: object) -> bytes:
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).digest()


def _stable_int(*parts: object) -> int:
    """A 63-bit integer derived from ``parts``, identical across runs and platforms."""
    return int.from_bytes(_digest(*parts)[:8], "big") >> 1


def split_of(task: str, context: str) -> str:
    """The split that owns the input ``context`` of family ``task`` (a stable hash).

    >>> split_of("copy", "cat dog bird") in SPLITS
    True
    """
    u = int.from_bytes(_digest("split", task, context)[:8], "big") / 2.0**64
    for name, bound in _SPLIT_BOUNDS:
        if u < bound:
            return name
    return SPLITS[-1]


def _as_rng(rng: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ConfigError(f"Expected a numpy Generator or an integer seed, got {type(rng).__name__}.")


@functools.lru_cache(maxsize=1)
def lexicon() -> Mapping[str, tuple[str, str]]:
    """The built-in English lexicon: ``english -> (spanish, category)``, about 120 words.

    Read once from ``instruct_env/data/lexicon_en_es.tsv``. Categories include ``animal``,
    ``color``, ``food``, ``body``, ``nature``, ``people``, ``object``, ``adjective``, ``verb``.

    >>> lexicon()["cat"]
    ('gato', 'animal')
    """
    text = resources.files("instruct_env").joinpath("data/lexicon_en_es.tsv").read_text("utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    return {english: (spanish, category) for english, spanish, category in rows[1:]}


@functools.lru_cache(maxsize=1)
def _english_words() -> tuple[str, ...]:
    return tuple(lexicon())


def _words_in(category: str) -> tuple[str, ...]:
    return tuple(w for w, (_, cat) in lexicon().items() if cat == category)


def _choose(rng: np.random.Generator, items: Sequence[str], k: int) -> list[str]:
    """``k`` distinct items in random order."""
    picks = rng.choice(len(items), size=k, replace=False)
    return [items[int(i)] for i in picks]


def _shuffled(rng: np.random.Generator, items: Sequence[str]) -> list[str]:
    return [items[int(i)] for i in rng.permutation(len(items))]


def _words_with_repeats(rng: np.random.Generator, n: int) -> list[str]:
    """``n >= 3`` words in which at least one word is repeated and one appears once."""
    pairs = int(rng.integers(1, (n - 1) // 2 + 1))
    singles = n - 2 * pairs
    distinct = _choose(rng, _english_words(), pairs + singles)
    return _shuffled(rng, distinct[:pairs] * 2 + distinct[pairs:])


def sequence_credit(predicted: Sequence[str], reference: Sequence[str]) -> float:
    """Partial credit for a token sequence: ``1.0`` only for an exact match.

    Otherwise the mean of the positional accuracy (tokens equal at the same index, over the
    longer length) and the bag-of-tokens F1, which is always below ``1.0``.

    >>> sequence_credit(["a", "b", "c"], ["a", "b", "c"])
    1.0
    >>> sequence_credit(["c", "b", "a"], ["a", "b", "c"])
    0.6666666666666666
    >>> sequence_credit([], ["a"])
    0.0
    """
    predicted, reference = list(predicted), list(reference)
    if predicted == reference:
        return 1.0
    if not predicted or not reference:
        return 0.0
    positional = sum(p == r for p, r in zip(predicted, reference)) / max(len(predicted), len(reference))
    overlap = sum((Counter(predicted) & Counter(reference)).values())
    if overlap == 0:
        f1 = 0.0
    else:
        precision, recall = overlap / len(predicted), overlap / len(reference)
        f1 = 2 * precision * recall / (precision + recall)
    return 0.5 * positional + 0.5 * f1


def digit_credit(predicted: str, reference: str) -> float:
    """Partial credit for a number: characters compared right-aligned (ones with ones...).

    >>> digit_credit("123", "123"), digit_credit("124", "123"), digit_credit("", "5")
    (1.0, 0.6666666666666666, 0.0)
    """
    predicted, reference = predicted.strip(), reference.strip()
    if predicted == reference:
        return 1.0
    if not predicted or not reference:
        return 0.0
    matches = sum(p == r for p, r in zip(reversed(predicted), reversed(reference)))
    return matches / max(len(predicted), len(reference))


_INTEGER = re.compile(r"-?[0-9]{1,18}")


def count_credit(predicted: str, reference: str) -> float:
    """Partial credit for a count: ``max(0, 1 - |p - r| / max(r, 1))``; not an integer -> 0.

    >>> count_credit("4", "4"), count_credit("3", "4"), count_credit("four", "4"), count_credit("--6", "4")
    (1.0, 0.75, 0.0, 0.0)
    """
    text = predicted.strip()
    if not _INTEGER.fullmatch(text):
        return 0.0
    guess, answer = int(text), int(reference)
    return max(0.0, 1.0 - abs(guess - answer) / max(abs(answer), 1))


# ---------------------------------------------------------------------------------------------
# The base class
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """What a family's generator returns for one input (internal to the families).

    Attributes:
        context: The input text shown to the model; the split is decided from it.
        answer: The reference answer.
        fields: Values substituted into the instruction template (e.g. ``{"topic": ...}``).
        metadata: Extra facts stored on the sample (numbers, program, ...).
    """

    context: str
    answer: str
    fields: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskFamily:
    """A procedural task: instruction phrasings, difficulty knobs, a generator and a verifier.

    Subclasses are frozen dataclasses whose fields are the difficulty *knobs* (all
    integers). They set the class attributes below and implement :meth:`_generate` (and
    :meth:`score` if word-sequence credit does not fit). Instances are immutable, hashable
    and picklable, and are used as the :class:`~instruct_env.tasks.Sample` ``verifier``.

    Class attributes:
        name: Registry name of the family.
        variants: What the instruction can ask for (e.g. ``("ascending", "descending")``).
        instructions: The phrasings. Each is a template string used for every variant, or a
            mapping ``variant -> template``. Templates may contain ``{fields}`` filled from
            the generated problem.
        heldout_phrasing: Index of the phrasing left out of :func:`pretraining_corpus`.
    """

    name: ClassVar[str] = ""
    variants: ClassVar[tuple[str, ...]] = ("default",)
    instructions: ClassVar[tuple[str | Mapping[str, str], ...]] = ()
    heldout_phrasing: ClassVar[int] = 2

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ConfigError(f"Task {self.name!r}: knob {f.name!r} must be an integer, got {value!r}.")
            minimum = self._knob_minimum(f.name)
            if value < minimum:
                raise ConfigError(f"Task {self.name!r}: knob {f.name!r} must be >= {minimum}, got {value}.")
            if f.name.startswith("min_"):
                upper = "max_" + f.name[4:]
                if hasattr(self, upper) and value > getattr(self, upper):
                    raise ConfigError(
                        f"Task {self.name!r}: {f.name}={value} is larger than {upper}={getattr(self, upper)}; "
                        f"set {f.name} <= {upper}."
                    )

    # -- description ---------------------------------------------------------------------------

    def _knob_minimum(self, knob: str) -> int:
        """The smallest allowed value of ``knob`` (override for tighter limits)."""
        return 1

    @classmethod
    def knobs(cls) -> tuple[str, ...]:
        """Names of the difficulty knobs (the dataclass fields)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @property
    def num_phrasings(self) -> int:
        """How many instruction phrasings the family has."""
        return len(self.instructions)

    def instruction(self, phrasing: int, variant: str, **fields: str) -> str:
        """The instruction text of ``phrasing`` for ``variant``, with ``fields`` filled in."""
        template = self.instructions[phrasing]
        if not isinstance(template, str):
            template = template[variant]
        return template.format(**fields)

    # -- generation ----------------------------------------------------------------------------

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        """Draw one problem. Draw everything that decides the context *before* anything that
        depends on ``variant``, so that forcing a different variant keeps the same input."""
        raise NotImplementedError

    def sample(
        self,
        rng: np.random.Generator | int,
        split: str = "train",
        *,
        id: str | None = None,
        phrasing: int | None = None,
        variant: str | None = None,
    ) -> Sample:
        """Generate one sample of ``split``.

        Args:
            rng: A numpy ``Generator`` (advanced in place) or an integer seed.
            split: ``"train"``, ``"validation"`` (or ``"val"``) or ``"test"``.
            id: Sample id; defaults to ``"<name>/<split>/<hash of the context>"``.
            phrasing: Force an instruction phrasing (index into ``instructions``).
            variant: Force a variant. Random draws are made either way, so the same seed with
                another variant gives the same context where the family allows it.

        Raises:
            ConfigError: bad split/phrasing/variant, or the knobs leave too few inputs to
                find one that belongs to ``split``.
        """
        rng = _as_rng(rng)
        split = normalise_split(split)
        drawn_variant = self.variants[int(rng.integers(len(self.variants)))]
        if variant is None:
            variant = drawn_variant
        elif variant not in self.variants:
            raise unknown_name(f"{self.name} variant", variant, self.variants)
        for _ in range(_MAX_TRIES):
            # One fresh child generator per attempt: the parent advances by exactly one draw
            # per attempt whatever the variant, which keeps contexts aligned across variants.
            problem = self._generate(np.random.default_rng(int(rng.integers(2**63))), variant)
            if split_of(self.name, problem.context) == split:
                break
        else:
            raise ConfigError(
                f"Task {self.name!r} found no {split!r} input in {_MAX_TRIES} tries: the knobs "
                f"{self._knob_text()} leave too few distinct inputs. Widen the ranges."
            )
        drawn_phrasing = int(rng.integers(self.num_phrasings))
        if phrasing is None:
            phrasing = drawn_phrasing
        elif not isinstance(phrasing, (int, np.integer)) or not 0 <= phrasing < self.num_phrasings:
            raise ConfigError(
                f"Task {self.name!r} has phrasings 0..{self.num_phrasings - 1}; got phrasing={phrasing!r}."
            )
        metadata = {
            "variant": variant,
            "phrasing": int(phrasing),
            "heldout_phrasing": phrasing == self.heldout_phrasing,
            "split": split,
            **problem.metadata,
        }
        if id is None:
            id = f"{self.name}/{split}/{_digest(self.name, problem.context).hex()[:10]}"
        return Sample(
            id=id,
            task=self.name,
            instruction=self.instruction(phrasing, variant, **problem.fields),
            context=problem.context,
            references=(problem.answer,),
            metadata=metadata,
            verifier=self,
        )

    def _knob_text(self) -> str:
        return ", ".join(f"{k}={getattr(self, k)}" for k in self.knobs()) or "(none)"

    # -- verification --------------------------------------------------------------------------

    def score(self, completion: str, reference: str, sample: Sample) -> float:
        """Score ``completion`` against one reference; default: :func:`sequence_credit` on words."""
        return sequence_credit(completion.split(), reference.split())

    def verify(self, completion: str, sample: Sample) -> float:
        """The verifier: best :meth:`score` over the sample's references, in ``[0, 1]``."""
        if not isinstance(completion, str):
            return 0.0
        best = max((self.score(completion, ref, sample) for ref in sample.references), default=0.0)
        return float(min(1.0, max(0.0, best)))

    def __call__(self, completion: str, sample: Sample) -> float:
        return self.verify(completion, sample)


# ---------------------------------------------------------------------------------------------
# The families
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyText(TaskFamily):
    """``copy``: repeat the input words unchanged.

    Instructions: "Repeat the input exactly." / "Copy the text." / "Write the input again,
    unchanged." (held out of pre-training). Context: ``min_words..max_words`` lexicon words.
    Answer: the context. Verifier: :func:`sequence_credit` on words.

    Args:
        min_words: Fewest words in the context.
        max_words: Most words in the context.
    """

    name: ClassVar[str] = "copy"
    instructions: ClassVar[tuple[str, ...]] = (
        "Repeat the input exactly.",
        "Copy the text.",
        "Write the input again, unchanged.",
    )
    min_words: int = 3
    max_words: int = 6

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        n = int(rng.integers(self.min_words, self.max_words + 1))
        words = [_english_words()[int(i)] for i in rng.integers(len(_english_words()), size=n)]
        text = " ".join(words)
        return Problem(text, text)


@dataclass(frozen=True)
class ReverseWords(TaskFamily):
    """``reverse_words``: the input words in reverse order.

    Instructions: "Reverse the order of the words." / "Write the words backwards, last word
    first." / "List the words in reverse order." (held out). Answer: the words, last first.
    Verifier: :func:`sequence_credit` on words.

    Args:
        min_words: Fewest words in the context.
        max_words: Most words in the context.
    """

    name: ClassVar[str] = "reverse_words"
    instructions: ClassVar[tuple[str, ...]] = (
        "Reverse the order of the words.",
        "Write the words backwards, last word first.",
        "List the words in reverse order.",
    )
    min_words: int = 3
    max_words: int = 6

    def _knob_minimum(self, knob: str) -> int:
        return 2 if knob == "min_words" else 1

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        n = int(rng.integers(self.min_words, self.max_words + 1))
        words = _choose(rng, _english_words(), n)
        return Problem(" ".join(words), " ".join(reversed(words)))


@dataclass(frozen=True)
class SortNumbers(TaskFamily):
    """``sort_numbers``: sort integers ascending or descending, as the instruction says.

    Instructions (ascending / descending): "Sort the numbers in ascending order." / "... in
    descending order."; "Arrange the numbers from smallest to largest." / "... from largest
    to smallest."; "Put the numbers in increasing order." / "... decreasing order." (held
    out). Context: ``min_len..max_len`` integers in ``0..max_value``, space-separated.
    Answer: the sorted numbers, space-separated. Verifier: :func:`sequence_credit`.

    Args:
        min_len: Fewest numbers.
        max_len: Most numbers.
        max_value: Largest number.
    """

    name: ClassVar[str] = "sort_numbers"
    variants: ClassVar[tuple[str, ...]] = ("ascending", "descending")
    instructions: ClassVar[tuple[Mapping[str, str], ...]] = (
        {
            "ascending": "Sort the numbers in ascending order.",
            "descending": "Sort the numbers in descending order.",
        },
        {
            "ascending": "Arrange the numbers from smallest to largest.",
            "descending": "Arrange the numbers from largest to smallest.",
        },
        {
            "ascending": "Put the numbers in increasing order.",
            "descending": "Put the numbers in decreasing order.",
        },
    )
    min_len: int = 3
    max_len: int = 6
    max_value: int = 99

    def _knob_minimum(self, knob: str) -> int:
        return 2 if knob == "min_len" else 1

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        n = int(rng.integers(self.min_len, self.max_len + 1))
        numbers = [int(v) for v in rng.integers(0, self.max_value + 1, size=n)]
        ordered = sorted(numbers, reverse=variant == "descending")
        return Problem(
            " ".join(map(str, numbers)), " ".join(map(str, ordered)), metadata={"numbers": numbers}
        )


@dataclass(frozen=True)
class Arithmetic(TaskFamily):
    """``arithmetic``: add or subtract two integers.

    Instructions (add / subtract): "Add the two numbers." / "Subtract the second number from
    the first."; "What is their sum?" / "What is the first number minus the second?";
    "Compute the sum of the numbers." / "Compute the difference, first minus second." (held
    out). Context: two integers ``a b`` in ``0..max_value``. Answer: the integer result
    (may be negative). Verifier: :func:`digit_credit` (digits compared right-aligned).

    Args:
        max_value: Largest operand.
    """

    name: ClassVar[str] = "arithmetic"
    variants: ClassVar[tuple[str, ...]] = ("add", "subtract")
    instructions: ClassVar[tuple[Mapping[str, str], ...]] = (
        {"add": "Add the two numbers.", "subtract": "Subtract the second number from the first."},
        {"add": "What is their sum?", "subtract": "What is the first number minus the second?"},
        {"add": "Compute the sum of the numbers.", "subtract": "Compute the difference, first minus second."},
    )
    max_value: int = 99

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        a, b = (int(v) for v in rng.integers(0, self.max_value + 1, size=2))
        result = a + b if variant == "add" else a - b
        return Problem(f"{a} {b}", str(result), metadata={"operands": (a, b)})

    def score(self, completion: str, reference: str, sample: Sample) -> float:
        return digit_credit(completion, reference)


_CASINGS = (str.lower, str.title, str.upper)


@dataclass(frozen=True)
class ChangeCase(TaskFamily):
    """``change_case``: rewrite mixed-case words in upper or lower case.

    Instructions (upper / lower): "Convert the text to upper case." / "... lower case.";
    "Write the text in capital letters." / "Write the text in small letters."; "Make every
    letter uppercase." / "Make every letter lowercase." (held out). Context: words each in
    lower, Title or UPPER case, never already all upper or all lower. Answer: the context in
    the requested case. Verifier: :func:`sequence_credit` on words (case-sensitive).

    Args:
        min_words: Fewest words.
        max_words: Most words.
    """

    name: ClassVar[str] = "change_case"
    variants: ClassVar[tuple[str, ...]] = ("upper", "lower")
    instructions: ClassVar[tuple[Mapping[str, str], ...]] = (
        {"upper": "Convert the text to upper case.", "lower": "Convert the text to lower case."},
        {"upper": "Write the text in capital letters.", "lower": "Write the text in small letters."},
        {"upper": "Make every letter uppercase.", "lower": "Make every letter lowercase."},
    )
    min_words: int = 2
    max_words: int = 5

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        n = int(rng.integers(self.min_words, self.max_words + 1))
        words = _choose(rng, _english_words(), n)
        casings = [int(c) for c in rng.integers(len(_CASINGS), size=n)]
        if 1 not in casings and len(set(casings)) == 1:  # would already be all lower / all upper
            casings[int(rng.integers(n))] = 1
        text = " ".join(_CASINGS[c](w) for c, w in zip(casings, words))
        return Problem(text, text.upper() if variant == "upper" else text.lower())


@dataclass(frozen=True)
class CountWords(TaskFamily):
    """``count_words``: count all words, or only the distinct ones.

    Instructions (all / distinct): "How many words are there?" / "How many different words
    are there?"; "Count the words." / "Count the distinct words."; "Give the number of words
    in the text." / "Give the number of unique words in the text." (held out). Context:
    ``min_words..max_words`` words with at least one repeated, so the two counts differ.
    Answer: the count as digits. Verifier: :func:`count_credit`.

    Args:
        min_words: Fewest words (at least 3).
        max_words: Most words.
    """

    name: ClassVar[str] = "count_words"
    variants: ClassVar[tuple[str, ...]] = ("all", "distinct")
    instructions: ClassVar[tuple[Mapping[str, str], ...]] = (
        {"all": "How many words are there?", "distinct": "How many different words are there?"},
        {"all": "Count the words.", "distinct": "Count the distinct words."},
        {
            "all": "Give the number of words in the text.",
            "distinct": "Give the number of unique words in the text.",
        },
    )
    min_words: int = 3
    max_words: int = 8

    def _knob_minimum(self, knob: str) -> int:
        return 3

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        words = _words_with_repeats(rng, int(rng.integers(self.min_words, self.max_words + 1)))
        count = len(words) if variant == "all" else len(set(words))
        return Problem(" ".join(words), str(count))

    def score(self, completion: str, reference: str, sample: Sample) -> float:
        return count_credit(completion, reference)


@dataclass(frozen=True)
class PickWord(TaskFamily):
    """``pick_word``: the first or the last word of the input.

    Instructions (first / last): "What is the first word?" / "What is the last word?";
    "Return the first word of the text." / "Return the last word of the text."; "Give only
    the word at the start." / "Give only the word at the end." (held out). Context: distinct
    words. Answer: one word. Verifier: :func:`sequence_credit` on words.

    Args:
        min_words: Fewest words (at least 2).
        max_words: Most words.
    """

    name: ClassVar[str] = "pick_word"
    variants: ClassVar[tuple[str, ...]] = ("first", "last")
    instructions: ClassVar[tuple[Mapping[str, str], ...]] = (
        {"first": "What is the first word?", "last": "What is the last word?"},
        {"first": "Return the first word of the text.", "last": "Return the last word of the text."},
        {"first": "Give only the word at the start.", "last": "Give only the word at the end."},
    )
    min_words: int = 2
    max_words: int = 6

    def _knob_minimum(self, knob: str) -> int:
        return 2

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        words = _choose(rng, _english_words(), int(rng.integers(self.min_words, self.max_words + 1)))
        return Problem(" ".join(words), words[0] if variant == "first" else words[-1])


@dataclass(frozen=True)
class Dedup(TaskFamily):
    """``dedup``: remove repeated words, or keep only the words that occur once.

    Instructions (first / once): "Remove duplicate words, keeping the first of each." / "Keep
    only the words that appear exactly once."; "Write each word once, in order of first
    appearance." / "Write only the words that occur once."; "Delete the later copies of
    repeated words." / "Delete every word that is repeated." (held out). Context: words with
    at least one repeated and one single word. Answer: the remaining words in input order.
    Verifier: :func:`sequence_credit` on words.

    Args:
        min_words: Fewest words (at least 3).
        max_words: Most words.
    """

    name: ClassVar[str] = "dedup"
    variants: ClassVar[tuple[str, ...]] = ("first", "once")
    instructions: ClassVar[tuple[Mapping[str, str], ...]] = (
        {
            "first": "Remove duplicate words, keeping the first of each.",
            "once": "Keep only the words that appear exactly once.",
        },
        {
            "first": "Write each word once, in order of first appearance.",
            "once": "Write only the words that occur once.",
        },
        {
            "first": "Delete the later copies of repeated words.",
            "once": "Delete every word that is repeated.",
        },
    )
    min_words: int = 4
    max_words: int = 8

    def _knob_minimum(self, knob: str) -> int:
        return 3

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        words = _words_with_repeats(rng, int(rng.integers(self.min_words, self.max_words + 1)))
        counts = Counter(words)
        if variant == "first":
            kept = list(dict.fromkeys(words))
        else:
            kept = [w for w in words if counts[w] == 1]
        return Problem(" ".join(words), " ".join(kept))


@dataclass(frozen=True)
class Translate(TaskFamily):
    """``translate``: word-for-word translation with the built-in lexicon (:func:`lexicon`).

    Instructions (to_spanish / to_english): "Translate the words into Spanish." / "Translate
    the words into English."; "Give the Spanish for each word." / "Give the English for each
    word."; "Say it in Spanish, word by word." / "Say it in English, word by word." (held
    out). Context: distinct words in the source language. Answer: their translations in the
    same order. Verifier: :func:`sequence_credit` on words.

    Args:
        min_words: Fewest words.
        max_words: Most words.
    """

    name: ClassVar[str] = "translate"
    variants: ClassVar[tuple[str, ...]] = ("to_spanish", "to_english")
    instructions: ClassVar[tuple[Mapping[str, str], ...]] = (
        {
            "to_spanish": "Translate the words into Spanish.",
            "to_english": "Translate the words into English.",
        },
        {"to_spanish": "Give the Spanish for each word.", "to_english": "Give the English for each word."},
        {"to_spanish": "Say it in Spanish, word by word.", "to_english": "Say it in English, word by word."},
    )
    min_words: int = 1
    max_words: int = 4

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        english = _choose(rng, _english_words(), int(rng.integers(self.min_words, self.max_words + 1)))
        spanish = [lexicon()[w][0] for w in english]
        if variant == "to_spanish":
            return Problem(" ".join(english), " ".join(spanish))
        return Problem(" ".join(spanish), " ".join(english))


_TOPICS = {"animal": "animals", "color": "colors", "food": "foods"}


@dataclass(frozen=True)
class Keywords(TaskFamily):
    """``keywords``: extract the words of one topic (animals, colors or foods).

    Instructions ({topic} is "animals", "colors" or "foods"): "List the {topic} in the
    text." / "Which words are {topic}?" / "Write only the {topic}, in order." (held out).
    Context: 1..``max_per_topic`` words of *each* topic plus 0..``max_other`` words of other
    categories, shuffled, so the topic named in the instruction decides the answer. Answer:
    the topic's words in input order. Verifier: :func:`sequence_credit` on words.

    Args:
        max_per_topic: Most words of each topic in the context.
        max_other: Most words from other categories.
    """

    name: ClassVar[str] = "keywords"
    variants: ClassVar[tuple[str, ...]] = tuple(_TOPICS)
    instructions: ClassVar[tuple[str, ...]] = (
        "List the {topic} in the text.",
        "Which words are {topic}?",
        "Write only the {topic}, in order.",
    )
    max_per_topic: int = 2
    max_other: int = 2

    def _knob_minimum(self, knob: str) -> int:
        return 0 if knob == "max_other" else 1

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        words: list[str] = []
        for topic in _TOPICS:
            words += _choose(rng, _words_in(topic), int(rng.integers(1, self.max_per_topic + 1)))
        others = [w for w, (_, cat) in lexicon().items() if cat not in _TOPICS]
        words += _choose(rng, others, int(rng.integers(0, self.max_other + 1)))
        words = _shuffled(rng, words)
        answer = [w for w in words if lexicon()[w][1] == variant]
        return Problem(" ".join(words), " ".join(answer), fields={"topic": _TOPICS[variant]})


@dataclass(frozen=True)
class MostFrequent(TaskFamily):
    """``most_frequent``: the word that occurs most often (always unique).

    Instructions: "Which word appears most often?" / "Name the most frequent word." / "Give
    the word that is repeated the most." (held out). Context: one word 2-3 times, possibly a
    runner-up one time fewer, the rest once. Answer: one word. Verifier:
    :func:`sequence_credit` on words.

    Args:
        min_words: Fewest words (at least 3).
        max_words: Most words.
    """

    name: ClassVar[str] = "most_frequent"
    instructions: ClassVar[tuple[str, ...]] = (
        "Which word appears most often?",
        "Name the most frequent word.",
        "Give the word that is repeated the most.",
    )
    min_words: int = 4
    max_words: int = 8

    def _knob_minimum(self, knob: str) -> int:
        return 3

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        n = int(rng.integers(self.min_words, self.max_words + 1))
        top = int(rng.integers(2, min(3, n - 1) + 1))
        rest = n - top
        runner_up = top - 1 if top - 1 >= 2 and rest >= top - 1 and rng.random() < 0.5 else 0
        singles = rest - runner_up
        distinct = _choose(rng, _english_words(), 1 + (1 if runner_up else 0) + singles)
        words = [distinct[0]] * top
        if runner_up:
            words += [distinct[1]] * runner_up
        words += distinct[len(distinct) - singles :] if singles else []
        return Problem(" ".join(_shuffled(rng, words)), distinct[0])


# kind -> (English description, program template); {k} is a small count, {n} a threshold.
_QUERIES: Mapping[str, tuple[str, str]] = {
    "sum": ("the sum of the numbers", "sum(x)"),
    "max": ("the largest number", "max(x)"),
    "min": ("the smallest number", "min(x)"),
    "len": ("how many numbers there are", "len(x)"),
    "sort": ("the numbers in ascending order", "sort(x)"),
    "reverse": ("the numbers in reverse order", "reverse(x)"),
    "take": ("the first {k} numbers", "take(x,{k})"),
    "drop": ("the numbers after the first {k}", "drop(x,{k})"),
    "filter_gt": ("the numbers greater than {n}", "filter_gt(x,{n})"),
    "filter_lt": ("the numbers less than {n}", "filter_lt(x,{n})"),
    "even": ("the even numbers", "filter_even(x)"),
    "sum_gt": ("the sum of the numbers greater than {n}", "sum(filter_gt(x,{n}))"),
    "count_gt": ("how many numbers are greater than {n}", "len(filter_gt(x,{n}))"),
    "smallest_k": ("the {k} smallest numbers", "take(sort(x),{k})"),
    "largest_k": ("the {k} largest numbers", "take(reverse(sort(x)),{k})"),
    "range": ("the largest number minus the smallest", "max(x)-min(x)"),
    "max_plus": ("the largest number plus {n}", "max(x)+{n}"),
}


@dataclass(frozen=True)
class SemanticParse(TaskFamily):
    """``semantic_parse``: write a :mod:`~instruct_env.tasks.minilang` program for a request.

    Instructions ({query} describes the computation, e.g. "the sum of the numbers greater
    than 3"): "Write a program over x that gives {query}." / "Give the program computing
    {query} from the list x." / "Express as a program on x: {query}." (held out). Context:
    the list ``x``, ``min_len..max_len`` integers in ``0..max_value``, space-separated.
    Answer: a canonical program such as ``sum(filter_gt(x,3))`` (any equivalent program is
    accepted). Variants are the 17 query kinds.

    Verifier: the completion is parsed and run (no ``eval``) on ``x`` and on ``num_probes``
    extra lists stored in ``metadata["probes"]``; the score is the fraction of these runs
    whose result equals the reference program's. The probes stop a constant answer (the
    result written out as a literal) from scoring 1.0; with ``num_probes=0`` the score is
    exactly "1.0 if the result on ``x`` is right". A malformed program scores 0.0.

    Args:
        min_len: Fewest numbers in ``x``.
        max_len: Most numbers in ``x``.
        max_value: Largest number in ``x`` (at least 2).
        num_probes: Extra inputs the program is also run on (0 allowed).

    >>> task = SemanticParse(num_probes=0)
    >>> sample = task.sample(3, variant="sum_gt")
    >>> sample.references[0].startswith("sum(filter_gt(x,")
    True
    >>> task.verify("sum(filter_gt(x, 99))", sample) < 1.0 or sample.metadata["result"] == 0
    True
    """

    name: ClassVar[str] = "semantic_parse"
    variants: ClassVar[tuple[str, ...]] = tuple(_QUERIES)
    instructions: ClassVar[tuple[str, ...]] = (
        "Write a program over x that gives {query}.",
        "Give the program computing {query} from the list x.",
        "Express as a program on x: {query}.",
    )
    min_len: int = 3
    max_len: int = 6
    max_value: int = 9
    num_probes: int = 2

    def _knob_minimum(self, knob: str) -> int:
        return {"max_value": 2, "num_probes": 0}.get(knob, 1)

    def _draw_list(self, rng: np.random.Generator) -> list[int]:
        n = int(rng.integers(self.min_len, self.max_len + 1))
        return [int(v) for v in rng.integers(0, self.max_value + 1, size=n)]

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        x = self._draw_list(rng)
        k = int(rng.integers(min(2, self.min_len), min(3, self.min_len) + 1))
        n = int(rng.integers(1, self.max_value))
        description, template = _QUERIES[variant]
        program = template.format(k=k, n=n)
        probes = [self._draw_list(rng) for _ in range(self.num_probes)]
        result = minilang.run(program, x)
        return Problem(
            context=" ".join(map(str, x)),
            answer=program,
            fields={"query": description.format(k=k, n=n)},
            metadata={
                "x": x,
                "program": program,
                "result": result,
                "probes": probes,
                "probe_results": [minilang.run(program, p) for p in probes],
            },
        )

    def verify(self, completion: str, sample: Sample) -> float:
        """Run ``completion`` on ``x`` and the probes; the fraction of correct results."""
        if not isinstance(completion, str):
            return 0.0
        try:
            tree = minilang.parse(completion.strip())
        except minilang.MiniLangError:
            return 0.0
        meta = sample.metadata
        inputs = [meta["x"], *meta.get("probes", ())]
        expected = [meta["result"], *meta.get("probe_results", ())]
        correct = 0
        for x, want in zip(inputs, expected):
            try:
                correct += minilang.evaluate(tree, {"x": list(x)}) == want
            except (minilang.MiniLangError, RecursionError):
                pass
        return correct / len(inputs)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

# Common Chinese characters of the ``zh_chars`` family (one character each, all distinct).
_ZH_CHARS = (
    "天地人日月山水火木金土风云雨雪花草树鸟鱼马牛羊狗猫书画字文门车船田石海星光心手口目耳米茶"
    "家国城路桥林春夏秋冬东西南北中上下左右大小多少好红白黑"
)


def _chars(text: str) -> list[str]:
    """The characters of ``text`` with all whitespace removed."""
    return list("".join(text.split()))


@dataclass(frozen=True)
class ChineseChars(TaskFamily):
    """``zh_chars``: Chinese instructions about a string of Chinese characters (opt-in family).

    Not part of the default selection (``tasks=None``, see :func:`default_task_names`): choose it
    with ``tasks=["zh_chars"]``. Variants: ``copy`` (the text unchanged), ``reverse`` (the
    characters last first), ``count`` (how many characters, in Arabic digits), ``first`` and
    ``last`` (one character). Instructions, three phrasings per variant, e.g. copy:
    "请原样重复输入的文字。" / "抄写下面的文字。" / "把这段文字再写一遍，不要改动。" (held out).
    Context: ``min_chars..max_chars`` characters drawn with replacement from 78 common ones, no
    spaces. Verifier: :func:`sequence_credit` on characters, whitespace ignored (``count``:
    :func:`count_credit`). With reference-based rewards use a tokeniser that splits Chinese, e.g.
    ``reward={"bleu": {"tokenize": "zh"}}`` or ``{"rougeL": {"tokenizer": "char"}}``.

    Args:
        min_chars: Fewest characters in the context (at least 2).
        max_chars: Most characters in the context.

    >>> sample = make_task("zh_chars").sample(3, variant="reverse")
    >>> sample.references[0] == sample.context[::-1]
    True
    """

    name: ClassVar[str] = "zh_chars"
    variants: ClassVar[tuple[str, ...]] = ("copy", "reverse", "count", "first", "last")
    instructions: ClassVar[tuple[Mapping[str, str], ...]] = (
        {
            "copy": "请原样重复输入的文字。",
            "reverse": "请把输入的文字倒过来写。",
            "count": "输入里有几个汉字？",
            "first": "输入的第一个字是什么？",
            "last": "输入的最后一个字是什么？",
        },
        {
            "copy": "抄写下面的文字。",
            "reverse": "把这些字按相反的顺序写出来。",
            "count": "数一数输入有多少个字。",
            "first": "写出第一个字。",
            "last": "写出最后一个字。",
        },
        {
            "copy": "把这段文字再写一遍，不要改动。",
            "reverse": "从最后一个字开始，倒着写出全部文字。",
            "count": "请回答：这段文字共有多少个字？",
            "first": "只写开头的那个字。",
            "last": "只写结尾的那个字。",
        },
    )
    min_chars: int = 3
    max_chars: int = 6

    def _knob_minimum(self, knob: str) -> int:
        return 2 if knob == "min_chars" else 1

    def _generate(self, rng: np.random.Generator, variant: str) -> Problem:
        n = int(rng.integers(self.min_chars, self.max_chars + 1))
        text = "".join(_ZH_CHARS[int(i)] for i in rng.integers(len(_ZH_CHARS), size=n))
        answer = {"copy": text, "reverse": text[::-1], "count": str(len(text)), "first": text[0],
                  "last": text[-1]}[variant]
        return Problem(text, answer)

    def score(self, completion: str, reference: str, sample: Sample) -> float:
        if sample.metadata.get("variant") == "count":
            return count_credit(completion, reference)
        return sequence_credit(_chars(completion), _chars(reference))


_REGISTRY: dict[str, type[TaskFamily]] = {
    cls.name: cls
    for cls in (
        CopyText,
        ReverseWords,
        SortNumbers,
        Arithmetic,
        ChangeCase,
        CountWords,
        PickWord,
        Dedup,
        Translate,
        Keywords,
        MostFrequent,
        SemanticParse,
        ChineseChars,
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


def _check_count(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _item_rng(stream: str, seed: int, split: str, task: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _stable_int(stream), _stable_int(split), _stable_int(task), index])


# ---------------------------------------------------------------------------------------------
# Datasets and corpora
# ---------------------------------------------------------------------------------------------


class BuiltinDataset:
    """A lazy, deterministic, indexable dataset over built-in task families.

    Item ``i`` comes from family ``i % n_families`` (so any prefix is balanced) and is the
    ``i // n_families``-th sample of that family, generated from ``(seed, split, family,
    index)`` on first access and then cached. Ids look like ``"sort_numbers/test/17"``.

    Args:
        tasks: ``None`` for the default families (:func:`default_task_names`; the opt-in
            non-English ones are left out), a name, or a list of names / :class:`TaskFamily`
            instances.
        split: ``"train"``, ``"validation"`` (alias ``"val"``) or ``"test"``.
        size_per_task: Samples per family.
        seed: Non-negative integer seed.
        **knobs: Difficulty knobs, applied to every selected family that has them (e.g.
            ``max_words=4``); a knob no selected family has is an error.

    Raises:
        ConfigError: bad split, size, seed, knob or task selection.
        UnknownNameError: an unknown task name.

    >>> data = BuiltinDataset(["copy", "pick_word"], split="test", size_per_task=3)
    >>> len(data), data[0].id, data[1].id, data[2].id
    (6, 'copy/test/0', 'pick_word/test/0', 'copy/test/1')
    >>> data[3].verifier(data[3].references[0], data[3])
    1.0
    """

    def __init__(
        self,
        tasks: str | Sequence[str | TaskFamily] | None = None,
        split: str = "train",
        size_per_task: int = 1000,
        seed: int = 0,
        **knobs: int,
    ) -> None:
        self.split = normalise_split(split)
        self.size_per_task = _check_count("size_per_task", size_per_task, 1)
        self.seed = _check_count("seed", seed, 0)
        self.families = _resolve_tasks(tasks, knobs)
        self._cache: dict[int, Sample] = {}

    @property
    def task_names(self) -> tuple[str, ...]:
        """Names of the families, in interleaving order."""
        return tuple(f.name for f in self.families)

    def __len__(self) -> int:
        return self.size_per_task * len(self.families)

    def task_of(self, index: int) -> str:
        """The family name of item ``index`` without generating it."""
        return self.families[int(index) % len(self.families)].name

    def __getitem__(self, index: int) -> Sample:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"BuiltinDataset indices must be integers, got {type(index).__name__}.")
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"Index {index} is out of range for a dataset of {len(self)} samples.")
        cached = self._cache.get(index)
        if cached is None:
            family = self.families[index % len(self.families)]
            j = index // len(self.families)
            rng = _item_rng("dataset", self.seed, self.split, family.name, j)
            cached = family.sample(rng, self.split, id=f"{family.name}/{self.split}/{j}")
            self._cache[index] = cached
        return cached

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return (
            f"BuiltinDataset(tasks={list(self.task_names)}, split={self.split!r}, "
            f"size_per_task={self.size_per_task}, seed={self.seed})"
        )


def _cycled_samples(
    family: TaskFamily, stream: str, n: int, seed: int, phrasings: Sequence[int]
) -> Iterator[Sample]:
    """``n`` train samples cycling through ``phrasings`` x variants, so all are covered."""
    for j in range(n):
        phrasing = phrasings[j % len(phrasings)]
        variant = family.variants[(j // len(phrasings)) % len(family.variants)]
        rng = _item_rng(stream, seed, "train", family.name, j)
        yield family.sample(
            rng, "train", id=f"{family.name}/train/{stream}-{j}", phrasing=phrasing, variant=variant
        )


def tokenizer_corpus(
    n_per_task: int = 200,
    seed: int = 0,
    tasks: str | Sequence[str | TaskFamily] | None = None,
    **knobs: int,
) -> list[str]:
    """Text for training the built-in tokenizer, drawn from the TRAIN split only.

    Contains, per family, ``n_per_task`` solved examples formatted with the default prompt
    template (so the template markers are covered) cycling through every phrasing and
    variant; then the lexicon (English and Spanish words), the digits, the numbers 0-99, the
    ASCII punctuation, the prompt truncation marker ``...`` and the mini-language function
    names.

    >>> corpus = tokenizer_corpus(n_per_task=6, tasks=["copy"])
    >>> "### Response:" in corpus[0], any("gato" in line for line in corpus)
    (True, True)
    """
    import string

    from instruct_env.tasks.prompts import PromptFormatter

    n_per_task = _check_count("n_per_task", n_per_task, 1)
    seed = _check_count("seed", seed, 0)
    formatter = PromptFormatter()
    texts = []
    for family in _resolve_tasks(tasks, knobs):
        for sample in _cycled_samples(family, "tokenizer", n_per_task, seed, range(family.num_phrasings)):
            texts.append(formatter.format(sample) + sample.references[0])
    texts.append(" ".join(lexicon()))
    texts.append(" ".join(spanish for spanish, _ in lexicon().values()))
    texts.append("0 1 2 3 4 5 6 7 8 9 0123456789")
    texts.append(" ".join(str(i) for i in range(100)))
    texts.append(string.punctuation)
    texts.append(" ".join(string.punctuation) + " ...")  # single marks, and the truncation marker
    texts.append(" ".join(minilang.FUNCTIONS) + " x")
    return texts


def pretraining_corpus(
    n_per_task: int = 1000,
    seed: int = 0,
    tasks: str | Sequence[str | TaskFamily] | None = None,
    formatter: Any = None,
    **knobs: int,
) -> list[str]:
    """Solved examples (prompt + answer) from the TRAIN split for short LM pre-training.

    Each family's ``heldout_phrasing`` is never used, so an evaluation can measure how well
    the model follows wording it was not pre-trained on (samples carry
    ``metadata["heldout_phrasing"]``). The other phrasings and all variants are cycled
    through evenly; families are interleaved. Each text is ``formatter.format(sample) +
    reference``, with no end-of-sequence marker (the trainer appends the tokenizer's EOS).

    Args:
        n_per_task: Examples per family.
        seed: Non-negative integer seed.
        tasks: Task selection, as for :class:`BuiltinDataset`.
        formatter: A :class:`~instruct_env.tasks.PromptFormatter`; default template if None.
        **knobs: Difficulty knobs, as for :class:`BuiltinDataset`.

    >>> texts = pretraining_corpus(n_per_task=2, tasks=["pick_word"])
    >>> texts[0].startswith("### Instruction:\\n"), len(texts)
    (True, 2)
    """
    from instruct_env.tasks.prompts import PromptFormatter

    n_per_task = _check_count("n_per_task", n_per_task, 1)
    seed = _check_count("seed", seed, 0)
    formatter = formatter if formatter is not None else PromptFormatter()
    streams = [
        _cycled_samples(
            family,
            "pretraining",
            n_per_task,
            seed,
            [p for p in range(family.num_phrasings) if p != family.heldout_phrasing],
        )
        for family in _resolve_tasks(tasks, knobs)
    ]
    texts = []
    for batch in zip(*streams):
        for sample in batch:
            texts.append(formatter.format(sample) + sample.references[0])
    return texts
