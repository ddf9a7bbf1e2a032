"""PLIP's weight files inside a run's checkpoints (the run directory itself is ``plip_runtime.runs``'s)::

    RUN/checkpoints/step-000100/
        model.safetensors            the PLIP model (what embed/eval load)
        tasks.safetensors            the pretext-task heads (TIC decoder, IAP predictor)
        trainer.pt, state.json       the run machinery's (resume state; completion marker)
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from plip_runtime.weights import read_state_dict

MODEL_FILE, TASKS_FILE = "model.safetensors", "tasks.safetensors"


def tensors_of(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict ready for safetensors: CPU, contiguous, and no two tensors sharing storage (tied weights and
    views are cloned: safetensors refuses shared storage)."""
    seen, out = set(), {}
    for key, value in state.items():
        value = value.detach().to("cpu").contiguous()
        pointer = value.untyped_storage().data_ptr()
        if pointer in seen and value.numel():
            value = value.clone()
        seen.add(pointer)
        out[key] = value
    return out


def write_weights(directory: Path, model: torch.nn.Module, tasks: torch.nn.Module | None, step: int) -> None:
    """``model.safetensors`` (+ ``tasks.safetensors`` when there are task heads) into a checkpoint directory."""
    save_file(tensors_of(model.state_dict()), str(Path(directory) / MODEL_FILE), metadata={"step": str(step)})
    if tasks is not None:
        save_file(tensors_of(tasks.state_dict()), str(Path(directory) / TASKS_FILE), metadata={"step": str(step)})


def load_module(module: torch.nn.Module, path: Path) -> None:
    """Strict load with a message naming the file and the mismatch (see models.load_state_dict_checked)."""
    from .models import load_state_dict_checked

    load_state_dict_checked(module, read_state_dict(path), source=str(path))  # a truncated file is named
