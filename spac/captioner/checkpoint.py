"""Captioner checkpoints: a directory of plain files, checked thoroughly when loaded.

    config.json           the CaptionerConfig
    decoder_config.json   the GPT2Config the decoder was built with
    model.safetensors     all weights (the tied LM head stored once), metadata: format, step, vocab
    vocab.txt             the vocabulary (or vocab.json + merges.txt for GPT-2 BPE)

A training run keeps these files in each of its checkpoints (``RUN/checkpoints/step-N/``, next to the
run machinery's ``trainer.pt`` and ``state.json``); ``find_checkpoint`` accepts the run directory (its
latest complete checkpoint), a checkpoint directory, or the ``RUN/checkpoint/`` of runs written before the
shared run layout. ``save_checkpoint`` writes a bare checkpoint directory atomically (``<dir>.tmp`` first).
Loading raises :class:`CheckpointError` naming the file and the mismatch (vocabulary size vs token
embedding, missing or unexpected tensors, shapes that the config does not build).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch

from .config import CaptionerConfig
from .model import SpacCaptioner
from .tokenizer import BERT_FILES, GPT2_FILES, CaptionTokenizer

_log = logging.getLogger(__name__)
FORMAT = "spac-captioner/1"
TIED = "decoder.lm_head.weight"  # tied to decoder.transformer.wte.weight; stored once
EMBEDDING = "decoder.transformer.wte.weight"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and what does not match."""


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint directory ``path`` names: itself, a training run's latest complete checkpoint, or (runs
    written before the shared run layout) ``path/checkpoint``."""
    from plip_runtime.runs import resolve_checkpoint

    p = Path(path)
    for cand in (p, p / "checkpoint", p / "checkpoint.old"):
        if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint directory")
    try:
        return resolve_checkpoint(p)[1]
    except (FileNotFoundError, ValueError) as e:
        raise CheckpointError(f"{p}: not a captioner checkpoint (no config.json + model.safetensors here) and not "
                              f"a training run with a complete checkpoint ({e})") from None


def write_model_files(directory: str | os.PathLike, model: SpacCaptioner, tokenizer: CaptionTokenizer,
                      step: int = 0) -> None:
    """Write the checkpoint files (config, decoder config, weights, vocabulary) into ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    model.cfg.save(directory / "config.json")
    (directory / "decoder_config.json").write_text(json.dumps(model.decoder.config.to_dict(), indent=1) + "\n")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items() if k != TIED}
    save_file(tensors, str(directory / "model.safetensors"), metadata={
        "format": FORMAT, "step": str(step), "tokenizer": tokenizer.kind, "vocab_size": str(tokenizer.vocab_size),
        "vocab_sha256": tokenizer.fingerprint})
    tokenizer.save(directory)


def save_checkpoint(directory: str | os.PathLike, model: SpacCaptioner, tokenizer: CaptionTokenizer, *,
                    step: int = 0) -> Path:
    """A bare checkpoint directory (no run around it), written atomically."""
    final = Path(directory)
    tmp, old = final.with_name(final.name + ".tmp"), final.with_name(final.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_model_files(tmp, model, tokenizer, step)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu"
                    ) -> tuple[SpacCaptioner, CaptionTokenizer, dict]:
    """(model in eval mode on ``device``, tokenizer, safetensors metadata) of a checkpoint."""
    from safetensors import safe_open

    ckpt = find_checkpoint(path)
    try:
        cfg = CaptionerConfig.from_dict(_read_json(ckpt / "config.json"), source=str(ckpt / "config.json"))
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    weights = ckpt / "model.safetensors"
    try:
        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise CheckpointError(f"{weights}: not a readable safetensors file ({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{weights}: format {meta.get('format')!r} is not {FORMAT!r}")
    kind = meta.get("tokenizer", cfg.tokenizer)
    names = BERT_FILES if kind == "bert" else GPT2_FILES
    try:
        tokenizer = CaptionTokenizer.from_directory(kind, ckpt)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    if EMBEDDING not in tensors:
        raise CheckpointError(f"{weights}: missing tensor {EMBEDDING!r} (the token embedding)")
    rows = tensors[EMBEDDING].shape[0]
    if rows != tokenizer.vocab_size:
        raise CheckpointError(f"{ckpt / names[0]} has {tokenizer.vocab_size} tokens but {weights} has a token "
                              f"embedding {EMBEDDING} of {rows} rows: the vocabulary does not belong to these weights")
    decoder_config = _read_json(ckpt / "decoder_config.json")
    build_cfg = cfg.replace(backbone_weights=None, decoder_weights=None)  # the weights come from the checkpoint
    model = SpacCaptioner(build_cfg, tokenizer.vocab_size, tokenizer.eos_id, decoder_config=decoder_config)
    model.cfg = cfg
    if "shortlist" in tensors:
        model.shortlist = tensors["shortlist"].clone()
    expected = {k: v.shape for k, v in model.state_dict().items() if k != TIED}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k}: {tuple(tensors[k].shape)} in the file, {tuple(expected[k])} from config.json"
             for k in sorted(set(expected) & set(tensors)) if tensors[k].shape != expected[k]]
    if missing or unexpected or wrong:
        parts = [f"missing tensors {_short(missing)}" if missing else "",
                 f"unexpected tensors {_short(unexpected)}" if unexpected else "",
                 f"shape mismatch {_short(wrong)}" if wrong else ""]
        raise CheckpointError(f"{weights} does not match {ckpt / 'config.json'}: " + "; ".join(p for p in parts if p))
    model.load_state_dict(tensors, strict=False)  # TIED follows the embedding
    model.decoder.tie_weights()
    return model.to(device).eval(), tokenizer, meta


def _short(items: list, n: int = 6) -> str:
    return str(items[:n])[:-1] + (f", ... ({len(items)} in all)]" if len(items) > n else "]")
