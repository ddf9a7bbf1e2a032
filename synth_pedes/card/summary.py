"""Turn the merged ``PartialStats`` of a dataset into the machine-readable statistics (stats.json).

Every rate comes with the counts it was computed from, so a reader can check it and combine cards.
Rates are fractions in [0, 1], rounded to 4 places; absent measures are ``None`` with a ``why``.
"""
from __future__ import annotations

import math
from collections import Counter

from ..schema import SLOTS, UNKNOWN
from .faithfulness import LOW_FAITHFULNESS, degenerate_warnings
from .partial import PartialStats
from .text import CONSISTENT, CONTRADICT, EXACT, UNSUPPORTED
from .truth import (ATTR_EXACT, ATTR_HALLUCINATED, ATTR_MISSED, ATTR_TRUE, ATTR_UNKNOWN_OK, ATTR_WRONG,
                    SPAN_TRUE, SPAN_UNSUPPORTED, SPAN_WRONG)

TOP = 10


def rate(num: float, den: float) -> float | None:
    return None if not den else round(num / den, 4)


def distribution(counts: Counter) -> dict:
    """Summary of an integer-valued distribution given as value -> frequency."""
    total = sum(counts.values())
    if not total:
        return {"count": 0}
    values = sorted(counts)
    mean = sum(v * c for v, c in counts.items()) / total
    var = sum(c * (v - mean) ** 2 for v, c in counts.items()) / total

    def quantile(q: float) -> int:
        target, seen = q * total, 0
        for v in values:
            seen += counts[v]
            if seen >= target:
                return v
        return values[-1]

    return {"count": total, "mean": round(mean, 3), "sd": round(math.sqrt(var), 3), "min": values[0],
            "p10": quantile(0.1), "median": quantile(0.5), "p90": quantile(0.9), "max": values[-1],
            "histogram": {str(v): counts[v] for v in values}}


def group_name(kind: str, style: str) -> str:
    return kind if style == kind else f"{kind}/{style}"


def summarize(stats: PartialStats) -> dict:
    """The statistics document (without dataset identity, comparison and timing: see ``job``)."""
    images = stats.status_counts.get("ok", 0)  # the usable rows, which the statistics below describe
    doc = {  # "rows": every row, every status; "files": the shard files read (data/ and rejected/)
        "rows": stats.rows, "files": stats.shards, "status_counts": dict(sorted(stats.status_counts.items())),
        "reasons": _reasons(stats), "images": images, "splits": dict(sorted(stats.splits.items())),
        "sources": dict(stats.sources.most_common(TOP)),
        "identities": _identities(stats), "image_sizes": dict(stats.sizes.most_common(TOP)),
        "captions": _captions(stats), "caption_length": _lengths(stats), "vocabulary": _vocabulary(stats),
        "diversity": _diversity(stats), "openings": _openings(stats), "attributes": _attributes(stats),
        "faithfulness": _faithfulness(stats), "caption_faithfulness": _caption_scores(stats),
        "ground_truth": _ground_truth(stats),
        "attribute_labels": {"rows": dict(sorted(stats.label_rows.items())),
                             "positives": dict(sorted(stats.label_positives.items()))},
    }
    doc["warnings"] = degenerate_warnings(doc)
    return doc


def _reasons(stats: PartialStats) -> dict:
    out: dict[str, dict] = {}
    for (status, reason), rows in sorted(stats.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        out.setdefault(status, {})[reason] = rows
    return out


def _identities(stats: PartialStats) -> dict:
    images_per_identity = Counter(stats.identities.values())  # images per identity -> identities
    return {"count": len(stats.identities), "images_without_identity": stats.unknown_identity,
            "images_per_identity": distribution(images_per_identity)}


def _captions(stats: PartialStats) -> dict:
    total = sum(stats.caption_groups.values())
    by_kind: Counter = Counter()
    for (kind, _), count in stats.caption_groups.items():
        by_kind[kind] += count
    return {"total": total, "per_image": distribution(stats.captions_per_image), "by_kind": dict(by_kind),
            "by_group": {group_name(kind, style): count
                         for (kind, style), count in sorted(stats.caption_groups.items())}}


def _lengths(stats: PartialStats) -> dict:
    out = {group_name(kind, style): distribution(lengths) for (kind, style), lengths in sorted(stats.lengths.items())}
    everything: Counter = Counter()
    for lengths in stats.lengths.values():
        everything.update(lengths)
    if len(out) > 1:
        out["all"] = distribution(everything)
    return out


def _vocabulary(stats: PartialStats) -> dict:
    return {"size": stats.vocab.count(), "exact": stats.vocab.exact,
            "top_words": [[word, count] for word, count in stats.words.most_common(30)]}


def _diversity(stats: PartialStats) -> dict:
    """distinct-n: distinct n-grams / n-grams, per caption style and over all captions ('*')."""
    out = {}
    for style in sorted({style for style, _ in stats.ngram_totals}, key=lambda style: (style == "*", style)):
        row = {}
        for n in (1, 2):
            total, distinct = stats.ngram_totals.get((style, n), 0), stats.distinct[(style, n)]
            row[f"distinct_{n}"] = rate(distinct.count(), total)
            row[f"ngrams_{n}"] = total
            row[f"distinct_{n}_count"] = distinct.count()
        out["all" if style == "*" else style] = row
    return out


def _openings(stats: PartialStats) -> dict:
    out = {}
    for style, counts in sorted(stats.openings.items()):
        total = sum(counts.values())
        out[style] = [[opening, count, rate(count, total)] for opening, count in counts.most_common(TOP)]
    return out


def _attributes(stats: PartialStats) -> dict:
    if not stats.attr_rows:
        return {"rows": 0, "why": "no ok row carries attributes"}
    slots = {}
    for slot in SLOTS:
        counts = stats.attr_values[slot]
        unknown = counts.get(UNKNOWN, 0)
        slots[slot] = {"unknown": unknown, "unknown_rate": rate(unknown, stats.attr_rows),
                       "distinct_values": stats.attr_distinct[slot].count(),
                       "top": [[value, count, rate(count, stats.attr_rows)] for value, count in counts.most_common(TOP)]}
    return {"rows": stats.attr_rows, "slots": slots, "unknown_slots_per_image": distribution(stats.unknown_slots)}


def _faith_counts(items) -> dict:
    """Counts and rates of ``(outcome, spans)`` items."""
    spans = Counter()
    for outcome, count in items:
        spans[outcome] += count
    judged = spans[EXACT] + spans[CONSISTENT] + spans[CONTRADICT] + spans[UNSUPPORTED]
    return {"spans": judged, EXACT: spans[EXACT], CONSISTENT: spans[CONSISTENT], CONTRADICT: spans[CONTRADICT],
            UNSUPPORTED: spans[UNSUPPORTED], "bad_offsets": spans["bad_offsets"],
            "agreement": rate(spans[EXACT] + spans[CONSISTENT], judged), "exact_rate": rate(spans[EXACT], judged),
            "contradiction_rate": rate(spans[CONTRADICT], judged),
            "unsupported_rate": rate(spans[UNSUPPORTED], judged)}


def _faithfulness(stats: PartialStats) -> dict:
    """Caption attribute phrases (stored spans) against the same row's attributes."""
    if not stats.faith:
        why = ("the dataset has no captions" if not stats.caption_groups else "no ok row has attributes"
               if not stats.attr_rows else "no caption carries attribute spans")
        return {"measurable": False, "why": why}
    # stats.faith: (kind, style, slot, outcome) -> spans
    groups = sorted({(kind, style) for kind, style, _, _ in stats.faith})
    by_group = {}
    for group in groups:
        entry = _faith_counts((outcome, count) for (kind, style, _, outcome), count in stats.faith.items()
                              if (kind, style) == group)
        known, named = stats.coverage.get((*group, "known"), 0), stats.coverage.get((*group, "named"), 0)
        entry["coverage"] = rate(named, known)  # share of a row's known slots its caption names
        by_group[group_name(*group)] = entry
    by_slot = {slot: _faith_counts((outcome, count) for (_, _, span_slot, outcome), count in stats.faith.items()
                                   if span_slot == slot)
               for slot in SLOTS}
    unspanned = {group_name(kind, style): count for (kind, style), count in stats.caption_groups.items()
                 if (kind, style) not in groups}
    overall = _faith_counts((outcome, count) for (_, _, _, outcome), count in stats.faith.items())
    synthetic = _faith_counts((outcome, count) for (kind, _, _, outcome), count in stats.faith.items()
                              if kind in ("generated", "prompt"))
    return {"measurable": True, "overall": overall, "synthetic": synthetic, "by_group": by_group,
            "by_slot": by_slot, "captions_without_spans": unspanned}


def _score_summary(scores: Counter) -> dict:
    """``distribution`` of per-caption scores, with the share below LOW_FAITHFULNESS."""
    out = {k: v for k, v in distribution(scores).items() if k != "histogram"}
    out["below_0_5"] = rate(sum(n for score, n in scores.items() if score < LOW_FAITHFULNESS), out["count"])
    return out


def _caption_scores(stats: PartialStats) -> dict:
    """Per-caption faithfulness (``faithfulness.caption_faithfulness``): its distribution over all scored
    captions, the synthetic ones (generated and prompt) and each kind/style, and what was not scored."""
    what = ("per caption, the share of its attribute phrases that agree with the row's own attributes (self-"
            "consistency, not truth); captions repeating a word like a decoding loop are counted apart")
    groups = sorted({(kind, style) for kind, style, _ in stats.scores} | set(stats.unscored) | set(stats.repeating))
    if not groups:
        return {"measurable": False, "what": what, "why": "no ok caption of a row with attributes"}

    def scores(keep) -> Counter:
        return Counter({score: n for (kind, style, score), n in stats.scores.items() if keep(kind, style)})

    by_group = {}
    for group in groups:
        by_group[group_name(*group)] = {**_score_summary(scores(lambda *g: g == group)),
                                        "unscored": stats.unscored[group], "repeating": stats.repeating[group]}
    repeating = {group_name(*g): {"captions": n, "share": rate(n, stats.caption_groups[g]),
                                  "example": stats.repeating_example.get(g, "")}
                 for g, n in sorted(stats.repeating.items()) if n}
    return {"measurable": bool(stats.scores), "what": what, "low_threshold": LOW_FAITHFULNESS,
            "overall": _score_summary(scores(lambda kind, style: True)),
            "synthetic": _score_summary(scores(lambda kind, style: kind in ("generated", "prompt"))),
            "unscored": sum(stats.unscored.values()), "by_group": by_group, "repeating": repeating}


def _ground_truth(stats: PartialStats) -> dict:
    """Accuracy against ProcPedes ground truth, where rows carry it."""
    if not stats.truth_rows:
        return {"rows": 0, "why": "no row carries ProcPedes ground truth (extra.appearance / extra.visible)"}
    attrs = {}
    for slot in SLOTS:  # stats.truth_attr: (slot, outcome) -> rows
        rows = Counter({outcome: count for (attr_slot, outcome), count in stats.truth_attr.items()
                        if attr_slot == slot})
        total = sum(rows.values())
        attrs[slot] = {**{outcome: rows[outcome] for outcome in (ATTR_EXACT, ATTR_TRUE, ATTR_WRONG, ATTR_MISSED,
                                                                  ATTR_HALLUCINATED, ATTR_UNKNOWN_OK)},
                       "exact_accuracy": rate(rows[ATTR_EXACT] + rows[ATTR_UNKNOWN_OK], total),
                       "accuracy": rate(rows[ATTR_EXACT] + rows[ATTR_TRUE] + rows[ATTR_UNKNOWN_OK], total)}
    mean_acc = [a["accuracy"] for a in attrs.values() if a["accuracy"] is not None]
    spans, synthetic = {}, Counter()  # stats.truth_spans: (kind, style, slot, outcome) -> spans
    for (kind, _, _, outcome), count in stats.truth_spans.items():
        if kind in ("generated", "prompt"):
            synthetic[outcome] += count
    for group in sorted({(kind, style) for kind, style, _, _ in stats.truth_spans}):
        counts = Counter()
        for (kind, style, _, outcome), count in stats.truth_spans.items():
            if (kind, style) == group:
                counts[outcome] += count
        total = counts[SPAN_TRUE] + counts[SPAN_WRONG] + counts[SPAN_UNSUPPORTED]
        spans[group_name(*group)] = {"spans": total, SPAN_TRUE: counts[SPAN_TRUE], SPAN_WRONG: counts[SPAN_WRONG],
                                     SPAN_UNSUPPORTED: counts[SPAN_UNSUPPORTED],
                                     "precision": rate(counts[SPAN_TRUE], total)}
    judged = synthetic[SPAN_TRUE] + synthetic[SPAN_WRONG] + synthetic[SPAN_UNSUPPORTED]
    return {"rows": stats.truth_rows, "rows_in_truth_table": stats.truth_table_rows, "attributes": attrs,
            "attribute_accuracy_mean": round(sum(mean_acc) / len(mean_acc), 4) if mean_acc else None,
            "caption_phrases": spans,
            "synthetic_caption_phrases": {"spans": judged, SPAN_TRUE: synthetic[SPAN_TRUE],
                                          "accuracy": rate(synthetic[SPAN_TRUE], judged)}}
