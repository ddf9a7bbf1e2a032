"""The typed configuration of a text-ReID fine-tune: the model of its initialisation, and the official CMPM/C
recipe (``Downstreams/CMPM-C`` of the PLIP repository; docs/evaluation.md#fine-tuning-protocols) as defaults.

The document reuses the pre-training sections (``data``, ``optim``, ``train``, plus ``model`` taken from the run
or config it starts from) and adds ``finetune`` (protocol, loss, selection, few-shot subset) and ``init`` (where
the weights come from). ``RECIPE`` holds the values where the recipe differs from the pre-training defaults.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from plip_runtime.config import ConfigBase

from ..config import DataConfig, OptimConfig, TrainConfig, apply_model_override, check_sections

PROTOCOLS = ("finetune", "linear-probe")
LOSSES = ("cmpm+cmpc", "cmpm")
FRACTION_OF = ("identities", "images")

# The official downstream recipe (train.py of Downstreams/CMPM-C) where it differs from pre-training's defaults.
RECIPE = {
    "data": {"batch_size": 32,  # 32 images per GPU (the official ran 4 GPUs: --batch-size 128 there)
             "images_per_identity": 1,  # a random sampler, as the official DistributedSampler (no P x K batches)
             "split": "train", "hflip": 0.5},
    "optim": {"name": "adan", "lr": 1e-4, "weight_decay": 0.02, "betas": [0.98, 0.92, 0.99], "eps": 1e-8,
              "text_lr_scale": 1.0,  # the whole BERT at the same lr as the image encoder
              "head_lr_scale": 10.0,  # the CMPC classifier W at lr x 10
              "unit": "epoch", "warmup": 5, "milestones": [20], "gamma": 0.1},
    "train": {"epochs": 30, "checkpoint_every": 1000, "log_every": 50},
}


@dataclass
class FinetuneConfig(ConfigBase):
    """What a text-ReID fine-tune trains and how its checkpoint is chosen."""

    where = "finetune"
    protocol: str = "finetune"  # finetune: both encoders train; linear-probe: frozen towers, linear maps trained
    loss: str = "cmpm+cmpc"  # cmpm+cmpc (the official recipe) | cmpm (the paper's CMPM-only row)
    epsilon: float = 1e-8  # CMPM's log(q + eps) (the official args.epsilon)
    gather: bool = True  # CMPM/CMPC over the global batch under DDP (the official computes them per GPU)
    one_caption_per_sample: bool = True  # an epoch is one pass over image-caption pairs (the official train-depart)
    caption_styles: list[str] | None = None  # train on captions of these styles only (the cross-style bench)
    eval_every: float = 2  # epochs between validations (the official test.py: every second epoch); and the last step
    select_on: str | None = "val"  # split the checkpoint is selected on (best R1, ties: later); null: the last one
    train_fraction: float = 1.0  # few-shot: train on this fraction ...
    fraction_of: str = "identities"  # ... of the identities, or of every identity's images (the LUPerson protocol)
    fraction_seed: int = 0  # which subset: the same seed picks the same rows (written to RUN/subset.json)

    def validate(self) -> None:
        self.require_choice("protocol", PROTOCOLS)
        self.require_choice("loss", LOSSES)
        self.require_number("epsilon", 0.0, lo_open=True)
        self.require_bool("gather")
        self.require_bool("one_caption_per_sample")
        self.require("caption_styles", self.caption_styles is None or (
            isinstance(self.caption_styles, list) and all(isinstance(x, str) for x in self.caption_styles)),
            "must be a list of style names or null")
        self.require_number("eval_every", 0.0, lo_open=True)
        self.require("select_on", self.select_on is None or (isinstance(self.select_on, str) and self.select_on
                                                             and self.select_on != "test"),
                     "must be a validation split name or null (the last checkpoint); never test")
        self.require_number("train_fraction", 0.0, 1.0, lo_open=True)
        self.require_choice("fraction_of", FRACTION_OF)
        self.require_int("fraction_seed", 0)


class RunConfig:
    """What the fine-tunes' whole configurations share: ``name``, ``model`` (a ModelConfig), ``init`` (a record) and
    typed sections (``SECTIONS``: field -> config class), read from and written to ``run.json``'s ``config``."""

    SECTIONS: dict = {}

    @classmethod
    def from_dict(cls, d: dict):
        from ..models import load_model_config

        check_sections(cls, d)
        sections = {name: kind.from_dict(d.get(name, {})) for name, kind in cls.SECTIONS.items()}
        return cls(name=d.get("name", "custom"), model=load_model_config(d["model"]), init=dict(d["init"]),
                   **sections)

    def to_dict(self) -> dict:
        return {"name": self.name, "model": self.model.to_dict(), "init": self.init,
                **{name: getattr(self, name).to_dict() for name in self.SECTIONS}}


@dataclass
class TextReidConfig(RunConfig):
    """A text-ReID fine-tune's whole configuration (``run.json``'s ``config``)."""

    name: str
    model: Any  # plip_train.models.ModelConfig (the initialisation's, text tower fully trainable)
    init: dict  # {"kind": "run"|"config", "source": path or config name, "checkpoint": path or None, "step"}
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    SECTIONS = {"data": DataConfig, "optim": OptimConfig, "train": TrainConfig, "finetune": FinetuneConfig}


@dataclass
class BotConfig(ConfigBase):
    """The BoT recipe's losses, augmentations and evaluation (Luo et al., reid-strong-baseline,
    softmax_triplet_with_center; docs/evaluation.md#image-reid-fine-tuning)."""

    where = "reid"
    id_epsilon: float = 0.1  # label smoothing of the identity loss
    margin: float = 0.3  # batch-hard triplet margin (on the feature before the BNNeck)
    center_weight: float = 5e-4  # center loss weight; the centers train by their own SGD ...
    center_lr: float = 0.5  # ... at this lr, on gradients divided by center_weight (as BoT's trainer)
    pad: int = 10  # zero padding before the random crop back to the image size
    erasing: float = 0.5  # random erasing probability
    rerank: bool = False  # also report the final checkpoint with k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3)

    def validate(self) -> None:
        self.require_number("id_epsilon", 0.0, 1.0)
        self.require_number("margin", 0.0, lo_open=True)
        self.require_number("center_weight", 0.0)
        self.require_number("center_lr", 0.0, lo_open=True)
        self.require_int("pad", 0)
        self.require_number("erasing", 0.0, 1.0)
        self.require_bool("rerank")


# BoT's recipe (configs/softmax_triplet_with_center.yml) where it differs from pre-training's defaults
IMAGE_REID_RECIPE = {
    "data": {"batch_size": 64, "images_per_identity": 4, "split": "train", "hflip": 0.5},  # P=16 x K=4
    "optim": {"name": "adam", "lr": 3.5e-4, "weight_decay": 5e-4, "betas": [0.9, 0.999], "eps": 1e-8,
              "text_lr_scale": 1.0, "head_lr_scale": 1.0, "unit": "epoch", "warmup": 10, "milestones": [40, 70],
              "gamma": 0.1},
    "train": {"epochs": 120, "checkpoint_every": 1000, "log_every": 50},
}


@dataclass
class ImageReidConfig(RunConfig):
    """An image-ReID fine-tune's whole configuration (``run.json``'s ``config``)."""

    name: str
    model: Any  # the initialisation's ModelConfig with the BNNeck (projection "bnneck"); the text tower frozen
    init: dict
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    reid: BotConfig = field(default_factory=BotConfig)

    SECTIONS = {"data": DataConfig, "optim": OptimConfig, "train": TrainConfig, "reid": BotConfig}


@dataclass
class ParConfig(ConfigBase):
    """Attribute recognition: the Rethinking_of_PAR baseline's loss, augmentation and evaluation
    (docs/evaluation.md#attribute-recognition-fine-tuning)."""

    where = "par"
    protocol: str = "finetune"  # finetune: the image encoder trains too; linear-probe: frozen encoder, the layer alone
    weighted: bool = True  # the repository's sample weights (exp(1 - r) on positives, exp(r) on negatives); false: BCE
    threshold: float = 0.5  # a probability above it predicts the attribute (the repository's metrics use 0.5)
    pad: int = 10  # zero padding before the random crop back to the image size (its 'base' train transform)
    eval_every: float = 1  # epochs between validations (the repository validates every epoch); and the last step
    select_on: str | None = "val"  # split the checkpoint is selected on (best mA, ties: later); null: the last one

    def validate(self) -> None:
        self.require_choice("protocol", PROTOCOLS)
        self.require_bool("weighted")
        self.require("threshold", isinstance(self.threshold, (int, float)) and 0 < self.threshold < 1,
                     "must be a number strictly between 0 and 1")
        self.require_int("pad", 0)
        self.require_number("eval_every", 0.0, lo_open=True)
        self.require("select_on", self.select_on is None or (isinstance(self.select_on, str) and self.select_on
                                                             and self.select_on != "test"),
                     "must be a validation split name or null (the last checkpoint); never test")


# Rethinking_of_PAR's recipe (configs/pedes_baseline/*.yaml over configs/default.py) where it differs from
# pre-training's defaults
ATTRIBUTES_RECIPE = {
    "data": {"batch_size": 64, "images_per_identity": 1, "split": "train", "hflip": 0.5},  # a shuffled loader
    "optim": {"name": "adam", "lr": 1e-4, "weight_decay": 5e-4, "betas": [0.9, 0.999], "eps": 1e-8,
              "text_lr_scale": 1.0, "head_lr_scale": 1.0,  # LR_FT = LR_NEW = 1e-4
              "max_grad_norm": 10.0,  # TRAIN.CLIP_GRAD: clip_grad_norm_(..., max_norm=10)
              "schedule": "plateau", "patience": 4, "gamma": 0.1,  # ReduceLROnPlateau(factor=0.1, patience=4)
              "unit": "epoch", "warmup": 0, "milestones": []},
    "train": {"epochs": 30, "checkpoint_every": 1000, "log_every": 50},
}
PAR_ASPECT = 0.75  # the repository's 256 x 192 (height x width): the fine-tune keeps the height, width = 3/4 of it


@dataclass
class AttributesConfig(RunConfig):
    """An attribute-recognition fine-tune's whole configuration (``run.json``'s ``config``)."""

    name: str
    model: Any  # the initialisation's ModelConfig at the attribute image size; the text tower frozen
    init: dict
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    par: ParConfig = field(default_factory=ParConfig)

    SECTIONS = {"data": DataConfig, "optim": OptimConfig, "train": TrainConfig, "par": ParConfig}


# task -> (config class, recipe, the task's own section)
TASKS = {"text-reid": (TextReidConfig, RECIPE, "finetune"), "image-reid": (ImageReidConfig, IMAGE_REID_RECIPE, "reid"),
         "attributes": (AttributesConfig, ATTRIBUTES_RECIPE, "par")}


def attribute_image_size(image_size) -> list[int]:
    """The attribute fine-tune's image size for a model trained at ``image_size``: the same height, the width
    3/4 of it rounded to a multiple of 32 (256 x 128 -> 256 x 192)."""
    height = int(image_size[0])
    return [height, max(32, round(height * PAR_ASPECT / 32) * 32)]


def recipe_config(init_config: dict, init: dict, overrides: list[str] | None = None, task: str = "text-reid"):
    """The ``task``'s fine-tune config for a model whose pre-training config document is ``init_config`` (a ``plip
    train`` run's, or a shipped config's): its model, its image statistics and memory layout, the task's recipe,
    then ``section.key=value`` overrides (``--set``). Text ReID trains every text layer (the official downstream
    model); image ReID adds the BNNeck and freezes the text tower it does not use; attribute recognition trains at
    the 4:3 size of Rethinking_of_PAR (the initialisation's size goes to ``init``: its attention-pool positions are
    resized when the weights load)."""
    from ..models import load_model_config

    cls, recipe, section = TASKS[task]
    model = load_model_config(init_config["model"]).to_dict()
    if task == "text-reid":
        model["text"]["trainable_layers"] = "all"
    elif task == "image-reid":
        model["projection"] = "bnneck"
    else:
        init = {**init, "image_size": list(model["image"]["image_size"])}
        model["image"]["image_size"] = attribute_image_size(model["image"]["image_size"])
    data, train = init_config.get("data", {}), init_config.get("train", {})
    doc = {"name": task, "model": model, "init": init,
           "data": {**recipe["data"], **{k: data[k] for k in ("mean", "std") if k in data}},
           "optim": dict(recipe["optim"]), "train": {**recipe["train"], **{k: train[k] for k in
                                                                          ("channels_last",) if k in train}},
           section: {}}
    for item in overrides or []:
        apply_model_override(doc, item)
    if task == "text-reid" and doc[section].get("protocol") == "linear-probe":
        doc["model"]["projection"] = "linear"  # what the probe trains; the towers stay frozen
    return cls.from_dict(doc)


def resolve_init(init_run=None, init_config: str | None = None, step: int | None = None) -> tuple[dict, dict]:
    """``(the initialisation's config document, the init record)`` for ``--init RUN [--step N]`` (a PLIP run:
    ``plip train``, ``plip convert official``, or a fine-tune) or ``--config NAME`` (a config's initial weights)."""
    import json

    from plip_runtime.runs import PLIP_MODEL_KINDS, check_run_kind, read_run_file, resolve_checkpoint

    from ..config import load_config

    if (init_run is None) == (init_config is None):
        raise ValueError("give one initialisation: --init RUN (a PLIP run) or --config NAME (a config's initial "
                         "weights, the no-pre-training baseline)")
    if init_run is None:
        return load_config(init_config).to_dict(), {"kind": "config", "source": init_config, "checkpoint": None,
                                                    "step": None}
    check_run_kind(init_run, PLIP_MODEL_KINDS, "--init")
    run_dir, checkpoint = resolve_checkpoint(init_run, step)
    if run_dir is None:
        raise FileNotFoundError(f"{init_run}: a checkpoint directory without its run; pass the run directory (its "
                                "run.json holds the model's config)")
    info = read_run_file(run_dir)
    init = {"kind": "run", "source": str(run_dir), "checkpoint": str(checkpoint),
            "step": json.loads((checkpoint / "state.json").read_text()).get("step"), "run_kind": info["kind"],
            "converted_from": info.get("converted_from")}
    return info["config"], init


def make_config(task: str, *, init_run=None, init_config: str | None = None, step: int | None = None,
                overrides: list[str] | None = None):
    """The ``task`` fine-tune config starting from a PLIP run (``init_run``; its latest complete checkpoint or
    ``step``) or from a config's initial weights (``init_config``: the no-pre-training baseline)."""
    init_doc, init = resolve_init(init_run, init_config, step)
    return recipe_config(init_doc, init, overrides, task)
