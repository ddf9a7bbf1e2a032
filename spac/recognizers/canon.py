"""Canonical attribute phrases: compare a predicted phrase with a ground-truth phrase by meaning, not wording.

``canonical_phrase("a pair of gray running shoes") == "grey sneakers"`` and
``canonical_phrase("black medium-length hair") == "medium-length black hair"``. The steps:

1. lowercase, whitespace-normalise, unify hyphen spellings ("t shirt" -> "t-shirt");
2. drop leading determiners and "a pair of";
3. replace word sequences by their canonical form (longest match first: "denim pants" -> "jeans",
   "puffer jacket" -> "down jacket", "dark blue" -> "navy"), then single words ("pants" -> "trousers",
   "trainers" -> "sneakers", "purse" -> "handbag", "plaid" -> "checked", "lady" -> "woman");
4. drop repeated words ("young young woman" -> "young woman") and, in person phrases, a neutral noun
   after a gendered one ("woman pedestrian" -> "woman");
5. put the modifiers before the head noun in one order (size/length and other adjectives, colour
   modifiers, colours, patterns, materials) when every modifier is a known lexicon word (phrases with
   "and" or unknown words keep their order).

The synonym tables live here (``spac.attributes``' lexicon has keyword sets, not synonyms); a caller
can pass ``extra`` synonyms. The function is idempotent: ``canonical_phrase(canonical_phrase(p)) ==
canonical_phrase(p)``.
"""
from __future__ import annotations

import functools
import re

from synth_pedes.schema import UNKNOWN

from ..attributes import load_lexicon

# word sequences -> canonical words (applied longest first, at word boundaries)
PHRASE_SYNONYMS: dict[str, str] = {
    # upper
    "tee shirt": "t-shirt", "tee-shirt": "t-shirt", "t shirt": "t-shirt", "button-up shirt": "shirt",
    "button-down shirt": "shirt", "button up shirt": "shirt", "button down shirt": "shirt",
    "puffer jacket": "down jacket", "padded jacket": "down jacket", "puffy jacket": "down jacket",
    "quilted jacket": "down jacket", "down coat": "down jacket", "hooded sweatshirt": "hoodie",
    "hooded jacket": "hoodie", "sweat shirt": "sweatshirt", "long coat": "coat", "polo shirt": "polo",
    # lower
    "denim jeans": "jeans", "denim pants": "jeans", "denim trousers": "jeans", "jean pants": "jeans",
    "sweat pants": "sweatpants", "capri pants": "capris",
    # shoes
    "running shoes": "sneakers", "sports shoes": "sneakers", "sport shoes": "sneakers",
    "tennis shoes": "sneakers", "athletic shoes": "sneakers", "training shoes": "sneakers",
    "dress shoes": "leather shoes", "high heels": "heels", "high-heels": "heels",
    "high-heeled shoes": "heels", "flip flops": "flip-flops",
    # belongings
    "back pack": "backpack", "hand bag": "handbag", "messenger bag": "shoulder bag",
    "crossbody bag": "shoulder bag", "cross-body bag": "shoulder bag", "sling bag": "shoulder bag",
    "closed umbrella": "umbrella", "cell phone": "phone", "mobile phone": "phone", "school bag": "schoolbag",
    # head
    "baseball cap": "cap", "pony tail": "ponytail", "head scarf": "headscarf", "head band": "headband",
    # colours
    "dark blue": "navy", "navy blue": "navy", "multi-colored": "multicoloured", "multi-coloured": "multicoloured",
    # person
    "young guy": "young man", "young lady": "young woman", "elderly man": "old man",
    "older man": "old man", "elderly woman": "old woman", "older lady": "old woman",
    "older woman": "old woman", "middle aged": "middle-aged",
}

# single words -> canonical word(s)
WORD_SYNONYMS: dict[str, str] = {
    # colours (and common misspellings seen in human captions)
    "gray": "grey", "grayish": "greyish", "grey-ish": "greyish", "blond": "blonde", "balck": "black",
    "blck": "black", "whit": "white", "whte": "white", "grean": "green", "bule": "blue", "brwon": "brown",
    "pruple": "purple", "multicolored": "multicoloured", "colored": "coloured", "colorful": "colourful",
    # patterns
    "plaid": "checked", "checkered": "checked", "chequered": "checked", "check": "checked", "tartan": "checked",
    "gingham": "checked", "stripy": "striped", "stripped": "striped", "stripe": "striped", "stripes": "striped",
    # lengths
    "shoulder-length": "medium-length", "mid-length": "medium-length",
    # upper
    "tee": "t-shirt", "tshirt": "t-shirt", "tshirts": "t-shirt", "t-shirts": "t-shirt", "shirts": "shirt",
    "jumper": "sweater", "pullover": "sweater", "sweaters": "sweater", "sweeter": "sweater",
    "sweather": "sweater", "hoody": "hoodie", "hoddie": "hoodie", "hoodies": "hoodie", "jaket": "jacket",
    "jacekt": "jacket", "jackt": "jacket", "jackets": "jacket", "coats": "coat", "overcoat": "coat",
    "puffer": "down jacket", "blouses": "blouse", "dresses": "dress",
    # lower
    "pants": "trousers", "pant": "trousers", "trouser": "trousers", "slacks": "trousers",
    "trousres": "trousers", "tousers": "trousers", "pnats": "trousers", "jean": "jeans", "denims": "jeans",
    "skirts": "skirt", "legging": "leggings",
    # shoes
    "trainers": "sneakers", "trainer": "sneakers", "sneaker": "sneakers", "sneackers": "sneakers",
    "sneakes": "sneakers", "snickers": "sneakers", "sneeker": "sneakers", "sneekers": "sneakers",
    "shoe": "shoes", "boot": "boots", "sandal": "sandals", "slipper": "slippers", "flipflops": "flip-flops",
    # belongings
    "rucksack": "backpack", "knapsack": "backpack", "backback": "backpack", "backpak": "backpack",
    "bakpack": "backpack", "backapck": "backpack", "bagpack": "backpack", "backpacks": "backpack",
    "purse": "handbag", "purses": "handbag", "handbags": "handbag", "shoulderbag": "shoulder bag",
    "umbrellas": "umbrella", "suitcases": "suitcase", "cellphone": "phone", "smartphone": "phone",
    # head
    "hairs": "hair", "hats": "hat", "caps": "cap",
    # person
    "male": "man", "guy": "man", "gentleman": "man", "dude": "man", "men": "man", "gentlemen": "man",
    "female": "woman", "lady": "woman", "gal": "woman", "women": "woman", "ladies": "woman",
    "girl": "young woman", "girls": "young woman", "boy": "young man", "boys": "young man",
    "elderly": "old", "older": "old", "aged": "old",
}

_NEUTRAL_PERSON = frozenset({"person", "pedestrian", "individual", "human", "adult", "people"})
_GENDERED_PERSON = frozenset({"man", "woman"})
_LEADING_DROP = ("a pair of", "pair of", "a", "an", "the", "his", "her", "their", "some", "one")
_RANKS = (("numbers", 0), ("adjectives", 1), ("colour_modifiers", 2), ("colours", 3), ("patterns", 4),
          ("materials", 5))
_PRIORITY = ("adjectives", "numbers", "patterns", "colour_modifiers", "materials", "colours")


def _normalise_text(phrase: str) -> str:
    p = " ".join(phrase.lower().replace("\u2019", "'").split())
    p = re.sub(r"\s*-\s*", "-", p)  # "t - shirt", "light- blue" -> hyphen without spaces
    return p.strip(" .,;:!?")


def _replace_sequences(words: list[str], table: dict[str, str]) -> list[str]:
    """Replace word sequences of ``table`` (keys of up to 3 words), longest match first, left to right."""
    out, i = [], 0
    while i < len(words):
        for n in (3, 2, 1):
            key = " ".join(words[i:i + n])
            if len(words) - i >= n and key in table:
                out.extend(table[key].split())
                i += n
                break
        else:
            out.append(words[i])
            i += 1
    return out


@functools.lru_cache(maxsize=1)
def _modifier_rank() -> dict[str, int]:
    """Word -> position class; on overlap the later class in _PRIORITY wins ("light": colour modifier)."""
    lex = load_lexicon()
    rank = dict(_RANKS)
    out: dict[str, int] = {}
    for cls in _PRIORITY:
        for w in lex.modifiers.get(cls, ()):
            out[w] = rank[cls]
    for w in ("young", "old", "middle-aged", "teenage"):
        out[w] = 0
    return out


@functools.lru_cache(maxsize=1)
def _head_keywords() -> frozenset:
    lex = load_lexicon()
    heads = set().union(*lex.keywords.values())
    heads |= {v for v in list(PHRASE_SYNONYMS.values()) + list(WORD_SYNONYMS.values())}
    return frozenset(heads)


def _reorder(words: list[str]) -> list[str]:
    """Modifiers in canonical order before the head (the longest keyword suffix), when all are known."""
    heads = _head_keywords()
    for n in (3, 2, 1):
        if len(words) > n and " ".join(words[-n:]) in heads:
            mods, head = words[:-n], words[-n:]
            break
    else:
        return words
    rank = _modifier_rank()
    if not mods or any(w not in rank for w in mods):
        return words
    return sorted(mods, key=lambda w: rank[w]) + head


def _dedupe(words: list[str]) -> list[str]:
    out: list[str] = []
    for w in words:
        if not out or out[-1] != w:
            out.append(w)
    return out


@functools.lru_cache(maxsize=65536)
def _canonical(phrase: str, slot: str | None) -> str:
    p = _normalise_text(phrase)
    if not p or p == UNKNOWN:
        return UNKNOWN
    for lead in _LEADING_DROP:
        if p.startswith(lead + " "):
            p = p[len(lead) + 1:]
            break
    words = _replace_sequences(p.split(), PHRASE_SYNONYMS)
    words = _replace_sequences(words, WORD_SYNONYMS)
    words = _replace_sequences(words, PHRASE_SYNONYMS)  # "young guy" -> "young man" after word synonyms too
    words = _dedupe(words)
    if slot in (None, "person") and _GENDERED_PERSON & set(words):
        words = [w for w in words if w not in _NEUTRAL_PERSON] or words
    return " ".join(_reorder(words)) or UNKNOWN


def canonical_phrase(phrase: str | None, slot: str | None = None, extra: dict[str, str] | None = None) -> str:
    """The canonical form of an attribute phrase (``unknown`` for None/empty/"unknown").

    ``slot`` enables slot-specific rules (person phrases drop a neutral noun after a gendered one);
    ``extra`` maps further word sequences to canonical words, applied before the built-in tables.
    """
    if phrase is None:
        return UNKNOWN
    if not isinstance(phrase, str):
        raise ValueError(f"an attribute phrase must be a string, got {type(phrase).__name__}: {phrase!r}")
    if extra:
        words = _replace_sequences(_normalise_text(phrase).split(), {k.lower(): v.lower() for k, v in extra.items()})
        phrase = " ".join(words)
    return _canonical(phrase, slot)


def same_phrase(a: str | None, b: str | None, slot: str | None = None) -> bool:
    """Whether two phrases mean the same after canonicalisation ("pants" == "trousers")."""
    return canonical_phrase(a, slot) == canonical_phrase(b, slot)


def canonical_attributes(attrs, extra: dict[str, str] | None = None):
    """An :class:`~spac.attributes.AttributeSet` (or slot dict) with every phrase canonicalised."""
    from ..attributes import AttributeSet

    d = attrs.to_dict() if hasattr(attrs, "to_dict") else dict(attrs)
    return AttributeSet.from_dict({s: canonical_phrase(v, s, extra) for s, v in d.items()})
