"""One typed configuration for a pre-training run: model, tasks, data, optimizer, schedule.

Shipped configs live in ``plip_train/configs/<name>.json``; their ``model`` entry is a model config
name (``plip_train/models/configs``) or an inline dict. Every dataclass validates itself, so a bad
value fails at load time with the field named, not an hour into a run. Paper defaults
(docs/reimplementation.md#optimizer-and-schedule) are the defaults here.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data.transforms import SYNTH_PEDES_MEAN, SYNTH_PEDES_STD

CONFIGS_DIR = Path(__file__).parent / "configs"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
UNITS = ("epoch", "step")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass
class DataConfig:
    batch_size: int = 512  # global images per optimizer step (paper: 512 on 4 GPUs)
    images_per_identity: int = 4  # K of the P×K identity-aware batches
    window_row_groups: int = 32  # row groups planned (and cached per worker) together
    split: str | None = "train"  # rows of this split train; None = every row
    caption_kinds: list[str] | None = None  # e.g. ["prompt"] for the ablation; None = all kinds
    hflip: float = 0.5
    mean: list[float] = field(default_factory=lambda: list(SYNTH_PEDES_MEAN))
    std: list[float] = field(default_factory=lambda: list(SYNTH_PEDES_STD))
    num_workers: int = 2
    verify: str = "full"  # full | quick | none: how the dataset is checked before training

    def __post_init__(self):
        _check(self.batch_size > 0 and self.batch_size % self.images_per_identity == 0,
               f"data.batch_size ({self.batch_size}) must be a positive multiple of data.images_per_identity "
               f"({self.images_per_identity})")
        _check(0.0 <= self.hflip <= 1.0, "data.hflip is a probability in [0, 1]")
        _check(len(self.mean) == 3 and len(self.std) == 3, "data.mean and data.std need 3 values (RGB)")
        _check(self.verify in ("full", "quick", "none"), "data.verify is one of full, quick, none")
        _check(self.num_workers >= 0, "data.num_workers must be >= 0")


@dataclass
class OptimConfig:
    name: str = "adan"  # adan (timm.optim.Adan) | adamw
    lr: float = 2e-3
    text_lr_scale: float = 0.1  # the BERT group trains at lr × 0.1 (paper)
    weight_decay: float = 0.02
    betas: list[float] = field(default_factory=lambda: [0.98, 0.92, 0.99])
    eps: float = 1e-8
    max_grad_norm: float | None = None  # the paper uses no clipping
    unit: str = "epoch"  # what warmup and milestones count: epoch | step
    warmup: float = 10  # linear warm-up length, in `unit`s
    milestones: list[float] = field(default_factory=lambda: [30, 50])  # ×gamma at each, in `unit`s
    gamma: float = 0.1

    def __post_init__(self):
        _check(self.name in ("adan", "adamw"), f"optim.name {self.name!r} is not one of adan, adamw")
        _check(self.unit in UNITS, f"optim.unit {self.unit!r} is not one of {UNITS}")
        _check(self.lr > 0 and self.text_lr_scale >= 0, "optim.lr must be > 0 and optim.text_lr_scale >= 0")
        _check(len(self.betas) == (3 if self.name == "adan" else 2),
               f"optim.betas needs {3 if self.name == 'adan' else 2} values for {self.name}")
        _check(list(self.milestones) == sorted(self.milestones), "optim.milestones must be increasing")


@dataclass
class TrainConfig:
    epochs: float = 70
    max_steps: int | None = None  # if set, the run (and its schedule) is this many steps instead of epochs
    grad_accum: int = 1
    precision: str = "auto"  # auto = bf16 where the device has it, else fp32
    channels_last: bool = True
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 1000  # steps; a checkpoint is also written at the end
    keep_checkpoints: int = 2

    def __post_init__(self):
        _check(self.precision in PRECISIONS, f"train.precision {self.precision!r} is not one of {PRECISIONS}")
        _check(self.grad_accum >= 1, "train.grad_accum must be >= 1")
        _check(self.max_steps is None or self.max_steps > 0, "train.max_steps must be > 0")
        _check(self.epochs > 0, "train.epochs must be > 0")
        _check(self.checkpoint_every > 0 and self.log_every > 0, "train.checkpoint_every and log_every must be > 0")


@dataclass
class PlipConfig:
    name: str
    model: Any  # plip_train.models.ModelConfig
    tasks: Any  # plip_train.tasks.TasksConfig
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, d: dict) -> "PlipConfig":
        from .models import load_model_config
        from .tasks.config import TasksConfig

        unknown = set(d) - {f.name for f in dataclasses.fields(cls)} - {"_comment"}
        _check(not unknown, f"unknown config section(s) {sorted(unknown)}; expected name, model, tasks, data, "
                            "optim, train")
        return cls(name=d.get("name", "custom"), model=load_model_config(d["model"]),
                   tasks=TasksConfig.from_dict(d.get("tasks", {})),
                   data=_build(DataConfig, d.get("data", {}), "data"),
                   optim=_build(OptimConfig, d.get("optim", {}), "optim"),
                   train=_build(TrainConfig, d.get("train", {}), "train"))

    def to_dict(self) -> dict:
        return {"name": self.name, "model": self.model.to_dict(), "tasks": self.tasks.to_dict(),
                "data": dataclasses.asdict(self.data), "optim": dataclasses.asdict(self.optim),
                "train": dataclasses.asdict(self.train)}


def _build(cls, values: dict, section: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names - {"_comment"}
    _check(not unknown, f"{section}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    return cls(**{k: v for k, v in values.items() if k in names})


def list_configs() -> list[str]:
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.json"))


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> PlipConfig:
    """A shipped config name or a JSON file, with ``section.key=value`` overrides (JSON values)."""
    path = Path(name_or_path)
    if not path.suffix and (CONFIGS_DIR / f"{name_or_path}.json").exists():
        path = CONFIGS_DIR / f"{name_or_path}.json"
    if not path.exists():
        raise ValueError(f"config {str(name_or_path)!r}: neither a shipped config ({', '.join(list_configs())}) "
                         "nor a JSON file")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"config {path}: not valid JSON ({e})") from e
    d.setdefault("name", path.stem)
    for item in overrides or []:
        apply_override(d, item)
    return PlipConfig.from_dict(d)


def apply_override(d: dict, item: str) -> None:
    """``optim.lr=1e-3`` or ``model.text.bert.hidden_dropout_prob=0`` (value parsed as JSON, else a string)."""
    key, sep, raw = item.partition("=")
    _check(bool(sep and key), f"override {item!r} is not of the form section.key=value")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    *parents, last = key.split(".")
    node = d
    for p in parents:
        if isinstance(node.get(p), str) and p == "model":  # a model config name: expand it to edit inside
            from .models import load_model_config

            node[p] = load_model_config(node[p]).to_dict()
        node = node.setdefault(p, {})
    node[last] = value
