"""SFT examples: prompt/response token ids, masked labels, batches, and instruction paraphrases.

An example is the prompt (encoded and truncated exactly as the environments encode it, by
:meth:`~instruct_env.tasks.PromptFormatter.encode`) followed by the first reference and the
end-of-sequence token. Only the response is trained on: every prompt position has label
``-100`` (:data:`IGNORE_INDEX`), the value ``torch.nn.functional.cross_entropy`` skips.
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from instruct_env.error import ConfigError
from instruct_env.tasks.sample import Sample, SampleSource

__all__ = [
    "IGNORE_INDEX",
    "Example",
    "encode_example",
    "collate_causal",
    "collate_seq2seq",
    "take_per_task",
    "paraphrase",
    "can_paraphrase",
]

#: Label of positions that carry no loss (the prompt and the padding).
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One encoded SFT example.

    Attributes:
        prompt: Prompt token ids.
        response: Response token ids, ending with the end-of-sequence token unless truncated.
    """

    prompt: tuple[int, ...]
    response: tuple[int, ...]


def encode_example(
    sample: Sample,
    tokenizer: Any,
    formatter: Any,
    *,
    max_prompt_tokens: int,
    max_response_tokens: int,
    max_total_tokens: int | None = None,
) -> Example:
    """Encode ``sample`` as a prompt and its first reference + EOS as the response.

    The response is cut to ``max_response_tokens`` and, for causal models, to what fits in
    ``max_total_tokens`` after the prompt; a cut response has no EOS.

    Raises:
        ConfigError: the sample has no reference, or the prompt leaves no room for a response.
    """
    if not sample.references:
        raise ConfigError(f"Sample {sample.id!r} has no reference answer to train on; SFT needs one.")
    prompt, _ = formatter.encode(sample, tokenizer, max_prompt_tokens, budget_name="max_prompt_tokens")
    response = list(tokenizer.encode(sample.references[0], add_special_tokens=False)) + [tokenizer.eos_token_id]
    room = max_response_tokens
    if max_total_tokens is not None:
        room = min(room, max_total_tokens - len(prompt))
    if room < 1:
        raise ConfigError(
            f"The prompt of sample {sample.id!r} has {len(prompt)} tokens, leaving no room for a response within "
            f"the model's {max_total_tokens} positions. Lower max_prompt_tokens."
        )
    return Example(tuple(prompt), tuple(response[:room]))


def collate_causal(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (B, T) for a causal LM.

    ``labels[b, t]`` is the token at ``t`` for response positions and :data:`IGNORE_INDEX`
    for prompt and padding positions; the loss compares ``logits[:, t - 1]`` with it.
    """
    width = max(len(e.prompt) + len(e.response) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, e in enumerate(examples):
        p, n = len(e.prompt), len(e.prompt) + len(e.response)
        ids[row, :n] = torch.tensor(e.prompt + e.response)
        mask[row, :n] = 1
        labels[row, p:n] = torch.tensor(e.response)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def collate_seq2seq(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Encoder ``input_ids``/``attention_mask`` (B, S) and decoder ``labels`` (B, T), -100 padded."""
    src = max(len(e.prompt) for e in examples)
    tgt = max(len(e.response) for e in examples)
    ids = torch.full((len(examples), src), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), src), dtype=torch.long)
    labels = torch.full((len(examples), tgt), IGNORE_INDEX, dtype=torch.long)
    for row, e in enumerate(examples):
        ids[row, : len(e.prompt)] = torch.tensor(e.prompt)
        mask[row, : len(e.prompt)] = 1
        labels[row, : len(e.response)] = torch.tensor(e.response)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def take_per_task(samples: SampleSource | Sequence[Sample], n: int) -> list[Sample]:
    """The first ``n`` samples of each task, in the source's order (few-shot selection)."""
    counts: dict[str, int] = {}
    chosen = []
    for i in range(len(samples)):
        sample = samples[i]
        if counts.get(sample.task, 0) < n:
            counts[sample.task] = counts.get(sample.task, 0) + 1
            chosen.append(sample)
    return chosen


def _template(family: Any, phrasing: int, variant: str | None) -> str | None:
    templates = getattr(family, "instructions", None)
    if not templates or not 0 <= phrasing < len(templates):
        return None
    template = templates[phrasing]
    if not isinstance(template, str):
        template = template.get(variant)
    return template if isinstance(template, str) else None


def _fields_of(template: str, text: str) -> dict[str, str] | None:
    """Recover the ``{field}`` values that turned ``template`` into ``text`` (None: no match)."""
    pattern, names = "", []
    for literal, name, _, _ in string.Formatter().parse(template):
        pattern += re.escape(literal)
        if name is not None:
            if name in names:
                pattern += f"(?P={name})"
            else:
                names.append(name)
                pattern += f"(?P<{name}>.+?)"
    match = re.fullmatch(pattern, text, flags=re.DOTALL)
    return match.groupdict() if match else None


def can_paraphrase(sample: Sample) -> bool:
    """Whether :func:`paraphrase` can reword ``sample`` (its verifier exposes instruction templates)."""
    family = sample.verifier
    phrasing, variant = sample.metadata.get("phrasing"), sample.metadata.get("variant")
    if not isinstance(phrasing, int) or not hasattr(family, "instruction"):
        return False
    if len(getattr(family, "instructions", ())) < 2:
        return False
    template = _template(family, phrasing, variant)
    return template is not None and _fields_of(template, sample.instruction) is not None


def paraphrase(sample: Sample, rng: np.random.Generator) -> Sample:
    """``sample`` with its instruction replaced by another phrasing of the same task family.

    The family is the sample's verifier (a built-in :class:`~instruct_env.tasks.TaskFamily`);
    template fields such as ``{topic}`` are recovered from the current instruction. Samples that
    cannot be reworded (see :func:`can_paraphrase`) are returned unchanged.

    >>> from instruct_env.tasks import BuiltinDataset
    >>> sample = BuiltinDataset(["keywords"], size_per_task=1)[0]
    >>> other = paraphrase(sample, np.random.default_rng(0))
    >>> other.instruction != sample.instruction, other.context == sample.context
    (True, True)
    """
    if not can_paraphrase(sample):
        return sample
    # A built-in task family, used by duck typing: can_paraphrase checked its templates.
    family: Any = sample.verifier
    phrasing, variant = sample.metadata["phrasing"], sample.metadata.get("variant")
    template = _template(family, phrasing, variant)
    fields = _fields_of(template, sample.instruction) if template is not None else None
    assert fields is not None  # can_paraphrase matched the instruction to its template
    choices = [p for p in range(len(family.instructions)) if p != phrasing]
    new = choices[int(rng.integers(len(choices)))]
    metadata = dict(sample.metadata)
    metadata.update(phrasing=new, paraphrased_from=phrasing)
    if "heldout_phrasing" in metadata and hasattr(family, "heldout_phrasing"):
        metadata["heldout_phrasing"] = new == family.heldout_phrasing
    return dataclasses.replace(sample, instruction=family.instruction(new, variant, **fields), metadata=metadata)
