"""``PlipModel``: an image tower and a text tower sharing one embedding size, built from a ``ModelConfig``.

State-dict prefixes: ``image_tower.trunk.*`` (for ``modified_resnet``: the CLIP / official PLIP ModifiedResNet
names, ``attnpool.*`` included), ``image_tower.head.*`` (the max-pool head, or the head of non-ResNet towers) and
``text_tower.encoder.*`` (the ``BertModel``). :func:`convert_official_checkpoint` maps the released
``PLIP_MRN50.pth.tar`` onto these names (build it with config ``paper-rn50-bert`` and
``{"text.pooling": "pooler"}``, the released model's text head).
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from .config import ModelConfig, list_model_configs, load_model_config
from .image import build_image_tower
from .text import build_text_tower

_log = logging.getLogger(__name__)


class PlipModel(nn.Module):
    """The two PLIP encoders. Global embeddings are unnormalised."""

    def __init__(self, config: ModelConfig, image_tower: nn.Module, text_tower: nn.Module):
        super().__init__()
        self.config = config
        self.embed_dim = config.embed_dim
        self.image_tower = image_tower
        self.text_tower = text_tower
        if text_tower.hidden_size != config.embed_dim:
            raise ValueError(f"ModelConfig.embed_dim: must equal the text tower's hidden size "
                             f"{text_tower.hidden_size} (there is no text projection), got {config.embed_dim}")
        self.image_projection = self.text_projection = None
        if config.projection == "linear":  # identity at the start: the model's embeddings are unchanged
            self.image_projection = _identity_linear(config.embed_dim)
            self.text_projection = _identity_linear(config.embed_dim)
        elif config.projection == "bnneck":  # BoT: the ID loss sees the normalised feature, the triplet the raw one
            self.image_projection = nn.BatchNorm1d(config.embed_dim)
            self.image_projection.bias.requires_grad_(False)

    def projections(self) -> list[nn.Module]:
        """The linear maps after the towers (``ModelConfig.projection``), if any."""
        return [m for m in (self.image_projection, self.text_projection) if m is not None]

    # image side
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, embed_dim)."""
        embed = self.image_tower(images)
        return embed if self.image_projection is None else self.image_projection(embed)

    def image_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The four trunk maps ``[x1, x2, x3, x4]`` at strides 4, 8, 16, 32 (channels ``feature_channels``)."""
        return self.image_tower.forward_features(images)

    def image_forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(global (B, D), [x1, x2, x3, x4])`` from one trunk pass."""
        embed, features = self.image_tower.forward_all(images)
        return (embed if self.image_projection is None else self.image_projection(embed)), features

    # text side
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids and mask -> (B, embed_dim)."""
        return self.text_forward(input_ids, attention_mask)[0]

    def text_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(global (B, D), last hidden states (B, L, D))``."""
        embed, hidden = self.text_tower(input_ids, attention_mask)
        return (embed if self.text_projection is None else self.text_projection(embed)), hidden

    def forward(self, images: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, image_features: bool = False) -> dict:
        """Everything in one call (so a DDP wrapper sees it): ``image_embed`` (and ``image_features`` when asked)
        for ``images``; ``text_embed`` and ``text_hidden`` for ``input_ids``."""
        out = {}
        if images is not None:
            if image_features:
                out["image_embed"], out["image_features"] = self.image_forward(images)
            else:
                out["image_embed"] = self.encode_image(images)
        if input_ids is not None:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            out["text_embed"], out["text_hidden"] = self.text_forward(input_ids, attention_mask)
        return out

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by tower: ``{"image": [...], "text": [...]}`` (the trainer runs text at lr x 0.1)."""
        image = [*self.image_tower.parameters(), *(self.image_projection.parameters() if self.image_projection else [])]
        text = [*self.text_tower.parameters(), *(self.text_projection.parameters() if self.text_projection else [])]
        return {"image": [p for p in image if p.requires_grad], "text": [p for p in text if p.requires_grad]}


def _identity_linear(dim: int) -> nn.Linear:
    layer = nn.Linear(dim, dim)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(dim))
        layer.bias.zero_()
    return layer


def build_model(cfg, *, load_pretrained: bool = True) -> PlipModel:
    """The model for ``cfg`` (a ``ModelConfig``, a shipped name, a JSON path or a dict). Pretrained weights named in
    the config are loaded from local files / packages; ``load_pretrained=False`` builds the architecture only
    (random init; use it before loading a full checkpoint)."""
    cfg = load_model_config(cfg)
    text = build_text_tower(cfg.text, load_pretrained=load_pretrained)
    if text.hidden_size != cfg.embed_dim:
        raise ValueError(f"ModelConfig.embed_dim: must equal the text tower's hidden size {text.hidden_size} "
                         f"(there is no text projection), got {cfg.embed_dim}")
    image = build_image_tower(cfg.image, cfg.embed_dim, load_pretrained=load_pretrained)
    return PlipModel(cfg, image, text)


def _signature(sd: dict) -> dict:
    return {k: tuple(v.shape) for k, v in sd.items() if hasattr(v, "shape")}


def _matching_shipped_configs(sig: dict) -> list[str]:
    names = []
    for name in list_model_configs():
        try:
            with torch.device("meta"):
                m = build_model(load_model_config(name), load_pretrained=False)
        except Exception:  # a config whose packages are missing cannot be the answer
            continue
        if _signature(m.state_dict()) == sig:
            names.append(name)
    return names


def load_state_dict_checked(model: nn.Module, state_dict: dict, source: str) -> None:
    """Strict ``load_state_dict``; on any mismatch raise ``ValueError`` naming ``source``, the model's config, a few
    missing / unexpected / shape-mismatched keys and the likely fix."""
    cfg_name = getattr(getattr(model, "config", None), "name", type(model).__name__)
    if not isinstance(state_dict, dict):
        raise ValueError(f"{source}: expected a state dict (name -> tensor), got {type(state_dict).__name__}")
    non_tensors = sorted(k for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    if non_tensors:
        hint = ("; it looks like an official PLIP checkpoint: use convert_official_checkpoint() first"
                if "ImgEncoder_state_dict" in state_dict else "; pass the state dict stored inside it")
        raise ValueError(f"{source}: not a state dict: entries {non_tensors[:4]} are not tensors{hint}")
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = sorted(k for k in set(own) & set(state_dict) if tuple(own[k].shape) != tuple(state_dict[k].shape))
    if not (missing or unexpected or mismatched):
        model.load_state_dict(state_dict, strict=True)
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:4])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:4])})")
    if mismatched:
        ex = ", ".join(f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                       for k in mismatched[:3])
        parts.append(f"{len(mismatched)} with another shape ({ex})")
    keys = list(state_dict)
    if keys and all(k.startswith("module.") for k in keys):
        fix = "it was saved from a DDP-wrapped model: strip the 'module.' prefix"
    elif keys and not any(k.startswith(("image_tower.", "text_tower.")) for k in keys):
        fix = ("it is not a PlipModel state dict (no image_tower./text_tower. keys); an official PLIP checkpoint "
               "needs convert_official_checkpoint()")
    else:
        guesses = _matching_shipped_configs(_signature(state_dict))
        if guesses:
            fix = f"was it saved with config {' or '.join(map(repr, guesses))}?"
        else:
            fix = ("it matches none of the shipped configs; build the model from the config saved with the "
                   "checkpoint")
    raise ValueError(f"{source} does not match model config {cfg_name!r}: {'; '.join(parts)}. Likely fix: {fix}")


def convert_official_checkpoint(ckpt: dict) -> dict:
    """Map the official PLIP checkpoint (``{"ImgEncoder_state_dict", "TxtEncoder_state_dict", ...}``, e.g.
    ``torch.load("PLIP_MRN50.pth.tar", weights_only=True)``) to a ``PlipModel`` state dict: image keys go under
    ``image_tower.trunk.``, text keys (``encoder.*``) under ``text_tower.``; a DDP ``module.`` prefix, the old
    ``position_ids`` buffer and the unused ``probe_linearing`` layer of early versions are dropped. Load the result
    with :func:`load_state_dict_checked` into ``paper-rn50-bert`` with ``text.pooling = "pooler"``."""
    if not isinstance(ckpt, dict) or "ImgEncoder_state_dict" not in ckpt or "TxtEncoder_state_dict" not in ckpt:
        raise ValueError("not an official PLIP checkpoint: expected the keys 'ImgEncoder_state_dict' and "
                         "'TxtEncoder_state_dict'")

    def strip(k: str) -> str:
        return k[len("module."):] if k.startswith("module.") else k

    out = {}
    for k, v in ckpt["ImgEncoder_state_dict"].items():
        out["image_tower.trunk." + strip(k)] = v
    for k, v in ckpt["TxtEncoder_state_dict"].items():
        k = strip(k)
        if k.endswith("position_ids") or k.startswith(("probe_linearing.", "attnpool.")):
            continue
        out["text_tower." + k] = v
    return out
