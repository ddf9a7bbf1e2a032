"""Attribute labels for training recognizers: mined from human captions (as the paper did) or read from
the ``attributes`` column, and the per-slot phrase vocabulary built from them.

Caption mining (``label_from_captions``): every caption of an image goes through the phrase
extractor (``spac.phrases.extract_many``, the same keyword noun-phrase extractor behind
``attributes_from_text``); per slot, all phrases of all captions (canonicalised unless asked not to) are
pooled and the label is the phrase most captions mention, ties broken by mention order inside a caption,
then by specificity (``rule="frequent"``, see :func:`choose_phrase`); ``rule="specific"`` prefers the most
specific phrase first. A slot that no caption mentions is ``unknown``. Pooling every span instead of
taking ``attributes_from_text``'s most specific phrase per caption keeps the outer garment ("a red jacket
with a brown t-shirt underneath" -> "red jacket"); on ProcPedes it agrees with the ground truth more often
(upper 83 % vs 75 %, head 91 % vs 87 %, 640 images).

The vocabulary (``build_vocab``) keeps, per slot, the phrases seen at least ``min_count`` times
(most frequent first, ties alphabetical) and always ``unknown`` at index 0. Rarer phrases map to
``IGNORE_INDEX`` so the loss skips them.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

from synth_pedes.schema import SLOTS, UNKNOWN

from ..attributes import AttributeSet
from .canon import canonical_phrase

LABEL_SOURCES = ("captions", "attributes")
LABEL_RULES = ("frequent", "specific")
IGNORE_INDEX = -100


def _specificity(phrase: str) -> int:
    return len(re.findall(r"[a-z0-9]+", phrase.replace("-", "")))


class _Candidate:
    __slots__ = ("captions", "rank", "order")

    def __init__(self, order: int):
        self.captions: set = set()
        self.rank = 1 << 30
        self.order = order


def choose_phrase(mentions: Sequence[tuple[str, int, int]], rule: str = "frequent") -> str:
    """The label of one slot from ``(phrase, caption index, mention rank within that caption)`` triples.

    ``frequent``: most captions mentioning the phrase, then mentioned earliest in its caption (annotators
    name the outer garment / the headwear first: "a red jacket with a brown t-shirt underneath"), then most
    specific, then first seen. ``specific``: most specific first, then the same order. No mention: ``unknown``.
    """
    if rule not in LABEL_RULES:
        raise ValueError(f"label rule {rule!r} is not one of {LABEL_RULES}")
    cands: dict[str, _Candidate] = {}
    for phrase, caption, rank in mentions:
        if phrase == UNKNOWN:
            continue
        c = cands.setdefault(phrase, _Candidate(len(cands)))
        c.captions.add(caption)
        c.rank = min(c.rank, rank)
    if not cands:
        return UNKNOWN
    if rule == "frequent":
        key = lambda p: (-len(cands[p].captions), cands[p].rank, -_specificity(p), cands[p].order)  # noqa: E731
    else:
        key = lambda p: (-_specificity(p), -len(cands[p].captions), cands[p].rank, cands[p].order)  # noqa: E731
    return min(cands, key=key)


def label_from_spans(spans_per_caption: Sequence[Sequence], rule: str = "frequent",
                     canonical: bool = True) -> AttributeSet:
    """One image's label from the extractor's spans of each of its captions (``spac.phrases.Span``)."""
    mentions: dict[str, list] = {s: [] for s in SLOTS}
    for ci, spans in enumerate(spans_per_caption):
        rank = dict.fromkeys(SLOTS, 0)
        for sp in spans:
            if getattr(sp, "negated", False) or sp.slot not in mentions:
                continue
            text = " ".join(sp.text.lower().split())
            mentions[sp.slot].append((canonical_phrase(text, sp.slot) if canonical else text, ci, rank[sp.slot]))
            rank[sp.slot] += 1
    return AttributeSet(**{s: choose_phrase(mentions[s], rule) for s in SLOTS})


def label_from_captions(texts: Sequence[str], rule: str = "frequent", canonical: bool = True) -> AttributeSet:
    """The attribute label of one image from its captions, via ``spac.phrases.extract_many``."""
    from ..phrases import extract_many

    return label_from_spans(extract_many(list(texts)), rule, canonical)


def caption_texts(row: dict, kinds: Sequence[str] | None = ("human",)) -> list[str]:
    """The caption texts of a record, only of ``kinds`` (None: every caption)."""
    caps = row.get("captions") or []
    return [c["text"] for c in caps if c and c.get("text") and (kinds is None or c.get("kind") in kinds)]


def labels_for_rows(rows: Sequence[dict], source: str = "captions", rule: str = "frequent", canonical: bool = True,
                    caption_kinds: Sequence[str] | None = ("human",)) -> list[AttributeSet]:
    """One label per record. ``source="captions"``: mined from the record's captions of ``caption_kinds``
    (batched through the extractor); ``"attributes"``: the record's ``attributes`` column."""
    if source not in LABEL_SOURCES:
        raise ValueError(f"label source {source!r} is not one of {LABEL_SOURCES}")
    if source == "attributes":
        out = []
        for row in rows:
            attrs = row.get("attributes")
            if attrs is None:
                raise ValueError(f"row {row.get('key')!r} has no 'attributes' column value; train with "
                                 "labels='captions' or use a dataset with ground-truth attributes")
            a = AttributeSet.from_dict(attrs)
            out.append(AttributeSet(**{s: canonical_phrase(getattr(a, s), s) for s in SLOTS}) if canonical else
                       AttributeSet(**{s: getattr(a, s).lower() for s in SLOTS}))
        return out
    from ..phrases import extract_many

    texts_per_row = [caption_texts(r, caption_kinds) for r in rows]
    spans = iter(extract_many([t for ts in texts_per_row for t in ts]))
    return [label_from_spans([next(spans) for _ in ts], rule, canonical) for ts in texts_per_row]


def build_vocab(labels: Iterable[AttributeSet], min_count: int = 5) -> dict[str, list[str]]:
    """Per slot: ``unknown`` then the phrases seen at least ``min_count`` times (most frequent first)."""
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}")
    counts = {s: Counter() for s in SLOTS}
    for a in labels:
        for s in SLOTS:
            counts[s][getattr(a, s)] += 1
    vocab = {}
    for s in SLOTS:
        kept = sorted((p for p, n in counts[s].items() if n >= min_count and p != UNKNOWN),
                      key=lambda p: (-counts[s][p], p))
        vocab[s] = [UNKNOWN, *kept]
    return vocab


def check_vocab(vocab: dict, where: str = "vocab") -> dict[str, list[str]]:
    """Validate a ``{slot: [phrases]}`` vocabulary (every slot, unique phrases, ``unknown`` first)."""
    if not isinstance(vocab, dict) or set(vocab) != set(SLOTS):
        got = sorted(vocab) if isinstance(vocab, dict) else type(vocab).__name__
        raise ValueError(f"{where}: needs exactly the slots {list(SLOTS)}, got {got}")
    out = {}
    for s in SLOTS:
        phrases = vocab[s]
        if not isinstance(phrases, list) or not phrases or not all(isinstance(p, str) for p in phrases):
            raise ValueError(f"{where}: slot {s!r} must be a non-empty list of phrases")
        if phrases[0] != UNKNOWN or len(set(phrases)) != len(phrases):
            raise ValueError(f"{where}: slot {s!r} must start with {UNKNOWN!r} and hold unique phrases")
        out[s] = list(phrases)
    return out


def encode_labels(labels: Sequence[AttributeSet], vocab: dict[str, list[str]]) -> dict[str, list[int]]:
    """Class indices per slot (``IGNORE_INDEX`` for phrases outside the vocabulary)."""
    index = {s: {p: i for i, p in enumerate(vocab[s])} for s in SLOTS}
    return {s: [index[s].get(getattr(a, s), IGNORE_INDEX) for a in labels] for s in SLOTS}


# ---- factorised labels: colour x kind ------------------------------------------------------------------------
# A whole phrase as one class ("navy striped shirt") has a handful of examples and never transfers to an
# unseen colour x garment pair; the factorised classifier predicts the colour and the colourless kind
# ("striped shirt") with separate heads and composes them (measured in the issue-16 note: per-slot accuracy on
# unseen identities rose from ~42 % to the figures in docs/evaluation.md#spac-quality-benchmark).
COLOUR_SUFFIX = "_colour"  # head name of a slot's colour head: "upper_colour"


def colour_head(slot: str) -> str:
    return slot + COLOUR_SUFFIX


def split_colour(phrase: str, slot: str) -> tuple[str | None, str]:
    """``(colour, kind)`` of a phrase, both canonical: "long black hair" -> ("black", "long hair"),
    "a pair of dark blue jeans" -> ("navy", "jeans"); no colour word: ``(None, phrase)``. The colour is the run
    of words from the first to the last colour word, with the colour modifiers before it ("light blue")."""
    from ..attributes import load_lexicon

    words = canonical_phrase(phrase, slot).split()
    lexicon = load_lexicon()
    colours, modifiers = lexicon.modifiers["colours"], lexicon.modifiers["colour_modifiers"]
    where = [i for i, w in enumerate(words) if w in colours]
    if not where or len(where) == len(words):
        return None, " ".join(words)
    first, last = where[0], where[-1]
    while first > 0 and words[first - 1] in modifiers:
        first -= 1
    return " ".join(words[first:last + 1]), " ".join(words[:first] + words[last + 1:])


def compose_phrase(colour: str | None, kind: str, slot: str) -> str:
    """The phrase of ``colour`` and ``kind`` in canonical word order ("long hair" + "black" -> "long black hair")."""
    if kind == UNKNOWN or not colour:
        return kind
    return canonical_phrase(f"{colour} {kind}", slot)


def build_colour_vocab(labels: Iterable[AttributeSet], kinds: dict[str, list[str]], min_count: int = 5) -> dict:
    """Per slot ``{"colours": [...], "coloured": [...]}``: the colours seen at least ``min_count`` times (most
    frequent first) and the kinds written with a colour at least as often as without (those get one)."""
    colour_counts = {s: Counter() for s in SLOTS}
    with_colour, without = {s: Counter() for s in SLOTS}, {s: Counter() for s in SLOTS}
    for a in labels:
        for s in SLOTS:
            phrase = getattr(a, s)
            if phrase == UNKNOWN:
                continue
            colour, kind = split_colour(phrase, s)
            (with_colour if colour else without)[s][kind] += 1
            if colour:
                colour_counts[s][colour] += 1
    return {s: {"colours": sorted((c for c, n in colour_counts[s].items() if n >= min_count),
                                  key=lambda c: (-colour_counts[s][c], c)),
                "coloured": [k for k in kinds[s] if k != UNKNOWN and with_colour[s][k] >= max(1, without[s][k])]}
            for s in SLOTS}


def build_factorised_vocab(labels: Sequence[AttributeSet], min_count: int = 5) -> tuple[dict, dict]:
    """``(kinds, colours)``: the kind vocabulary per slot (as :func:`build_vocab`, over colourless phrases) and
    the colour vocabulary (:func:`build_colour_vocab`)."""
    kinds_only = [kind_labels(a) for a in labels]
    kinds = build_vocab(kinds_only, min_count)
    return kinds, build_colour_vocab(labels, kinds, min_count)


def kind_labels(a: AttributeSet) -> AttributeSet:
    """The colourless kind of every slot phrase."""
    return AttributeSet(**{s: split_colour(getattr(a, s), s)[1] if getattr(a, s) != UNKNOWN else UNKNOWN
                           for s in SLOTS})


def encode_factorised_labels(labels: Sequence[AttributeSet], kinds: dict, colours: dict) -> dict[str, list[int]]:
    """Class indices per head: the slots' kinds and ``{slot}_colour`` colours (``IGNORE_INDEX`` where a phrase
    has no colour or an out-of-vocabulary one)."""
    out = encode_labels([kind_labels(a) for a in labels], kinds)
    for s in SLOTS:
        if not colours[s]["colours"]:
            continue
        index = {c: i for i, c in enumerate(colours[s]["colours"])}
        out[colour_head(s)] = [index.get(split_colour(getattr(a, s), s)[0], IGNORE_INDEX)
                               if getattr(a, s) != UNKNOWN else IGNORE_INDEX for a in labels]
    return out


def check_colour_vocab(colours: dict, kinds: dict, where: str = "colours") -> dict:
    """Validate a colour vocabulary against the kind vocabulary it goes with."""
    if not isinstance(colours, dict) or set(colours) != set(SLOTS):
        raise ValueError(f"{where}: needs exactly the slots {list(SLOTS)}")
    for s in SLOTS:
        entry = colours[s]
        if not isinstance(entry, dict) or not isinstance(entry.get("colours"), list) or \
                not isinstance(entry.get("coloured"), list):
            raise ValueError(f"{where}: slot {s!r} must be {{\"colours\": [...], \"coloured\": [...]}}")
        stray = [k for k in entry["coloured"] if k not in kinds[s]]
        if stray:
            raise ValueError(f"{where}: slot {s!r} names kind {stray[0]!r}, which is not in the vocabulary")
    return colours
