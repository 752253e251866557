r"""Turning a :class:`~instruct_env.tasks.Sample` into prompt text and prompt tokens.

Default template (``template="default"``)::

    ### Instruction:
    {instruction}
    ### Input:
    {context}
    ### Response:

The ``### Input:`` block is left out when the context is empty, and the prompt ends right
after ``"### Response:\n"`` where the answer starts. ``template="plain"`` is a shorter
variant (``"{instruction}\n{context}\nAnswer: "``); any :class:`PromptTemplate` can be
passed. It is compact on purpose: a tiny model pays for every prompt token.

Chat models:
    When a tokenizer with a chat template is given and ``use_chat_template`` is ``"auto"``
    (or ``True``), the prompt is ``tokenizer.apply_chat_template(messages, tokenize=False,
    add_generation_prompt=True)``. The user message is the instruction, then a blank line
    and the context when there is one. Demonstrations become earlier user/assistant turns.
    The tokenizer is never modified.

Demonstrations (in-context examples):
    With ``num_shots=k`` the prompt starts with ``k`` solved examples drawn from
    ``demonstrations`` (normally the train split), each written with the same template and
    followed by its first reference and a newline. The draw is deterministic in ``(seed,
    sample.id)``, prefers samples of the same task (all samples are candidates when the
    source has none of that task), never uses the sample itself (same id, or same
    instruction and context) and skips samples without a reference.

Truncation (:meth:`PromptFormatter.encode` with ``max_tokens``):
    1. If the encoded prompt is longer than ``max_tokens``, drop demonstrations, the last
       one first, re-encoding after each.
    2. With no demonstrations left, cut the context on word boundaries: keep its first
       ``n`` words followed by ``" ..."`` (just ``"..."`` when ``n == 0``), with the
       largest ``n`` that fits, found by binary search and re-encoding. Text is only ever
       cut between words and then encoded again, so no token is split. A Chinese, Japanese
       or Korean character counts as a word of its own, since such text has no spaces.
    3. The instruction and the response marker are never cut. If the prompt does not fit
       even with no demonstrations and the context cut to ``"..."``, a
       :class:`~instruct_env.error.ConfigError` says how many tokens are needed.

A tokenizer is anything with ``encode(text, add_special_tokens=False) -> list[int]``
(Hugging Face tokenizers qualify).

>>> from instruct_env.tasks import Sample
>>> print(PromptFormatter().format(Sample("s/0", "s", "Copy the text.", "cat dog")), end="|")
### Instruction:
Copy the text.
### Input:
cat dog
### Response:
|
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from instruct_env.error import ConfigError, unknown_name
from instruct_env.tasks.sample import Sample, SampleSource

__all__ = ["PromptTemplate", "TEMPLATES", "PromptFormatter"]


@dataclass(frozen=True)
class PromptTemplate:
    """The pieces of a plain-text prompt; ``{instruction}`` and ``{context}`` are filled in.

    Literal braces in these strings must be doubled (``{{``), as with :meth:`str.format`.

    Attributes:
        instruction: The instruction block.
        context: The input block, left out when the context is empty.
        response: The response marker; the answer follows it directly.
        answer_end: Written after a demonstration's answer.
    """

    instruction: str = "### Instruction:\n{instruction}\n"
    context: str = "### Input:\n{context}\n"
    response: str = "### Response:\n"
    answer_end: str = "\n"


TEMPLATES: dict[str, PromptTemplate] = {
    "default": PromptTemplate(),
    "plain": PromptTemplate("{instruction}\n", "{context}\n", "Answer: ", "\n\n"),
}

# Truncation units: a Chinese/Japanese/Korean character on its own (such text has no spaces
# between words), otherwise a run of non-space characters. Text without CJK cuts as on spaces.
_CJK = "\u1100-\u11ff\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31a0-\u31ff\u3400-\u4dbf" \
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f"
_WORD = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")


def _chat_user_text(instruction: str, context: str) -> str:
    return f"{instruction}\n\n{context}" if context else instruction


class PromptFormatter:
    """Formats samples as prompts, with optional demonstrations and truncation.

    Args:
        template: ``"default"``, ``"plain"`` or a :class:`PromptTemplate`.
        use_chat_template: ``"auto"`` uses the tokenizer's chat template when it has one;
            ``True`` requires one; ``False`` never uses it.
        num_shots: Number of demonstrations placed before the instruction.
        demonstrations: Where demonstrations come from (a list or any indexable source of
            samples, e.g. the train split). Required when ``num_shots > 0``. A source with a
            ``task_of(index)`` method (like :class:`~instruct_env.tasks.BuiltinDataset`) is
            grouped by task without generating every sample; otherwise the source is read
            once, on first use.
        seed: Seed of the demonstration draw.

    Raises:
        ConfigError: invalid arguments.
    """

    def __init__(
        self,
        template: str | PromptTemplate = "default",
        use_chat_template: bool | str = "auto",
        num_shots: int = 0,
        demonstrations: SampleSource | Sequence[Sample] | None = None,
        seed: int = 0,
    ) -> None:
        if isinstance(template, str):
            if template not in TEMPLATES:
                raise unknown_name("prompt template", template, TEMPLATES)
            template = TEMPLATES[template]
        elif not isinstance(template, PromptTemplate):
            raise ConfigError(
                f"template must be a template name ({', '.join(TEMPLATES)}) or a PromptTemplate, "
                f"got {type(template).__name__}."
            )
        if not (use_chat_template == "auto" or isinstance(use_chat_template, bool)):
            raise ConfigError(f"use_chat_template must be 'auto', True or False, got {use_chat_template!r}.")
        if not isinstance(num_shots, int) or isinstance(num_shots, bool) or num_shots < 0:
            raise ConfigError(f"num_shots must be an integer >= 0, got {num_shots!r}.")
        if num_shots > 0:
            if demonstrations is None:
                raise ConfigError(
                    f"num_shots={num_shots} needs a source of solved examples: pass demonstrations=... "
                    "(e.g. BuiltinDataset(split='train')) or set num_shots=0."
                )
            if len(demonstrations) == 0:
                raise ConfigError(f"num_shots={num_shots} but the demonstrations source is empty.")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"seed must be an integer, got {seed!r}.")
        self.template = template
        self.use_chat_template = use_chat_template
        self.num_shots = num_shots
        self.demonstrations = demonstrations
        self.seed = seed
        self._by_task: dict[str, list[int]] | None = None

    def __repr__(self) -> str:
        return (
            f"PromptFormatter(template={self.template!r}, use_chat_template={self.use_chat_template!r}, "
            f"num_shots={self.num_shots}, seed={self.seed})"
        )

    # -- demonstrations ------------------------------------------------------------------------

    def _source(self) -> SampleSource | Sequence[Sample]:
        """The demonstrations (``__init__`` requires them when ``num_shots > 0``)."""
        if self.demonstrations is None:
            raise ConfigError(f"num_shots={self.num_shots} needs a source of solved examples: pass demonstrations=...")
        return self.demonstrations

    def _candidates(self, task: str) -> list[int]:
        source = self._source()
        if self._by_task is None:
            task_of = getattr(source, "task_of", None)
            by_task: dict[str, list[int]] = {}
            for i in range(len(source)):
                by_task.setdefault(task_of(i) if task_of else source[i].task, []).append(i)
            self._by_task = by_task
        return self._by_task.get(task) or list(range(len(source)))

    def demonstrations_for(self, sample: Sample) -> list[Sample]:
        """The solved examples shown before ``sample`` (deterministic in ``seed`` and its id)."""
        if self.num_shots == 0:
            return []
        candidates = self._candidates(sample.task)
        digest = hashlib.sha256(f"{self.seed}\x1f{sample.id}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        chosen: list[Sample] = []
        seen: set[int] = set()
        while len(chosen) < self.num_shots and len(seen) < len(candidates):
            index = candidates[rng.randrange(len(candidates))]
            if index in seen:
                continue
            seen.add(index)
            demo = self._source()[index]
            same_input = demo.instruction == sample.instruction and demo.context == sample.context
            if demo.id != sample.id and not same_input and demo.references:
                chosen.append(demo)
        return chosen

    # -- rendering -----------------------------------------------------------------------------

    def _use_chat(self, tokenizer: Any) -> bool:
        if self.use_chat_template is False:
            return False
        has_template = bool(getattr(tokenizer, "chat_template", None)) if tokenizer is not None else False
        if self.use_chat_template is True and not has_template:
            what = "no tokenizer was given" if tokenizer is None else "the tokenizer has no chat_template"
            raise ConfigError(
                f"use_chat_template=True but {what}. Pass a chat tokenizer or use use_chat_template='auto'."
            )
        return has_template

    def _plain_block(self, instruction: str, context: str) -> str:
        text = self.template.instruction.format(instruction=instruction)
        if context:
            text += self.template.context.format(context=context)
        return text + self.template.response

    def _render(self, instruction: str, context: str, demos: Sequence[Sample], tokenizer: Any) -> str:
        if self._use_chat(tokenizer):
            messages = []
            for demo in demos:
                messages.append({"role": "user", "content": _chat_user_text(demo.instruction, demo.context)})
                messages.append({"role": "assistant", "content": demo.references[0]})
            messages.append({"role": "user", "content": _chat_user_text(instruction, context)})
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        parts = [
            self._plain_block(d.instruction, d.context) + d.references[0] + self.template.answer_end
            for d in demos
        ]
        return "".join(parts) + self._plain_block(instruction, context)

    def format(self, sample: Sample, tokenizer: Any = None) -> str:
        """The full prompt text of ``sample`` (all demonstrations, no truncation).

        The tokenizer is only consulted for its chat template.
        """
        return self._render(sample.instruction, sample.context, self.demonstrations_for(sample), tokenizer)

    def encode(self, sample: Sample, tokenizer: Any, max_tokens: int | None = None, *,
               budget_name: str = "max_tokens") -> tuple[list[int], dict]:
        """Encode the prompt of ``sample``, truncating it to ``max_tokens`` (see module docs).

        ``budget_name`` is what the caller's user calls ``max_tokens`` (e.g. ``"max_prompt_tokens"``),
        so that the error below names the argument to raise.

        Returns:
            ``(token_ids, info)`` with ``info = {"truncated": bool, "num_shots_used": int,
            "prompt_tokens": int}``.

        Raises:
            ConfigError: ``max_tokens`` is invalid or too small for the instruction and the
                response marker.
        """
        if max_tokens is not None and (
            not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
        ):
            raise ConfigError(f"max_tokens must be a positive integer or None, got {max_tokens!r}.")
        demos = self.demonstrations_for(sample)

        def encode(num_demos: int, context: str) -> list[int]:
            text = self._render(sample.instruction, context, demos[:num_demos], tokenizer)
            return list(tokenizer.encode(text, add_special_tokens=False))

        def result(ids: list[int], truncated: bool, shots: int) -> tuple[list[int], dict]:
            return ids, {"truncated": truncated, "num_shots_used": shots, "prompt_tokens": len(ids)}

        ids = encode(len(demos), sample.context)
        if max_tokens is None or len(ids) <= max_tokens:
            return result(ids, False, len(demos))
        for shots in range(len(demos) - 1, -1, -1):  # 1. drop demonstrations, last first
            ids = encode(shots, sample.context)
            if len(ids) <= max_tokens:
                return result(ids, True, shots)

        # 2. cut the context to its first n words + " ...", largest n that fits.
        word_ends = [m.end() for m in _WORD.finditer(sample.context)]

        def head(n: int) -> str:
            return sample.context[: word_ends[n - 1]] + " ..." if n > 0 else "..."

        ids = encode(0, head(0)) if word_ends else ids
        if len(ids) > max_tokens:  # 3. even the bare instruction + response marker is too long
            cut = ", input cut to '...'" if word_ends else ""
            raise ConfigError(
                f"The prompt of sample {sample.id!r} needs at least {len(ids)} tokens (instruction and "
                f"response marker, no demonstrations{cut}) but {budget_name}={max_tokens}. "
                f"Raise {budget_name} to at least {len(ids)} or shorten the instruction."
            )
        lo, hi = 0, len(word_ends) - 1  # head(lo) fits; head(len(word_ends)) is the full context
        while lo < hi:
            mid = (lo + hi + 1) // 2
            candidate = encode(0, head(mid))
            if len(candidate) <= max_tokens:
                lo, ids = mid, candidate
            else:
                hi = mid - 1
        return result(ids, True, 0)  # ids is always the encoding of head(lo)
