"""The :class:`Sample` record shared by every task source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Sample", "Verifier", "SampleSource"]


@runtime_checkable
class Verifier(Protocol):
    """Scores one completion for one sample; returns a float in ``[0, 1]``.

    Verifiers must be picklable (module-level classes, not closures) so that
    samples and rewards can be sent to worker processes.
    """

    def __call__(self, completion: str, sample: Sample) -> float:
        """The score of ``completion`` as an answer to ``sample``, in ``[0, 1]``."""
        ...


@dataclass(frozen=True)
class Sample:
    """One instruction-following example.

    Attributes:
        id: Stable identifier, unique within its dataset (e.g. ``"sort/test/17"``).
        task: Name of the task family or dataset the sample comes from.
        instruction: What the model is asked to do.
        context: The input the instruction applies to; may be empty.
        references: One or more reference outputs (a tuple of strings).
        metadata: Free-form extra information (difficulty, program, raw record...).
        verifier: Optional task-specific scorer used by the ``task`` reward.
    """

    id: str
    task: str
    instruction: str
    context: str = ""
    references: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)
    verifier: Verifier | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.references, str):
            object.__setattr__(self, "references", (self.references,))
        elif not isinstance(self.references, tuple):
            object.__setattr__(self, "references", tuple(self.references))

    def score(self, completion: str) -> float:
        """Score ``completion`` with this sample's verifier.

        Raises:
            RewardError: the sample has no verifier.
        """
        from instruct_env.error import RewardError

        if self.verifier is None:
            raise RewardError(
                f"Sample {self.id!r} (task {self.task!r}) has no task verifier, so the 'task' "
                "reward cannot score it. Use a reference-based reward instead, e.g. "
                "reward='rougeL' or reward={'bleu': 0.5, 'rougeL': 0.5}."
            )
        return float(self.verifier(completion, self))


@runtime_checkable
class SampleSource(Protocol):
    """A finite, indexable collection of samples (a list works)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


def as_references(refs: str | Sequence[str]) -> tuple[str, ...]:
    """Normalise one reference or a sequence of them to a tuple."""
    if isinstance(refs, str):
        return (refs,)
    return tuple(refs)
