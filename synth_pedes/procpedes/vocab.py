"""The closed vocabulary of ProcPedes: colour palette, garment/item types and their caption synonyms.

Every phrase ProcPedes writes (ground-truth attribute phrases and caption phrases) is built from the
tables here, so tests can check captions against the ground truth without parsing free text.
"""
from __future__ import annotations

# Named colour palette (RGB), chosen so that every pair stays distinguishable under the renderer's
# lighting range (gain 0.8-1.2, casts of a few percent).
PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (28, 28, 30),
    "white": (236, 236, 232),
    "grey": (128, 128, 128),
    "red": (200, 30, 36),
    "blue": (40, 92, 200),
    "navy": (26, 36, 92),
    "green": (40, 140, 62),
    "yellow": (236, 206, 42),
    "pink": (240, 142, 182),
    "purple": (122, 52, 152),
    "brown": (118, 74, 40),
    "orange": (240, 120, 24),
}
COLOURS = tuple(PALETTE)

# How a colour may be written in a caption (first = canonical, used in attribute phrases).
COLOUR_SYNONYMS: dict[str, tuple[str, ...]] = {c: (c,) for c in COLOURS}
COLOUR_SYNONYMS["grey"] = ("grey", "gray")
COLOUR_SYNONYMS["navy"] = ("navy", "dark blue", "navy blue")

HAIR_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (24, 20, 18),
    "brown": (96, 60, 32),
    "blonde": (214, 180, 108),
    "grey": (158, 158, 156),
    "red": (160, 62, 28),
    "white": (226, 226, 220),
}
HAIR_LENGTHS = ("short", "medium", "long")
HAIR_LENGTH_WORDS: dict[str, tuple[str, ...]] = {
    "short": ("short",), "medium": ("medium-length", "shoulder-length"), "long": ("long",)}

SKIN_TONES = ((246, 214, 190), (232, 190, 160), (214, 166, 128), (186, 134, 96), (150, 100, 68),
              (112, 74, 50))

HEADWEAR = ("cap", "hat")
UPPER_TYPES = ("t-shirt", "shirt", "sweater", "jacket", "down jacket", "coat", "dress", "hoodie")
LOWER_TYPES = ("trousers", "jeans", "shorts", "skirt")
SHOE_TYPES = ("sneakers", "boots", "leather shoes", "sandals")
BAG_TYPES = ("backpack", "handbag", "shoulder bag", "umbrella")
PATTERNS = ("plain", "striped", "checked", "logo")
PATTERN_WORDS = {"striped": ("striped",), "checked": ("checked", "plaid"), "plain": (), "logo": ()}

# Items whose noun is plural ("blue jeans", "a pair of white sneakers").
PLURAL = {"trousers", "jeans", "shorts", "sneakers", "boots", "leather shoes", "sandals"}

# Caption synonyms for each item type (first = canonical).
TYPE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "t-shirt": ("t-shirt", "tee", "tee-shirt"),
    "shirt": ("shirt", "button-up shirt", "button-down shirt"),
    "sweater": ("sweater", "jumper", "pullover"),
    "jacket": ("jacket",),
    "down jacket": ("down jacket", "puffer jacket", "padded jacket"),
    "coat": ("coat", "long coat", "overcoat"),
    "dress": ("dress",),
    "hoodie": ("hoodie", "hooded sweatshirt"),
    "trousers": ("trousers", "pants", "slacks"),
    "jeans": ("jeans", "denim jeans", "denim pants"),
    "shorts": ("shorts",),
    "skirt": ("skirt",),
    "sneakers": ("sneakers", "trainers", "running shoes", "sports shoes"),
    "boots": ("boots",),
    "leather shoes": ("leather shoes", "dress shoes"),
    "sandals": ("sandals",),
    "backpack": ("backpack", "rucksack"),
    "handbag": ("handbag", "purse"),
    "shoulder bag": ("shoulder bag", "messenger bag", "crossbody bag"),
    "umbrella": ("umbrella", "closed umbrella"),
    "cap": ("cap", "baseball cap"),
    "hat": ("hat",),
}

PERSON_SYNONYMS: dict[str, tuple[str, ...]] = {
    "man": ("man", "male", "guy", "gentleman"),
    "woman": ("woman", "lady", "female"),
    "young man": ("young man", "young guy", "young male"),
    "young woman": ("young woman", "young lady", "girl"),
    "old man": ("old man", "elderly man", "older man"),
    "old woman": ("old woman", "elderly woman", "older lady"),
}

# Words that name an item of a slot; a caption for an image whose slot is unknown contains none of them.
SLOT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "lower": ("trousers", "pants", "slacks", "jeans", "shorts", "skirt"),
    "shoes": ("sneakers", "trainers", "shoes", "boots", "sandals"),
    "belongings": ("backpack", "rucksack", "handbag", "purse", "bag", "umbrella"),
}


def article(phrase: str) -> str:
    """'a' or 'an' for a lowercase English phrase of this vocabulary."""
    return "an" if phrase[:1] in "aeiou" else "a"
