"""The embedded default model's pre-trained weights, shipped with the project, and how they are made.

Pre-training the default model well takes far longer than a main-job run can spend, so the
project ships the result: ``agents/assets/default_model/`` holds ``model.safetensors`` and
``config.json`` (Hugging Face ``save_pretrained``) and ``manifest.json``, which records how the
weights were made -- the model shape, the pre-training settings, the sha256 of the built-in
tokenizer they were trained with, the command, the torch version, the loss of each of the first
:data:`~agents.common.pretrain.LOGGED_FIRST_STEPS` steps, a loss curve, the final loss -- and the
sha256 of the weights file.

:func:`export_pretrained` is what ``instruct-env pretrain --out DIR`` runs. :func:`load_shipped`
returns the shipped model when it fits the request exactly (same model shape, same
pre-training settings, same tokenizer, intact file); otherwise the caller pre-trains (and
caches) as before, so a user who changes the model config still gets a model made for it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import platform
from pathlib import Path
from typing import Any

__all__ = ["SHIPPED_DIR", "export_pretrained", "load_shipped", "read_manifest", "file_sha256", "settings_key"]

logger = logging.getLogger(__name__)

#: Folder of the shipped weights.
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "assets" / "default_model"
_WEIGHTS = "model.safetensors"
_MANIFEST = "manifest.json"
_MANIFEST_VERSION = 1


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def settings_key(config: Any) -> dict[str, Any]:
    """The pre-training settings that decide the weights (not the safety stop, cache or shipped switches)."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in ("time_budget_s", "cache", "shipped")}


def read_manifest(folder: str | Path = SHIPPED_DIR) -> dict[str, Any] | None:
    """The manifest of the weights in ``folder`` (``None`` if there is none)."""
    path = Path(folder) / _MANIFEST
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def export_pretrained(out_dir: str | Path, model_config: Any = None, config: Any = None, *, device: Any = "cpu",
                      command: str = "", run_logger: Any = None) -> dict[str, Any]:
    """Pre-train the default model to the end (no time budget) and write it with its manifest.

    Args:
        out_dir: Folder to write (created; files in it are replaced).
        model_config: A :class:`~agents.common.model.DefaultModelConfig` (default shape if ``None``).
        config: A :class:`~agents.common.pretrain.PretrainConfig` (its defaults if ``None``).
        device: Where to train.
        command: The command line, recorded in the manifest.
        run_logger: Optional :class:`~agents.common.logging.RunLogger`.

    Returns:
        The manifest (also written to ``out_dir/manifest.json``).
    """
    import torch

    from agents.common.device import select_device
    from agents.common.model import DefaultModelConfig, build_default_model
    from agents.common.pretrain import PretrainConfig, _tokenizer_digest, _train, encode_corpus
    from instruct_env.tasks import pretraining_corpus
    from instruct_env.tokenizer import builtin_tokenizer

    model_config = model_config if model_config is not None else DefaultModelConfig()
    config = config if config is not None else PretrainConfig()
    device = select_device(device)
    tokenizer = builtin_tokenizer()
    corpus = pretraining_corpus(n_per_task=config.n_per_task, seed=config.seed, tasks=config.tasks)
    corpus_ids, pad = encode_corpus(tokenizer, corpus, model_config.n_positions)
    model = build_default_model(tokenizer, model_config, seed=config.seed)
    state = _train(model, corpus_ids, pad, dataclasses.replace(config, time_budget_s=None), device, run_logger)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(out)
    manifest = {
        "manifest_version": _MANIFEST_VERSION,
        "what": "the embedded default model of instruct-env, pre-trained on the built-in task suite's train split",
        "command": command,
        "model_config": dataclasses.asdict(model_config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "pretrain_config": settings_key(config),
        "tokenizer_sha256": _tokenizer_digest(tokenizer),
        "corpus_examples": len(corpus),
        "data_seed": config.seed,
        "steps": state["step"],
        "first_losses": state["first_losses"],
        "loss_curve": state["curve"],
        "final_loss": float(sum(state["losses"]) / max(1, len(state["losses"]))),
        "train_seconds": round(state["seconds"], 1),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "weights_file": _WEIGHTS,
        "weights_sha256": file_sha256(out / _WEIGHTS),
    }
    (out / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def load_shipped(tokenizer: Any, model_config: Any, config: Any, device: Any, folder: str | Path = SHIPPED_DIR):
    """The shipped default model if it was made for exactly this request, else ``None``.

    It is used when ``config.shipped`` is on and the manifest's model shape and pre-training
    settings equal ``model_config`` and ``config``; a tokenizer or weights file that does not
    match the manifest is refused with a warning (the caller then pre-trains).

    Returns:
        ``(model, info)`` -- a ``GPT2LMHeadModel`` on ``device`` in eval mode and a
        :class:`~agents.common.pretrain.PretrainInfo` -- or ``None``.
    """
    from agents.common.pretrain import PretrainInfo, _tokenizer_digest

    folder = Path(folder)
    manifest = read_manifest(folder) if config.shipped else None
    if manifest is None:
        return None
    if manifest["model_config"] != dataclasses.asdict(model_config) or \
            manifest["pretrain_config"] != settings_key(config):
        logger.info("The shipped default weights were made with other settings; pre-training for these instead.")
        return None
    problem = None
    if manifest["tokenizer_sha256"] != _tokenizer_digest(tokenizer):
        problem = "the built-in tokenizer on this machine differs from the one they were trained with"
    elif file_sha256(folder / manifest["weights_file"]) != manifest["weights_sha256"]:
        problem = f"{folder / manifest['weights_file']} does not match the sha256 in its manifest"
    if problem is not None:
        logger.warning("Not using the shipped default weights: %s. Pre-training instead.", problem)
        return None
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(folder).to(device).eval()
    info = PretrainInfo(path=str(folder), from_cache=True, shipped=True, steps=manifest["steps"],
                        planned_steps=manifest["pretrain_config"]["steps"], final_loss=manifest["final_loss"],
                        elapsed_s=0.0, train_seconds=manifest["train_seconds"],
                        corpus_examples=manifest["corpus_examples"], config=dataclasses.asdict(config),
                        model_config=manifest["model_config"])
    return model, info
