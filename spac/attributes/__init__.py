"""SPAC's attribute vocabulary: the six slots, the lexicon (data file) and :class:`AttributeSet`.

Conventions (documented here because the extractor, the templates and the tests share them):

* Slots are ``synth_pedes.schema.SLOTS``: person, head, upper, lower, shoes, belongings;
  ``UNKNOWN`` (``"unknown"``) marks a slot with no phrase.
* ``dress`` and other full-body garments (jumpsuit, overalls, suit, uniform, gown) are **upper**
  keywords, like the paper's keyword buckets put whole-body garments with the upper body.
* Accessories outside the six slots (glasses, sunglasses, watch, scarf, belt, mask, jewellery,
  gloves, socks, headphones) and vehicles (bike, scooter) are **not** attributes; they are listed
  under ``excluded`` in ``lexicon.json`` and never extracted.
* ``hair`` on its own ("her hair is tied up") is no attribute; a modified "long black hair" is.
"""
from synth_pedes.schema import SLOTS, UNKNOWN

from .attrset import AttributeSet
from .lexicon import GENDERS, MODIFIER_CLASSES, Lexicon, load_lexicon


def keywords(slot: str) -> frozenset:
    """The head keywords of ``slot`` (lowercase; multi-word entries included)."""
    if slot not in SLOTS:
        raise ValueError(f"unknown attribute slot {slot!r}; the slots are {SLOTS}")
    return load_lexicon().keywords[slot]


def gender_of_word(word: str) -> str | None:
    """``male`` / ``female`` / ``neutral`` for gender words (he/she/his/her/man/lady/person ...), else None."""
    return load_lexicon().gender_of_word(word)


__all__ = ["SLOTS", "UNKNOWN", "GENDERS", "MODIFIER_CLASSES", "AttributeSet", "Lexicon", "load_lexicon",
           "keywords", "gender_of_word"]
