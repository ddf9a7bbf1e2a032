"""Cameras and street scenes: per-camera style, pre-rendered backgrounds, occluders and noise.

Everything static is built once per process and cached (``functools.lru_cache``); a render only
crops a cached background, so the per-image cost stays small.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

logger = logging.getLogger(__name__)

_SALT_CAMERA = 0xCA3E4A
_SALT_BACKGROUND = 0xB6
BACKGROUNDS_PER_CAMERA = 3

_FACADES = ((176, 160, 140), (150, 146, 140), (196, 186, 170), (130, 104, 90), (170, 120, 96), (112, 116, 120),
            (210, 204, 196), (158, 150, 118))
_PAVEMENTS = ((150, 148, 144), (170, 160, 146), (120, 120, 122), (182, 176, 166), (140, 130, 120))


@dataclass(frozen=True)
class CameraStyle:
    """The fixed look of one camera: lighting, optics and framing."""

    gain: tuple[float, float, float]  # per-channel colour cast times brightness
    contrast: float
    blur: tuple[float, float]  # Gaussian radius range, as a fraction of image height / 256
    noise: float  # pixel noise sigma (0-255 scale)
    lowres: float  # chance that an image is captured at low resolution and upscaled
    scale: tuple[float, float]  # person height / image height range
    view_p: tuple[float, float, float]  # front, back, side


@lru_cache(maxsize=256)
def camera_style(seed: int, camera: int) -> CameraStyle:
    rng = np.random.default_rng([seed, camera, _SALT_CAMERA])
    brightness = float(rng.uniform(0.9, 1.08))
    cast = rng.uniform(-0.05, 0.05, size=3)
    cast -= cast.mean()
    gain = tuple(float(round(brightness * (1.0 + c), 4)) for c in cast)
    lo = float(rng.uniform(0.1, 0.35))
    views = rng.dirichlet((6.0, 4.0, 4.0))
    scale_lo = float(rng.uniform(0.74, 0.84))
    return CameraStyle(gain=gain, contrast=float(rng.uniform(0.88, 1.05)), blur=(lo, lo + float(rng.uniform(0.2, 0.5))),
                       noise=float(rng.uniform(2.0, 6.0)), lowres=float(rng.uniform(0.0, 0.3)),
                       scale=(scale_lo, min(0.93, scale_lo + 0.1)), view_p=tuple(float(v) for v in views))


def _jitter(rng: np.random.Generator, colour, amount: int = 14) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _draw_building(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x0: int, x1: int, roof: int,
                   ground: int, colour) -> None:
    draw.rectangle((x0, roof, x1, ground), fill=colour)
    floor_h = int(rng.integers(max(8, (ground - roof) // 6), max(10, (ground - roof) // 3) + 1))
    win_w = int(rng.integers(6, 14))
    gap = int(rng.integers(5, 12))
    glass = _jitter(rng, (70, 84, 100), 18)
    frame = tuple(min(255, c + 30) for c in colour)
    shop_top = ground - int(floor_h * 1.4)
    y = roof + 4
    while y + floor_h < shop_top:
        x = x0 + gap // 2 + 2
        while x + win_w < x1 - 2:
            draw.rectangle((x - 1, y - 1, x + win_w + 1, y + int(floor_h * 0.6) + 1), fill=frame)
            draw.rectangle((x, y, x + win_w, y + int(floor_h * 0.6)), fill=glass)
            x += win_w + gap
        y += floor_h
    # ground floor: shop window, door and a coloured sign band
    sign = _jitter(rng, ((160, 40, 40), (40, 70, 140), (30, 110, 60), (200, 160, 40))[int(rng.integers(4))], 30)
    draw.rectangle((x0, shop_top - 5, x1, shop_top), fill=sign)
    draw.rectangle((x0 + 3, shop_top + 3, x1 - 3, ground - 2), fill=_jitter(rng, (55, 62, 70), 15))
    door = int(rng.integers(x0 + 3, max(x0 + 4, x1 - 14)))
    draw.rectangle((door, shop_top + 5, door + 10, ground), fill=_jitter(rng, (90, 70, 50), 20))


def _draw_tree(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: int, base: int, h: int) -> None:
    draw.rectangle((x - 2, base - h // 2, x + 2, base), fill=(78, 60, 44))
    green = _jitter(rng, (60, 100, 50), 20)
    for _ in range(6):
        dx, dy = rng.integers(-h // 4, h // 4 + 1), rng.integers(-h // 6, h // 6 + 1)
        r = int(rng.integers(h // 6, h // 4 + 1))
        cy = base - h // 2 - h // 6 + dy
        draw.ellipse((x + dx - r, cy - r, x + dx + r, cy + r), fill=_jitter(rng, green, 12))


def _draw_bystander(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: int, foot: int, h: int) -> None:
    """A distant, featureless pedestrian blob."""
    body = _jitter(rng, (70, 70, 76), 40)
    legs = _jitter(rng, (50, 50, 56), 20)
    w = max(2, h // 7)
    draw.rectangle((x - w // 2, foot - h // 2, x + w // 2, foot), fill=legs)
    draw.rectangle((x - w, foot - int(h * 0.85), x + w, foot - h // 2), fill=body)
    r = max(1, h // 14)
    draw.ellipse((x - r, foot - h - r, x + r, foot - h + r), fill=(190, 150, 120))


@lru_cache(maxsize=64)
def background(seed: int, camera: int, variant: int, height: int, width: int, mirrored: bool = False) -> Image.Image:
    """A wide street scene for one camera (cached); callers crop a ``width`` x ``height`` window."""
    if mirrored:
        return background(seed, camera, variant, height, width).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    rng = np.random.default_rng([seed, camera, variant, _SALT_BACKGROUND])
    bw, bh = width * 3, height + height // 8
    img = Image.new("RGB", (bw, bh), _jitter(rng, (170, 190, 210), 20))
    draw = ImageDraw.Draw(img)
    style = np.random.default_rng([seed, camera, _SALT_BACKGROUND])  # shared by a camera's variants
    horizon = int(bh * style.uniform(0.36, 0.52))
    facade = _FACADES[int(style.integers(len(_FACADES)))]
    pave = _PAVEMENTS[int(style.integers(len(_PAVEMENTS)))]
    x = -int(rng.integers(0, 30))
    while x < bw:
        w = int(rng.integers(width // 3, width + 1))
        roof = int(rng.integers(-10, max(0, horizon // 3)))
        _draw_building(draw, rng, x, x + w, roof, horizon, _jitter(rng, facade, 16))
        x += w
    draw.rectangle((0, horizon, bw, bh), fill=pave)
    # pavement tiles in perspective: rows get wider apart towards the camera
    line = tuple(max(0, c - 22) for c in pave)
    y, step = float(horizon + 3), 3.0
    while y < bh:
        draw.line((0, int(y), bw, int(y)), fill=line)
        step *= 1.35
        y += step
    vx = int(rng.integers(bw // 4, 3 * bw // 4))
    for k in range(-12, 13):
        draw.line((vx + k * 8, horizon, vx + k * 80, bh), fill=line)
    draw.rectangle((0, horizon, bw, horizon + 2), fill=tuple(max(0, c - 40) for c in pave))  # kerb
    for _ in range(int(rng.integers(1, 4))):  # lamp posts
        px = int(rng.integers(0, bw))
        draw.rectangle((px - 1, horizon // 4, px + 2, horizon + int(rng.integers(6, 20))), fill=(50, 54, 58))
        draw.ellipse((px - 5, horizon // 4 - 3, px + 6, horizon // 4 + 3), fill=(60, 64, 70))
    for _ in range(int(rng.integers(0, 3))):
        _draw_tree(draw, rng, int(rng.integers(0, bw)), horizon + int(rng.integers(2, 12)),
                   int(rng.integers(height // 4, height // 2)))
    for _ in range(int(rng.integers(2, 8))):
        foot = horizon + int(rng.integers(2, max(3, height // 10)))
        _draw_bystander(draw, rng, int(rng.integers(0, bw)), foot, int(rng.integers(height // 8, height // 4)))
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.8, 1.6)) * height / 256))
    grain = np.random.default_rng([seed, camera, variant, 7]).normal(0.0, 4.0, size=(bh, bw, 1))
    arr = np.clip(np.asarray(img, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    logger.debug("rendered background camera=%d variant=%d (%dx%d)", camera, variant, bw, bh)
    return Image.fromarray(arr)


@lru_cache(maxsize=8)
def noise_field(height: int, width: int) -> np.ndarray:
    """A fixed standard-normal field, twice the image size, from which renders take random windows."""
    field = np.random.default_rng(12345).standard_normal((2 * height, 2 * width, 3)).astype(np.float32)
    field.flags.writeable = False
    return field


OCCLUDERS = ("car", "box", "bin", "bush", "barrier")


def draw_occluder(draw: ImageDraw.ImageDraw, rng: np.random.Generator, kind: str, top: int, x0: int, x1: int,
                  height: int) -> tuple[int, int, int, int]:
    """Draw an occluder standing on the ground whose top edge is at ``top``; return its box."""
    box = (x0, top, x1, height + 2)
    if kind == "car":
        body = _jitter(rng, ((180, 20, 24), (30, 40, 120), (200, 200, 204), (20, 20, 24), (90, 94, 100))[int(rng.integers(5))], 12)
        draw.rounded_rectangle(box, radius=max(3, (height - top) // 5), fill=body)
        wy = top + max(2, (height - top) // 6)
        draw.rectangle((x0 + 6, top + 2, x1 - 6, wy), fill=(60, 74, 90))  # window band
        draw.line((x0, wy + 6, x1, wy + 6), fill=tuple(max(0, c - 40) for c in body), width=2)
    elif kind == "box":
        colour = _jitter(rng, (170, 128, 80), 18)
        draw.rectangle(box, fill=colour)
        draw.line(((x0 + x1) // 2, top, (x0 + x1) // 2, height), fill=tuple(max(0, c - 50) for c in colour), width=2)
        draw.line((x0, top + 4, x1, top + 4), fill=tuple(max(0, c - 30) for c in colour), width=1)
    elif kind == "bin":
        colour = _jitter(rng, ((40, 90, 50), (60, 60, 64), (30, 60, 120))[int(rng.integers(3))], 10)
        draw.rounded_rectangle(box, radius=3, fill=colour)
        draw.rectangle((x0 - 2, top, x1 + 2, top + 4), fill=tuple(max(0, c - 20) for c in colour))
    elif kind == "bush":
        green = _jitter(rng, (54, 96, 46), 16)
        draw.rectangle((x0, top + (height - top) // 3, x1, height + 2), fill=green)
        r = max(4, (x1 - x0) // 6)
        for k in range(7):
            cx = x0 + (k + 0.5) * (x1 - x0) / 7
            draw.ellipse((cx - r, top, cx + r, top + 2 * r + 4), fill=_jitter(rng, green, 14))
    else:  # barrier
        colour = (220, 220, 214)
        draw.rectangle(box, fill=colour)
        for k in range(x0, x1, 14):
            draw.rectangle((k, top, min(k + 7, x1), height + 2), fill=(200, 40, 30))
        draw.rectangle((x0, top, x1, top + 2), fill=(120, 120, 118))
    return box
