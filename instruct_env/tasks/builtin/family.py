"""The base of every built-in family: :class:`TaskFamily` (phrasings, knobs, sampling, verifying)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from instruct_env.error import ConfigError, unknown_name
from instruct_env.tasks.builtin.common import _as_rng, _digest, normalise_split, sequence_credit, split_of
from instruct_env.tasks.sample import Sample

__all__ = [
    "Problem",
    "TaskFamily",
]


_MAX_TRIES = 2000


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
        """Draw one problem.

        Draw everything that decides the context *before* anything that depends on ``variant``,
        so that forcing a different variant keeps the same input.
        """
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
        """The family as a verifier function: the same as :meth:`verify`."""
        return self.verify(completion, sample)
