"""Where a process computes and in which precision: one ``resolve_device``, one ``resolve_precision``, one
``autocast`` (argument order ``(device, precision)``, as ``torch.autocast(device_type, dtype)``).

Precisions, the same four everywhere (training, captioning, recognizers, embedding):

* ``auto``: bf16 autocast where the device runs bf16 natively (CUDA since Ampere; CPUs with AVX-512 BF16 or
  AMX), fp16 autocast on an older CUDA GPU, fp32 otherwise (a CUDA device this machine cannot see included,
  so a client that dispatches to GPU workers elsewhere records the safe choice);
* ``fp32``: no autocast; ``bf16`` / ``fp16``: autocast to that dtype (training with fp16 needs the loss scaler
  of :func:`grad_scaler`; bf16 needs none).
"""
from __future__ import annotations

import contextlib
import warnings

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device | None = "auto", index: int = 0) -> torch.device:
    """The ``torch.device`` to compute on. ``None``/``"auto"``: a GPU when CUDA is available, else the CPU. A bare
    ``cuda`` (or ``auto`` on a GPU machine) means GPU ``index`` modulo the GPUs: a torchrun rank passes its local
    rank, a Dask worker its worker number, so processes spread over the GPUs. ``cuda:N`` is checked to exist."""
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device {str(device)!r} is not a device; use auto, cpu, cuda or cuda:N") from e
    if dev.type != "cuda":
        return dev
    if not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for but CUDA is not available here; use --device cpu "
                         "(or auto)")
    count = torch.cuda.device_count()
    if dev.index is None:
        return torch.device("cuda", index % count)
    if dev.index >= count:
        raise ValueError(f"device {str(device)!r}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return dev


def tune_for_speed(device: str | torch.device) -> None:
    """On a CUDA device, let cuDNN time its convolution algorithms once per input shape and pick the fastest (the
    shapes here are fixed: 256x128 images, padded text), and let fp32 matrix products use TF32. Both change
    rounding from run to run on a GPU, never what is computed; on the CPU nothing changes."""
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def cpu_supports_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (otherwise bf16 autocast is emulated and slow)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bf16_supported(device: str | torch.device) -> bool:
    """Whether bf16 autocast runs natively on ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_supports_bf16()


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``auto`` made concrete for ``device`` on this machine (see the module docstring); the others as given."""
    check_precision(precision)
    device = torch.device(device)
    if precision == "auto":
        if bf16_supported(device):
            return "bf16"
        return "fp16" if device.type == "cuda" and torch.cuda.is_available() else "fp32"
    if precision == "bf16" and not bf16_supported(device):
        # a warning, not a log line: Python shows it once per call site however many steps ask
        warnings.warn(f"bf16 autocast on {device} runs emulated (no native bf16 kernels): slower than fp32",
                      RuntimeWarning, stacklevel=3)
    return precision


def autocast_dtype(precision: str, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``; None for fp32 (no autocast)."""
    return _DTYPES.get(resolve_precision(precision, device))


def autocast(device: str | torch.device, precision: str):
    """The context every forward pass runs in: ``torch.autocast`` to the precision's dtype, or nothing for fp32."""
    device = torch.device(device)
    dtype = autocast_dtype(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: str | torch.device, precision: str) -> torch.amp.GradScaler:
    """The loss scaler a training step needs: active for fp16 (whose gradients underflow), a no-op otherwise."""
    device = torch.device(device)
    return torch.amp.GradScaler(device.type, enabled=resolve_precision(precision, device) == "fp16")


def move_batch(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    """The batch's tensors on ``device`` (non-blocking from pinned memory); 4-D image tensors in channels_last
    layout when asked. Other values pass through."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.ndim == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out
