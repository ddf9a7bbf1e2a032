"""The attribute classifier: an image backbone and one classification head per slot over a phrase vocabulary.

Model: backbone feature map -> 1x1 conv to ``head_dim`` -> per slot, the concatenation of a spatial
attention pooling (one attention map per slot, so "shoes" can look at the feet) and the global average
(``head="attention"``; ``"avg"``: the global average only) -> dropout -> linear over the slot's phrases.

Checkpoint directory: ``model.safetensors`` (weights), ``config.json`` (``{"format", "recognizer",
"config": ClassifierConfig, "num_classes", "data", ...}``), ``vocab.json`` (``{slot: [phrases]}``, index =
class id, ``unknown`` first). :func:`load_checkpoint` checks that the tensors match the config and vocab
and says which tensor does not.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from plip_runtime.device import PRECISIONS, autocast, resolve_device, resolve_precision
from synth_pedes.schema import SLOTS, UNKNOWN

from ..attributes import AttributeSet
from .backbones import build_backbone, freeze_stages
from .base import AttributePrediction, Recognizer, register
from .labels import LABEL_RULES, LABEL_SOURCES, check_vocab

_log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "spac-recognizer/1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HEADS = ("attention", "avg")
SCHEDULES = ("constant", "cosine")
DEFAULT_FREEZE = {"efficientnet_lite0": 7}  # frozen backbone stages when ClassifierConfig.freeze_stages is None
WEIGHTS_FILE, CONFIG_FILE, VOCAB_FILE = "model.safetensors", "config.json", "vocab.json"


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded (missing file, or tensors that do not match the config)."""


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture, labels and training settings of the attribute classifier. Validated on construction
    (``ValueError`` naming the field); saved in ``config.json`` next to the weights."""

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
    # labels
    labels: str = "captions"  # captions (mined with the phrase extractor) | attributes (the dataset column)
    label_rule: str = "frequent"  # frequent | specific (see spac.recognizers.labels.choose_phrase)
    caption_kinds: tuple = ("human",)  # caption kinds mined for labels
    canonical_labels: bool = True  # canonicalise mined phrases (synonyms, word order) before counting
    min_count: int = 5  # phrases seen fewer times are left out of the vocabulary (ignored by the loss)
    # training
    split: str = "train"
    epochs: int = 8
    max_steps: int | None = None
    batch_size: int = 64
    lr: float = 1e-3
    backbone_lr_scale: float = 1.0  # backbone learning rate = lr * this
    weight_decay: float = 0.05
    schedule: str = "cosine"  # constant | cosine (after warm-up)
    warmup_steps: int = 30
    label_smoothing: float = 0.1
    hflip: float = 0.5  # probability of a random horizontal flip in training
    precision: str = "auto"  # auto (bf16 autocast where the device supports it) | bf16 | fp32
    channels_last: bool = True
    seed: int = 0

    def __post_init__(self):
        def need(ok: bool, name: str, what: str):
            if not ok:
                raise ValueError(f"ClassifierConfig.{name}: {what}, got {getattr(self, name)!r}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        need(isinstance(self.backbone, str) and (self.backbone in ("efficientnet_lite0", "tiny")
                                                  or (self.backbone.startswith("timm:") and len(self.backbone) > 5)),
             "backbone", "must be efficientnet_lite0, tiny or timm:<model name>")
        need(isinstance(self.pretrained, (bool, str)) and self.pretrained != "", "pretrained",
             "must be true, false or a local weights file path")
        need(not (self.pretrained is True and self.backbone != "efficientnet_lite0"), "pretrained",
             f"only efficientnet_lite0 ships weights; for {self.backbone} use false or a local file")
        for name in ("image_height", "image_width"):
            v = getattr(self, name)
            need(is_int(v) and 32 <= v <= 2048 and v % 32 == 0, name, "must be a multiple of 32 in [32, 2048]")
        for name in ("mean", "std"):
            v = getattr(self, name)
            ok = isinstance(v, (list, tuple)) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v)
            need(ok and (name == "mean" or all(x > 0 for x in v)), name, "must be three numbers (RGB)")
            object.__setattr__(self, name, tuple(float(x) for x in v))
        need(self.head in HEADS, "head", f"must be one of {HEADS}")
        need(is_int(self.head_dim) and self.head_dim >= 1, "head_dim", "must be a positive integer")
        need(is_int(self.tiny_width) and self.tiny_width >= 4 and self.tiny_width % 2 == 0, "tiny_width",
             "must be an even integer >= 4")
        for name in ("dropout", "label_smoothing", "hflip"):
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v < 1.0 + (name == "hflip"),
                 name, "must be a number in [0, 1)" if name != "hflip" else "must be a probability in [0, 1]")
        need(self.freeze_stages is None or (is_int(self.freeze_stages) and self.freeze_stages >= 0), "freeze_stages",
             "must be null (the backbone's default) or an integer >= 0")
        need(isinstance(self.cache_frozen, bool), "cache_frozen", "must be true or false")
        need(self.labels in LABEL_SOURCES, "labels", f"must be one of {LABEL_SOURCES}")
        need(self.label_rule in LABEL_RULES, "label_rule", f"must be one of {LABEL_RULES}")
        kinds = (self.caption_kinds,) if isinstance(self.caption_kinds, str) else self.caption_kinds
        need(isinstance(kinds, (list, tuple)) and len(kinds) >= 1 and all(isinstance(k, str) for k in kinds),
             "caption_kinds", "must be a non-empty list of caption kinds (human, generated, prompt)")
        object.__setattr__(self, "caption_kinds", tuple(kinds))
        need(isinstance(self.canonical_labels, bool), "canonical_labels", "must be true or false")
        need(is_int(self.min_count) and self.min_count >= 1, "min_count", "must be an integer >= 1")
        need(isinstance(self.split, str) and self.split != "", "split", "must be a split name (train, val, test)")
        need(is_int(self.epochs) and self.epochs >= 1, "epochs", "must be an integer >= 1")
        need(self.max_steps is None or (is_int(self.max_steps) and self.max_steps >= 1), "max_steps",
             "must be null or an integer >= 1")
        need(is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "must be an integer >= 1")
        for name in ("lr", "backbone_lr_scale", "weight_decay"):
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                 and (name != "lr" or v > 0), name, "must be a finite number >= 0" + (" (> 0)" if name == "lr" else ""))
        need(self.schedule in SCHEDULES, "schedule", f"must be one of {SCHEDULES}")
        need(is_int(self.warmup_steps) and self.warmup_steps >= 0, "warmup_steps", "must be an integer >= 0")
        need(self.precision in PRECISIONS, "precision", f"must be one of {PRECISIONS}")
        need(isinstance(self.channels_last, bool), "channels_last", "must be true or false")
        need(is_int(self.seed) and self.seed >= 0, "seed", "must be a non-negative integer")

    # ---- (de)serialisation ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ClassifierConfig":
        if not isinstance(d, dict):
            raise ValueError(f"a classifier config must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(d) - names)
        if bad:
            raise ValueError(f"ClassifierConfig: unknown field(s) {bad}; the fields are {sorted(names)}")
        return cls(**d)

    def replace(self, **changes) -> "ClassifierConfig":
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **changes)

    def model_fields(self) -> dict:
        """The fields that fix the weights' shapes and the label space (must match to resume or load)."""
        keep = ("backbone", "image_height", "image_width", "head", "head_dim", "tiny_width", "labels", "label_rule",
                "caption_kinds", "canonical_labels", "min_count", "split")
        d = self.to_dict()
        return {k: d[k] for k in keep}


NAMED_CONFIGS: dict[str, dict] = {
    # EfficientNet-Lite0 with its real ImageNet weights, 256x128 input (PLIP's resolution).
    "default": {},
    # Random-init tiny conv net at 64x32: for tests and smoke runs (thousands of images/s on a CPU).
    "tiny": {"backbone": "tiny", "pretrained": False, "image_height": 64, "image_width": 32, "head_dim": 32,
             "min_count": 2, "batch_size": 16, "epochs": 1, "warmup_steps": 0, "precision": "fp32",
             "channels_last": False},
}


def load_config(name_or_file: str | os.PathLike | None) -> ClassifierConfig:
    """A named config (``NAMED_CONFIGS``) or a JSON file: a bare config object or a checkpoint ``config.json``."""
    if name_or_file is None:
        return ClassifierConfig()
    text = str(name_or_file)
    if text in NAMED_CONFIGS:
        return ClassifierConfig.from_dict(NAMED_CONFIGS[text])
    path = Path(text)
    if path.is_dir():
        path = path / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"--config {text!r} is neither a named config ({', '.join(NAMED_CONFIGS)}) nor a JSON file")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    return ClassifierConfig.from_dict(raw.get("config", raw) if isinstance(raw, dict) and "format" in raw else raw)


# ---- model ------------------------------------------------------------------------------------------------------
class AttributeClassifier(nn.Module):
    """Backbone + per-slot heads. ``forward(x)`` returns ``{slot: logits [B, num_classes[slot]]}``."""

    def __init__(self, config: ClassifierConfig, num_classes: dict[str, int], load_pretrained: bool = True):
        super().__init__()
        self.config = config
        self.num_classes = {s: int(num_classes[s]) for s in SLOTS}
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
        self.heads = nn.ModuleDict({s: nn.Sequential(nn.Dropout(config.dropout), nn.Linear(width, self.num_classes[s]))
                                    for s in SLOTS})

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
        return {s: self.heads[s](p[:, i]) for i, s in enumerate(SLOTS)}

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
    return out


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def read_checkpoint_meta(ckpt_dir: str | os.PathLike) -> tuple[dict, ClassifierConfig, dict[str, list[str]]]:
    """``config.json`` (raw), its :class:`ClassifierConfig` and the vocabulary of a checkpoint directory."""
    d = Path(ckpt_dir)
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
        config = ClassifierConfig.from_dict(raw.get("config", {}))
        vocab = check_vocab(vocab_raw, str(d / VOCAB_FILE))
    except ValueError as e:
        raise CheckpointError(f"checkpoint {d}: {e}") from e
    return raw, config, vocab


def load_checkpoint(ckpt_dir: str | os.PathLike, device: str | torch.device = "cpu"
                    ) -> tuple[AttributeClassifier, ClassifierConfig, dict[str, list[str]], dict]:
    """Load a checkpoint directory: (model in eval mode, config, vocab, raw config.json).

    Raises :class:`CheckpointError` naming the file and the tensor when the weights do not match
    the config and the vocabulary (missing, unexpected or differently shaped tensors).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = Path(ckpt_dir)
    raw, config, vocab = read_checkpoint_meta(d)
    num_classes = {s: len(vocab[s]) for s in SLOTS}
    if raw.get("num_classes") and {s: int(raw["num_classes"].get(s, -1)) for s in SLOTS} != num_classes:
        raise CheckpointError(f"checkpoint {d}: {CONFIG_FILE} num_classes {raw['num_classes']} do not match "
                              f"{VOCAB_FILE} ({num_classes})")
    model = AttributeClassifier(config, num_classes, load_pretrained=False)
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
@register("classifier")
class ClassifierRecognizer(Recognizer):
    """Phrase classification per slot. Build it from a checkpoint directory (``checkpoint=DIR``) or from an
    in-memory ``model`` + ``vocab``. The score of a slot is the softmax probability of the predicted phrase;
    with ``threshold`` > 0, a phrase below it becomes ``unknown`` (score 1 - p)."""

    name = "classifier"

    def __init__(self, checkpoint: str | os.PathLike | None = None, *, model: AttributeClassifier | None = None,
                 vocab: dict[str, list[str]] | None = None, device: str = "cpu", batch_size: int = 64,
                 precision: str | None = None, threshold: float = 0.0, channels_last: bool | None = None):
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.device = resolve_device(device)
        if checkpoint is not None:
            model, config, vocab, self.meta = load_checkpoint(checkpoint, self.device)
        elif model is None or vocab is None:
            raise ValueError("the classifier recognizer needs checkpoint=DIR, or model= and vocab=")
        else:
            config, vocab, self.meta = model.config, check_vocab(vocab), {}
            model = model.to(self.device).eval()
        if {s: len(vocab[s]) for s in SLOTS} != model.num_classes:
            raise ValueError(f"vocab sizes {({s: len(vocab[s]) for s in SLOTS})} do not match the model's heads "
                             f"{model.num_classes}")
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        self.model, self.config, self.vocab = model, config, vocab
        self.batch_size, self.threshold = batch_size, float(threshold)
        self.precision = resolve_precision(precision or config.precision, self.device)
        self.channels_last = config.channels_last if channels_last is None else channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def probabilities(self, images: Sequence) -> dict[str, torch.Tensor]:
        """Per slot, the softmax over the slot's vocabulary [N, num_classes] (float32, CPU)."""
        outs: dict[str, list] = {s: [] for s in SLOTS}
        for i in range(0, len(images), self.batch_size):
            x = images_to_tensor(images[i:i + self.batch_size], self.config).to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.precision):
                logits = self.model(x)
            for s in SLOTS:
                outs[s].append(logits[s].float().softmax(-1).cpu())
        return {s: torch.cat(v) if v else torch.zeros(0, len(self.vocab[s])) for s, v in outs.items()}

    def predict_images(self, images: Sequence) -> list[AttributePrediction]:
        if not images:
            return []
        probs = self.probabilities(list(images))
        best = {s: probs[s].max(-1) for s in SLOTS}
        out = []
        for i in range(len(images)):
            phrases, scores = {}, {}
            for s in SLOTS:
                p, k = float(best[s].values[i]), int(best[s].indices[i])
                phrase = self.vocab[s][k]
                if phrase != UNKNOWN and p < self.threshold:
                    phrase, p = UNKNOWN, 1.0 - p
                phrases[s], scores[s] = phrase, p
            out.append(AttributePrediction(AttributeSet(**phrases), scores))
        return out

    def describe(self) -> dict:
        return {"name": self.name, "checkpoint": self.checkpoint, "backbone": self.config.backbone,
                "vocab_sizes": {s: len(v) for s, v in self.vocab.items()}, "threshold": self.threshold,
                "precision": self.precision, "device": str(self.device)}
