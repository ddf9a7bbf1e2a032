"""A ProcPedes corpus: configuration, the plan of images to render, and one record per image.

``plan_items(config)`` lists small picklable ``RenderItem``s in a deterministic order and
``render_record(item, config)`` turns one into a record (``synth_pedes.schema.make_record``), so a
sharded writer can hand items to Dask workers. The same config gives byte-identical records, in any
process and in any order: every random draw comes from ``numpy.random.default_rng`` seeded with
``(seed, identity[, index], salt)``.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from plip_runtime.config import ConfigBase

from ..schema import make_record
from .captions import STYLES, ImageFacts, make_caption
from .people import sample_appearance
from .phrases import canonical_phrases, image_phrases
from .render import render_image

logger = logging.getLogger(__name__)

SOURCE = "procpedes"
GENERATOR_VERSION = 1
STYLE_ASSIGNMENTS = ("cycle", "rotate", "fixed", "random")
_SALT_SPLIT = 0x5B117
_SALT_CAMERAS = 0xCA5
_SALT_CAPTION = 0xCA7
_INT_FIELDS = ("identities", "images_per_identity", "seed", "captions_per_image", "height", "width", "cameras",
               "jpeg_quality")


@dataclass(frozen=True)
class ProcPedesConfig(ConfigBase):
    """What to render. Validated on construction (:class:`~plip_runtime.config.ConfigError`, a ``ValueError``
    naming the field).

    ``style_assignment`` says which style caption ``j`` of an image gets: ``cycle``: ``styles[j % n]``
    (so with two captions and the default styles, caption 0 is CUHK-like and caption 1 ICFG-like);
    ``rotate``: ``styles[(identity + index + j) % n]`` (every style equally often over the corpus);
    ``fixed``: always ``styles[0]``; ``random``: drawn per caption.
    """

    identities: int = 100
    images_per_identity: int = 4
    seed: int = 0
    captions_per_image: int = 2
    height: int = 256
    width: int = 128
    cameras: int = 6
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, val, test (identity-disjoint)
    styles: tuple[str, ...] = STYLES
    style_assignment: str = "cycle"
    near_duplicate_rate: float = 0.15  # identities copying an earlier outfit with one detail changed
    occlusion_rate: float = 0.15  # images with an occluder in front of the legs
    jpeg_quality: int = 90

    def validate(self) -> None:
        for name in _INT_FIELDS:  # NumPy integers are integers too
            if isinstance(getattr(self, name), np.integer):
                object.__setattr__(self, name, int(getattr(self, name)))
        self.require_int("identities", 1)
        self.require_int("images_per_identity", 1)
        self.require_int("seed", 0)
        self.require_int("captions_per_image", 0, 16)
        self.require_int("height", 64, 2048)
        self.require_int("width", 32, 2048)
        self.require("height", self.height >= self.width, "must be at least the width (pedestrian crops are portrait)")
        self.require_int("cameras", 1, 99)
        self.require_int("jpeg_quality", 1, 100)
        try:
            object.__setattr__(self, "split_fractions", tuple(float(x) for x in self.split_fractions))
        except (TypeError, ValueError):
            pass
        fr = self.split_fractions
        self.require("split_fractions", isinstance(fr, tuple) and len(fr) == 3
                     and all(x >= 0 and math.isfinite(x) for x in fr) and abs(sum(fr) - 1.0) < 1e-6,
                     "must be three non-negative numbers (train, val, test) summing to 1")
        if isinstance(self.styles, (str, list, tuple)):
            object.__setattr__(self, "styles", (self.styles,) if isinstance(self.styles, str) else tuple(self.styles))
        styles = self.styles
        self.require("styles", isinstance(styles, tuple) and len(styles) >= 1 and all(s in STYLES for s in styles)
                     and len(set(styles)) == len(styles), f"must be distinct names from {', '.join(STYLES)}")
        self.require_choice("style_assignment", STYLE_ASSIGNMENTS)
        self.require_number("near_duplicate_rate", 0, 1)
        self.require_number("occlusion_rate", 0, 1)

    @property
    def n_images(self) -> int:
        return self.identities * self.images_per_identity


@dataclass(frozen=True, order=True)
class RenderItem:
    """One image to render (small and picklable, for distributing work)."""

    identity: int
    index: int
    split: str
    camera: str  # "c1" .. "cN"

    @property
    def key(self) -> str:
        return f"{SOURCE}/{self.split}/{self.identity:05d}/{self.camera}_{self.index:03d}.jpg"


@lru_cache(maxsize=32)
def identity_splits(identities: int, seed: int, fractions: tuple[float, float, float]) -> tuple[str, ...]:
    """The split of every identity: exact counts from the fractions, chosen by a seeded permutation.

    Every split with a non-zero fraction gets at least one identity when there are enough identities.
    """
    counts = [int(round(identities * f)) for f in fractions]
    nonzero = [i for i, f in enumerate(fractions) if f > 0]
    if identities >= len(nonzero):
        for i in nonzero:
            if counts[i] == 0:
                counts[i] = 1
    while sum(counts) > identities:  # rounding overshoot: take from the largest
        counts[int(np.argmax(counts))] -= 1
    target = 0 if fractions[0] > 0 else max(nonzero, key=lambda i: fractions[i])
    counts[target] += identities - sum(counts)  # rounding remainder: to train (or the largest split)
    perm = np.random.default_rng([seed, _SALT_SPLIT]).permutation(identities)
    out = [""] * identities
    pos = 0
    for name, n in zip(("test", "val", "train"), (counts[2], counts[1], counts[0])):
        for ident in perm[pos:pos + n]:
            out[int(ident)] = name
        pos += n
    return tuple(out)


def identity_cameras(seed: int, identity: int, cameras: int, images: int) -> list[int]:
    """The cameras (1-based) that see this identity, in the order its images cycle through them."""
    rng = np.random.default_rng([seed, identity, _SALT_CAMERAS])
    m = max(1, min(cameras, images, int(rng.integers(2, 5))))
    return [int(c) + 1 for c in rng.choice(cameras, size=m, replace=False)]


def plan_items(config: ProcPedesConfig) -> list[RenderItem]:
    """Every image of the corpus, ordered by identity then image index."""
    splits = identity_splits(config.identities, config.seed, config.split_fractions)
    items = []
    for ident in range(config.identities):
        cams = identity_cameras(config.seed, ident, config.cameras, config.images_per_identity)
        for k in range(config.images_per_identity):
            items.append(RenderItem(ident, k, splits[ident], f"c{cams[k % len(cams)]}"))
    return items


def caption_styles(item: RenderItem, config: ProcPedesConfig) -> list[str]:
    st, n = config.styles, len(config.styles)
    if config.style_assignment == "cycle":
        return [st[j % n] for j in range(config.captions_per_image)]
    if config.style_assignment == "rotate":
        return [st[(item.identity + item.index + j) % n] for j in range(config.captions_per_image)]
    if config.style_assignment == "fixed":
        return [st[0]] * config.captions_per_image
    rng = np.random.default_rng([config.seed, item.identity, item.index, _SALT_CAPTION, 1])
    return [st[int(rng.integers(n))] for _ in range(config.captions_per_image)]


def render_record(item: RenderItem, config: ProcPedesConfig) -> dict:
    """Render one image and return its record (schema layout, ``status`` ok)."""
    a = sample_appearance(config.seed, item.identity, config.near_duplicate_rate)
    camera = int(item.camera.lstrip("c"))
    r = render_image(config.seed, item.identity, item.index, camera, a, config.height, config.width,
                     config.occlusion_rate, config.jpeg_quality)
    facts = ImageFacts(appearance=a, visible=r.visible, view=r.params["view"], facing=r.params["facing"],
                       inner_visible=r.drawn["inner"], logo_visible=r.drawn["logo"], occluder=r.params["occluder"])
    captions = []
    for j, style in enumerate(caption_styles(item, config)):
        rng = np.random.default_rng([config.seed, item.identity, item.index, _SALT_CAPTION, 0, j])
        captions.append(make_caption(rng, style, facts))
    extra = {
        "generator": SOURCE, "generator_version": GENERATOR_VERSION, "seed": config.seed, "index": item.index,
        "appearance": a.to_dict(), "identity_attributes": canonical_phrases(a), "visible": r.visible,
        "render": r.params, "boxes": r.boxes,
        "details": {"inner_visible": r.drawn["inner"], "logo_visible": r.drawn["logo"]},
    }
    return make_record(item.key, identity=item.identity, source=SOURCE, split=item.split, camera=item.camera,
                       image_bytes=r.jpeg, image_path=item.key, width=config.width, height=config.height,
                       attributes=image_phrases(a, r.visible), captions=captions, extra=extra)


def iter_records(config: ProcPedesConfig, items: list[RenderItem] | None = None):
    """Render records one by one (single process), in plan order."""
    for item in plan_items(config) if items is None else items:
        yield render_record(item, config)


def bench_render(n_images: int = 300, config: ProcPedesConfig | None = None) -> dict:
    """Single-process render throughput, JPEG encode included (after a short warm-up that fills caches)."""
    if n_images < 1:
        raise ValueError(f"bench_render: n_images must be at least 1, got {n_images}")
    config = config or ProcPedesConfig(identities=max(1, n_images // 4), images_per_identity=4)
    items = plan_items(config)
    for it in items[:min(len(items), 24)]:  # warm: backgrounds and appearances are cached per process
        render_record(it, config)
    todo = [items[i % len(items)] for i in range(n_images)]
    t0 = time.perf_counter()
    nbytes = 0
    for it in todo:
        a = sample_appearance(config.seed, it.identity, config.near_duplicate_rate)
        nbytes += len(render_image(config.seed, it.identity, it.index, int(it.camera[1:]), a, config.height,
                                   config.width, config.occlusion_rate, config.jpeg_quality).jpeg)
    t_img = time.perf_counter() - t0
    t0 = time.perf_counter()
    for it in todo:
        render_record(it, config)
    t_rec = time.perf_counter() - t0
    out = {"n_images": n_images, "height": config.height, "width": config.width,
           "images_per_s": round(n_images / t_img, 1), "ms_per_image": round(1000 * t_img / n_images, 3),
           "records_per_s": round(n_images / t_rec, 1), "ms_per_record": round(1000 * t_rec / n_images, 3),
           "mean_jpeg_bytes": int(nbytes / n_images), "captions_per_image": config.captions_per_image}
    logger.info("procpedes bench: %s", out)
    return out
