"""Per-caption faithfulness and the signs of degenerate captioner output.

**Faithfulness** of one caption: the share of its attribute phrases (its stored spans) that agree,
exactly or consistently (``text.judge``), with the row's final attribute of the same slot; None when
the caption names no attribute phrase (nothing to judge), or the row has no attributes. A phrase
naming a slot the attributes record as ``unknown`` does not agree. ``plip synth`` stores the scores
in ``extra["spac"]["faithfulness"]``, aligned with ``captions``; ``plip filter --min-faithfulness``
reads them (and recomputes them for datasets written before they were stored); the card reports
their distribution. It lives here, not in ``spac``, because the card may not import ``spac``, and
the rule must be one rule wherever it is applied.

A score compares captions with the row's *own* attributes, which are predictions on synthetic
data: it measures self-consistency, not truth (``truth`` does that where ground truth exists).
Degenerate output can look consistent ("man man man man" agrees with ``person: man``), so
:func:`repeated_word` flags such captions and :func:`degenerate_warnings` turns the dataset-level
signs into warnings, with the thresholds below.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Iterator

from .text import CONSISTENT, EXACT, judge, words

AGREEING = (EXACT, CONSISTENT)
LOW_FAITHFULNESS = 0.5  # the card reports the share of captions scoring below this
# A caption repeats a word when one content word is >= REPEAT_MIN_COUNT of its words and
# >= REPEAT_MIN_SHARE of them: a decoding loop ("a black a black a black a black"), not a caption
# that says "black" for four garments of twenty-odd words.
REPEAT_MIN_COUNT, REPEAT_MIN_SHARE = 4, 0.25
FUNCTION_WORDS = frozenset({"a", "an", "the", "and", "of", "with", "in", "on", "is", "are", "to", "at", "her",
                            "his", "he", "she", "has", "wears", "wearing", "carries", "carrying", "pair"})
# Dataset-level warnings (see degenerate_warnings); each is checked only with enough captions to mean something.
MIN_CAPTIONS = 100  # fewer captions: no vocabulary warning
MIN_VOCABULARY = 50  # distinct words in all captions together
# distinct-2 (distinct bigrams / bigrams) falls as a corpus grows, so "near zero" also needs few distinct
# bigrams in absolute terms: below 2 % and under 1000 distinct, in a style with at least MIN_BIGRAMS bigrams
MAX_DISTINCT_2, MIN_DISTINCT_2_COUNT, MIN_BIGRAMS = 0.02, 1000, 1000
MAX_REPEATING_SHARE = 0.01  # share of a caption group with a repeated word
ALWAYS_UNKNOWN = 0.99  # a slot unknown in this share of rows (over at least MIN_ATTRIBUTE_ROWS) ...
MIN_ATTRIBUTE_ROWS = 20


def caption_phrases(text: str, spans: Iterable) -> Iterator[tuple[str, str | None]]:
    """``(slot, phrase)`` for each span (dicts, or objects with ``slot/start/end``); phrase None when
    the offsets do not lie inside the text."""
    for span in spans or ():
        get = span.get if isinstance(span, dict) else lambda name: getattr(span, name, None)
        slot, start, end = get("slot"), get("start"), get("end")
        ok = start is not None and end is not None and 0 <= start < end <= len(text)
        yield slot, text[start:end] if ok else None


def share_agreeing(verdicts: list[str]) -> float | None:
    """The faithfulness of a caption from its phrases' ``judge`` verdicts (None when there are none)."""
    if not verdicts:
        return None
    return round(sum(v in AGREEING for v in verdicts) / len(verdicts), 4)


def caption_faithfulness(text: str, spans: Iterable, attributes: dict | None) -> float | None:
    """The faithfulness of one caption against the row's attributes (see the module docstring)."""
    if attributes is None:
        return None
    return share_agreeing([judge(phrase, attributes.get(slot)) for slot, phrase in caption_phrases(text, spans)
                           if phrase is not None])


def captions_faithfulness(captions: list[dict], attributes: dict | None) -> list[float | None]:
    """One score per caption, in order (what ``plip synth`` stores in ``extra["spac"]["faithfulness"]``)."""
    return [caption_faithfulness(c.get("text") or "", c.get("spans"), attributes) for c in captions]


def row_faithfulness(captions: list[dict], attributes: dict | None, extra: dict | None) -> list[float | None]:
    """The stored scores of a row when they are aligned with its captions, else recomputed (datasets
    written before ``plip synth`` stored them, or whose captions were edited since)."""
    stored = ((extra or {}).get("spac") or {}).get("faithfulness")
    if isinstance(stored, list) and len(stored) == len(captions):
        return stored
    return captions_faithfulness(captions, attributes)


def repeated_word(text: str) -> str | None:
    """The content word a caption repeats like a decoding loop (see REPEAT_MIN_*), or None."""
    ws = words(text)
    counts = Counter(w for w in ws if w not in FUNCTION_WORDS)
    if not counts:
        return None
    word, n = counts.most_common(1)[0]
    return word if n >= REPEAT_MIN_COUNT and n >= REPEAT_MIN_SHARE * len(ws) else None


def degenerate_warnings(stats: dict) -> list[dict]:
    """Warnings about output that a faithfulness figure would otherwise dress up as good, from the
    summary statistics (``summary.summarize``): ``{"code", "message", "value", "threshold"}``."""
    out = []
    total = stats["captions"]["total"]
    vocab = stats["vocabulary"]["size"]
    if total >= MIN_CAPTIONS and vocab < MIN_VOCABULARY:
        out.append(_warning("tiny-vocabulary", f"all {total:,} captions together use only {vocab} distinct words",
                            vocab, MIN_VOCABULARY))
    for style, div in stats["diversity"].items():
        d2, count, bigrams = div.get("distinct_2"), div.get("distinct_2_count", 0), div.get("ngrams_2", 0)
        if style != "all" and bigrams >= MIN_BIGRAMS and d2 < MAX_DISTINCT_2 and count < MIN_DISTINCT_2_COUNT:
            out.append(_warning("distinct-2-near-zero", f"captions of style `{style}` reuse the same word pairs: "
                                f"distinct-2 {d2} ({count} distinct of {div['ngrams_2']:,} bigrams)", d2,
                                MAX_DISTINCT_2))
    for group, rep in stats.get("caption_faithfulness", {}).get("repeating", {}).items():
        if rep["share"] >= MAX_REPEATING_SHARE:
            out.append(_warning("repeated-word", f"{rep['captions']:,} `{group}` captions ({100 * rep['share']:.1f}%) "
                                f"repeat one word like a decoding loop, e.g. \"{rep['example']}\"; they are left "
                                "out of the faithfulness distribution", rep["share"], MAX_REPEATING_SHARE))
    attrs = stats["attributes"]
    if attrs.get("rows", 0) >= MIN_ATTRIBUTE_ROWS:
        for slot, s in attrs["slots"].items():
            if s["unknown_rate"] is not None and s["unknown_rate"] >= ALWAYS_UNKNOWN:
                out.append(_warning("slot-always-unknown", f"slot `{slot}` is `unknown` in {100 * s['unknown_rate']:.1f}%"
                                    f" of {attrs['rows']:,} rows: captions cannot contradict it, and cannot be "
                                    "checked on it", s["unknown_rate"], ALWAYS_UNKNOWN))
    return out


def _warning(code: str, message: str, value, threshold) -> dict:
    return {"code": code, "message": message, "value": value, "threshold": threshold}
