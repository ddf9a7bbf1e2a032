"""Rendering one ProcPedes image: scene, person, occluder, optics, JPEG; plus its visible ground truth.

``render_image(seed, identity, index, camera, ...)`` is a pure function of its arguments. The
per-image random stream is ``default_rng([seed, identity, index, salt])``; the identity's appearance
comes from ``people.sample_appearance``. Visibility: a slot is ``unknown`` in an image when too little
of it is inside the frame and not behind the occluder (shoes < 60 %, lower garment < 45 %,
belongings < 50 %), or when it is not drawn at all in that view (a handbag or umbrella held on the far
side in a side view).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..schema import SLOTS
from .body import draw_person
from .people import Appearance
from .scene import BACKGROUNDS_PER_CAMERA, OCCLUDERS, background, camera_style, draw_occluder, noise_field

_SALT_IMAGE = 0x1A6E
MIN_VISIBLE = {"shoes": 0.6, "lower": 0.45, "belongings": 0.5}


@dataclass
class Rendered:
    jpeg: bytes
    visible: dict[str, bool]  # per slot
    params: dict  # per-image nuisance values (view, pose, placement, lighting, occluder ...)
    boxes: dict[str, list[int]]  # pixel boxes per slot as drawn (before occlusion)
    drawn: dict[str, bool]


def _visible_fraction(box, occ, width: int, height: int) -> float:
    x0, y0, x1, y1 = box
    area = max(1e-6, (x1 - x0) * (y1 - y0))
    # inside the frame
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    inside = max(0.0, fx1 - fx0) * max(0.0, fy1 - fy0)
    covered = 0.0
    if occ is not None:
        ox0, oy0, ox1, oy1 = occ
        covered = max(0.0, min(fx1, ox1) - max(fx0, ox0)) * max(0.0, min(fy1, oy1) - max(fy0, oy0))
    return max(0.0, inside - covered) / area


def _lut(gain, contrast: float) -> list[int]:
    x = np.arange(256, dtype=np.float32)
    out = []
    for g in gain:
        y = (x - 128.0) * contrast + 128.0
        out.append(np.clip(y * g, 0, 255).astype(np.uint8))
    return np.concatenate(out).tolist()


def place_occluder(rng: np.random.Generator, kind: str, top: float, scale: float, cx: float, height: int,
                   width: int) -> tuple[int, int, int]:
    """Where an occluder stands in front of a person of height ``scale`` whose head is at ``top``: its top
    edge (between the person's thighs and ankles) and its horizontal span ``x0, x1``."""
    # at most the bottom rows: with the feet cut off, the knees' height can lie below the image
    occ_top = min(int(top + scale * float(rng.uniform(0.62, 0.93))), height - 2)
    if kind == "car":
        return occ_top, -10, width + 10
    span = int(width * float(rng.uniform(0.45, 0.9)))
    x0 = int(cx - span * float(rng.uniform(0.3, 0.7)))
    return occ_top, x0, x0 + span


def render_image(seed: int, identity: int, index: int, camera: int, appearance: Appearance, height: int = 256,
                 width: int = 128, occlusion_rate: float = 0.15, jpeg_quality: int = 90) -> Rendered:
    """Render one image of ``appearance`` seen by ``camera`` (1-based)."""
    rng = np.random.default_rng([seed, identity, index, _SALT_IMAGE])
    cam = camera_style(seed, camera)
    hs = height / 256.0

    # scene window
    variant = int(rng.integers(BACKGROUNDS_PER_CAMERA))
    mirrored = bool(rng.random() < 0.5)
    bg = background(seed, camera, variant, height, width, mirrored)
    bx = int(rng.integers(0, bg.width - width + 1))
    by = int(rng.integers(0, bg.height - height + 1))
    img = bg.crop((bx, by, bx + width, by + height))

    # pose and placement
    view = ("front", "back", "side")[int(rng.choice(3, p=cam.view_p))]
    facing = (1 if rng.random() < 0.5 else -1) if view == "side" else 0
    phase = float(rng.random())
    scale_frac = float(rng.uniform(*cam.scale)) * float(np.clip(appearance.height_factor, 0.85, 1.1))
    scale = min(scale_frac * height, 2.6 * width)  # keep the person inside narrow frames
    cx = width / 2 + float(rng.uniform(-0.07, 0.07)) * width
    cut_feet = bool(rng.random() < 0.05)
    if cut_feet:  # framed too low: the feet leave the image
        top = height - scale * float(rng.uniform(0.88, 0.95))
    else:
        top = (height - scale) * float(rng.uniform(0.3, 0.8))
    boxes, drawn = draw_person(img, appearance, view, facing, phase, scale, cx, top)

    # occluder in front of the legs
    occ_box, occ_kind = None, None
    if rng.random() < occlusion_rate:
        occ_kind = OCCLUDERS[int(rng.integers(len(OCCLUDERS)))]
        occ_top, x0, x1 = place_occluder(rng, occ_kind, top, scale, cx, height, width)
        occ_box = draw_occluder(ImageDraw.Draw(img), rng, occ_kind, occ_top, x0, x1, height)

    visible = {s: True for s in SLOTS}
    fractions = {}
    for slot, need in MIN_VISIBLE.items():
        if slot == "belongings" and not drawn["belongings"]:
            visible[slot] = False
            continue
        if slot == "lower" and appearance.lower_type == "none":
            visible[slot] = False
            continue
        box = boxes.get(slot)
        frac = _visible_fraction(box, occ_box, width, height) if box else 0.0
        fractions[slot] = round(frac, 3)
        visible[slot] = frac >= need

    # optics: low resolution, lighting, blur, noise
    lowres = bool(rng.random() < cam.lowres)
    if lowres:
        f = float(rng.uniform(0.4, 0.65))
        small = img.resize((max(8, int(width * f)), max(16, int(height * f))), Image.Resampling.BILINEAR)
        img = small.resize((width, height), Image.Resampling.BILINEAR)
    brightness = float(rng.uniform(0.85, 1.12))
    gain = tuple(g * brightness for g in cam.gain)
    img = img.point(_lut(gain, cam.contrast))
    blur = float(rng.uniform(*cam.blur)) * hs
    img = img.filter(ImageFilter.GaussianBlur(blur))
    field = noise_field(height, width)
    oy, ox = int(rng.integers(0, height)), int(rng.integers(0, width))
    sigma = cam.noise * float(rng.uniform(0.6, 1.3))
    arr = np.asarray(img, dtype=np.float32) + field[oy:oy + height, ox:ox + width] * sigma
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=jpeg_quality)

    params = {"view": view, "facing": {1: "right", -1: "left", 0: "none"}[facing], "phase": round(phase, 4),
              "scale": round(scale / height, 4), "center_x": round(cx / width, 4), "top": round(top / height, 4),
              "feet_cut": cut_feet, "background": variant, "mirrored": mirrored, "crop": [bx, by],
              "occluder": occ_kind, "occluder_box": list(occ_box) if occ_box else None,
              "visible_fraction": fractions, "lowres": lowres, "brightness": round(brightness, 4),
              "gain": [round(g, 4) for g in gain], "contrast": round(cam.contrast, 4), "blur": round(blur, 3),
              "noise": round(sigma, 3)}
    int_boxes = {k: [int(math.floor(b[0])), int(math.floor(b[1])), int(math.ceil(b[2])), int(math.ceil(b[3]))]
                 for k, b in sorted(boxes.items())}
    return Rendered(buf.getvalue(), visible, params, int_boxes, dict(drawn))
