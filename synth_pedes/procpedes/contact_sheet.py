"""A contact sheet: a grid of images, each with its six attribute phrases underneath, for a person to look at."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..imaging import open_rgb
from ..schema import SLOTS, UNKNOWN

logger = logging.getLogger(__name__)

_LABEL = {"person": "P", "head": "H", "upper": "U", "lower": "L", "shoes": "S", "belongings": "B"}


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def contact_sheet(records, png_path, columns: int = 8, max_images: int = 32, scale: float = 1.0,
                  colors: int | None = None) -> dict:
    """Write a PNG grid of up to ``max_images`` records with their attribute phrases.

    ``scale`` resizes the images, ``colors`` (e.g. 128) quantizes the sheet to a palette to keep the
    file small. Records without an image are skipped. Returns ``{"path", "n_images", "bytes"}``.
    """
    if columns < 1 or max_images < 1:
        raise ValueError(f"contact_sheet: columns and max_images must be at least 1, got {columns}, {max_images}")
    cells = []
    for rec in records:
        if len(cells) >= max_images:
            break
        if not rec.get("image") or rec["image"].get("bytes") is None:
            continue
        img = open_rgb(rec["image"]["bytes"])
        if scale != 1.0:
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                             Image.Resampling.LANCZOS)
        cells.append((rec, img))
    if not cells:
        raise ValueError("contact_sheet: no records with images")
    fsize = max(8, round(10 * max(scale, 0.8)))
    font = _font(fsize)
    line_h = fsize + 2
    img_w = max(c[1].width for c in cells)
    img_h = max(c[1].height for c in cells)
    cell_w = max(img_w, round(15 * fsize)) + 6
    cell_h = img_h + line_h * (len(SLOTS) + 1) + 8
    cols = min(columns, len(cells))
    rows = (len(cells) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (rec, img) in enumerate(cells):
        x0, y0 = (i % cols) * cell_w, (i // cols) * cell_h
        sheet.paste(img, (x0 + (cell_w - img.width) // 2, y0 + 2))
        y = y0 + img_h + 4
        view = ""
        try:
            view = json.loads(rec.get("extra") or "{}").get("render", {}).get("view", "")
        except (TypeError, ValueError):
            pass
        head = f"id {rec.get('identity')} {rec.get('camera') or ''} {view}".strip()
        draw.text((x0 + 3, y), _fit(draw, head, font, cell_w - 6), fill=(90, 90, 90), font=font)
        y += line_h
        attrs = rec.get("attributes") or {}
        for slot in SLOTS:
            value = attrs.get(slot, UNKNOWN) or UNKNOWN
            colour = (150, 150, 150) if value == UNKNOWN else (0, 0, 0)
            draw.text((x0 + 3, y), _LABEL[slot], fill=(180, 60, 40), font=font)
            draw.text((x0 + 3 + fsize, y), _fit(draw, value, font, cell_w - 8 - fsize), fill=colour, font=font)
            y += line_h
    if colors:
        sheet = sheet.quantize(colors=colors, method=Image.Quantize.FASTOCTREE)
    path = Path(png_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG", optimize=True)
    size = path.stat().st_size
    logger.info("wrote contact sheet of %d images to %s (%d bytes)", len(cells), path, size)
    return {"path": str(path), "n_images": len(cells), "bytes": size}
