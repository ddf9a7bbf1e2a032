"""Attribute phrases: the canonical ground-truth phrase of each slot, and every true way to word it.

A phrase is built from *components* (colour, pattern, sleeve, type ...), each a tuple of weighted
alternatives where ``""`` means "left out". ``sample`` draws one wording; ``options`` enumerates all
of them, which is what the tests use to check that a caption's span is a true description.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..schema import SLOTS, UNKNOWN
from .people import Appearance
from .vocab import COLOUR_SYNONYMS, HAIR_LENGTH_WORDS, PATTERN_WORDS, PERSON_SYNONYMS, TYPE_SYNONYMS

Component = tuple[tuple[str, float], ...]


def _alts(words, first: float = 3.0, rest: float = 1.0) -> Component:
    """Alternatives with the first (canonical) one preferred."""
    return tuple((w, first if i == 0 else rest) for i, w in enumerate(words))


def _opt(comp: Component, omit: float) -> Component:
    """The component, or left out with relative weight ``omit``."""
    return comp + (("", omit),)


def person_key(a: Appearance) -> str:
    return {"young": "young ", "old": "old ", "adult": ""}[a.age] + a.gender


def canonical_phrases(a: Appearance) -> dict[str, str]:
    """The six slot phrases of an identity, as if everything were visible."""
    if a.headwear != "none":
        head = f"{a.headwear_colour} {a.headwear}"
    else:
        head = f"{HAIR_LENGTH_WORDS[a.hair_length][0]} {a.hair_colour} hair"
    pattern = PATTERN_WORDS[a.upper_pattern][:1]
    upper = " ".join([a.upper_colour, *pattern, a.upper_type])
    lower = UNKNOWN if a.lower_type == "none" else f"{a.lower_colour} {a.lower_type}"
    bag = UNKNOWN if a.bag_type == "none" else f"{a.bag_colour} {a.bag_type}"
    return {"person": person_key(a), "head": head, "upper": upper, "lower": lower,
            "shoes": f"{a.shoe_colour} {a.shoe_type}", "belongings": bag}


def image_phrases(a: Appearance, visible: dict[str, bool]) -> dict[str, str]:
    """Ground truth of one image: the canonical phrase where the slot is visible, else ``unknown``."""
    canon = canonical_phrases(a)
    return {s: canon[s] if visible.get(s, True) else UNKNOWN for s in SLOTS}


def _colour(c: str, omit: float = 0.0) -> Component:
    comp = _alts(COLOUR_SYNONYMS[c])
    return _opt(comp, omit) if omit else comp


def components(slot: str, a: Appearance, which: str = "main") -> list[list[Component]]:
    """Alternative component sequences (orderings) for a slot phrase of ``a``.

    ``which`` selects a secondary phrase of a slot: ``"inner"`` (the garment under an open jacket or
    coat, slot upper) or ``"hair"`` (hair showing under headwear, slot head).
    """
    if slot == "person":
        key = person_key(a)
        words = _alts(PERSON_SYNONYMS[key])
        if a.age != "adult":  # a young/old man is also simply a man
            words = words + tuple((w, 0.5) for w in PERSON_SYNONYMS[a.gender][:2])
        return [[words]]
    if slot == "head":
        if a.headwear != "none" and which == "main":
            return [[_colour(a.headwear_colour), _alts(TYPE_SYNONYMS[a.headwear])]]
        length = _alts(HAIR_LENGTH_WORDS[a.hair_length])
        colour = _alts(COLOUR_SYNONYMS.get(a.hair_colour, (a.hair_colour,)))
        hair = (("hair", 1.0),)
        return [[length, colour, hair], [colour, length, hair], [length, hair], [colour, hair]]
    if slot == "upper":
        if which == "inner":
            return [[_colour(a.upper_second_colour, 0.2), _alts(TYPE_SYNONYMS[a.inner_type])]]
        sleeve: Component = (("", 4.0),)
        if a.upper_type in ("t-shirt", "shirt", "dress"):
            sleeve = ((f"{a.upper_sleeve}-sleeved", 1.0), ("", 4.0))
        pattern = _opt(_alts(PATTERN_WORDS[a.upper_pattern]), 0.4) if PATTERN_WORDS[a.upper_pattern] else (("", 1.0),)
        type_ = _alts(TYPE_SYNONYMS[a.upper_type])
        return [[_colour(a.upper_colour, 0.1), sleeve, pattern, type_],
                [sleeve, _colour(a.upper_colour), pattern, type_]]
    if slot == "lower":
        length: Component = (("", 1.0),)
        if a.lower_type == "skirt":
            length = ((a.skirt_length, 1.0), ("", 2.0))
        return [[length, _colour(a.lower_colour, 0.1), _alts(TYPE_SYNONYMS[a.lower_type])]]
    if slot == "shoes":
        return [[_colour(a.shoe_colour, 0.15), _alts(TYPE_SYNONYMS[a.shoe_type])]]
    if slot == "belongings":
        return [[_colour(a.bag_colour, 0.1), _alts(TYPE_SYNONYMS[a.bag_type])]]
    raise ValueError(f"unknown slot {slot!r}")


def _join(words) -> str:
    return " ".join(w for w in words if w)


def _valid(slot: str, words: tuple[str, ...]) -> bool:
    # "hair" alone, or a headwear/hair ordering that lost its leading word, is no description.
    return not (slot == "head" and _join(words) == "hair")


def sample(rng: np.random.Generator, slot: str, a: Appearance, which: str = "main") -> str:
    """One true wording of a slot phrase."""
    orders = components(slot, a, which)
    order = orders[0] if len(orders) == 1 or rng.random() < 0.6 else orders[int(rng.integers(1, len(orders)))]
    while True:
        words = []
        for comp in order:
            w = np.array([x[1] for x in comp], dtype=float)
            words.append(comp[int(rng.choice(len(comp), p=w / w.sum()))][0])
        if _valid(slot, tuple(words)):
            return _join(words)


def options(slot: str, a: Appearance, which: str = "main") -> set[str]:
    """Every wording ``sample`` can produce for this slot."""
    out = set()
    for order in components(slot, a, which):
        for words in itertools.product(*[[x[0] for x in comp] for comp in order]):
            if _valid(slot, words):
                out.add(_join(words))
    return out
