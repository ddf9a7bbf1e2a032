"""Mining masked templates from human captions with the phrase extractor (docs/reimplementation.md#prompt-captions).

Each attribute phrase becomes its slot placeholder and each gendered pronoun a marker. A caption
is kept only when the result is a usable template: at least one placeholder, no slot twice, no
negated mention ("no bag" would contradict a filled belongings slot), no attribute word left
outside a placeholder (bare "hair", a colour, glasses, an age like "twenties": each would assert
a fact the attribute set may not share), and no placeholder used as a verb subject ("[shoes] are
..."), whose agreement the filler cannot fix.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Iterable

from ..attributes import load_lexicon
from ..phrases import analyze_many

_log = logging.getLogger(__name__)

_FORBIDDEN_CHARS = re.compile(r"[\[\]{}<>]")
_AGE_WORDS = re.compile(r"\b(teens|twenties|thirties|forties|fifties|sixties|seventies|eighties|years?[- ]old|aged?)\b",
                        re.IGNORECASE)
# a non-person placeholder as a verb's subject ("His [shoes] are white"): "[person] is" always agrees. Only
# a placeholder that starts a subject counts: "A [person] with [head] is wearing" has [head] as an object.
_SUBJECT_VERB = re.compile(r"(?:^|[.!?]\s+|\b(?:[Tt]he|[Hh]is|[Hh]er|[Tt]heir|\{[Hh]is\})\s+)"
                           r"\[(?!person\])\w+\]\s+(is|are|was|were|looks?|seems?|has|have)\b")
_MARK = {"he": "{he}", "she": "{he}", "him": "{him}", "his": "{his}"}
# "her" is a possessive before a noun phrase and an object pronoun elsewhere
_OBJECT_FOLLOWERS = frozenset({"", ".", ",", ";", "!", "?", "and", "or", "but", "with", "in", "on", "at", "to",
                               "from", "while", "as", "is", "was", "who", "that", "which", "when", "because"})


def _pronoun_marker(word: str, next_word: str) -> str | None:
    w = word.lower()
    if w == "her":
        mark = "{him}" if next_word.lower() in _OBJECT_FOLLOWERS else "{his}"
    else:
        mark = _MARK.get(w)
    if mark is None:
        return None
    return "{" + mark[1].upper() + mark[2:] if word[0].isupper() else mark


def _mask(text: str, spans) -> str:
    """Replace spans by placeholders, then pronouns by markers (a placeholder after "her" makes it possessive)."""
    pieces, pos = [], 0
    for sp in spans:
        pieces += [text[pos:sp.start], f"[{sp.slot}]"]
        pos = sp.end
    pieces.append(text[pos:])
    masked = "".join(pieces)
    tokens = re.split(r"(\[\w+\]|\b[A-Za-z]+\b)", masked)
    out = []
    for i, tok in enumerate(tokens):
        if tok.isalpha():
            rest = "".join(tokens[i + 1:]).strip()
            nxt = re.match(r"\[|[A-Za-z]+|[^\sA-Za-z]", rest)
            mark = _pronoun_marker(tok, nxt.group(0) if nxt else "")
            out.append(mark or tok)
        else:
            out.append(tok)
    return "".join(out)


def _sentence_case(template: str) -> str:
    """Capitalise sentence starts ("a [person] ... {he} has" -> "A [person] ... {He} has"); end with a stop."""
    out = re.sub(r"(^|[.!?]\s+)(\{)?([a-z])", lambda m: m.group(1) + (m.group(2) or "") + m.group(3).upper(), template)
    return out if out.endswith((".", "!", "?")) else out + "."


def _leftover_attribute_word(template: str) -> str | None:
    lex = load_lexicon()
    words = set(re.findall(r"[a-z]+(?:-[a-z]+)*", re.sub(r"\[\w+\]|\{\w+\}", " ", template.lower())))
    bad = set(lex.colour_words) | set(lex.excluded) | set(lex.modifiers["patterns"])
    bad |= {k for s in lex.keywords.values() for k in s if " " not in k}
    hit = sorted(words & bad - {"light", "dark", "deep", "hot", "pure", "solid", "medium", "mid", "off", "check",
                                "plain", "sea", "snow", "work", "print"})
    return hit[0] if hit else None


def mine_templates(captions: Iterable[str]) -> list[str]:
    """Masked templates mined from captions (unique, in first-seen order); unusable captions are skipped."""
    captions = [c for c in captions if isinstance(c, str) and c.strip()]
    seen, out, reasons = set(), [], {}
    for cap, a in zip(captions, analyze_many(captions)):
        reason = None
        slots = [s.slot for s in a.spans]
        if not slots:
            reason = "no attribute phrase"
        elif len(set(slots)) != len(slots):
            reason = "a slot twice"
        elif a.negated:
            reason = "negation"
        elif _FORBIDDEN_CHARS.search(cap):
            reason = "template syntax characters"
        elif _AGE_WORDS.search(cap):
            reason = "age expression"
        if reason is None:
            tpl = _sentence_case(" ".join(_mask(cap, a.spans).split()))
            if _SUBJECT_VERB.search(tpl):
                reason = "placeholder as verb subject"
            elif _leftover_attribute_word(tpl):
                reason = "attribute word outside a phrase"
            elif tpl in seen:
                reason = "duplicate"
            else:
                seen.add(tpl)
                out.append(tpl)
        if reason:
            reasons[reason] = reasons.get(reason, 0) + 1
    _log.info("mined %d templates from %d captions; skipped: %s", len(out), len(captions), reasons)
    return out


def _captions_of(item) -> list[str]:
    if isinstance(item, str):
        return [item]
    if isinstance(item, dict):
        if isinstance(item.get("captions"), list):
            return [c if isinstance(c, str) else c.get("text", "") for c in item["captions"]]
        for key in ("caption", "text"):
            if isinstance(item.get(key), str):
                return [item[key]]
    return []


def read_captions(path: str | Path) -> list[str]:
    """Captions from a plain-text file (one per line), a JSON list (of strings, or of objects with
    ``captions``/``caption``/``text``, as in CUHK-PEDES/ICFG-PEDES/RSTPReid annotation files) or JSON lines."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of captions or annotation objects")
        return [c for item in data for c in _captions_of(item)]
    if path.suffix == ".jsonl":
        return [c for line in text.splitlines() if line.strip() for c in _captions_of(json.loads(line))]
    return [line.strip() for line in text.splitlines() if line.strip()]


def mine_templates_from_files(paths: Iterable[str | Path]) -> list[str]:
    """:func:`mine_templates` over the captions of several files (see :func:`read_captions`)."""
    captions = [c for p in paths for c in read_captions(p)]
    return mine_templates(captions)
