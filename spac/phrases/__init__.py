"""Attribute-phrase extraction on spaCy (keyword noun phrases, docs/reimplementation.md#attribute-phrases, without
a statistical model).

A phrase is a slot keyword (the head noun; multi-word heads such as "down jacket", "shoulder bag",
"running shoes", "t-shirt" included) extended to the left over the determiner-less modifiers that
belong to it: colours and colour compounds ("dark blue", "navy-blue", "black and white"),
patterns, materials, sleeve/length words, other adjectives, numerals ("two bags") and intensifiers
("very long"). Only ``spacy.blank("en")`` is needed: its tokenizer, a ``PhraseMatcher`` for the
keywords and a ``Matcher`` for "not carrying anything"-style negations.

Conventions (the hand-marked gold set ``tests/data/spac/phrases_gold.jsonl`` follows them):

* spans are character offsets into the original text, end exclusive, ``text == original[start:end]``;
* determiners, possessives and non-numeral quantifiers are outside the span ("the lady" -> "lady",
  "some bags" -> "bags"); numerals are inside ("two bags");
* "a pair of X": the span is X only (as in ProcPedes captions);
* person phrases keep only age words and male/female ("young woman", "middle-aged man",
  "female pedestrian"); other adjectives ("tall man") stay outside;
* bare "hair"/"head" is no attribute ("her hair is tied up"), "long black hair"/"shaved head" are;
* negated mentions ("no bag", "without a hat", "is not wearing a hat", "neither a hat nor a bag",
  "not carrying anything", "carries nothing") are no attribute spans; :func:`analyze` and
  :func:`negated_slots` report them so a caller knows a slot was said to be absent;
* accessories outside the six slots (glasses, scarf, watch, belt, socks, ...) are never extracted.
"""
from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from typing import Iterable

from synth_pedes.schema import SLOTS, UNKNOWN

from ..attributes import AttributeSet, load_lexicon

_log = logging.getLogger(__name__)

_BOUNDARY = frozenset({".", ",", ";", ":", "!", "?", "and", "but", "while", "with", "who", "which", "that",
                       "he", "she", "they", "(", ")"})
_CONNECTORS = frozenset({"and", "&", "or", "/"})
_NEGATION_WINDOW = 6  # tokens looked back from a phrase for a negation cue
# "hidden behind a box", "blocked by a suitcase": an object after these is scenery, not a belonging
_SCENE_PREPOSITIONS = frozenset({"behind", "by"})


@dataclass(frozen=True)
class Span:
    """One attribute phrase: slot, character offsets (end exclusive) and the text they cover."""

    slot: str
    start: int
    end: int
    text: str
    negated: bool = False  # only :func:`analyze` returns negated spans

    def to_dict(self) -> dict:
        """The record-schema span ``{"slot", "start", "end"}``."""
        return {"slot": self.slot, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class Analysis:
    """Everything the extractor found in one text."""

    text: str
    spans: list = field(default_factory=list)  # attribute phrases (not negated), in text order
    negated: list = field(default_factory=list)  # negated mentions (Span with negated=True)

    @property
    def negated_slots(self) -> frozenset:
        """Slots explicitly said to be absent ("no bag" -> belongings) and not also asserted."""
        return frozenset(s.slot for s in self.negated) - {s.slot for s in self.spans}


class _Extractor:
    """The spaCy objects and word sets, built once per process (see :func:`get_extractor`)."""

    def __init__(self):
        import spacy
        from spacy.matcher import Matcher, PhraseMatcher

        self.lex = lex = load_lexicon()
        nlp = spacy.blank("en")
        # Annotators forget the space after a full stop ("tshirt.he has"): split letter.letter.
        infixes = list(nlp.Defaults.infixes) + [r"(?<=[a-z]{2})\.(?=[a-z]{2})"]
        nlp.tokenizer.infix_finditer = spacy.util.compile_infix_regex(infixes).finditer
        nlp.tokenizer.url_match = None  # captions hold no URLs; "bag.he" must not become one token
        self.nlp = nlp
        self.keywords = PhraseMatcher(nlp.vocab, attr="LOWER")
        for slot in SLOTS:
            self.keywords.add(slot, [nlp.make_doc(k) for k in sorted(lex.keywords[slot])])
        self.nothing = Matcher(nlp.vocab)
        neg, verbs, nothing = (sorted(lex.negation[k]) for k in ("cues", "carry_verbs", "nothing_words"))
        self.nothing.add("belongings", [
            [{"LOWER": {"IN": neg}}, {"IS_ALPHA": True, "OP": "{0,3}"}, {"LOWER": {"IN": verbs}},
             {"LOWER": {"IN": ["anything", "any"]}}],
            [{"LOWER": {"IN": verbs}}, {"LOWER": "nothing"}],
        ])
        self.nothing.add("belongings", [[{"LOWER": t.lower_} for t in nlp.make_doc(p)]
                                        for p in sorted(lex.negation["empty_handed"])])
        mods = lex.all_modifiers
        self.mods = {"person": lex.person_modifiers, **{s: mods for s in SLOTS if s != "person"}}
        hyphenated = [m for m in mods | lex.person_modifiers if "-" in m]
        self.compounds = frozenset(m.replace(" ", "") for m in hyphenated)
        self.suffixes = lex.modifiers["hyphen_suffixes"]
        self.linkable = lex.colour_words | lex.modifiers["patterns"] | lex.modifiers["materials"] | mods

    # --- phrase building ---------------------------------------------------------------------------
    def _keyword_spans(self, doc) -> list[tuple[str, int, int]]:
        from spacy.util import filter_spans

        matches = self.keywords(doc)
        spans = filter_spans([doc[s:e] for _, s, e in matches])  # longest match wins ("down jacket")
        label = {(s, e): self.nlp.vocab.strings[m] for m, s, e in matches}
        out = []
        for sp in sorted(spans, key=lambda x: x.start):
            if sp.text.lower() in ("top", "tops") and sp.end < len(doc) and doc[sp.end].lower_ == "of":
                continue  # "on top of", "the top of his head"
            if sp.end + 1 < len(doc) and self._glued_hyphen(doc, sp.end) and doc[sp.end + 1].is_alpha:
                continue  # a compound modifier: "umbrella-print dress", "shirt-style jacket"
            out.append((label[(sp.start, sp.end)], sp.start, sp.end))
        merged: list[tuple[str, int, int]] = []
        for slot, s, e in out:  # adjacent keywords form one compound ("jean jacket", "female pedestrian")
            if merged and merged[-1][2] == s:
                merged[-1] = (slot, merged[-1][1], e)
            else:
                merged.append((slot, s, e))
        return merged

    def _is_mod(self, doc, j: int, slot: str) -> bool:
        return doc[j].lower_ in self.mods[slot]

    def _glued_hyphen(self, doc, j: int) -> bool:
        """doc[j] is a '-' written without spaces between two words."""
        return doc[j].text == "-" and j > 0 and doc[j - 1].whitespace_ == "" and doc[j].whitespace_ == "" \
            and doc[j - 1].is_alpha

    def _compound(self, doc, a: int, b: int) -> bool:
        """doc[a] '-' doc[b] is a known hyphenated modifier ("cross-body", "v-neck")."""
        return f"{doc[a].lower_}-{doc[b].lower_}" in self.compounds

    def _extend_left(self, doc, start: int, slot: str, floor: int) -> int:
        """Index of the first token of the phrase whose head starts at ``start``."""
        person = slot == "person"
        i = start
        while i > floor:
            j = i - 1
            w = doc[j].lower_
            right_is_mod = i < start and (self._is_mod(doc, i, slot) or doc[i].lower_ in self.suffixes)
            if self._is_mod(doc, j, slot):
                i = j
            elif self._glued_hyphen(doc, j) and j - 1 >= floor and (
                    self._is_mod(doc, j - 1, slot) or right_is_mod or self._compound(doc, j - 1, i)):
                i = j - 1  # "light-grey", "middle-aged", "black-and-white"
            elif j - 2 >= floor and self._glued_hyphen(doc, j - 1) and (
                    self._compound(doc, j - 2, j) or not person and (w in self.suffixes
                                                                     or self._is_mod(doc, j - 2, slot))):
                i = j - 2  # "high-waisted", "knee-length", "cross-body"
            elif not person and w in _CONNECTORS and right_is_mod and j - 1 >= floor \
                    and doc[j - 1].lower_ in self.linkable:
                i = j - 1  # "black and white"
            elif not person and w in self.lex.intensifiers and right_is_mod:
                i = j  # "very long"
            else:
                break
        while i < start and (doc[i].lower_ in _CONNECTORS or doc[i].text == "-"):
            i += 1
        return i

    def _negated(self, doc, start: int, floor: int) -> bool:
        """A negation cue between the previous clause boundary (or phrase) and ``start``."""
        cues = self.lex.negation["cues"]
        for j in range(start - 1, max(floor, start - _NEGATION_WINDOW) - 1, -1):
            w = doc[j].lower_
            if w in cues and not (w == "not" and j + 1 < len(doc) and doc[j + 1].lower_ == "only"):
                return True
            if w in _BOUNDARY:
                return False
        return False

    def _after_scene_preposition(self, doc, start: int) -> bool:
        j = start - 1
        while j >= 0 and doc[j].lower_ in self.lex.determiners:
            j -= 1
        return j >= 0 and doc[j].lower_ in _SCENE_PREPOSITIONS

    def analyze_doc(self, doc) -> Analysis:
        text = doc.text
        spans, negated, prev_end = [], [], 0
        for slot, s, e in self._keyword_spans(doc):
            b = self._extend_left(doc, s, slot, prev_end)
            head = doc[s:e].text.lower()
            if b == s and head in self.lex.head_needs_modifier:
                prev_end = e
                continue
            if slot == "belongings" and self._after_scene_preposition(doc, b):
                prev_end = e
                continue
            cs, ce = doc[b].idx, doc[e - 1].idx + len(doc[e - 1])
            neg = self._negated(doc, b, prev_end)
            sp = Span(slot, cs, ce, text[cs:ce], neg)
            (negated if neg else spans).append(sp)
            prev_end = e
        for m, s, e in self.nothing(doc):
            cs, ce = doc[s].idx, doc[e - 1].idx + len(doc[e - 1])
            negated.append(Span(self.nlp.vocab.strings[m], cs, ce, text[cs:ce], True))
        return Analysis(text, spans, sorted(set(negated), key=lambda x: (x.start, x.end)))


@functools.lru_cache(maxsize=1)
def get_extractor() -> _Extractor:
    """The module-level extractor (spaCy blank English + matchers), built on first use."""
    _log.debug("building the SPAC phrase extractor")
    return _Extractor()


def _check(text) -> str:
    if not isinstance(text, str):
        raise ValueError(f"phrase extraction needs a str, got {type(text).__name__}")
    return text


def analyze(text: str) -> Analysis:
    """Attribute phrases and negated mentions of one text."""
    ex = get_extractor()
    return ex.analyze_doc(ex.nlp.make_doc(_check(text)))


def analyze_many(texts: Iterable[str], batch_size: int = 256) -> list[Analysis]:
    """:func:`analyze` over many texts, tokenized in batches with ``nlp.pipe``."""
    ex = get_extractor()
    texts = [_check(t) for t in texts]
    return [ex.analyze_doc(doc) for doc in ex.nlp.pipe(texts, batch_size=batch_size)]


def extract(text: str) -> list[Span]:
    """The attribute phrases of ``text`` (negated mentions left out), in text order.

    Empty text gives ``[]``; a non-str raises ``ValueError``.
    """
    return analyze(text).spans


def extract_many(texts: Iterable[str], batch_size: int = 256) -> list[list[Span]]:
    """:func:`extract` for many texts (one list of spans per text)."""
    return [a.spans for a in analyze_many(texts, batch_size)]


def negated_slots(text: str) -> frozenset:
    """Slots the text says are absent ("no bag", "without a hat", "not carrying anything")."""
    return analyze(text).negated_slots


def _specificity(span: Span) -> int:
    return len(re.findall(r"[A-Za-z0-9]+", span.text))


def attributes_from_spans(spans: Iterable[Span]) -> AttributeSet:
    """The most specific phrase per slot (most words; the first on a tie), lowercased; else ``unknown``."""
    best: dict[str, Span] = {}
    for sp in spans:
        if sp.negated:
            continue
        if sp.slot not in best or _specificity(sp) > _specificity(best[sp.slot]):
            best[sp.slot] = sp
    return AttributeSet(**{s: " ".join(best[s].text.lower().split()) if s in best else UNKNOWN for s in SLOTS})


def attributes_from_text(text: str) -> AttributeSet:
    """SPAC's attribute label of a human caption: :func:`attributes_from_spans` over :func:`extract`."""
    return attributes_from_spans(extract(text))


__all__ = ["Span", "Analysis", "analyze", "analyze_many", "extract", "extract_many", "negated_slots",
           "attributes_from_spans", "attributes_from_text", "get_extractor"]
