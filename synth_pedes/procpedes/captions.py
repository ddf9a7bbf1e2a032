"""Human-style reference captions in three annotator styles, with slot-tagged attribute spans.

Styles (names as used in records): ``cuhk-pedes`` (about 23 words: "A woman with long black hair is
wearing ..."), ``icfg-pedes`` (about 37 words: "A young man in his twenties with short black hair,
wearing ... He carries ..."), ``rstpreid`` (about 25 words: "The man is wearing ... He has ...").

Captions vary like real annotators do (templates, slot order, synonyms, omitted slots, extra true
details such as sleeves, patterns, the walking direction or an occluder, lowercase text, a missing
final period) but only ever state what the image's ground truth says is visible: a slot that is
``unknown`` in an image is never mentioned. Every attribute phrase is recorded as a span
``{"slot", "start", "end"}`` with ``text[start:end] == phrase``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import phrases
from .people import Appearance
from .vocab import COLOUR_SYNONYMS, PLURAL, article

STYLES = ("cuhk-pedes", "icfg-pedes", "rstpreid")
_OCCLUDER_NOUN = {"car": "car", "box": "box", "bin": "bin", "bush": "bush", "barrier": "barrier"}


@dataclass(frozen=True)
class ImageFacts:
    """What a caption of one image may talk about."""

    appearance: Appearance
    visible: dict  # slot -> bool
    view: str  # front | back | side
    facing: str  # left | right | none (image direction the person walks in a side view)
    inner_visible: bool = False  # the garment under an open jacket/coat shows
    logo_visible: bool = False
    occluder: str | None = None


class _Text:
    """A caption under construction: literal text and slot-tagged phrases, with exact offsets."""

    def __init__(self):
        self.parts: list[str] = []
        self.spans: list[dict] = []
        self.pos = 0

    def add(self, s: str) -> "_Text":
        self.parts.append(s)
        self.pos += len(s)
        return self

    def phrase(self, slot: str, s: str) -> "_Text":
        self.spans.append({"slot": slot, "start": self.pos, "end": self.pos + len(s)})
        return self.add(s)

    @property
    def text(self) -> str:
        return "".join(self.parts)


@dataclass
class _Ctx:
    rng: np.random.Generator
    f: ImageFacts
    t: _Text = field(default_factory=_Text)

    def p(self, prob: float) -> bool:
        return bool(self.rng.random() < prob)

    def pick(self, *options):
        return options[int(self.rng.integers(len(options)))]

    @property
    def a(self) -> Appearance:
        return self.f.appearance

    def he(self, cap: bool = True) -> str:
        w = "he" if self.a.gender == "man" else "she"
        return w.capitalize() if cap else w

    def his(self, cap: bool = False) -> str:
        w = "his" if self.a.gender == "man" else "her"
        return w.capitalize() if cap else w

    def sample(self, slot: str, which: str = "main") -> str:
        return phrases.sample(self.rng, slot, self.a, which)

    # --- noun phrases (article + span) ---------------------------------------------------------------
    def np_person(self, det: str) -> None:
        ph = self.sample("person")
        self.t.add(f"{article(ph).capitalize() if det == 'A' else det} ").phrase("person", ph)

    def np_head(self, in_with: bool) -> None:
        """Hair ("long black hair") or headwear ("a black cap"), plus hair showing under headwear."""
        ph = self.sample("head")
        if self.a.headwear == "none":
            self.t.phrase("head", ph)
            return
        self.t.add(f"{article(ph)} ").phrase("head", ph)
        if self.a.hair_length != "short" and self.p(0.5):
            self.t.add(" and ").phrase("head", self.sample("head", "hair"))

    def np_item(self, slot: str, pair_p: float = 0.3) -> None:
        ph = self.sample(slot)
        item = {"upper": self.a.upper_type, "lower": self.a.lower_type, "shoes": self.a.shoe_type,
                "belongings": self.a.bag_type}[slot]
        if item in PLURAL:
            if self.p(pair_p):
                self.t.add("a pair of ")
        else:
            self.t.add(f"{article(ph)} ")
        self.t.phrase(slot, ph)
        if slot == "upper":
            if self.f.logo_visible and self.p(0.5):
                colour = self.pick(*COLOUR_SYNONYMS[self.a.upper_second_colour])
                self.t.add(self.pick(" with a logo", f" with a {colour} logo", " with a print on it"))
            if self.f.inner_visible and self.p(self.inner_p):
                inner = self.sample("upper", "inner")
                under = self.p(0.3)
                self.t.add(" with " if under else " over ").add(f"{article(inner)} ").phrase("upper", inner)
                if under:
                    self.t.add(" underneath")

    inner_p = 0.5

    def clothes(self, slots: list[str], pair_p: float = 0.3, oxford: float = 0.2) -> None:
        for i, s in enumerate(slots):
            if i:
                last = i == len(slots) - 1
                self.t.add((", and " if len(slots) > 2 and self.p(oxford) else " and ") if last else ", ")
            self.np_item(s, pair_p)

    def bag_clause(self, present: bool = True) -> None:
        """'is carrying a black backpack' (present tense continuous) or 'carries ...'."""
        kind = self.a.bag_type
        side = self.a.bag_side
        verb = self.pick("is carrying", "is carrying", "carries") if present else "carrying"
        tails = {"backpack": ("", f" on {self.his()} back"),
                 "handbag": ("", f" in {self.his()} {side} hand", f" in {self.his()} hand"),
                 "shoulder bag": ("", f" over {self.his()} shoulder", f" across {self.his()} body"),
                 "umbrella": ("", f" in {self.his()} {side} hand")}[kind]
        if kind == "umbrella" and self.p(0.3):
            verb = "is holding" if present else "holding"
        self.t.add(f"{verb} ")
        self.np_item("belongings")
        self.t.add(self.pick(*tails))

    def walking(self, after_is: bool = False) -> str:
        """The view as a participle phrase ('walking towards the camera'); ``after_is``: usable after 'is'."""
        v, fc = self.f.view, self.f.facing
        if v == "front":
            return self.pick("walking towards the camera", "facing the camera", "walking toward the camera")
        if v == "back":
            if after_is:
                return self.pick("walking away from the camera", "facing away from the camera")
            return self.pick("walking away from the camera", f"with {self.his()} back to the camera")
        return self.pick(f"walking to the {fc}", f"walking towards the {fc}", f"moving to the {fc}")

    def occlusion_sentence(self) -> str | None:
        if self.f.occluder and not self.f.visible["shoes"]:
            noun = _OCCLUDER_NOUN[self.f.occluder]
            what = "legs" if not self.f.visible["lower"] else "feet"
            return self.pick(f"{self.his(True)} {what} are hidden behind {article(noun)} {noun}",
                             f"{self.his(True)} {what} are blocked by {article(noun)} {noun}")
        return None

    def slots(self, omit: dict[str, float]) -> dict[str, bool]:
        """Which slots this annotator mentions: visible ones, minus a few forgotten."""
        vis = self.f.visible
        return {s: bool(vis[s]) and not self.p(omit.get(s, 0.0)) for s in vis}

    def finish(self, style: str, lower_p: float, no_period_p: float) -> dict:
        text = self.t.text
        if text.endswith(".") and self.p(no_period_p):
            text = text[:-1]
        if self.p(lower_p):
            text = text.lower()  # ASCII only: offsets are unchanged
        return {"text": text, "style": style, "kind": "human", "spans": self.t.spans}


def _wear(c: _Ctx) -> str:
    return c.pick("is wearing", "is wearing", "wears", "is dressed in", "is in")


def _cuhk(c: _Ctx) -> dict:
    m = c.slots({"head": 0.12, "lower": 0.04, "shoes": 0.15, "belongings": 0.08})
    items = [s for s in ("upper", "lower", "shoes") if m[s]]
    if c.p(0.1) and len(items) > 1:
        c.rng.shuffle(items)
    t = c.t
    form = int(c.rng.integers(3))
    if form == 0:  # A woman with long black hair is wearing a ..., ... and .... She is carrying ...
        c.np_person(c.pick("A", "A", "The", "This"))
        if m["head"]:
            t.add(" with ")
            c.np_head(True)
        t.add(f" {_wear(c)} ")
        c.clothes(items)
        if m["belongings"]:
            t.add(f". {c.he()} ")
            c.bag_clause()
        t.add(".")
    elif form == 1:  # The man is wearing .... He has short hair and is carrying ...
        c.np_person(c.pick("The", "A"))
        t.add(f" {_wear(c)} ")
        c.clothes(items)
        t.add(".")
        if m["head"] or m["belongings"]:
            t.add(f" {c.he()} ")
            if m["head"]:
                if c.a.headwear == "none":
                    t.add("has ")
                else:
                    t.add("is wearing ")
                c.np_head(False)
                if m["belongings"]:
                    t.add(" and ")
            if m["belongings"]:
                c.bag_clause()
            t.add(".")
    else:  # A young man walking towards the camera, wearing ... and carrying .... He has ...
        c.np_person("A")
        walking = c.p(0.6)
        if walking:
            t.add(f" {c.walking()}")
        t.add((", wearing " if walking else " wearing ") if c.p(0.5) else " is wearing ")
        c.clothes(items)
        if m["belongings"]:
            if c.p(0.5):
                t.add(" and ")
                c.bag_clause(present=False)
            else:
                t.add(f". {c.he()} ")
                c.bag_clause()
        t.add(".")
        if m["head"]:
            t.add(f" {c.he()} {'has' if c.a.headwear == 'none' else 'wears'} ")
            c.np_head(False)
            t.add(".")
    return c.finish("cuhk-pedes", 0.12, 0.15)


def _icfg(c: _Ctx) -> dict:
    m = c.slots({"head": 0.03, "lower": 0.02, "shoes": 0.04, "belongings": 0.03})
    c.inner_p = 0.85
    items = [s for s in ("upper", "lower", "shoes") if m[s]]
    t = c.t
    a = c.a
    age = {"teens": "late teens", "twenties": "twenties", "thirties": "thirties", "forties": "forties",
           "fifties": "fifties", "sixties": "sixties", "seventies": "seventies"}[a.age_group]
    build = "slim" if a.width_factor < 0.93 else ("of medium build" if a.width_factor < 1.08 else "a bit heavy")
    form = int(c.rng.integers(2))
    c.np_person(c.pick("A", "A", "The"))
    if c.p(0.75):
        t.add(f" in {c.his()} {age}")
    if form == 0:  # A young man in his twenties with short black hair, wearing ..., ... and .... He carries ...
        if m["head"]:
            t.add(" with ")
            c.np_head(True)
        t.add(", wearing ")
        c.clothes(items, pair_p=0.85)
        t.add(". ")
    else:  # The woman in her thirties is walking away from the camera. She has ... and is wearing ...
        t.add(f" is {c.walking(True)}. ")
        if m["head"]:
            t.add(f"{c.he()} {'has' if a.headwear == 'none' else 'wears'} ")
            c.np_head(False)
            t.add(" and is wearing ")
        else:
            t.add(f"{c.he()} is wearing ")
        c.clothes(items, pair_p=0.85)
        t.add(". ")
    if m["belongings"]:
        t.add(f"{c.he()} ")
        c.bag_clause()
        if form == 0 and c.p(0.6):
            t.add(f" and is {c.walking(True)}")
        t.add(". ")
    elif form == 0 and c.p(0.6):
        t.add(f"{c.he()} is {c.walking(True)}. ")
    occ = c.occlusion_sentence()
    if occ and c.p(0.6):
        t.add(occ + ". ")
    if c.p(0.55):
        t.add(f"{c.he()} {c.pick('is', 'looks') if build != 'of medium build' else 'is'} {build}. ")
    t.parts[-1] = t.parts[-1].rstrip()
    t.pos = len(t.text)
    return c.finish("icfg-pedes", 0.04, 0.05)


def _rstp(c: _Ctx) -> dict:
    m = c.slots({"head": 0.12, "lower": 0.03, "shoes": 0.14, "belongings": 0.1})
    items = [s for s in ("upper", "lower", "shoes") if m[s]]
    t = c.t
    form = int(c.rng.integers(3))
    where = c.pick("on the street", "on the sidewalk", "on the road", "along the street")
    if form == 0:  # The man is wearing .... He has short black hair and is carrying ....
        c.np_person("The")
        t.add(f" {_wear(c)} ")
        c.clothes(items, pair_p=0.2)
        t.add(".")
        if m["head"] or m["belongings"]:
            t.add(f" {c.he()} ")
            if m["head"]:
                t.add("has " if c.a.headwear == "none" else "is wearing ")
                c.np_head(False)
                if m["belongings"]:
                    t.add(" and ")
            if m["belongings"]:
                c.bag_clause()
            t.add(".")
    elif form == 1:  # The woman with long hair is walking on the street. She is wearing ...
        c.np_person("The")
        if m["head"]:
            t.add(" with ")
            c.np_head(True)
        t.add(f" is walking {where}. {c.he()} {_wear(c)} ")
        c.clothes(items, pair_p=0.2)
        if m["belongings"]:
            t.add(" and ")
            c.bag_clause()
        t.add(".")
    else:  # A man is walking towards the camera. He has ... . He is wearing ...
        c.np_person(c.pick("A", "The"))
        t.add(f" is {c.walking(True)}. ")
        if m["head"]:
            t.add(f"{c.he()} {'has' if c.a.headwear == 'none' else 'wears'} ")
            c.np_head(False)
            t.add(f" and {c.pick('wears', 'is wearing')} ")
        else:
            t.add(f"{c.he()} {_wear(c)} ")
        c.clothes(items, pair_p=0.2)
        t.add(".")
        if m["belongings"]:
            t.add(f" {c.he()} ")
            c.bag_clause()
            t.add(".")
    return c.finish("rstpreid", 0.05, 0.08)


_STYLE_FN = {"cuhk-pedes": _cuhk, "icfg-pedes": _icfg, "rstpreid": _rstp}


def make_caption(rng: np.random.Generator, style: str, facts: ImageFacts) -> dict:
    """One caption dict ``{"text", "style", "kind": "human", "spans"}`` of ``style`` for an image."""
    if style not in _STYLE_FN:
        raise ValueError(f"unknown caption style {style!r}; known: {', '.join(STYLES)}")
    return _STYLE_FN[style](_Ctx(rng, facts))
