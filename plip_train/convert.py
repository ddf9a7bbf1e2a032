"""Import the released PLIP checkpoint (``PLIP_MRN50.pth.tar``: ModifiedResNet-50 with the attention pool at
256x128 + bert-base-uncased with its pooler; docs/reimplementation.md#released-checkpoint) as a run directory that
``plip eval``, ``plip embed`` and :func:`plip_train.embed.load` use like any training run::

    RUN/run.json                                  config paper-rn50-bert with text.pooling = pooler,
                                                  "converted_from": {path, sha256, epoch, dropped keys}
    RUN/checkpoints/step-000000/model.safetensors the PlipModel state dict (strictly checked)
    RUN/checkpoints/step-000000/state.json

The file is read with ``torch.load(weights_only=True)``: tensors and plain containers only, no code runs. A
checkpoint that pickles other objects is refused with the reason; ``trust_pickle=True`` (``--trust-pickle``) loads
it with ``weights_only=False``, which can run arbitrary code from the file: only for files from a trusted source.

The evaluation protocol of the official code then follows from the config: resize to 256x128 bicubic,
SYNTH-PEDES mean/std, bert-base-uncased WordPiece (the vocabulary shipped with the MiniLM package is the same
30,522-token BERT-uncased vocabulary) padded to 64 tokens, the image embedding from the attention pool and the
text embedding from BERT's pooler.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import warnings
from pathlib import Path

import torch

from plip_runtime.runs import RUN_FILE, RUN_FORMAT, write_checkpoint, write_run_file
from plip_runtime.version import code_version

from .checkpoint import tensors_of

_log = logging.getLogger(__name__)

OFFICIAL_CONFIG = "paper-rn50-bert"
TOP_LEVEL_KEYS = ("ImgEncoder_state_dict", "TxtEncoder_state_dict")


def load_official_checkpoint(path: str | os.PathLike, *, trust_pickle: bool = False) -> dict:
    """``torch.load(path, map_location="cpu", weights_only=True)``, with the failure explained. With
    ``trust_pickle`` a file that holds other Python objects is loaded with ``weights_only=False`` (runs code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "Unsupported global" not in text:
            raise ValueError(f"{path}: not a readable torch checkpoint ({_reason(text)})") from e
        if not trust_pickle:
            raise ValueError(f"{path}: the checkpoint pickles Python objects other than tensors and plain containers "
                             f"({_reason(text)}), so the safe loader (torch.load weights_only=True) refuses it. If "
                             "you trust where the file comes from, re-run with --trust-pickle (loads it with "
                             "weights_only=False, which can execute code stored in the file)") from e
        _log.warning("%s: loading with weights_only=False (--trust-pickle): the file may run code", path)
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"{path}: not a readable torch checkpoint ({e})") from e


def _reason(text: str) -> str:
    i = text.find("WeightsUnpickler error:")
    line = text[i + len("WeightsUnpickler error:"):] if i >= 0 else text
    return " ".join(line.split())[:200].split(" Please use")[0].rstrip(".")


def _check_official(ckpt, path: Path) -> None:
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a dict with {', '.join(TOP_LEVEL_KEYS)} (the official PLIP checkpoint "
                         f"layout), got {type(ckpt).__name__}")
    missing = [k for k in TOP_LEVEL_KEYS if k not in ckpt]
    if missing:
        keys = sorted(map(str, ckpt))[:8]
        hint = (" (this looks like a plain state dict; a PlipModel state dict belongs in a run directory's "
                "model.safetensors)" if keys and all(isinstance(v, torch.Tensor) for v in ckpt.values()) else "")
        raise ValueError(f"{path}: not an official PLIP checkpoint: no {', '.join(missing)} (top-level keys: "
                         f"{keys}){hint}")
    for name in TOP_LEVEL_KEYS:
        sd = ckpt[name]
        if not isinstance(sd, dict):
            raise ValueError(f"{path}: {name} is a {type(sd).__name__}, not a state dict")
        bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise ValueError(f"{path}: {name} has entries that are not tensors: {bad[:4]}")


def _bert_dir_overrides(bert_dir: Path, text_sd: dict) -> list[str]:
    """``--bert-dir``: take the tokenizer vocabulary from a local bert-base-uncased directory, after checking that its
    config.json (if any) describes the checkpoint's BERT."""
    if not (bert_dir / "vocab.txt").is_file():
        raise FileNotFoundError(f"--bert-dir {bert_dir}: no vocab.txt (give a local bert-base-uncased directory)")
    cfg_file = bert_dir / "config.json"
    if cfg_file.is_file():
        cfg = json.loads(cfg_file.read_text())
        words = next((v for k, v in text_sd.items() if k.endswith("embeddings.word_embeddings.weight")), None)
        if words is not None and (cfg.get("vocab_size"), cfg.get("hidden_size")) != tuple(words.shape):
            raise ValueError(f"--bert-dir {bert_dir}: its config.json (vocab_size {cfg.get('vocab_size')}, hidden_size "
                             f"{cfg.get('hidden_size')}) does not match the checkpoint's word embeddings "
                             f"{tuple(words.shape)}")
    return [f"model.text.tokenizer={json.dumps(str(bert_dir.resolve()))}"]


def check_loads(cfg, state: dict, source: str) -> None:
    """Strict shape/key check of ``state`` against the model of ``cfg`` (built on the meta device: no memory)."""
    from .models import build_model, load_state_dict_checked

    with torch.device("meta"):
        model = build_model(cfg.model, load_pretrained=False)
    with warnings.catch_warnings():  # copying into meta parameters is a no-op, which is all a check needs
        warnings.simplefilter("ignore")
        load_state_dict_checked(model, state, source)


def convert_official(checkpoint: str | os.PathLike, out: str | os.PathLike, *, config: str = OFFICIAL_CONFIG,
                     bert_dir: str | os.PathLike | None = None, trust_pickle: bool = False) -> dict:
    """Convert an official PLIP checkpoint into the run directory ``out`` (see the module docstring). ``config`` is
    the pre-training config whose model the checkpoint holds (default paper-rn50-bert; ``text.pooling`` is set to
    ``pooler``, the released model's text embedding). Returns a summary dict."""
    from safetensors.torch import save_file

    from synth_pedes import file_sha256

    from .config import load_config
    from .models import convert_official_checkpoint

    path, out = Path(checkpoint), Path(out)
    if (out / RUN_FILE).exists():
        raise ValueError(f"{out} already holds a run (run.json); choose a new --out directory")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; choose a new --out directory")
    ckpt = load_official_checkpoint(path, trust_pickle=trust_pickle)
    _check_official(ckpt, path)
    overrides = ['model.text.pooling="pooler"']
    if bert_dir is not None:
        overrides += _bert_dir_overrides(Path(bert_dir), ckpt["TxtEncoder_state_dict"])
    cfg = load_config(config, overrides)
    state = convert_official_checkpoint(ckpt)
    check_loads(cfg, state, str(path))

    n_src = len(ckpt["ImgEncoder_state_dict"]) + len(ckpt["TxtEncoder_state_dict"])
    dropped_text = sorted(k for k in ckpt["TxtEncoder_state_dict"]
                          if "text_tower." + (k[7:] if k.startswith("module.") else k) not in state)
    epoch = ckpt.get("epoch")
    epoch = int(epoch) if isinstance(epoch, (int, float)) or (isinstance(epoch, torch.Tensor) and epoch.numel() == 1) \
        else None
    sha = file_sha256(path)
    converted_from = {"path": str(path.resolve()), "sha256": sha, "format": "official PLIP checkpoint",
                      "epoch": epoch, "tensors": n_src, "trusted_pickle": bool(trust_pickle),
                      "dropped": {"text_keys": dropped_text,
                                  "top_level": sorted(str(k) for k in ckpt if k not in TOP_LEVEL_KEYS)}}

    final = write_checkpoint(out, 0, epoch, lambda directory: save_file(
        tensors_of(state), str(directory / "model.safetensors"), metadata={"step": "0", "converted_from": sha}))
    write_run_file(out, {
        "format": RUN_FORMAT, "kind": "plip-pretrain", "config": cfg.to_dict(), "step": 0, "total_steps": 0,
        "steps_per_epoch": None, "finished": True, "checkpoint": str(final.relative_to(out)),
        "datasets": [{"path": None, "id": None,
                      "name": "SYNTH-PEDES (the official pre-training; not in this system)"}],
        "converted_from": converted_from, "code": code_version()})
    params = sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))
    return {"run": out, "checkpoint": final, "config": cfg.name, "model": cfg.model.name, "tensors": len(state),
            "parameters": params, "sha256": sha, "epoch": epoch, "dropped": converted_from["dropped"]}
