"""Zero-shot attribute recognition with any open_clip model: per slot, the candidate phrase whose prompt
ensemble ("a photo of a person wearing {}.", "a pedestrian wearing {}.", ...) is most similar to the image.

The model comes from a local source only: an open_clip model name (built-in or registered) with
``pretrained`` = a local checkpoint file, a pretrained tag whose weights are already in the local
Hugging Face cache (checked without network access), or ``None`` (random init: tests); a ``local-dir:``
model directory; or a config dict (``{"embed_dim", "vision_cfg", "text_cfg"}``), registered under a
content-hash name. The score of a slot is the softmax probability of the best candidate over the
slot's candidates (temperature: the model's logit scale, or ``temperature``); below ``threshold`` the
slot is ``unknown`` (score 1 - p).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from plip_runtime.device import autocast, resolve_device, resolve_precision
from synth_pedes.schema import SLOTS, UNKNOWN

from ..attributes import AttributeSet, load_lexicon
from .base import AttributePrediction, Recognizer, register
from .canon import canonical_phrase

_log = logging.getLogger(__name__)

DEFAULT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "person": ("a photo of {}.", "a surveillance camera photo of {}.", "{} walking on the street."),
    "head": ("a photo of a person with {}.", "a pedestrian with {}.", "a person who has {}."),
    "upper": ("a photo of a person wearing {}.", "a pedestrian wearing {}.", "a person dressed in {}."),
    "lower": ("a photo of a person wearing {}.", "a pedestrian wearing {}.", "a person dressed in {}."),
    "shoes": ("a photo of a person wearing {}.", "a pedestrian wearing {}.", "a close-up of {} on a person."),
    "belongings": ("a photo of a person carrying {}.", "a pedestrian with {}.", "a person holding {}."),
}
BASIC_COLOURS = ("black", "white", "grey", "red", "blue", "navy", "green", "yellow", "pink", "purple", "brown",
                 "orange")
HAIR_COLOURS = ("black", "brown", "blonde", "grey", "red", "white")
HAIR_LENGTHS = ("short", "medium-length", "long")


def with_article(phrase: str) -> str:
    """'a white shirt', 'an orange cap', 'black jeans', 'long hair' (plural and mass nouns take none)."""
    lex = load_lexicon()
    last = phrase.split()[-1] if phrase.split() else phrase
    if last in lex.plural_heads or last in lex.mass_heads or (last.endswith("s") and last not in
                                                              lex.singular_s_heads):
        return phrase
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def lexicon_candidates() -> dict[str, list[str]]:
    """Candidate phrases per slot from the lexicon: its keywords (canonicalised), each also with a basic
    colour; hair as length x colour. A generic vocabulary when no trained one is at hand."""
    lex = load_lexicon()
    out: dict[str, list[str]] = {}
    for slot in SLOTS:
        heads = sorted({canonical_phrase(k, slot) for k in lex.keywords[slot]} - {UNKNOWN}
                       - {canonical_phrase(k, slot) for k in lex.head_needs_modifier})
        if slot == "person":
            phrases = heads + [f"{a} {g}" for a in ("young", "old") for g in ("man", "woman")]
        else:
            phrases = heads + [f"{c} {h}" for c in BASIC_COLOURS for h in heads]
        if slot == "head":
            phrases += [f"{ln} hair" for ln in HAIR_LENGTHS] + [f"{c} hair" for c in HAIR_COLOURS]
            phrases += [f"{ln} {c} hair" for ln in HAIR_LENGTHS for c in HAIR_COLOURS]
        out[slot] = list(dict.fromkeys(phrases))
    return out


def _coloured_kinds(kinds: dict, colours: dict) -> dict[str, list[str]]:
    """A factorised classifier's kinds composed with its colours (kinds it writes without a colour stay bare)."""
    from .labels import compose_phrase

    out = {}
    for slot, slot_kinds in kinds.items():
        entry = colours.get(slot, {})
        out[slot] = [compose_phrase(colour, kind, slot) for kind in slot_kinds
                     for colour in ((entry.get("colours") or [None]) if kind in entry.get("coloured", []) else [None])]
    return out


def load_candidates(candidates) -> dict[str, list[str]]:
    """Candidates per slot from: None/"lexicon" (:func:`lexicon_candidates`), a dict, a ``vocab.json`` file or
    a classifier checkpoint directory (its ``vocab.json``). ``unknown`` entries are dropped."""
    if candidates is None or candidates == "lexicon":
        return lexicon_candidates()
    if isinstance(candidates, (str, os.PathLike)):
        path = Path(candidates)
        if path.is_dir():
            from .classifier import find_checkpoint

            path = find_checkpoint(path) / "vocab.json"
        if not path.is_file():
            raise ValueError(f"candidates {str(candidates)!r}: no such vocab.json file or checkpoint directory")
        candidates = json.loads(path.read_text())
        colours = path.with_name("colours.json")
        if colours.is_file():  # a factorised classifier's vocabulary holds kinds: every colour of each kind
            candidates = _coloured_kinds(candidates, json.loads(colours.read_text()))
    if not isinstance(candidates, dict) or set(candidates) - set(SLOTS):
        raise ValueError(f"candidates must map the slots {list(SLOTS)} to phrase lists")
    out = {}
    for s in SLOTS:
        phrases = [p for p in candidates.get(s, []) if isinstance(p, str) and p.strip() and p != UNKNOWN]
        out[s] = list(dict.fromkeys(phrases))
    if not any(out.values()):
        raise ValueError("candidates: every slot is empty")
    return out


def _cached_tag_weights(model_name: str, tag: str) -> str | None:
    """The local file of an open_clip pretrained tag when it is already in the HF cache (no network)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    hub = (cfg or {}).get("hf_hub")
    if not hub:
        return None
    from huggingface_hub import try_to_load_from_cache

    parts = hub.strip("/").split("/")
    repo = "/".join(parts[:2])
    names = [parts[2]] if len(parts) > 2 else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    for fname in names:
        path = try_to_load_from_cache(repo, fname)
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None


def build_open_clip(model, pretrained: str | None = None):
    """(model, tokenizer, model name) from the local sources described in the module docstring."""
    import open_clip

    if isinstance(model, dict):
        missing = {"embed_dim", "vision_cfg", "text_cfg"} - set(model)
        if missing:
            raise ValueError(f"an open_clip config dict needs {sorted(missing)}")
        digest = hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()[:12]
        name = f"spac-clip-{digest}"
        if name not in open_clip.list_models():
            d = Path(tempfile.mkdtemp(prefix="spac-clip-"))
            (d / f"{name}.json").write_text(json.dumps(model))
            open_clip.add_model_config(d / f"{name}.json")
    elif isinstance(model, str):
        name = model
        if not name.startswith("local-dir:") and name not in open_clip.list_models():
            raise ValueError(f"open_clip has no model config {name!r}; pass a config dict or a local-dir: path")
    else:
        raise ValueError(f"model must be an open_clip model name or a config dict, got {type(model).__name__}")
    if name.startswith("hf-hub:"):
        raise ValueError("hf-hub: models would be downloaded; use a local-dir: directory or a local checkpoint file")
    weights = None
    if pretrained:
        if os.path.isfile(pretrained):
            weights = pretrained
        else:
            weights = _cached_tag_weights(name, pretrained)
            if weights is None:
                raise ValueError(f"pretrained {pretrained!r} is neither a local checkpoint file nor an open_clip tag "
                                 f"of {name} whose weights are in the local cache; nothing is downloaded")
    net = open_clip.create_model(name, pretrained=weights)
    tokenizer = open_clip.get_tokenizer(name)
    return net, tokenizer, name


@register("clip")
class ClipRecognizer(Recognizer):
    """Zero-shot per-slot recognizer on an open_clip model (see the module docstring)."""

    name = "clip"

    def __init__(self, model="RN50", pretrained: str | None = None, candidates=None,
                 templates: dict[str, Sequence[str]] | None = None, threshold: float = 0.0,
                 temperature: float | None = None, device: str = "cpu", batch_size: int = 64,
                 precision: str = "fp32", fit: str = "pad"):
        if fit not in ("pad", "stretch"):
            raise ValueError(f"fit must be 'pad' or 'stretch', got {fit!r}")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        if temperature is not None and not float(temperature) > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.device = resolve_device(device)
        self.net, self.tokenizer, self.model_name = build_open_clip(model, pretrained)
        self.net.to(self.device).eval()
        self.pretrained = pretrained
        self.candidates = load_candidates(candidates)
        self.templates = {s: tuple((templates or {}).get(s, DEFAULT_TEMPLATES[s])) for s in SLOTS}
        for s, ts in self.templates.items():
            if not ts or not all("{}" in t for t in ts):
                raise ValueError(f"templates[{s!r}] must be a non-empty list of strings with a '{{}}' placeholder")
        self.threshold, self.temperature = float(threshold), temperature
        self.batch_size, self.fit = int(batch_size), fit
        self.precision = resolve_precision(precision, self.device)
        cfg = getattr(self.net.visual, "preprocess_cfg", {}) or {}
        size = getattr(self.net.visual, "image_size", 224)
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))  # (H, W)
        self.mean = tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
        self.std = tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
        self._text: dict[str, torch.Tensor] | None = None

    # ---- text side ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def text_features(self) -> dict[str, torch.Tensor]:
        """Per slot, the L2-normalised prompt-ensemble embedding of every candidate [n_candidates, D]."""
        if self._text is None:
            self._text = {}
            for s in SLOTS:
                cands = self.candidates[s]
                if not cands:
                    continue
                prompts = [t.format(with_article(c)) for c in cands for t in self.templates[s]]
                feats = []
                for i in range(0, len(prompts), 256):
                    tokens = self.tokenizer(prompts[i:i + 256]).to(self.device)
                    feats.append(self.net.encode_text(tokens).float())
                f = torch.nn.functional.normalize(torch.cat(feats), dim=-1)
                f = f.view(len(cands), len(self.templates[s]), -1).mean(1)
                self._text[s] = torch.nn.functional.normalize(f, dim=-1)
        return self._text

    # ---- image side -----------------------------------------------------------------------------------------
    def _fit_image(self, img):
        from PIL import Image

        h, w = self.size
        if self.fit == "stretch":
            return img.resize((w, h), Image.BICUBIC)
        scale = min(w / img.width, h / img.height)
        nw, nh = max(1, round(img.width * scale)), max(1, round(img.height * scale))
        fill = tuple(int(255 * m) for m in self.mean)
        canvas = Image.new("RGB", (w, h), fill)
        canvas.paste(img.resize((nw, nh), Image.BICUBIC), ((w - nw) // 2, (h - nh) // 2))
        return canvas

    def _tensor(self, images: Sequence) -> torch.Tensor:
        arr = np.stack([np.asarray(self._fit_image(im.convert("RGB"))) for im in images])
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
        return (x - torch.tensor(self.mean).view(1, 3, 1, 1)) / torch.tensor(self.std).view(1, 3, 1, 1)

    @torch.no_grad()
    def predict_images(self, images: Sequence) -> list[AttributePrediction]:
        if not images:
            return []
        text = self.text_features()
        scale = (1.0 / self.temperature) if self.temperature else float(self.net.logit_scale.exp())
        feats = []
        for i in range(0, len(images), self.batch_size):
            x = self._tensor(images[i:i + self.batch_size]).to(self.device)
            with autocast(self.device, self.precision):
                feats.append(self.net.encode_image(x).float())
        img = torch.nn.functional.normalize(torch.cat(feats), dim=-1)
        best = {}
        for s, t in text.items():
            p = (scale * img @ t.T).softmax(-1)
            best[s] = p.max(-1)
        out = []
        for i in range(len(images)):
            phrases, scores = {}, {}
            for s in SLOTS:
                if s not in best:
                    phrases[s], scores[s] = UNKNOWN, 0.0
                    continue
                p, k = float(best[s].values[i]), int(best[s].indices[i])
                phrase = self.candidates[s][k]
                if p < self.threshold:
                    phrase, p = UNKNOWN, 1.0 - p
                phrases[s], scores[s] = phrase, p
            out.append(AttributePrediction(AttributeSet(**phrases), scores))
        return out

    def describe(self) -> dict:
        return {"name": self.name, "model": self.model_name, "pretrained": self.pretrained,
                "candidates": {s: len(v) for s, v in self.candidates.items()}, "threshold": self.threshold,
                "image_size": list(self.size), "fit": self.fit}
