"""Identity appearance: everything about a person that stays fixed across their images and cameras.

``sample_appearance(seed, identity)`` is a pure function of its arguments (its own
``numpy.random.default_rng`` stream, never global state). A controlled share of identities are
*near-duplicates*: they copy the outfit of an earlier identity and change exactly one detail, so
that telling people apart needs fine details, as in real text-based person retrieval.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .vocab import HAIR_COLOURS, SKIN_TONES

_SALT_APPEARANCE = 0xA11CE
_SALT_NEAR_DUP = 0xD0B1E

# Sampling weights for colours: dark/neutral clothes are common, as in real street data.
_CLOTH_W = {"black": 5, "white": 3.5, "grey": 2.5, "red": 1.4, "blue": 2.0, "navy": 1.4, "green": 1.0,
            "yellow": 0.8, "pink": 0.9, "purple": 0.7, "brown": 1.2, "orange": 0.7}
_JEANS_W = {"blue": 5, "navy": 3, "black": 3, "grey": 1.5, "white": 0.5}
_SHOE_W = {"black": 5, "white": 4, "brown": 2, "grey": 1.5, "red": 0.6, "blue": 0.8, "navy": 0.6,
           "pink": 0.4, "green": 0.3, "yellow": 0.3, "orange": 0.3, "purple": 0.3}
# Which patterns each upper garment type comes in (others are always plain).
_PATTERNS = {"t-shirt": ("plain", "striped", "logo"), "shirt": ("plain", "striped", "checked"),
             "sweater": ("plain", "striped"), "hoodie": ("plain", "logo"), "dress": ("plain", "striped")}


@dataclass(frozen=True)
class Appearance:
    """One identity's fixed appearance (all values are vocabulary words, see ``vocab``)."""

    gender: str  # man | woman
    age: str  # young | adult | old
    age_group: str  # teens | twenties | thirties | forties | fifties | sixties | seventies
    height_factor: float
    width_factor: float
    skin: int  # index into SKIN_TONES
    hair_length: str
    hair_colour: str
    headwear: str  # cap | hat | none
    headwear_colour: str
    upper_type: str
    upper_colour: str
    upper_second_colour: str  # stripes / checks / logo / inner garment colour
    upper_sleeve: str  # short | long
    upper_pattern: str  # plain | striped | checked | logo
    inner_type: str  # for jacket/coat/down jacket worn open: the garment underneath, else "none"
    lower_type: str  # trousers | jeans | shorts | skirt | none (dress)
    lower_colour: str
    skirt_length: str  # short | long | none
    shoe_type: str
    shoe_colour: str
    bag_type: str  # backpack | handbag | shoulder bag | umbrella | none
    bag_colour: str
    bag_side: str  # left | right: the person's own hand / shoulder that holds the item
    near_duplicate_of: int  # identity whose outfit this one copies with one change, -1 if none

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _pick(rng: np.random.Generator, weights: dict[str, float], exclude: tuple[str, ...] = ()) -> str:
    keys = [k for k in weights if k not in exclude]
    w = np.array([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


def _choice(rng: np.random.Generator, options, p=None):
    return options[int(rng.choice(len(options), p=p))]


def _fresh(seed: int, identity: int) -> Appearance:
    """An independent random identity."""
    rng = np.random.default_rng([seed, identity, _SALT_APPEARANCE])
    gender = "woman" if rng.random() < 0.5 else "man"
    age = _choice(rng, ("young", "adult", "old"), p=(0.35, 0.53, 0.12))
    age_group = {"young": _choice(rng, ("teens", "twenties"), p=(0.25, 0.75)),
                 "adult": _choice(rng, ("thirties", "forties", "fifties"), p=(0.5, 0.35, 0.15)),
                 "old": _choice(rng, ("sixties", "seventies"), p=(0.65, 0.35))}[age]
    height_factor = float(np.round(rng.normal(1.0 if gender == "man" else 0.95, 0.04), 3))
    width_factor = float(np.round(np.clip(rng.normal(1.0, 0.08), 0.82, 1.22), 3))
    skin = int(rng.integers(len(SKIN_TONES)))

    if gender == "woman":
        hair_length = _choice(rng, ("short", "medium", "long"), p=(0.15, 0.3, 0.55))
    else:
        hair_length = _choice(rng, ("short", "medium", "long"), p=(0.8, 0.15, 0.05))
    if age == "old":
        hair_colour = _choice(rng, ("grey", "white"))
    else:
        hair_colour = _pick(rng, {"black": 5, "brown": 3, "blonde": 1.5, "red": 0.5, "grey": 0.2})
    headwear = _choice(rng, ("none", "cap", "hat"), p=(0.78, 0.14, 0.08))
    headwear_colour = _pick(rng, _CLOTH_W) if headwear != "none" else "none"

    upper_w = {"t-shirt": 4, "shirt": 2.5, "sweater": 1.5, "jacket": 2, "down jacket": 1.2, "coat": 1.2,
               "hoodie": 1.3, "dress": 1.6 if gender == "woman" else 0.0}
    upper_type = _pick(rng, upper_w)
    upper_colour = _pick(rng, _CLOTH_W)
    upper_sleeve = {"t-shirt": "long" if rng.random() < 0.1 else "short",
                    "shirt": "short" if rng.random() < 0.4 else "long",
                    "dress": "short" if rng.random() < 0.7 else "long"}.get(upper_type, "long")
    pattern_options = _PATTERNS.get(upper_type, ("plain",))
    upper_pattern = "plain" if rng.random() < 0.62 else _choice(rng, pattern_options)
    upper_second_colour = _pick(rng, _CLOTH_W, exclude=(upper_colour,))
    inner_type = "none"
    if upper_type in ("jacket", "coat", "down jacket"):
        inner_type = _choice(rng, ("t-shirt", "shirt", "sweater"), p=(0.5, 0.3, 0.2))

    if upper_type == "dress":
        lower_type, lower_colour, skirt_length = "none", "none", "none"
    else:
        lower_w = {"trousers": 4, "jeans": 4, "shorts": 1.3, "skirt": 2.2 if gender == "woman" else 0.0}
        lower_type = _pick(rng, lower_w)
        lower_colour = _pick(rng, _JEANS_W) if lower_type == "jeans" else _pick(rng, _CLOTH_W)
        skirt_length = _choice(rng, ("short", "long")) if lower_type == "skirt" else "none"
    if upper_type == "dress":
        skirt_length = "short" if rng.random() < 0.6 else "long"

    shoe_w = {"sneakers": 5, "boots": 1.5, "leather shoes": 2.5 if gender == "man" else 1.2,
              "sandals": 1.0 if lower_type in ("shorts", "skirt", "none") else 0.3}
    shoe_type = _pick(rng, shoe_w)
    shoe_colour = _pick(rng, _SHOE_W) if shoe_type != "leather shoes" else _choice(rng, ("black", "brown"))
    bag_type = _pick(rng, {"none": 3.2, "backpack": 2.4, "handbag": 1.5 if gender == "woman" else 0.3,
                           "shoulder bag": 1.3, "umbrella": 0.6})
    bag_colour = _pick(rng, _CLOTH_W) if bag_type != "none" else "none"
    bag_side = "left" if rng.random() < 0.5 else "right"
    return Appearance(gender, age, age_group, height_factor, width_factor, skin, hair_length, hair_colour,
                      headwear, headwear_colour, upper_type, upper_colour, upper_second_colour, upper_sleeve,
                      upper_pattern, inner_type, lower_type, lower_colour, skirt_length, shoe_type, shoe_colour,
                      bag_type, bag_colour, bag_side, -1)


def _other_colour(rng: np.random.Generator, current: str, weights: dict[str, float] = _CLOTH_W) -> str:
    return _pick(rng, weights, exclude=(current,))


def _mutate_one(rng: np.random.Generator, a: Appearance) -> Appearance:
    """The same outfit with exactly one visible detail changed."""
    options = ["upper_colour", "lower_colour", "shoe_colour", "hair_colour", "bag", "upper_pattern",
               "headwear"]
    if a.lower_type == "none":
        options.remove("lower_colour")
    if a.bag_type == "none":
        options.remove("bag")
    if a.age == "old" or a.headwear != "none":
        options.remove("hair_colour")
    if a.upper_type not in _PATTERNS:
        options.remove("upper_pattern")
    what = options[int(rng.integers(len(options)))]
    if what == "upper_colour":
        return dataclasses.replace(a, upper_colour=_other_colour(rng, a.upper_colour),
                                   upper_second_colour=_other_colour(rng, a.upper_colour))
    if what == "lower_colour":
        weights = _JEANS_W if a.lower_type == "jeans" else _CLOTH_W
        return dataclasses.replace(a, lower_colour=_other_colour(rng, a.lower_colour, weights))
    if what == "shoe_colour":
        return dataclasses.replace(a, shoe_colour=_other_colour(rng, a.shoe_colour, _SHOE_W))
    if what == "hair_colour":
        hair = {k: 1.0 for k in HAIR_COLOURS if k not in ("grey", "white")}
        return dataclasses.replace(a, hair_colour=_other_colour(rng, a.hair_colour, hair))
    if what == "bag":
        return dataclasses.replace(a, bag_colour=_other_colour(rng, a.bag_colour))
    if what == "upper_pattern":
        others = [p for p in _PATTERNS[a.upper_type] if p != a.upper_pattern]
        pattern = others[int(rng.integers(len(others)))]
        return dataclasses.replace(a, upper_pattern=pattern)
    if a.headwear == "none":  # headwear: add one, or take it off
        return dataclasses.replace(a, headwear="cap", headwear_colour=_pick(rng, _CLOTH_W))
    return dataclasses.replace(a, headwear="none", headwear_colour="none")


@lru_cache(maxsize=4096)
def sample_appearance(seed: int, identity: int, near_duplicate_rate: float = 0.15) -> Appearance:
    """The appearance of ``identity`` in a corpus with this ``seed`` (deterministic, cached)."""
    base = _fresh(seed, identity)
    if identity == 0 or near_duplicate_rate <= 0:
        return base
    rng = np.random.default_rng([seed, identity, _SALT_NEAR_DUP])
    if rng.random() >= near_duplicate_rate:
        return base
    source = int(identity - 1 - rng.integers(min(identity, 8)))
    twin = _mutate_one(rng, _fresh(seed, source))
    # A different person wearing the same outfit: body, skin and age are this identity's own.
    return dataclasses.replace(twin, height_factor=base.height_factor, width_factor=base.width_factor,
                               skin=base.skin, near_duplicate_of=source)

