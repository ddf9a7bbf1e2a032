"""Ground truth on ProcPedes data: how right the attributes and captions of a row really are.

Rows rendered by ProcPedes carry the identity's appearance and the per-image visibility in
``extra`` (``synth_pedes.procpedes.corpus.render_record``); stages that derive a dataset from them
(``plip synth``, ``plip filter``) keep that ``extra``. Images that went through a folder (``plip render
--format image-folder``, then ``plip import images``) lose it, so the render also writes the same fields
to a side table keyed by the image's sha256 (``TRUTH_TABLE_NAME``), which ``plip card --truth`` joins. From it the true phrase of every slot
(``unknown`` where not visible) and every true wording of it are rebuilt, so the card can report
accuracy against the truth next to the internal consistency it reports for every dataset.
"""
from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

from ..schema import SLOTS, UNKNOWN
from .text import CONSISTENT, EXACT, judge

# The side table `plip render --format image-folder|flat-folder` writes beside the images: one JSON object per
# line, {"image_sha256", "path", "appearance", "visible", "details"}; `plip card --truth FILE` joins it by sha256.
TRUTH_TABLE_NAME = "ground-truth.jsonl"
TRUTH_FIELDS = ("appearance", "visible", "details")
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
    return truth_from(json.loads(extra_json))


def truth_from(fields: dict) -> "Truth | None":
    """The ground truth of ``{"appearance", "visible", "details"}`` (a row's ``extra`` or a truth-table line)."""
    if "appearance" not in fields or "visible" not in fields:
        return None
    key = json.dumps([fields["appearance"], fields["visible"], fields.get("details", {})], sort_keys=True)
    return _truth(key)


def truth_table_line(record: dict, path: str) -> str:
    """One line of a truth table for a rendered ``record`` whose image was written to ``path``."""
    extra = json.loads(record["extra"])
    entry = {"image_sha256": record["image_sha256"], "path": path,
             **{name: extra[name] for name in TRUTH_FIELDS if name in extra}}
    return json.dumps(entry, sort_keys=True) + "\n"


def read_truth_table(path: str | os.PathLike) -> dict[str, dict]:
    """``image_sha256`` -> ``{"appearance", "visible", "details"}`` from a truth table; raises ValueError
    naming the file, the line and the fix for anything that is not one."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the truth table ({e}); pass the {TRUTH_TABLE_NAME} that "
                         "`plip render --format image-folder` wrote beside the images") from None
    table = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as e:
            raise ValueError(f"{path} line {n}: not JSON ({e}); a truth table has one JSON object per line") from None
        problem = _entry_problem(entry)
        if problem:
            raise ValueError(f"{path} line {n}: {problem}; each line needs image_sha256 (64 hex digits), appearance "
                             "and visible (objects), as `plip render --format image-folder` writes them")
        table[entry["image_sha256"]] = {name: entry[name] for name in TRUTH_FIELDS if name in entry}
    if not table:
        raise ValueError(f"{path}: the truth table is empty; pass the {TRUTH_TABLE_NAME} of the rendered images")
    return table


def _entry_problem(entry) -> str:
    if not isinstance(entry, dict):
        return "not a JSON object"
    sha = entry.get("image_sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        return f"image_sha256 {sha!r} is not a sha256 hex digest"
    missing = [name for name in ("appearance", "visible") if not isinstance(entry.get(name), dict)]
    return f"{' and '.join(missing)} missing or not an object" if missing else ""


@functools.lru_cache(maxsize=2)
def _cached_table(path: str, mtime_ns: int, size: int) -> dict[str, dict]:
    return read_truth_table(path)


def load_truth_table(path: str | os.PathLike) -> dict[str, dict]:
    """``read_truth_table``, read once per process and file version (every shard task of a worker shares it)."""
    st = os.stat(path)
    return _cached_table(str(path), st.st_mtime_ns, st.st_size)


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
