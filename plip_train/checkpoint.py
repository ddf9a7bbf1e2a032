"""Run directories and checkpoints.

::

    RUN/run.json                     config, dataset id, code version, step, latest checkpoint
    RUN/checkpoints/step-000100/
        model.safetensors            the PLIP model (what embed/eval load)
        tasks.safetensors            the pretext-task heads (TIC decoder, IAP predictor)
        trainer.pt                   optimizer, LR schedule, grad scaler, RNG states (resume only)
        state.json                   step, epoch; written last, so its presence marks a complete checkpoint
    RUN/metrics.jsonl, RUN/tb/       logs

A checkpoint directory is written under a temporary name and renamed, so a crash mid-write
leaves the previous checkpoint as the latest complete one.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from plip_runtime.version import code_version  # noqa: F401  (re-exported: eval, embed, convert)

RUN_FILE = "run.json"
CKPT_DIR = "checkpoints"


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage (tied weights) and non-contiguous views
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def save_checkpoint(run_dir: Path, step: int, epoch: float, model, tasks, trainer_state: dict,
                    keep: int = 2) -> Path:
    """Write ``checkpoints/step-NNNNNN`` atomically; keep the newest ``keep`` checkpoints."""
    root = Path(run_dir) / CKPT_DIR
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_tensors(model), tmp / "model.safetensors", metadata={"step": str(step)})
    save_file(_tensors(tasks), tmp / "tasks.safetensors", metadata={"step": str(step)})
    torch.save(trainer_state, tmp / "trainer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "epoch": epoch}))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in complete_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete_checkpoints(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / "state.json").exists())


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def load_module(module: torch.nn.Module, path: Path) -> None:
    """Strict load with a message naming the file and the mismatch (see models.load_state_dict_checked)."""
    from .models import load_state_dict_checked

    load_state_dict_checked(module, load_file(str(path)), source=str(path))


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_run_file(run_dir: Path, info: dict) -> None:
    path = Path(run_dir) / RUN_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=1, default=str))
    tmp.replace(path)


def read_run_file(run_dir: Path) -> dict:
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{run_dir}: no {RUN_FILE}; this is not a plip training run directory "
                                "(plip train --out RUN writes one)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); the run directory is damaged") from e
