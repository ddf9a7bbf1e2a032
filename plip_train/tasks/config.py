"""Configuration of the three PLIP pretext tasks (docs/reimplementation.md#pretext-tasks).

Every task can be switched off and re-weighted. The defaults are the paper's:
``L = L_ivlc + 0.02 * L_tic + 0.1 * L_iap`` (docs/reimplementation.md#loss-weights), the IAP mask ratio rising
0.2 -> 0.8 with sqrt(progress) (docs/reimplementation.md#iap), identity-level CMPM over the global (all-gathered)
batch (docs/reimplementation.md#ivlc).

Every config is a :class:`plip_runtime.config.ConfigBase`: it validates itself on construction and on ``replace``,
raising :class:`~plip_runtime.config.ConfigError` (a ``ValueError``) naming the field, the rule and the value
(``tasks.iap.curve: must be one of sqrt, linear, square, constant, got 'cubic'``), so a bad config fails when it
is loaded, not at step 10 000.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from plip_runtime.config import ConfigBase

IVLC_MODES = ("identity", "instance")
MASK_CURVES = ("sqrt", "linear", "square", "constant")
ON_MISSING_SPANS = ("random-words", "skip", "error")


@dataclass
class IVLCConfig(ConfigBase):
    """Identity-based vision-language contrast: the repository's CMPM loss (docs/reimplementation.md#ivlc).

    mode: ``"identity"`` (positives = same identity; every row needs an identity, -1 is an error) or ``"instance"``
    (each image-text pair is its own identity: instance-level contrast, used only when asked for, e.g. on a dataset
    without identities).
    gather: all-gather the embeddings (with gradient) over DDP ranks so that the loss is over the global batch,
    like open_clip's ``gather_with_grad``. No effect when torch.distributed is not initialised or world size is 1.
    """

    where = "tasks.ivlc"
    enabled: bool = True
    weight: float = 1.0
    mode: str = "identity"
    gather: bool = True

    def validate(self) -> None:
        self.require_bool("enabled")
        self.require_number("weight", 0)
        self.require_choice("mode", IVLC_MODES)
        self.require_bool("gather")


@dataclass
class TICConfig(ConfigBase):
    """Text-guided image colorization (docs/reimplementation.md#tic). ``fpn_dim`` is the channel width of the
    FPN-like fusion (256 in the official decoder: the concatenated map has 4 * fpn_dim channels)."""

    where = "tasks.tic"
    enabled: bool = True
    weight: float = 0.02
    fpn_dim: int = 256

    def validate(self) -> None:
        self.require_bool("enabled")
        self.require_number("weight", 0)
        self.require_int("fpn_dim", 1)


@dataclass
class IAPConfig(ConfigBase):
    """Image-guided attribute prediction (docs/reimplementation.md#iap).

    mask ratio = curve(progress) * (mask_upper - mask_lower) + mask_lower with curve sqrt | linear | square;
    ``constant`` uses ``mask_lower`` throughout (``mask_upper`` is then ignored).
    heads: attention heads of the fusion block; ``None`` = automatic (the largest of 12, 11, ..., 1 dividing the
    embedding dim, i.e. 12 for 768 and 384).
    on_missing_spans: what to do with a caption that has no attribute phrases (dataset without spans):
    ``random-words`` masks random non-special tokens at the same ratio (plain MLM) and logs a warning once;
    ``skip`` gives such captions no masked tokens (IAP loss 0 if the whole batch has none); ``error`` stops.
    """

    where = "tasks.iap"
    enabled: bool = True
    weight: float = 0.1
    mask_lower: float = 0.2
    mask_upper: float = 0.8
    curve: str = "sqrt"
    layers: int = 1
    heads: int | None = None
    mlp_ratio: float = 4.0
    on_missing_spans: str = "random-words"

    def validate(self) -> None:
        self.require_bool("enabled")
        self.require_number("weight", 0)
        self.require_number("mask_lower", 0, 1)
        self.require_number("mask_upper", 0, 1)
        self.require("mask_lower", self.mask_lower <= self.mask_upper,
                     f"must be <= tasks.iap.mask_upper ({self.mask_upper})")
        self.require_choice("curve", MASK_CURVES)
        self.require_int("layers", 1)
        self.require_int("heads", 1, optional=True)
        self.require_number("mlp_ratio", 0, lo_open=True)
        self.require_choice("on_missing_spans", ON_MISSING_SPANS)


_SECTIONS = {"ivlc": IVLCConfig, "tic": TICConfig, "iap": IAPConfig}


@dataclass
class TasksConfig(ConfigBase):
    """The three tasks; ``from_dict({"ivlc": {...}, "tic": {...}, "iap": {...}})`` takes the defaults for missing
    sections and fields and refuses unknown ones, naming them."""

    where = "tasks"
    ivlc: IVLCConfig = field(default_factory=IVLCConfig)
    tic: TICConfig = field(default_factory=TICConfig)
    iap: IAPConfig = field(default_factory=IAPConfig)

    def validate(self) -> None:
        for name, cls in _SECTIONS.items():
            self.require(name, isinstance(getattr(self, name), cls), f"must be a {cls.__name__}")
        self.require_item("{ivlc,tic,iap}.enabled", [getattr(self, name).enabled for name in _SECTIONS],
                          bool(self.enabled_tasks()), "at least one task must be enabled")

    def enabled_tasks(self) -> list[str]:
        return [name for name in _SECTIONS if getattr(self, name).enabled]
