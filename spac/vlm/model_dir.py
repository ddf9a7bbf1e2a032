"""Where a VLM captioner comes from: a local Hugging Face model directory, checked before anything loads.

Nothing here (or anywhere in :mod:`spac.vlm`) downloads: the directory must already hold the model, e.g. written
by ``save_pretrained`` or copied from a model hub by hand on a machine that has the network.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

VLM_PREFIX = "vlm:"
_FIX = "a local Hugging Face model directory, e.g. saved by save_pretrained; nothing is downloaded"
# any one of each group will do (transformers 5 writes processor_config.json, older saves preprocessor_config.json)
_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
# a tokenizer's vocabulary (tokenizer_config.json alone holds settings, not a vocabulary)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def weight_files(directory: str | os.PathLike) -> list[Path]:
    """The model's weight files (``*.safetensors``, else ``pytorch_model*.bin``), sorted by name."""
    directory = Path(directory)
    for pattern in _WEIGHT_PATTERNS:
        found = sorted(directory.glob(pattern))
        if found:
            return found
    return []


def vlm_directory(spec: str | os.PathLike) -> Path:
    """The resolved model directory of ``"vlm:DIR"`` (a bare DIR is accepted too), after checking that it exists and
    holds ``config.json``, the processor and tokenizer files and weights. Raises ValueError naming the path, what is
    missing and what is expected."""
    text = os.fspath(spec)
    raw = text[len(VLM_PREFIX):] if text.startswith(VLM_PREFIX) else text
    if not raw:
        raise ValueError(f"{text!r} names no directory: use vlm:DIR with DIR {_FIX}")
    path = Path(raw).expanduser().resolve()
    if not path.exists():
        raise ValueError(f"VLM captioner {path}: no such directory; it must be {_FIX}")
    if not path.is_dir():
        raise ValueError(f"VLM captioner {path}: not a directory; it must be {_FIX}")
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / f).is_file() for f in _PROCESSOR_FILES):
        missing.append("processor files (" + " or ".join(_PROCESSOR_FILES) + ")")
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        missing.append("tokenizer files (" + " or ".join(_TOKENIZER_FILES) + ")")
    if not weight_files(path):
        missing.append("weights (" + " or ".join(_WEIGHT_PATTERNS) + ")")
    if missing:
        raise ValueError(f"VLM captioner {path}: missing {', '.join(missing)}; it must be {_FIX}")
    return path


def lineage_sha256(directory: str | os.PathLike) -> str:
    """sha256 over ``config.json`` and the weight files, in sorted name order, each as its name, its size and its bytes: the
    same directory contents give the same digest wherever they lie."""
    directory = Path(directory)
    files = sorted([directory / "config.json", *weight_files(directory)], key=lambda p: p.name)
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}\0{f.stat().st_size}\0".encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


__all__ = ["VLM_PREFIX", "vlm_directory", "weight_files", "lineage_sha256"]


def directory_record(directory: str | os.PathLike) -> dict:
    """What the lineage records of a model directory without loading it: ``kind`` ("vlm"), ``path``, ``model_type``,
    ``architectures`` (from config.json) and :func:`lineage_sha256`."""
    import json

    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    return {"kind": "vlm", "path": str(directory), "model_type": config.get("model_type", ""),
            "architectures": list(config.get("architectures") or []), "sha256": lineage_sha256(directory)}


def load_processor(directory: str | os.PathLike):
    """The directory's processor, loaded (``local_files_only``), padding on the left for batched generation and
    with a chat template: ValueError naming the directory and the problem when it does not load or cannot build
    prompts, so ``plip synth`` refuses such a directory before any work rather than in every shard."""
    from transformers import AutoProcessor

    path = Path(directory)
    try:
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, ImportError, KeyError, TypeError) as e:
        raise ValueError(f"VLM captioner {path}: its processor or tokenizer does not load ({type(e).__name__}: "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else e!r}); it must be {_FIX}") from e
    if getattr(processor, "chat_template", None) is None and \
            getattr(getattr(processor, "tokenizer", None), "chat_template", None) is None:
        raise ValueError(f"VLM captioner {path}: no chat template (chat_template.jinja, or chat_template in "
                         f"processor_config.json / tokenizer_config.json), so no prompt can be built; it must be {_FIX}")
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"  # batched generation: every prompt ends where its answer starts
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ValueError(f"VLM captioner {path}: its tokenizer has no pad, end or unknown token to pad batches "
                             f"with; it must be {_FIX}")
        tokenizer.pad_token = fallback
    return processor
