"""Configuration of the three PLIP pretext tasks (docs/reimplementation.md#pretext-tasks).

Every task can be switched off and re-weighted. The defaults are the paper's:
``L = L_ivlc + 0.02 * L_tic + 0.1 * L_iap`` (docs/reimplementation.md#loss-weights), the IAP mask ratio rising
0.2 -> 0.8 with sqrt(progress) (docs/reimplementation.md#iap), identity-level CMPM over the global (all-gathered)
batch (docs/reimplementation.md#ivlc).

All validation happens in ``__post_init__`` and raises ``ValueError`` naming the field and the allowed values, so a
bad config fails when it is loaded, not at step 10 000.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

IVLC_MODES = ("identity", "instance")
MASK_CURVES = ("sqrt", "linear", "square", "constant")
ON_MISSING_SPANS = ("random-words", "skip", "error")


def _check_weight(section: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"tasks.{section}.weight must be a finite number >= 0, got {value!r}")


def _check_bool(section: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"tasks.{section}.{name} must be true or false, got {value!r}")


def _check_choice(section: str, name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"tasks.{section}.{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _check_pos_int(section: str, name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        extra = " (or null for automatic)" if allow_none else ""
        raise ValueError(f"tasks.{section}.{name} must be an integer >= 1{extra}, got {value!r}")


@dataclass
class IVLCConfig:
    """Identity-based vision-language contrast: the repository's CMPM loss (docs/reimplementation.md#ivlc).

    mode: ``"identity"`` (positives = same identity; every row needs an identity, -1 is an error) or ``"instance"``
    (each image-text pair is its own identity: instance-level contrast, used only when asked for, e.g. on a dataset
    without identities).
    gather: all-gather the embeddings (with gradient) over DDP ranks so that the loss is over the global batch,
    like open_clip's ``gather_with_grad``. No effect when torch.distributed is not initialised or world size is 1.
    """

    enabled: bool = True
    weight: float = 1.0
    mode: str = "identity"
    gather: bool = True

    def __post_init__(self) -> None:
        _check_bool("ivlc", "enabled", self.enabled)
        _check_weight("ivlc", self.weight)
        _check_choice("ivlc", "mode", self.mode, IVLC_MODES)
        _check_bool("ivlc", "gather", self.gather)


@dataclass
class TICConfig:
    """Text-guided image colorization (docs/reimplementation.md#tic). ``fpn_dim`` is the channel width of the FPN-like
    fusion (256 in the official decoder: the concatenated map has 4 * fpn_dim channels)."""

    enabled: bool = True
    weight: float = 0.02
    fpn_dim: int = 256

    def __post_init__(self) -> None:
        _check_bool("tic", "enabled", self.enabled)
        _check_weight("tic", self.weight)
        _check_pos_int("tic", "fpn_dim", self.fpn_dim)


@dataclass
class IAPConfig:
    """Image-guided attribute prediction (docs/reimplementation.md#iap).

    mask ratio = curve(progress) * (mask_upper - mask_lower) + mask_lower with curve sqrt | linear | square;
    ``constant`` uses ``mask_lower`` throughout (``mask_upper`` is then ignored).
    heads: attention heads of the fusion block; ``None`` = automatic (the largest of 12, 11, ..., 1 dividing the
    embedding dim, i.e. 12 for 768 and 384).
    on_missing_spans: what to do with a caption that has no attribute phrases (dataset without spans):
    ``random-words`` masks random non-special tokens at the same ratio (plain MLM) and logs a warning once;
    ``skip`` gives such captions no masked tokens (IAP loss 0 if the whole batch has none); ``error`` stops.
    """

    enabled: bool = True
    weight: float = 0.1
    mask_lower: float = 0.2
    mask_upper: float = 0.8
    curve: str = "sqrt"
    layers: int = 1
    heads: int | None = None
    mlp_ratio: float = 4.0
    on_missing_spans: str = "random-words"

    def __post_init__(self) -> None:
        _check_bool("iap", "enabled", self.enabled)
        _check_weight("iap", self.weight)
        for name in ("mask_lower", "mask_upper"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= v <= 1.0):
                raise ValueError(f"tasks.iap.{name} must be a number in [0, 1], got {v!r}")
        if self.mask_lower > self.mask_upper:
            raise ValueError(
                f"tasks.iap.mask_lower ({self.mask_lower}) must be <= tasks.iap.mask_upper ({self.mask_upper})")
        _check_choice("iap", "curve", self.curve, MASK_CURVES)
        _check_pos_int("iap", "layers", self.layers)
        _check_pos_int("iap", "heads", self.heads, allow_none=True)
        m = self.mlp_ratio
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or m <= 0:
            raise ValueError(f"tasks.iap.mlp_ratio must be a number > 0, got {m!r}")
        _check_choice("iap", "on_missing_spans", self.on_missing_spans, ON_MISSING_SPANS)


_SECTIONS = {"ivlc": IVLCConfig, "tic": TICConfig, "iap": IAPConfig}


@dataclass
class TasksConfig:
    ivlc: IVLCConfig = field(default_factory=IVLCConfig)
    tic: TICConfig = field(default_factory=TICConfig)
    iap: IAPConfig = field(default_factory=IAPConfig)

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"tasks.{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}")
        if not self.enabled_tasks():
            raise ValueError("tasks: at least one of tasks.ivlc, tasks.tic, tasks.iap must be enabled")

    def enabled_tasks(self) -> list[str]:
        return [name for name in _SECTIONS if getattr(self, name).enabled]

    @classmethod
    def from_dict(cls, data: dict | None) -> "TasksConfig":
        """Build from a nested dict ``{"ivlc": {...}, "tic": {...}, "iap": {...}}``; missing sections/fields take
        the defaults, unknown ones are an error naming them."""
        data = dict(data or {})
        unknown = sorted(set(data) - set(_SECTIONS))
        if unknown:
            raise ValueError(f"tasks: unknown section(s) {unknown}; allowed: {sorted(_SECTIONS)}")
        kwargs = {}
        for name, sub in _SECTIONS.items():
            section = data.get(name)
            if section is None:
                kwargs[name] = sub()
                continue
            if isinstance(section, sub):
                kwargs[name] = section
                continue
            if not isinstance(section, dict):
                raise ValueError(f"tasks.{name} must be a mapping, got {type(section).__name__}")
            allowed = {f.name for f in fields(sub)}
            bad = sorted(set(section) - allowed)
            if bad:
                raise ValueError(f"tasks.{name}: unknown field(s) {bad}; allowed: {sorted(allowed)}")
            kwargs[name] = sub(**section)
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return asdict(self)
