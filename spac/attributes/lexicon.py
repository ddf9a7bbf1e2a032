"""The attribute lexicon: keyword sets per slot, modifier classes, gender words, grammar classes.

The data lives in ``lexicon.json`` next to this module (package data, loaded with
``importlib.resources``); :func:`load_lexicon` parses it once into a frozen :class:`Lexicon`.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

from synth_pedes.schema import SLOTS

GENDERS = ("male", "female", "neutral")
MODIFIER_CLASSES = ("colours", "colour_modifiers", "patterns", "materials", "adjectives", "numbers")


@dataclass(frozen=True)
class Lexicon:
    """Parsed ``lexicon.json``; every word set is lowercase."""

    keywords: dict  # slot -> frozenset of keyword strings (multi-word entries allowed)
    head_needs_modifier: frozenset  # head keywords that are no attribute on their own ("hair")
    modifiers: dict  # class (see MODIFIER_CLASSES, plus "hyphen_suffixes") -> frozenset
    person_modifiers: frozenset
    gender_words: dict  # gender -> frozenset
    negation: dict  # "cues" | "carry_verbs" | "nothing_words" | "empty_handed" -> frozenset
    mass_heads: frozenset
    plural_heads: frozenset
    singular_s_heads: frozenset
    pair_heads: frozenset
    determiners: frozenset
    intensifiers: frozenset  # "very", "fairly": kept in a phrase when a modifier follows
    excluded: frozenset

    @functools.cached_property
    def all_modifiers(self) -> frozenset:
        """Every word that may precede a head noun inside an attribute phrase (not person phrases)."""
        return frozenset().union(*(self.modifiers[c] for c in MODIFIER_CLASSES))

    @functools.cached_property
    def colour_words(self) -> frozenset:
        return self.modifiers["colours"] | self.modifiers["colour_modifiers"]

    def slot_of_keyword(self, phrase: str) -> str | None:
        """The slot whose keyword set holds ``phrase`` (lowercased), or None."""
        p = phrase.lower()
        for slot in SLOTS:
            if p in self.keywords[slot]:
                return slot
        return None

    def gender_of_word(self, word: str) -> str | None:
        """``male`` / ``female`` / ``neutral`` for a gender word ("she", "lady", "person"), else None."""
        w = word.lower()
        for g in GENDERS:
            if w in self.gender_words[g]:
                return g
        return None


def _words(items) -> frozenset:
    return frozenset(str(x).lower() for x in items)


@functools.lru_cache(maxsize=1)
def load_lexicon() -> Lexicon:
    """The shipped lexicon (parsed once per process)."""
    raw = json.loads(resources.files(__package__).joinpath("lexicon.json").read_text(encoding="utf-8"))
    missing = set(SLOTS) - set(raw["keywords"])
    if missing:
        raise ValueError(f"lexicon.json: no keyword set for slots {sorted(missing)}")
    grammar = raw["grammar"]
    return Lexicon(
        keywords={s: _words(raw["keywords"][s]) for s in SLOTS},
        head_needs_modifier=_words(raw["head_needs_modifier"]),
        modifiers={k: _words(v) for k, v in raw["modifiers"].items()},
        person_modifiers=_words(raw["person_modifiers"]),
        gender_words={g: _words(raw["gender_words"][g]) for g in GENDERS},
        negation={k: _words(v) for k, v in raw["negation"].items()},
        mass_heads=_words(grammar["mass_heads"]),
        plural_heads=_words(grammar["plural_heads"]),
        singular_s_heads=_words(grammar["singular_s_heads"]),
        pair_heads=_words(grammar["pair_heads"]),
        determiners=_words(raw["determiners"]),
        intensifiers=_words(raw.get("intensifiers", ())),
        excluded=_words(raw["excluded"]),
    )
