"""Ground truth on ProcPedes data: how right the attributes and captions of a row really are.

Rows rendered by ProcPedes carry the identity's appearance and the per-image visibility in
``extra`` (``synth_pedes.procpedes.corpus.render_record``); stages that derive a dataset from them
(``plip synth``, ``plip filter``) keep that ``extra``. From it the true phrase of every slot
(``unknown`` where not visible) and every true wording of it are rebuilt, so the card can report
accuracy against the truth next to the internal consistency it reports for every dataset.
"""
from __future__ import annotations

import functools
import json
import re

from ..schema import SLOTS, UNKNOWN
from .text import CONSISTENT, EXACT, judge

# outcomes of a predicted attribute value against the truth
ATTR_EXACT, ATTR_TRUE, ATTR_WRONG, ATTR_MISSED, ATTR_HALLUCINATED, ATTR_UNKNOWN_OK = (
    "exact", "true", "wrong", "missed", "hallucinated", "unknown_ok")
# outcomes of a caption's attribute phrase against the truth
SPAN_TRUE, SPAN_WRONG, SPAN_UNSUPPORTED = "true", "wrong", "unsupported"


def _normalise(text: str) -> str:
    text = re.sub(r"\s*-\s*", "-", text.lower())
    return " ".join(re.sub(r"[^\w\s-]", " ", text).split())


def truth_of(extra_json: str | None) -> "Truth | None":
    """The ground truth held by a row's ``extra``, or None for rows that are not ProcPedes renders."""
    if not extra_json or '"appearance"' not in extra_json:  # cheap test before parsing
        return None
    extra = json.loads(extra_json)
    if "appearance" not in extra or "visible" not in extra:
        return None
    key = json.dumps([extra["appearance"], extra["visible"], extra.get("details", {})], sort_keys=True)
    return _truth(key)


@functools.lru_cache(maxsize=4096)
def _truth(key: str) -> "Truth":
    from ..procpedes.people import Appearance
    from ..procpedes.phrases import image_phrases, options

    appearance, visible, details = json.loads(key)
    a = Appearance(**appearance)
    phrases = image_phrases(a, visible)
    wordings = {}
    for slot in SLOTS:
        if phrases[slot] == UNKNOWN:
            wordings[slot] = frozenset()
            continue
        words = set(options(slot, a))
        if slot == "upper" and details.get("inner_visible") and a.inner_type != "none":
            words |= options("upper", a, "inner")  # the garment under an open jacket is true as well
        if slot == "head" and a.headwear != "none":
            words |= options("head", a, "hair")  # hair showing under a hat or cap
        wordings[slot] = frozenset(_normalise(w) for w in words if w)
    return Truth(phrases, wordings)


class Truth:
    """One image's true slot phrases and every true wording of each."""

    __slots__ = ("phrases", "wordings")

    def __init__(self, phrases: dict[str, str], wordings: dict[str, frozenset]):
        self.phrases, self.wordings = phrases, wordings

    def is_true(self, slot: str, phrase: str) -> bool:
        if self.phrases[slot] == UNKNOWN:
            return False
        return _normalise(phrase) in self.wordings[slot] or judge(phrase, self.phrases[slot]) in (EXACT, CONSISTENT)

    def attribute_outcome(self, slot: str, predicted: str | None) -> str:
        truth, predicted = self.phrases[slot], predicted or UNKNOWN
        if predicted == UNKNOWN:
            return ATTR_UNKNOWN_OK if truth == UNKNOWN else ATTR_MISSED
        if truth == UNKNOWN:
            return ATTR_HALLUCINATED
        if judge(predicted, truth) == EXACT:
            return ATTR_EXACT
        return ATTR_TRUE if self.is_true(slot, predicted) else ATTR_WRONG

    def span_outcome(self, slot: str, phrase: str) -> str:
        if self.phrases.get(slot, UNKNOWN) == UNKNOWN:
            return SPAN_UNSUPPORTED
        return SPAN_TRUE if self.is_true(slot, phrase) else SPAN_WRONG
