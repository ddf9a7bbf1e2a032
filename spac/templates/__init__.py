"""Prompt-caption templates ("attributes prompt engineering", docs/reimplementation.md#prompt-captions).

Template syntax
  ``[person] [head] [upper] [lower] [shoes] [belongings]``  slot placeholders (the paper's
      ``[up] [down] [others]`` are read as upper, lower, belongings);
  ``{He} {he} {His} {his} {him} {Him}``  pronoun markers, resolved from ``AttributeSet.gender()``:
      he/his/him, she/her/her, or singular they/their/them for an unknown gender (the verb after
      "they" is made to agree: "{He} carries" -> "They carry");
  ``<...>``  an optional group, kept only when every placeholder inside it is known
      (``"A [person]< with [head]> is wearing a [upper]."``).

Articles are the filler's job: a placeholder after "a"/"an" gets the right one ("an orange
jacket") or none for plurals, mass nouns and numerals ("black jeans", "long hair", "two bags");
"a pair of" stays only before plural garments; a placeholder after a verb or preposition gets
"a"/"an" when its phrase is a countable singular ("with a black cap", "with long hair"); after
"the"/"his"/... nothing is added.

Selection: a template fits an attribute set when its required placeholders are known and every
known slot has a placeholder (required or optional). A missing person phrase is filled as
"person" (documented fallback), so the person slot is always known. The shipped library
(``library.json``) covers every subset of {head, upper, lower, shoes, belongings}, so with that
fallback every one of the 64 slot patterns has a template; ``prompt_caption`` still falls back to
a generic sentence built from the known slots if a custom library lacks one.
"""
from __future__ import annotations

import functools
import json
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Iterable

from synth_pedes.schema import SLOTS, UNKNOWN

from ..attributes import AttributeSet, load_lexicon

_log = logging.getLogger(__name__)

MARKERS = ("He", "he", "His", "his", "him", "Him")
SLOT_ALIASES = {"up": "upper", "down": "lower", "others": "belongings", "gender": "person", "hair": "head"}
_TOKEN = re.compile(r"\[(\w+)\]|\{(\w+)\}|(<)|(>)")
_PRONOUNS = {
    "male": {"He": "He", "he": "he", "His": "His", "his": "his", "him": "him", "Him": "Him"},
    "female": {"He": "She", "he": "she", "His": "Her", "his": "her", "him": "her", "Him": "Her"},
}
_DETERMINERS = frozenset({"the", "his", "her", "their", "this", "that", "its", "my", "your", "some", "any"})
_VOWEL_EXCEPTIONS_A = ("uni", "use", "usu", "one", "eu", "ewe", "u-")
_VOWEL_EXCEPTIONS_AN = ("hour", "honest", "heir")


class TemplateError(ValueError):
    """A template that cannot be parsed or filled (bad placeholder, unknown required slot ...)."""


@dataclass(frozen=True)
class Template:
    """A parsed template: its text, the slots it requires and the optional ones, a gender restriction."""

    text: str
    required: frozenset
    optional: frozenset
    gender: str = "any"  # any | male | female | unknown

    @property
    def slots(self) -> frozenset:
        return self.required | self.optional

    def fits(self, known: frozenset, gender: str = UNKNOWN) -> bool:
        """Whether filling with these known slots uses every one of them and needs no other."""
        if self.gender not in ("any", gender):
            return False
        return self.required <= known <= self.slots


def _slot_name(name: str) -> str:
    s = SLOT_ALIASES.get(name, name)
    if s not in SLOTS:
        raise TemplateError(f"unknown placeholder [{name}]; the slots are {SLOTS}")
    return s


def parse_template(text: str, gender: str = "any") -> Template:
    """Check a template's syntax and find its required and optional slots (raises TemplateError)."""
    if not isinstance(text, str) or not text.strip():
        raise TemplateError(f"a template must be a non-empty string, got {text!r}")
    if gender not in ("any", "male", "female", UNKNOWN):
        raise TemplateError(f"template gender must be any/male/female/unknown, got {gender!r}")
    required, optional, depth = set(), set(), 0
    for m in _TOKEN.finditer(text):
        if m.group(1):
            s = _slot_name(m.group(1))
            target = optional if depth else required
            if s in required | optional:
                raise TemplateError(f"slot {s!r} appears twice in template {text!r}")
            target.add(s)
        elif m.group(2) and m.group(2) not in MARKERS:
            raise TemplateError(f"unknown pronoun marker {{{m.group(2)}}} in {text!r}; markers are {MARKERS}")
        elif m.group(3):
            depth += 1
            if depth > 1:
                raise TemplateError(f"nested optional groups in {text!r}")
        elif m.group(4):
            depth -= 1
            if depth < 0:
                raise TemplateError(f"unbalanced '>' in {text!r}")
    if depth:
        raise TemplateError(f"unbalanced '<' in {text!r}")
    rest = _TOKEN.sub("", text)
    if "[" in rest or "]" in rest or "{" in rest or "}" in rest:
        raise TemplateError(f"stray bracket in template {text!r}")
    if not required | optional:
        raise TemplateError(f"template {text!r} has no placeholder")
    return Template(text, frozenset(required), frozenset(optional), gender)


# --- grammar -------------------------------------------------------------------------------------------
def _head_word(phrase: str) -> str:
    words = phrase.lower().split()
    return words[-1] if words else ""


def is_plural_or_mass(phrase: str) -> bool:
    """True for phrases that take no indefinite article: plurals, mass nouns, numerals ("two bags")."""
    lex = load_lexicon()
    words = phrase.lower().split()
    if not words:
        return False
    if words[0] in lex.modifiers["numbers"] or words[0] in ("pair", "pairs", "some"):
        return True
    head = words[-1]
    last = head.split("-")[-1]
    if head in lex.mass_heads or head in lex.plural_heads or last in lex.plural_heads:
        return True
    if head in lex.singular_s_heads or last in lex.singular_s_heads:
        return False
    return len(last) > 3 and last.endswith("s") and not last.endswith(("ss", "us", "is"))


def indefinite_article(phrase: str) -> str:
    """``"a"``, ``"an"`` or ``""`` (plural / mass / numeral) for a noun phrase."""
    if is_plural_or_mass(phrase):
        return ""
    w = phrase.lower().lstrip()
    if w.startswith(_VOWEL_EXCEPTIONS_AN):
        return "an"
    if w[:1] in "aeiou" and not w.startswith(_VOWEL_EXCEPTIONS_A):
        return "an"
    return "a"


def _is_pair_noun(phrase: str) -> bool:
    lex = load_lexicon()
    head = _head_word(phrase)
    return head in lex.pair_heads or head.split("-")[-1] in lex.pair_heads


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


_ART_BEFORE = re.compile(r"(?:^|(?<=\s))(a pair of|an|a)(\s+)$", re.IGNORECASE)
_WORD_BEFORE = re.compile(r"([A-Za-z']+)\s+$")


_NEUTRAL = {"He": "They", "he": "they", "His": "Their", "his": "their", "him": "them", "Him": "Them"}
_IRREGULAR = {"is": "are", "was": "were", "has": "have", "does": "do", "doesn't": "don't", "isn't": "aren't",
              "wasn't": "weren't", "hasn't": "haven't"}
_ADVERBS = ("also", "then", "still", "usually", "clearly", "just", "probably", "even")


def _plural_verb(word: str) -> str:
    """Third-person singular verb -> plural, for singular "they" ("carries" -> "carry")."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("shes", "ches", "xes", "sses", "zes", "oes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


_COORDINATED_VERBS = ("is", "has", "was", "does", "carries", "wears", "holds", "walks", "seems", "looks", "appears",
                      "goes", "stands", "uses", "pulls", "pushes", "takes", "brings", "keeps", "moves", "heads")


def _agree(piece: str, first: bool) -> tuple[str, bool]:
    """Make the verbs of a "they" sentence agree: the one right after the marker (``first``) and the
    coordinated ones ("..., has [head] and is carrying ...") up to the end of the sentence.
    Returns the piece and whether the sentence goes on after it."""
    end = re.search(r"[.!?]", piece)
    head, tail = (piece[:end.start()], piece[end.start():]) if end else (piece, "")
    if first:
        head = re.sub(r"^(\s+)((?:" + "|".join(_ADVERBS) + r")\s+)?([a-z']+)",
                      lambda m: m.group(1) + (m.group(2) or "") + _plural_verb(m.group(3)), head, count=1)
    head = re.sub(r"((?:\band|,)\s+)(" + "|".join(_COORDINATED_VERBS) + r")\b",
                  lambda m: m.group(1) + _plural_verb(m.group(2)), head)
    return head + tail, end is None


def _pronouns(attrs: AttributeSet) -> dict:
    """Marker -> word: he/his/him, she/her/her, or singular they/their/them for an unknown gender."""
    return _PRONOUNS.get(attrs.gender(), _NEUTRAL)


def _strip_groups(text: str, known: frozenset) -> str:
    """Drop optional groups with an unknown placeholder; keep the content of the others."""
    def keep(m):
        inner = m.group(1)
        slots = {_slot_name(x) for x in re.findall(r"\[(\w+)\]", inner)}
        return inner if slots <= known else ""
    return re.sub(r"<([^<>]*)>", keep, text)


def _phrases(attrs: AttributeSet) -> dict:
    values = attrs.to_dict()
    if values["person"] == UNKNOWN:
        values["person"] = "person"  # documented fallback: the person slot is always fillable
    return values


def fill(template: str | Template, attrs: AttributeSet) -> str:
    """The caption a template gives for ``attrs`` (see :func:`fill_with_spans`)."""
    return fill_with_spans(template, attrs)[0]


def fill_with_spans(template: str | Template, attrs: AttributeSet) -> tuple[str, list[dict]]:
    """Fill a template; returns the caption and its spans ``[{"slot", "start", "end"}]`` (phrase only,
    no article). Raises TemplateError when a required placeholder's slot is unknown."""
    t = template if isinstance(template, Template) else parse_template(template)
    values = _phrases(attrs)
    known = frozenset(s for s in SLOTS if values[s] != UNKNOWN)
    missing = t.required - known
    if missing:
        raise TemplateError(f"template needs slot(s) {sorted(missing)} that are unknown: {t.text!r}")
    pron = _pronouns(attrs)
    out, spans, agree = "", [], False
    for piece in re.split(r"(\[\w+\]|\{\w+\})", _strip_groups(t.text, known)):
        if not piece:
            continue
        if agree and not piece.startswith(("[", "{")):
            piece, agree = _agree(piece, first=agree == "first")
            agree = "rest" if agree else False
        m = re.fullmatch(r"\[(\w+)\]", piece)
        if m:
            slot = _slot_name(m.group(1))
            out = _article_fix(out, values[slot])
            start = len(out)
            phrase = values[slot]
            if _sentence_start(out):
                phrase = _cap(phrase)
            out += phrase
            spans.append({"slot": slot, "start": start, "end": len(out)})
            continue
        m = re.fullmatch(r"\{(\w+)\}", piece)
        if m:
            word = pron[m.group(1)]
            out += _cap(word) if _sentence_start(out) else word
            agree = "first" if word.lower() == "they" else agree
            continue
        out += piece
    return _tidy(out, spans)


def _sentence_start(out: str) -> bool:
    s = out.rstrip()
    return not s or s[-1] in ".!?"


def _article_fix(out: str, phrase: str) -> str:
    """Rewrite the article before a placeholder (or add one) to suit ``phrase``."""
    art = indefinite_article(phrase)
    m = _ART_BEFORE.search(out)
    if m:
        word, space, head = m.group(1), m.group(2), out[:m.start(1)]
        upper = word[0].isupper() or _sentence_start(head)
        if word.lower() == "a pair of" and _is_pair_noun(phrase):
            return out
        if not art:
            return head
        return head + (_cap(art) if upper else art) + space
    w = _WORD_BEFORE.search(out)
    prev = w.group(1).lower() if w else ""
    if prev in _DETERMINERS or not art:
        return out
    if _sentence_start(out):
        return out + _cap(art) + " "
    if out and not out.endswith((" ", "(")):
        return out
    return out + art + " "


def _tidy(text: str, spans: list[dict]) -> tuple[str, list[dict]]:
    """Collapse doubled spaces and spaces before punctuation, keeping the spans aligned."""
    keep = []
    for i, ch in enumerate(text):
        nxt = text[i + 1] if i + 1 < len(text) else ""
        drop = ch == " " and (nxt in (" ", ",", ".", ";", "!", "?", "") or i == 0)
        keep.append(not drop)
    newpos, n = [], 0
    for k in keep:
        newpos.append(n)
        n += k
    newpos.append(n)
    out = "".join(ch for ch, k in zip(text, keep) if k)
    fixed = [{"slot": s["slot"], "start": newpos[s["start"]], "end": newpos[s["end"]]} for s in spans]
    out = out.rstrip()
    if out and out[-1] not in ".!?":
        out += "."
    return out, fixed


# --- the library ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def load_library() -> tuple[Template, ...]:
    """The shipped, curated template library (``library.json``), parsed and checked."""
    raw = json.loads(resources.files(__package__).joinpath("library.json").read_text(encoding="utf-8"))
    return tuple(parse_template(e["text"], e.get("gender", "any")) if isinstance(e, dict) else parse_template(e)
                 for e in raw["templates"])


def candidates(attrs: AttributeSet, library: Iterable[Template] | None = None) -> list[Template]:
    """Templates that fit ``attrs`` exactly (see :meth:`Template.fits`)."""
    lib = load_library() if library is None else [t if isinstance(t, Template) else parse_template(t)
                                                  for t in library]
    values = _phrases(attrs)
    known = frozenset(s for s in SLOTS if values[s] != UNKNOWN)
    gender = attrs.gender()
    return [t for t in lib if t.fits(known, gender)]


def fallback_template(known: frozenset) -> str:
    """A generic template using exactly ``known`` (for libraries with a gap)."""
    worn = [f"[{s}]" for s in ("upper", "lower", "shoes") if s in known]
    text = "A [person]" + (" with [head]" if "head" in known else "")
    if worn:
        text += " is wearing " + (", ".join(worn[:-1]) + " and " + worn[-1] if len(worn) > 1 else worn[0])
        text += " and carrying [belongings]." if "belongings" in known else "."
    else:
        text += " is carrying [belongings]." if "belongings" in known else " is walking."
    return text


def _choose(rng, n: int) -> int:
    if hasattr(rng, "integers"):  # numpy Generator
        return int(rng.integers(n))
    return rng.randrange(n)


def prompt_caption(attrs: AttributeSet, rng, library: Iterable[Template] | None = None) -> tuple[str, list[dict]]:
    """A prompt caption for ``attrs`` from a random fitting template; returns ``(text, spans)``.

    ``rng`` is a ``random.Random`` or a ``numpy.random.Generator`` (seed it for reproducibility).
    """
    fit = candidates(attrs, library)
    if not fit:
        known = frozenset(s for s in SLOTS if _phrases(attrs)[s] != UNKNOWN)
        _log.debug("no template fits slots %s; using the generic fallback", sorted(known))
        return fill_with_spans(fallback_template(known), attrs)
    return fill_with_spans(fit[_choose(rng, len(fit))], attrs)


from .mining import mine_templates, mine_templates_from_files  # noqa: E402

__all__ = ["Template", "TemplateError", "MARKERS", "parse_template", "fill", "fill_with_spans", "indefinite_article",
           "is_plural_or_mass", "load_library", "candidates", "fallback_template", "prompt_caption",
           "mine_templates", "mine_templates_from_files"]
