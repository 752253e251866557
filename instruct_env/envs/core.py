"""Machinery shared by the token and completion environments.

:class:`EnvSetup` turns the user-facing keyword arguments (tasks or dataset, split,
tokenizer, reward, length limits, prompt options) into ready objects, and
:class:`PromptBank` turns samples into fixed-size, left-padded prompt arrays
(cached per sample id). Both single and vector environments build on these, so
the single environment is exactly the vector one with one slot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from instruct_env.error import ConfigError, DataFormatError, EmptyDatasetError, InvalidOption, RewardError
from instruct_env.tasks.sample import Sample

__all__ = ["EnvSetup", "make_setup", "PromptBank", "SetupAccess", "resolve_tokenizer", "vector_seeds", "split_vector_options",
           "check_render_mode", "batch_infos", "auto_reward", "RESET_OPTION_KEYS"]

logger = logging.getLogger(__name__)

#: Keys accepted by ``reset(options=...)``.
RESET_OPTION_KEYS = ("sample", "sample_id", "index")
SAMPLING_MODES = ("uniform", "stratified")


def resolve_tokenizer(tokenizer: Any):
    """Return a tokenizer object for ``None`` (built-in), a name/path, or an object.

    The caller's object is used as is and never modified.
    """
    if tokenizer is None:
        from instruct_env.tokenizer import builtin_tokenizer

        return builtin_tokenizer()
    if isinstance(tokenizer, str):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(tokenizer)
    if not hasattr(tokenizer, "encode") or not hasattr(tokenizer, "decode"):
        raise ConfigError(
            f"tokenizer must be None (the built-in one), a Hugging Face name or path, or a tokenizer "
            f"object with encode/decode; got {type(tokenizer).__name__}."
        )
    return tokenizer


def auto_reward(dataset: Any, max_checked: int = 2000) -> tuple[str | dict[str, Any], str]:
    """What ``reward="auto"`` means for ``dataset``, and why: ``(reward spec, one-line reason)``.

    - samples with a task verifier (the built-in suite): ``"task"``;
    - references in ASCII only: ``"rougeL"`` (rouge-score's tokenizer, with stemming);
    - references with other characters (Chinese, Arabic, accented Latin...): ROUGE-L with
      ``tokenizer="cjk"``, which keeps words of every script and compares CJK text character by
      character -- rouge-score's own tokenizer drops every non-ASCII letter, so it would score an
      exact answer in Chinese or Arabic 0.

    Up to ``max_checked`` samples, spread evenly over the dataset, are read.

    >>> from instruct_env.tasks import Sample
    >>> auto_reward([Sample("a", "t", "Say hi", "", ("hi",))])[0]
    'rougeL'
    >>> auto_reward([Sample("b", "t", "说你好", "", ("你好",))])
    ({'rougeL': {'tokenizer': 'cjk'}}, "references hold non-ASCII text (e.g. '你'): ROUGE-L with tokenizer='cjk' (rouge-score's own tokenizer drops non-ASCII letters and would score exact answers 0)")
    """
    n = len(dataset)
    if n and getattr(dataset[0], "verifier", None) is not None:
        return "task", "the samples have task verifiers: each task's own score"
    step = max(1, n // max_checked)
    for i in range(0, n, step):
        for reference in dataset[i].references:
            other = next((ch for ch in reference if ord(ch) > 127), None)
            if other is not None:
                return {"rougeL": {"tokenizer": "cjk"}}, (
                    f"references hold non-ASCII text (e.g. {other!r}): ROUGE-L with tokenizer='cjk' (rouge-score's "
                    "own tokenizer drops non-ASCII letters and would score exact answers 0)")
    return "rougeL", "references are ASCII text: ROUGE-L F1 (rouge-score's tokenizer, with stemming)"


#: ``dataset_kwargs`` a data file takes: :func:`~instruct_env.tasks.load_file`'s options and the split column.
FILE_DATASET_KWARGS = ("fields", "format", "task", "split_column")


def _is_path(dataset: Any) -> bool:
    return isinstance(dataset, str) or hasattr(dataset, "__fspath__")


def _resolve_dataset(tasks, dataset, split: str, dataset_kwargs: Mapping[str, Any] | None):
    from instruct_env import tasks as tasks_pkg

    if dataset is not None and tasks is not None:
        raise ConfigError("Pass either tasks= (built-in families) or dataset= (your own samples), not both.")
    if dataset is None:
        names = [tasks] if isinstance(tasks, str) else tasks
        return tasks_pkg.BuiltinDataset(tasks=names, split=split, **dict(dataset_kwargs or {}))
    if _is_path(dataset):
        return _file_split(dataset, split, dict(dataset_kwargs or {}))
    if dataset_kwargs:
        raise ConfigError("dataset_kwargs applies to the built-in suite (tasks=...) and to a data file "
                          f"(dataset='path', keys {', '.join(FILE_DATASET_KWARGS)}); got a {type(dataset).__name__} "
                          "of samples, which is used as given (split it yourself).")
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise ConfigError(
            f"dataset must be a path to a JSON/JSONL/CSV file or an indexable sequence of Sample; "
            f"got {type(dataset).__name__}."
        )
    return dataset


def _file_split(path: Any, split: str, options: dict[str, Any]) -> list:
    """The ``split`` of a data file (by the hash of each input, or by ``split_column``)."""
    import os

    from instruct_env import tasks as tasks_pkg
    from instruct_env.error import suggest
    from instruct_env.tasks.splits import select_split, split_sizes

    unknown = sorted(set(options) - set(FILE_DATASET_KWARGS))
    if unknown:
        raise ConfigError(f"dataset_kwargs for a data file takes {', '.join(FILE_DATASET_KWARGS)}; got "
                          f"{unknown[0]!r}.{suggest(unknown[0], FILE_DATASET_KWARGS)}")
    column = options.pop("split_column", None)
    try:
        samples = tasks_pkg.load_file(path, **options)
    except DataFormatError as exc:
        what, sep, _ = str(exc).partition(" Pass fields=")
        if not sep:
            raise
        raise DataFormatError(  # the env takes the mapping in dataset_kwargs
            f"{what} Name them with dataset_kwargs={{'fields': {{'instruction': ..., 'context': ..., "
            "'references': ...}})."
        ) from None
    chosen = select_split(samples, split, column)
    sizes = split_sizes(samples, column)
    how = f"by its column {column!r}" if column else "by a hash of each input (80/10/10)"
    logger.info("%s: %d samples, split %s into %d train, %d validation and %d test; this env uses the %s split.",
                os.fspath(path), len(samples), how, sizes["train"], sizes["validation"], sizes["test"], split)
    if not chosen:
        raise EmptyDatasetError(
            f"The {split} split of {os.fspath(path)!r} is empty: its {len(samples)} samples split {how} into "
            f"{sizes['train']} train, {sizes['validation']} validation and {sizes['test']} test. Add samples, or "
            "name a column that assigns them (dataset_kwargs={'split_column': 'split'})."
        )
    return chosen


def make_setup(env: str, kwargs: Mapping[str, Any], own: Sequence[str],
               hints: Mapping[str, str] | None = None) -> EnvSetup:
    """:class:`EnvSetup` from an env's remaining keyword arguments, refusing unknown names.

    Args:
        env: The env, as users know it (e.g. ``"InstructEnv/Completion-v0"``), for the message.
        kwargs: The keyword arguments the env passes on.
        own: The env's own keyword arguments (listed as accepted in the message).
        hints: For names users are known to pass to this env by mistake, a sentence (starting
            with a space) on why it takes none and where the argument belongs.

    Raises:
        UnknownNameError: an argument neither the env nor :class:`EnvSetup` takes, with a
            "did you mean" suggestion and the accepted names.
    """
    import inspect

    from instruct_env.error import UnknownNameError, suggest

    shared = [name for name in inspect.signature(EnvSetup.__init__).parameters if name != "self"]
    accepted = sorted({*shared, *own})
    for name in kwargs:
        if name not in shared:
            why = (hints or {}).get(name, "")
            raise UnknownNameError(f"{env} takes no argument {name!r}.{suggest(str(name), accepted)}{why} "
                                   f"Accepted arguments: {', '.join(accepted)}.")
    return EnvSetup(**kwargs)


class EnvSetup:
    """Validated configuration shared by both environment kinds.

    Args:
        tasks: Built-in task family name(s); ``None`` means the whole built-in suite.
        dataset: Your own samples (a sequence of :class:`Sample`) or a data-file path.
        split: ``"train"``, ``"validation"`` or ``"test"``: of the built-in suite, or of a data
            file (by a stable hash of each input, 80/10/10, or by the column named in
            ``dataset_kwargs["split_column"]``; see :mod:`instruct_env.tasks.splits`). A sequence of
            samples is used as given.
        tokenizer: ``None`` (built-in), a Hugging Face name/path, or a tokenizer object.
        reward: ``"auto"`` (the task verifier when samples have one, else ROUGE-L suited to the
            references' script, see :func:`auto_reward`),
            a registered reward name, a dict of weights (a term may be a dict of its options
            with an optional ``"weight"``, e.g. ``{"bleu": {"tokenize": "zh"}}``), or a reward
            callable; see :func:`instruct_env.rewards.make`.
        max_prompt_tokens: Prompt budget; longer prompts are truncated by the
            documented rule of :class:`instruct_env.tasks.PromptFormatter`.
        max_new_tokens: Completion budget.
        num_shots: In-context demonstrations placed before the instruction.
        template: Prompt template name or format string.
        use_chat_template: ``"auto"``, ``True`` or ``False``.
        dataset_kwargs: Knobs for the built-in suite (``size_per_task``, ``seed``, difficulty), or
            for a data file: ``fields``, ``format``, ``task`` (as :func:`~instruct_env.tasks.load_file`
            takes them) and ``split_column``.
        sampling: How new episodes pick their sample: ``"uniform"`` over the dataset, or
            ``"stratified"`` over task families (every run of F draws visits each of the F
            families once, in a random order, with a uniform sample inside the family), so that a
            batch of prompts covers the families evenly.
    """

    def __init__(
        self,
        *,
        tasks: str | Sequence[Any] | None = None,
        dataset: Any = None,
        split: str = "train",
        tokenizer: Any = None,
        reward: str | Mapping[str, Any] | Callable[..., Any] = "auto",
        max_prompt_tokens: int = 128,
        max_new_tokens: int = 32,
        num_shots: int = 0,
        template: str = "default",
        use_chat_template: bool | str = "auto",
        dataset_kwargs: Mapping[str, Any] | None = None,
        sampling: str = "uniform",
    ) -> None:
        from instruct_env import rewards
        from instruct_env.tasks import PromptFormatter

        for name, value, low in (("max_prompt_tokens", max_prompt_tokens, 1), ("max_new_tokens", max_new_tokens, 1),
                                 ("num_shots", num_shots, 0)):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}; got {value!r}.")
        if sampling not in SAMPLING_MODES:
            from instruct_env.error import suggest

            raise ConfigError(f"sampling must be one of {', '.join(map(repr, SAMPLING_MODES))}; got "
                              f"{sampling!r}.{suggest(str(sampling), SAMPLING_MODES)}")
        self.sampling = sampling
        self._family_rows: list[np.ndarray] | None = None
        self._family_queue: list[int] = []
        self.dataset = _resolve_dataset(tasks, dataset, split, dataset_kwargs)
        if len(self.dataset) == 0:
            raise EmptyDatasetError(
                "The environment's dataset is empty: there is nothing to sample instructions from. "
                "Check the file, the split or the task names you passed."
            )
        self.split = split
        self.tokenizer = resolve_tokenizer(tokenizer)
        self.eos_token_id = self.tokenizer.eos_token_id
        if self.eos_token_id is None:
            raise ConfigError(
                "The tokenizer has no eos_token_id, so episodes could never end with an answer. "
                "Pass a tokenizer with an EOS token (or set tokenizer.eos_token on a copy of yours)."
            )
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = int(self.eos_token_id if pad is None else pad)
        self.vocab_size = int(len(self.tokenizer))
        self.max_prompt_tokens = int(max_prompt_tokens)
        self.max_new_tokens = int(max_new_tokens)
        #: What the reward is and, for ``reward="auto"``, why it was chosen (logged at start-up).
        self.reward_note = f"reward {reward!r}" if isinstance(reward, (str, Mapping)) else \
            f"reward {getattr(reward, 'name', type(reward).__name__)!r}"
        if isinstance(reward, str) and reward == "auto":
            reward, why = auto_reward(self.dataset)
            self.reward_note = f"reward='auto' chose {reward!r}: {why}"
            logger.info("%s.", self.reward_note)
        self.reward = rewards.make(reward)
        demos = None
        if num_shots:  # demonstrations come from the train split (a list of samples is its own source)
            demos = self.dataset if split == "train" or dataset is not None and not _is_path(dataset) else \
                _resolve_dataset(tasks, dataset, "train", dataset_kwargs)
        self.formatter = PromptFormatter(
            template=template, use_chat_template=use_chat_template, num_shots=num_shots, demonstrations=demos
        )
        self._backend = getattr(self.tokenizer, "backend_tokenizer", None)  # fast path for HF tokenizers

    def decode_batch(self, sequences: Sequence[Sequence[int] | np.ndarray]) -> list[str]:
        """Decode token-id sequences to text (special tokens dropped)."""
        seqs = [list(map(int, seq)) for seq in sequences]
        if self._backend is not None:
            # One decode per text: decode_batch's thread pool costs more than it saves on short texts.
            return [self._backend.decode(seq, skip_special_tokens=True) for seq in seqs]
        return [self.tokenizer.decode(seq, skip_special_tokens=True) for seq in seqs]

    def score(
        self, completions: Sequence[str], samples: Sequence[Sample]
    ) -> tuple[np.ndarray, dict[str, np.ndarray], list[dict[str, Any]]]:
        """Run the configured reward on a batch; returns (total, components, per-item info)."""
        references = [s.references for s in samples]
        total, components, infos = self.reward.compute_with_info(list(completions), references, samples=list(samples))
        total = np.asarray(total, dtype=np.float64)
        if total.shape != (len(completions),) or not np.all(np.isfinite(total)):
            raise RewardError(
                f"Reward {getattr(self.reward, 'name', self.reward)!r} returned {total!r}; expected "
                f"{len(completions)} finite floats, one per completion."
            )
        return total, components, infos

    def pick_sample(self, rng: np.random.Generator, options: Mapping[str, Any] | None) -> Sample:
        """Choose the sample for a new episode: from ``options`` or uniformly at random."""
        if options:
            unknown = set(options) - set(RESET_OPTION_KEYS)
            if unknown:
                from instruct_env.error import suggest

                bad = sorted(unknown)[0]
                raise InvalidOption(
                    f"Unknown reset option {bad!r}.{suggest(bad, RESET_OPTION_KEYS)} "
                    f"Valid options: {', '.join(RESET_OPTION_KEYS)}."
                )
            if len(options) > 1:
                raise InvalidOption(f"Pass at most one of {RESET_OPTION_KEYS} in reset options; got {sorted(options)}.")
            if "sample" in options:
                sample = options["sample"]
                if not isinstance(sample, Sample):
                    raise InvalidOption(f"options['sample'] must be a Sample; got {type(sample).__name__}.")
                return sample
            if "index" in options:
                index = options["index"]
                if not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.dataset):
                    raise InvalidOption(
                        f"options['index'] must be an integer in [0, {len(self.dataset)}); got {index!r}."
                    )
                return self.dataset[int(index)]
            return self._by_id(options["sample_id"])
        if self.sampling == "stratified":
            families = self._families()
            if not self._family_queue:
                self._family_queue = [int(f) for f in rng.permutation(len(families))]
            rows = families[self._family_queue.pop()]
            return self.dataset[int(rows[rng.integers(len(rows))])]
        return self.dataset[int(rng.integers(len(self.dataset)))]

    def reset_sampler(self) -> None:
        """Forget the stratified sampler's current round of families (a seeded reset starts afresh)."""
        self._family_queue = []

    def _families(self) -> list[np.ndarray]:
        """The dataset's row indices grouped by task family (built once)."""
        if self._family_rows is None:
            from instruct_env.tasks import BuiltinDataset

            n = len(self.dataset)
            if isinstance(self.dataset, BuiltinDataset):  # families are interleaved: row i is family i % F
                F = len(self.dataset.families)
                self._family_rows = [np.arange(f, n, F) for f in range(F)]
            else:
                if n > 200_000:
                    raise ConfigError(f"sampling='stratified' reads every sample's task; this dataset has {n} "
                                      "(at most 200,000). Use sampling='uniform'.")
                groups: dict[str, list[int]] = {}
                for i in range(n):
                    groups.setdefault(str(self.dataset[i].task), []).append(i)
                self._family_rows = [np.asarray(groups[t]) for t in sorted(groups)]
        return self._family_rows

    def _by_id(self, sample_id: str) -> Sample:
        index = getattr(self, "_id_index", None)
        if index is None:
            if len(self.dataset) > 200_000:
                raise InvalidOption("options['sample_id'] needs a dataset of at most 200k samples; use 'index'.")
            index = self._id_index = {self.dataset[i].id: i for i in range(len(self.dataset))}
        if sample_id not in index:
            from instruct_env.error import suggest

            raise InvalidOption(f"No sample with id {sample_id!r} in this dataset.{suggest(str(sample_id), index)}")
        return self.dataset[index[sample_id]]


class PromptBank:
    """Encodes samples into left-padded prompt rows of width ``max_prompt_tokens``, cached by id."""

    def __init__(self, setup: EnvSetup, max_cached: int = 100_000) -> None:
        self.setup = setup
        self.max_cached = max_cached
        self._cache: dict[str, tuple[np.ndarray, str, dict[str, Any], Sample]] = {}

    def get(self, sample: Sample) -> tuple[np.ndarray, str, dict[str, Any]]:
        """Return ``(prompt_ids, prompt_text, format_info)`` for ``sample``."""
        hit = self._cache.get(sample.id)
        if hit is not None and hit[3] == sample:
            return hit[0], hit[1], hit[2]
        ids, info = self.setup.formatter.encode(sample, self.setup.tokenizer, self.setup.max_prompt_tokens,
                                                budget_name="max_prompt_tokens")
        # The text shown in info["prompt"] is the one encoded in the observation (chat template included).
        tokenizer = self.setup.tokenizer
        text = self.setup.formatter.format(sample, tokenizer) if not info.get("truncated") else tokenizer.decode(ids)
        entry = (np.asarray(ids, dtype=np.int64), text, dict(info), sample)
        if len(self._cache) >= self.max_cached:
            self._cache.clear()
        self._cache[sample.id] = entry
        return entry[0], entry[1], entry[2]

    def fill(self, row_ids: np.ndarray, row_mask: np.ndarray, sample: Sample) -> tuple[int, str, dict[str, Any]]:
        """Write ``sample``'s prompt right-aligned into the first ``max_prompt_tokens`` columns."""
        ids, text, info = self.get(sample)
        width = self.setup.max_prompt_tokens
        n = len(ids)
        row_ids[:] = self.setup.pad_token_id
        row_mask[:] = 0
        row_ids[width - n:width] = ids
        row_mask[width - n:width] = 1
        return n, text, info


class SetupAccess:
    """Read-only shortcuts shared by every environment class (they all hold ``self.setup``)."""

    setup: EnvSetup

    @property
    def eos_token_id(self) -> int:
        """The token id that ends an answer."""
        return int(self.setup.eos_token_id)

    @property
    def tokenizer(self):
        """The tokenizer used to build observations and decode actions."""
        return self.setup.tokenizer


def check_render_mode(render_mode: str | None, modes: Sequence[str]) -> str | None:
    """Validate ``render_mode`` against the env's ``metadata["render_modes"]``."""
    if render_mode is not None and render_mode not in modes:
        raise InvalidOption(f"render_mode must be one of {list(modes)} or None; got {render_mode!r}.")
    return render_mode


def vector_seeds(seed: int | Sequence[int | None], num_envs: int) -> list[int | None]:
    """Per-slot seeds of a vector ``reset(seed=...)``: ``seed + i`` for an int, else the list as given."""
    seeds: list[int | None] = (
        [seed + i for i in range(num_envs)] if isinstance(seed, (int, np.integer)) else list(seed)
    )
    if len(seeds) != num_envs:
        raise InvalidOption(f"reset(seed=...) needs an int or {num_envs} seeds; got {len(seeds)}.")
    return seeds


def split_vector_options(options: Mapping[str, Any], num_envs: int) -> list[dict[str, Any] | None]:
    """Turn vector reset options (one list of ``num_envs`` values per key) into per-slot options."""
    per_slot: list[dict[str, Any] | None] = [None] * num_envs
    for key, values in options.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) != num_envs:
            raise InvalidOption(
                f"Vector reset option {key!r} must be a list of {num_envs} values (None to draw "
                f"at random); got {values!r}."
            )
        for i, v in enumerate(values):
            if v is not None:
                per_slot[i] = {key: v}
    return per_slot


def batch_infos(entries: Sequence[tuple[int, Mapping[str, Any]]], num_envs: int) -> dict[str, Any]:
    """Vector-env ``infos`` from per-slot info dicts, in Gymnasium's layout, built in one pass.

    Each key maps to an array over the slots (numbers and booleans in numeric arrays, anything
    else in object arrays, nested dicts recursively) plus a boolean mask ``"_key"`` marking the
    slots that have it -- what ``VectorEnv._add_info`` builds one slot at a time, without its
    per-slot cost.
    """
    out: dict[str, Any] = {}
    keys = list(dict.fromkeys(key for _, info in entries for key in info))
    for key in keys:
        present = [(slot, info[key]) for slot, info in entries if key in info]
        mask = np.zeros(num_envs, dtype=bool)
        mask[[slot for slot, _ in present]] = True
        values = [value for _, value in present]
        if key != "final_obs" and all(isinstance(v, dict) for v in values):  # final_obs: one dict per slot
            array: Any = batch_infos(present, num_envs)
        elif all(isinstance(v, (bool, np.bool_)) for v in values):
            array = np.zeros(num_envs, dtype=bool)
            array[mask] = values
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            array = np.zeros(num_envs, dtype=np.int64)
            array[mask] = values
        elif all(isinstance(v, (float, np.floating)) for v in values):
            array = np.zeros(num_envs, dtype=np.float64)
            array[mask] = values
        else:
            array = np.full(num_envs, None, dtype=object)
            for slot, value in present:
                array[slot] = value
        out[key] = array
        out[f"_{key}"] = mask
    return out
