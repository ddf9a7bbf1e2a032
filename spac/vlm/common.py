"""What every VLM engine shares: decoding options, images, prompts, instructions and the attributes read back
from the captions. The engines (:mod:`.captioner` for transformers, :mod:`.vllm_engine`) only generate."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from plip_runtime.config import ConfigBase
from plip_runtime.device import PRECISIONS
from synth_pedes.schema import SLOTS, UNKNOWN

from .instructions import load_instruction_templates, style_instruction
from .model_dir import directory_record

METHODS = ("greedy", "nucleus")
STYLE_PREFIX = "vlm-"


@dataclass
class VlmDecoding(ConfigBase):
    """How a VLM captioner decodes. Validated on construction and on ``replace`` (``ConfigBase``).

    ``max_new_tokens`` is a fixed budget (not scaled by anything); ``seed`` seeds nucleus sampling and picks each
    style's instruction template; ``precision`` is resolved per device by ``plip_runtime.device``."""

    method: str = "greedy"  # greedy | nucleus
    top_p: float = 0.9
    temperature: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16 | fp16

    def validate(self) -> None:
        self.require_choice("method", METHODS)
        self.require_number("top_p", 0, 1, lo_open=True)
        self.require_number("temperature", 0, lo_open=True)
        self.require_int("max_new_tokens", 1)
        self.require_int("seed")
        self.require_choice("precision", PRECISIONS)


def clean_text(text: str) -> str:
    """Whitespace normalised: runs of spaces and newlines become one space, ends stripped."""
    return " ".join(text.split())


def chat_messages(instruction: str) -> list[dict]:
    """The one-turn conversation of a prompt: a user message holding the image, then the instruction."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]


def image_attributes(captions: dict) -> tuple[dict, dict]:
    """One image's attributes from its captions ``{style: text}``: per slot the phrase most captions give (each
    caption's phrase is ``spac.phrases.attributes_from_spans`` of its spans; a tie goes to the more specific
    phrase, then to the earlier caption), scored by the fraction of all the image's captions that give exactly
    that phrase. A slot no caption names is ``unknown`` with score 0."""
    from ..phrases import attributes_from_spans, extract_many

    texts = list(captions.values())
    per_caption = [attributes_from_spans(spans).to_dict() for spans in extract_many(texts)] if texts else []
    phrases, scores = {}, {}
    for slot in SLOTS:
        named = [c[slot] for c in per_caption if c[slot] != UNKNOWN]
        if not named:
            phrases[slot], scores[slot] = UNKNOWN, 0.0
            continue
        counts = Counter(named)
        first = {p: named.index(p) for p in counts}
        best = max(counts, key=lambda p: (counts[p], len(p.split()), -first[p]))
        phrases[slot], scores[slot] = best, counts[best] / len(texts)
    return phrases, scores


def check_styles(styles) -> int:
    """``styles`` (captions per image) as given; ValueError unless it is an integer >= 1."""
    if not isinstance(styles, int) or isinstance(styles, bool) or styles < 1:
        raise ValueError(f"a VLM captioner needs styles >= 1 (captions per image), got {styles!r}")
    return styles


class VlmBase:
    """The engine-independent half of a VLM captioner (see the module docstring)."""

    engine = ""

    def __init__(self, directory: str | os.PathLike, styles: int = 2, device: str = "cpu"):
        check_styles(styles)
        self.directory = Path(directory)
        self.device = str(device)
        self.styles: tuple[str, ...] = tuple(f"{STYLE_PREFIX}{i}" for i in range(styles))
        self.templates = load_instruction_templates()

    # --- options and inputs ---------------------------------------------------------------------------------
    def options(self, **changes) -> VlmDecoding:
        """The default decoding options with ``changes`` applied (validated)."""
        return VlmDecoding().replace(**changes)

    @staticmethod
    def prepare(image_bytes: bytes):
        """The upright 8-bit RGB PIL image a VLM sees (``synth_pedes.imaging.open_rgb``: EXIF orientation applied);
        ValueError saying why when the bytes do not decode."""
        from PIL import Image, UnidentifiedImageError

        from synth_pedes.imaging import open_rgb

        if not isinstance(image_bytes, (bytes, bytearray, memoryview)):
            raise ValueError(f"prepare needs image bytes, got {type(image_bytes).__name__}")
        try:
            return open_rgb(bytes(image_bytes))
        except UnidentifiedImageError:
            raise ValueError("cannot decode image: not a recognised image format") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:  # truncated or corrupt data
            raise ValueError(f"cannot decode image: {e}") from None

    def instructions(self, keys: Sequence[str], seed: int) -> list[dict]:
        """Per image key ``{style: instruction}`` (:func:`spac.vlm.style_instruction`)."""
        return [{style: style_instruction(i, key, seed, self.templates) for i, style in enumerate(self.styles)}
                for key in keys]

    def _requests(self, images: Sequence, keys: Sequence[str], seed: int) -> tuple[list[dict], list[tuple]]:
        """The instructions per image, and the flat (image, instruction) list, image-major then style order."""
        if len(images) != len(keys):
            raise ValueError(f"caption needs one key per image, got {len(images)} images and {len(keys)} keys")
        instructions = self.instructions(keys, seed)
        flat = [(img, per[style]) for img, per in zip(images, instructions) for style in self.styles]
        return instructions, flat

    def _regroup(self, texts: list[str], count: int) -> list[dict]:
        m = len(self.styles)
        return [dict(zip(self.styles, texts[i * m:(i + 1) * m])) for i in range(count)]

    # --- outputs --------------------------------------------------------------------------------------------
    def attributes(self, captions: Sequence[dict]) -> tuple[list[dict], list[dict]]:
        """Per image ``{slot: phrase}`` and ``{slot: score}`` read from its captions (see :func:`image_attributes`)."""
        pairs = [image_attributes(c) for c in captions]
        return [p for p, _ in pairs], [s for _, s in pairs]

    def describe(self) -> dict:
        """What was loaded, for lineage: the directory's record (model type, architectures, path, config+weights
        sha256: :func:`~spac.vlm.model_dir.directory_record`), the engine, the parameter count and the styles."""
        return {**directory_record(self.directory), "engine": self.engine, "parameters": self.parameter_count(),
                "styles": list(self.styles)}

    def parameter_count(self) -> int:
        raise NotImplementedError


__all__ = ["VlmDecoding", "VlmBase", "METHODS", "clean_text", "chat_messages", "image_attributes"]
