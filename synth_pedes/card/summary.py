"""Turn the merged ``PartialStats`` of a dataset into the machine-readable statistics (stats.json).

Every rate comes with the counts it was computed from, so a reader can check it and combine cards.
Rates are fractions in [0, 1], rounded to 4 places; absent measures are ``None`` with a ``why``.
"""
from __future__ import annotations

import math
from collections import Counter

from ..schema import SLOTS, UNKNOWN
from .partial import PartialStats
from .text import CONSISTENT, CONTRADICT, EXACT, UNSUPPORTED
from .truth import (ATTR_EXACT, ATTR_HALLUCINATED, ATTR_MISSED, ATTR_TRUE, ATTR_UNKNOWN_OK, ATTR_WRONG,
                    SPAN_TRUE, SPAN_UNSUPPORTED, SPAN_WRONG)

TOP = 10


def rate(num: float, den: float) -> float | None:
    return None if not den else round(num / den, 4)


def distribution(counts: Counter) -> dict:
    """Summary of an integer-valued distribution given as value -> frequency."""
    n = sum(counts.values())
    if not n:
        return {"count": 0}
    values = sorted(counts)
    mean = sum(v * c for v, c in counts.items()) / n
    var = sum(c * (v - mean) ** 2 for v, c in counts.items()) / n

    def quantile(q: float) -> int:
        target, seen = q * n, 0
        for v in values:
            seen += counts[v]
            if seen >= target:
                return v
        return values[-1]

    return {"count": n, "mean": round(mean, 3), "sd": round(math.sqrt(var), 3), "min": values[0],
            "p10": quantile(0.1), "median": quantile(0.5), "p90": quantile(0.9), "max": values[-1],
            "histogram": {str(v): counts[v] for v in values}}


def group_name(kind: str, style: str) -> str:
    return kind if style == kind else f"{kind}/{style}"


def summarize(p: PartialStats) -> dict:
    """The statistics document (without dataset identity, comparison and timing: see ``job``)."""
    images = p.status_counts.get("ok", 0)
    return {
        "rows": p.rows, "shards": p.shards, "status_counts": dict(sorted(p.status_counts.items())),
        "reasons": _reasons(p), "images": images, "splits": dict(sorted(p.splits.items())),
        "sources": dict(p.sources.most_common(TOP)),
        "identities": _identities(p), "image_sizes": dict(p.sizes.most_common(TOP)),
        "captions": _captions(p), "caption_length": _lengths(p), "vocabulary": _vocabulary(p),
        "diversity": _diversity(p), "openings": _openings(p), "attributes": _attributes(p),
        "faithfulness": _faithfulness(p), "ground_truth": _ground_truth(p),
    }


def _reasons(p: PartialStats) -> dict:
    out: dict[str, dict] = {}
    for (status, reason), n in sorted(p.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        out.setdefault(status, {})[reason] = n
    return out


def _identities(p: PartialStats) -> dict:
    per = Counter(p.identities.values())  # images per identity -> identities
    return {"count": len(p.identities), "images_without_identity": p.unknown_identity,
            "images_per_identity": distribution(per)}


def _captions(p: PartialStats) -> dict:
    total = sum(p.caption_groups.values())
    by_kind: Counter = Counter()
    for (kind, _), n in p.caption_groups.items():
        by_kind[kind] += n
    return {"total": total, "per_image": distribution(p.captions_per_image), "by_kind": dict(by_kind),
            "by_group": {group_name(k, s): n for (k, s), n in sorted(p.caption_groups.items())}}


def _lengths(p: PartialStats) -> dict:
    out = {group_name(k, s): distribution(c) for (k, s), c in sorted(p.lengths.items())}
    everything: Counter = Counter()
    for c in p.lengths.values():
        everything.update(c)
    if len(out) > 1:
        out["all"] = distribution(everything)
    return out


def _vocabulary(p: PartialStats) -> dict:
    return {"size": p.vocab.count(), "exact": p.vocab.exact,
            "top_words": [[w, n] for w, n in p.words.most_common(30)]}


def _diversity(p: PartialStats) -> dict:
    """distinct-n: distinct n-grams / n-grams, per caption style and over all captions ('*')."""
    out = {}
    for style in sorted({s for s, _ in p.ngram_totals}, key=lambda s: (s == "*", s)):
        row = {}
        for n in (1, 2):
            total, distinct = p.ngram_totals.get((style, n), 0), p.distinct[(style, n)]
            row[f"distinct_{n}"] = rate(distinct.count(), total)
            row[f"ngrams_{n}"] = total
            row[f"distinct_{n}_count"] = distinct.count()
        out["all" if style == "*" else style] = row
    return out


def _openings(p: PartialStats) -> dict:
    out = {}
    for style, counts in sorted(p.openings.items()):
        total = sum(counts.values())
        out[style] = [[o, n, rate(n, total)] for o, n in counts.most_common(TOP)]
    return out


def _attributes(p: PartialStats) -> dict:
    if not p.attr_rows:
        return {"rows": 0, "why": "no ok row carries attributes"}
    slots = {}
    for slot in SLOTS:
        counts = p.attr_values[slot]
        unknown = counts.get(UNKNOWN, 0)
        slots[slot] = {"unknown": unknown, "unknown_rate": rate(unknown, p.attr_rows),
                       "distinct_values": p.attr_distinct[slot].count(),
                       "top": [[v, n, rate(n, p.attr_rows)] for v, n in counts.most_common(TOP)]}
    return {"rows": p.attr_rows, "slots": slots, "unknown_slots_per_image": distribution(p.unknown_slots)}


def _faith_counts(items) -> dict:
    c = Counter()
    for outcome, n in items:
        c[outcome] += n
    judged = c[EXACT] + c[CONSISTENT] + c[CONTRADICT] + c[UNSUPPORTED]
    return {"spans": judged, EXACT: c[EXACT], CONSISTENT: c[CONSISTENT], CONTRADICT: c[CONTRADICT],
            UNSUPPORTED: c[UNSUPPORTED], "bad_offsets": c["bad_offsets"],
            "agreement": rate(c[EXACT] + c[CONSISTENT], judged), "exact_rate": rate(c[EXACT], judged),
            "contradiction_rate": rate(c[CONTRADICT], judged), "unsupported_rate": rate(c[UNSUPPORTED], judged)}


def _faithfulness(p: PartialStats) -> dict:
    """Caption attribute phrases (stored spans) against the same row's attributes."""
    if not p.faith:
        why = ("the dataset has no captions" if not p.caption_groups else "no ok row has attributes"
               if not p.attr_rows else "no caption carries attribute spans")
        return {"measurable": False, "why": why}
    groups = sorted({(k, s) for k, s, _, _ in p.faith})
    by_group = {}
    for k, s in groups:
        entry = _faith_counts((o, n) for (k2, s2, _, o), n in p.faith.items() if (k2, s2) == (k, s))
        known, named = p.coverage.get((k, s, "known"), 0), p.coverage.get((k, s, "named"), 0)
        entry["coverage"] = rate(named, known)  # share of a row's known slots its caption names
        by_group[group_name(k, s)] = entry
    by_slot = {slot: _faith_counts((o, n) for (_, _, s, o), n in p.faith.items() if s == slot)
               for slot in SLOTS}
    unspanned = {group_name(k, s): n for (k, s), n in p.caption_groups.items() if (k, s) not in groups}
    overall = _faith_counts((o, n) for (_, _, _, o), n in p.faith.items())
    synthetic = _faith_counts((o, n) for (k, _, _, o), n in p.faith.items() if k in ("generated", "prompt"))
    return {"measurable": True, "overall": overall, "synthetic": synthetic, "by_group": by_group,
            "by_slot": by_slot, "captions_without_spans": unspanned}


def _ground_truth(p: PartialStats) -> dict:
    """Accuracy against ProcPedes ground truth, where rows carry it."""
    if not p.truth_rows:
        return {"rows": 0, "why": "no row carries ProcPedes ground truth (extra.appearance / extra.visible)"}
    attrs = {}
    for slot in SLOTS:
        c = Counter({o: n for (s, o), n in p.truth_attr.items() if s == slot})
        total = sum(c.values())
        attrs[slot] = {**{o: c[o] for o in (ATTR_EXACT, ATTR_TRUE, ATTR_WRONG, ATTR_MISSED, ATTR_HALLUCINATED,
                                            ATTR_UNKNOWN_OK)},
                       "exact_accuracy": rate(c[ATTR_EXACT] + c[ATTR_UNKNOWN_OK], total),
                       "accuracy": rate(c[ATTR_EXACT] + c[ATTR_TRUE] + c[ATTR_UNKNOWN_OK], total)}
    mean_acc = [a["accuracy"] for a in attrs.values() if a["accuracy"] is not None]
    spans = {}
    for k, s in sorted({(k, s) for k, s, _, _ in p.truth_spans}):
        c = Counter()
        for (k2, s2, _, o), n in p.truth_spans.items():
            if (k2, s2) == (k, s):
                c[o] += n
        total = c[SPAN_TRUE] + c[SPAN_WRONG] + c[SPAN_UNSUPPORTED]
        spans[group_name(k, s)] = {"spans": total, SPAN_TRUE: c[SPAN_TRUE], SPAN_WRONG: c[SPAN_WRONG],
                                   SPAN_UNSUPPORTED: c[SPAN_UNSUPPORTED], "precision": rate(c[SPAN_TRUE], total)}
    return {"rows": p.truth_rows, "attributes": attrs,
            "attribute_accuracy_mean": round(sum(mean_acc) / len(mean_acc), 4) if mean_acc else None,
            "caption_phrases": spans}
