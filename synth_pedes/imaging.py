"""Decode image bytes into what models see: the one decoder every reader uses (docs/formats.md#image-decoding).

Rows keep the original file bytes; the pixels a model, a contact sheet or a card shows come from
:func:`open_rgb`, so every reader agrees on them: EXIF orientation applied (a portrait stored rotated is
shown upright), high-bit-depth greyscale scaled to 8 bits by the range of its mode (a 16-bit PNG is not
clipped to white), palette and alpha images flattened, everything as 8-bit RGB.
"""
from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, ImageOps

ORIENTATION_TAG = 0x0112  # EXIF Orientation: 1 is upright; 5..8 swap width and height
HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_UINT16_MAX = 65535


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation ``img`` is stored with (2..8), or 1 when upright, absent or invalid."""
    try:
        value = img.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block is no orientation, not a broken image
        return 1
    return value if isinstance(value, int) and 2 <= value <= 8 else 1


def displayed_size(img: Image.Image) -> tuple[int, int]:
    """``(width, height)`` as shown, after the EXIF orientation (5..8 are quarter turns)."""
    return (img.height, img.width) if exif_orientation(img) >= 5 else img.size


def to_rgb(img: Image.Image) -> Image.Image:
    """An opened image as the upright 8-bit RGB image a model sees (see the module docstring)."""
    if exif_orientation(img) != 1:  # checked first: exif_transpose copies even an upright image
        img = ImageOps.exif_transpose(img)
    if img.mode in HIGH_BIT_DEPTH_MODES:
        img = _to_8bit(img)
    elif img.mode == "P":  # through RGBA: a transparent palette entry is not a colour of its own
        img = img.convert("RGBA")
    return img if img.mode == "RGB" else img.convert("RGB")


def open_rgb(data: bytes | bytearray | memoryview | str | os.PathLike, draft: tuple[int, int] | None = None
             ) -> Image.Image:
    """Decode image bytes (or a file) with :func:`to_rgb`. ``draft=(width, height)`` lets JPEG decode at a
    reduced scale that still covers that size. PIL's errors (``OSError`` and kin) pass through."""
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    with Image.open(src) as img:
        if draft is not None:
            w, h = draft
            img.draft("RGB", (h, w) if exif_orientation(img) >= 5 else (w, h))  # the stored orientation
        img.load()
        return to_rgb(img)


def _to_8bit(img: Image.Image) -> Image.Image:
    """Greyscale of more than 8 bits -> mode L, scaled (not clipped) by the mode's range: 16-bit modes (and
    ``I`` holding 16-bit values, as PNG and TIFF decode) by 0..65535, ``F`` in 0..1 by that, anything
    else by its own min..max."""
    a = np.nan_to_num(np.asarray(img, dtype=np.float64))
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if img.mode.startswith("I;16") or (img.mode == "I" and lo >= 0 and hi <= _UINT16_MAX):
        lo, hi = 0.0, float(_UINT16_MAX)
    elif img.mode == "F" and lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))  # 2-D uint8: mode L
