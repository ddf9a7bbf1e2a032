"""One typed configuration for a pre-training run: model, tasks, data, optimizer, schedule.

Shipped configs live in ``plip_train/configs/<name>.json``; their ``model`` entry is a model config
name (``plip_train/models/configs``) or an inline dict. Every dataclass validates itself, so a bad
value fails at load time with the field named, not an hour into a run. Paper defaults
(docs/reimplementation.md#optimizer-and-schedule) are the defaults here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plip_runtime.config import ConfigBase, ConfigError, apply_override, read_json
from plip_runtime.runs import TrainArgs

from .data.transforms import SYNTH_PEDES_MEAN, SYNTH_PEDES_STD

CONFIGS_DIR = Path(__file__).parent / "configs"
UNITS = ("epoch", "step")
SCHEDULES = ("milestones", "plateau")


@dataclass
class DataConfig(ConfigBase):
    where = "data"
    batch_size: int = 512  # global images per optimizer step (paper: 512 on 4 GPUs)
    images_per_identity: int = 4  # K of the P×K identity-aware batches
    window_row_groups: int = 32  # row groups planned (and cached per worker) together
    split: str | None = "train"  # rows of this split train; None = every row
    caption_kinds: list[str] | None = None  # e.g. ["prompt"] for the ablation; None = all kinds
    hflip: float = 0.5
    mean: list[float] = field(default_factory=lambda: list(SYNTH_PEDES_MEAN))
    std: list[float] = field(default_factory=lambda: list(SYNTH_PEDES_STD))
    num_workers: int = 2  # DataLoader processes (plip train --workers overrides it for one run)
    verify: str = "full"  # full | quick | none: how the dataset is checked before training

    def validate(self) -> None:
        self.require_int("images_per_identity", 1)
        self.require("batch_size", _is_int(self.batch_size) and self.batch_size > 0
                     and self.batch_size % self.images_per_identity == 0,
                     f"must be a positive multiple of data.images_per_identity ({self.images_per_identity})")
        self.require_int("window_row_groups", 1)
        self.require_number("hflip", 0.0, 1.0)
        for name in ("mean", "std"):
            self.require(name, isinstance(getattr(self, name), (list, tuple)) and len(getattr(self, name)) == 3,
                         "needs 3 values (RGB)")
        self.require_choice("verify", ("full", "quick", "none"))
        self.require_int("num_workers", 0)


@dataclass
class OptimConfig(ConfigBase):
    where = "optim"
    name: str = "adan"  # adan (timm.optim.Adan) | adamw | adam (torch's, L2 weight decay: the BoT recipe)
    lr: float = 2e-3
    text_lr_scale: float = 0.1  # the BERT group trains at lr × 0.1 (paper)
    head_lr_scale: float = 1.0  # the task heads (pretext heads, the fine-tune's identity classifier) at lr × this
    weight_decay: float = 0.02
    betas: list[float] = field(default_factory=lambda: [0.98, 0.92, 0.99])
    eps: float = 1e-8
    max_grad_norm: float | None = None  # the paper uses no clipping
    schedule: str = "milestones"  # milestones: x gamma at each milestone | plateau: x gamma when validation stalls
    patience: int = 4  # plateau: validations without a lower validation loss before lr x gamma (torch's default 10)
    unit: str = "epoch"  # what warmup and milestones count: epoch | step
    warmup: float = 10  # linear warm-up length, in `unit`s
    milestones: list[float] = field(default_factory=lambda: [30, 50])  # ×gamma at each, in `unit`s
    gamma: float = 0.1

    def validate(self) -> None:
        self.require_choice("name", ("adan", "adamw", "adam"))
        self.require_choice("unit", UNITS)
        self.require_number("lr", 0.0, lo_open=True)
        self.require_number("text_lr_scale", 0.0)
        self.require_number("head_lr_scale", 0.0)
        self.require("betas", isinstance(self.betas, (list, tuple)) and len(self.betas) == (
            3 if self.name == "adan" else 2), f"needs {3 if self.name == 'adan' else 2} values for {self.name}")
        self.require("milestones", list(self.milestones) == sorted(self.milestones), "must be increasing")
        self.require_choice("schedule", SCHEDULES)
        self.require("milestones", self.schedule == "milestones" or not self.milestones,
                     "must be empty with schedule 'plateau' (the validation loss decides when lr drops)")
        self.require_int("patience", 0)
        self.require_number("max_grad_norm", 0.0, lo_open=True, optional=True)


@dataclass
class TrainConfig(TrainArgs):
    """The shared ``train`` section (budget, precision, seed, cadence) and what only pre-training adds."""

    epochs: float = 70
    grad_accum: int = 1  # micro-batches per optimizer step (the global batch is data.batch_size either way)
    channels_last: bool = True  # NHWC images and convolutions (faster on GPUs and on CPUs with oneDNN)

    def validate(self) -> None:
        super().validate()
        self.require_int("grad_accum", 1)
        self.require_bool("channels_last")


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

        check_sections(cls, d)
        return cls(name=d.get("name", "custom"), model=load_model_config(d["model"]),
                   tasks=TasksConfig.from_dict(d.get("tasks", {})),
                   data=DataConfig.from_dict(d.get("data", {})), optim=OptimConfig.from_dict(d.get("optim", {})),
                   train=TrainConfig.from_dict(d.get("train", {})))

    def to_dict(self) -> dict:
        return {"name": self.name, "model": self.model.to_dict(), "tasks": self.tasks.to_dict(),
                "data": self.data.to_dict(), "optim": self.optim.to_dict(), "train": self.train.to_dict()}


def check_sections(cls, d: dict) -> None:
    """``ConfigError`` naming the sections of config document ``d`` that the dataclass ``cls`` does not have."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = set(d) - set(names) - {"_comment"}
    if unknown:
        raise ConfigError(f"unknown config section(s) {sorted(unknown)}; expected {', '.join(names)}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def list_configs() -> list[str]:
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.json"))


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> PlipConfig:
    """A shipped config name or a JSON file, with ``section.key=value`` overrides (JSON values)."""
    path = Path(name_or_path)
    if not path.suffix and (CONFIGS_DIR / f"{name_or_path}.json").exists():
        path = CONFIGS_DIR / f"{name_or_path}.json"
    if not path.exists():
        raise ConfigError(f"config {str(name_or_path)!r}: neither a shipped config ({', '.join(list_configs())}) "
                         "nor a JSON file")
    d = read_json(path)
    d.setdefault("name", path.stem)
    for item in overrides or []:
        apply_model_override(d, item)
    return PlipConfig.from_dict(d)


def apply_model_override(d: dict, item: str) -> None:
    """``--set`` on a config document whose ``model`` is a model config name: expand the name first, so that
    ``model.text.bert.hidden_dropout_prob=0`` edits inside it."""
    if item.partition("=")[0].strip().startswith("model.") and isinstance(d.get("model"), str):
        from .models import load_model_config

        d["model"] = load_model_config(d["model"]).to_dict()
    apply_override(d, item)
