"""The built-in tokenizer: byte-level BPE trained locally on the built-in task suite.

The tokenizer is trained with the ``tokenizers`` library on text from the *train*
split of the built-in suite, so no download is ever needed. It is byte-level, so
any text (including non-ASCII) round-trips, and it splits every digit into its own
pre-token (a leading space may stay attached to the first digit), so that numbers
are spelled digit by digit -- arithmetic and sorting stay learnable for small models.

Training is deterministic and cached on disk under :func:`cache_dir` in a file whose
name contains a hash of the corpus and settings; later calls load that file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

__all__ = ["builtin_tokenizer", "load_tokenizer", "cache_dir", "PAD_TOKEN", "EOS_TOKEN"]

PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|eos|>"
_FORMAT_VERSION = 1


def cache_dir() -> Path:
    """Directory for cached artefacts (``$INSTRUCT_ENV_CACHE`` or ``~/.cache/instruct_env``)."""
    root = os.environ.get("INSTRUCT_ENV_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "instruct_env"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _train(corpus: list[str], vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            # " 123" -> " 1", "2", "3": one token per digit, the space kept on the first.
            pre_tokenizers.Split(Regex(r" ?\p{N}"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD_TOKEN, EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    return tok


def builtin_tokenizer(vocab_size: int = 512, *, seed: int = 0, refresh: bool = False) -> PreTrainedTokenizerFast:
    """Return the built-in tokenizer as a new ``transformers.PreTrainedTokenizerFast``.

    Args:
        vocab_size: Target vocabulary size (at least 258: 256 bytes + 2 special tokens).
        seed: Seed of the corpus drawn from the built-in suite's train split.
        refresh: Retrain even when a cached file exists.

    Returns:
        A fresh tokenizer object (callers may modify it without affecting others) with
        ``eos_token="<|eos|>"`` and ``pad_token="<|pad|>"``.
    """
    from instruct_env.error import ConfigError

    if vocab_size < 258:
        raise ConfigError(f"vocab_size must be >= 258 (256 bytes + pad + eos), got {vocab_size}.")
    from instruct_env.tasks import tokenizer_corpus

    corpus = tokenizer_corpus(seed=seed)
    digest = hashlib.sha256()
    digest.update(json.dumps([_FORMAT_VERSION, vocab_size]).encode())
    for line in corpus:
        digest.update(line.encode("utf-8"))
        digest.update(b"\0")
    path = cache_dir() / f"tokenizer-v{_FORMAT_VERSION}-{vocab_size}-{digest.hexdigest()[:16]}.json"
    if refresh or not path.exists():
        tok = _train(corpus, vocab_size)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tok.save(str(tmp))
        os.replace(tmp, path)  # atomic: concurrent processes never see a partial file
    return load_tokenizer(path)


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by :func:`builtin_tokenizer` (a ``tokenizers`` JSON file)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(path), eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)
