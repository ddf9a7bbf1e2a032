"""PLIP model towers, as JSON configs behind a factory.

    from plip_train.models import load_model_config, build_model, build_tokenizer
    cfg = load_model_config("tiny")          # shipped: paper-rn50-bert, cpu-small, tiny; or a JSON path / a dict
    model = build_model(cfg)                 # PlipModel: encode_image, image_features, encode_text, text_forward
    tok = build_tokenizer(cfg.text)          # fast BERT WordPiece tokenizer from a local vocab (offsets supported)

Configs and their loading (``config``) import nothing heavy; the model classes (torch, open_clip, timm,
transformers) load on first use of the names below.
"""
from __future__ import annotations

from .config import (
    MODEL_CONFIGS_DIR,
    ImageTowerConfig,
    ModelConfig,
    TextTowerConfig,
    list_model_configs,
    load_model_config,
)

_LAZY = {
    "PlipModel": "plip", "build_model": "plip", "load_state_dict_checked": "plip",
    "convert_official_checkpoint": "plip", "build_tokenizer": "text", "build_text_tower": "text",
    "BertTextTower": "text", "masked_mean": "text", "build_image_tower": "image", "ImageTower": "image",
    "AttentionPool2dGrid": "image", "PlipModifiedResNet": "image",
}

__all__ = ["MODEL_CONFIGS_DIR", "ImageTowerConfig", "ModelConfig", "TextTowerConfig", "list_model_configs",
           "load_model_config", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
