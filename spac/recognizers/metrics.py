"""Attribute-recognition metrics: per-slot accuracy and label-balanced mean accuracy (mA).

Predicted and ground-truth phrases are compared after :func:`~spac.recognizers.canon.canonical_phrase`
(so "pants" == "trousers"; pass ``canonical=False`` for exact lowercase matching). ``unknown`` is a
class like any other phrase.

* ``accuracy``: correct / rows, per slot; the mean over slots is reported too.
* ``mA``: per slot, the mean over the ground-truth classes present of the per-class recall
  (correct rows of that class / rows of that class), so frequent classes do not dominate; the
  mean over slots is reported too. (Pedestrian-attribute papers define mA on binary attributes as the
  mean of positive and negative recall; with multi-class phrase slots, class-balanced recall is the
  natural generalisation.)
* ``known_accuracy``: accuracy over the rows whose ground truth is not ``unknown``.

All figures are percentages (0-100), like ``plip_train.evaluate``'s retrieval metrics.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence

from synth_pedes.schema import SLOTS, UNKNOWN

from .canon import canonical_phrase


def _phrases(item, slots) -> dict:
    if hasattr(item, "attributes") and hasattr(item, "scores"):  # AttributePrediction
        item = item.attributes
    if hasattr(item, "to_dict"):
        item = item.to_dict()
    if not isinstance(item, dict):
        raise ValueError(f"expected an AttributePrediction, AttributeSet or slot dict, got {type(item).__name__}")
    return {s: item.get(s) for s in slots}


def slot_metrics(predicted: Sequence[str], truth: Sequence[str], slot: str | None = None,
                 canonical: bool = True) -> dict:
    """Accuracy, mA, known-only accuracy and per-class recall of one slot (percent)."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predictions but {len(truth)} ground-truth values")
    norm = (lambda p: canonical_phrase(p, slot)) if canonical else (lambda p: (p or UNKNOWN).strip().lower())
    pred = [norm(p) for p in predicted]
    gold = [norm(t) for t in truth]
    n = len(gold)
    if n == 0:
        return {"n": 0, "accuracy": float("nan"), "mA": float("nan"), "known_accuracy": float("nan"),
                "classes": 0, "recall": {}}
    correct = [p == g for p, g in zip(pred, gold)]
    per_class_n, per_class_ok = Counter(gold), Counter(g for g, c in zip(gold, correct) if c)
    recall = {g: 100.0 * per_class_ok[g] / per_class_n[g] for g in per_class_n}
    known = [c for g, c in zip(gold, correct) if g != UNKNOWN]
    return {
        "n": n,
        "accuracy": 100.0 * sum(correct) / n,
        "mA": sum(recall.values()) / len(recall),
        "known_accuracy": 100.0 * sum(known) / len(known) if known else float("nan"),
        "classes": len(recall),
        "recall": dict(sorted(recall.items(), key=lambda kv: (-per_class_n[kv[0]], kv[0]))),
    }


def evaluate(predictions: Sequence, truths: Sequence, slots: Sequence[str] = SLOTS, canonical: bool = True) -> dict:
    """Per-slot metrics (:func:`slot_metrics`) and their means over slots.

    ``predictions``: AttributePrediction / AttributeSet / slot dicts; ``truths``: AttributeSet / slot dicts.
    Returns ``{"n", "slots": {slot: {...}}, "mean": {"accuracy", "mA", "known_accuracy"}}`` (percent).
    """
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} predictions but {len(truths)} ground-truth rows")
    bad = [s for s in slots if s not in SLOTS]
    if bad:
        raise ValueError(f"unknown attribute slot(s) {bad}; the slots are {SLOTS}")
    cols_p, cols_t = defaultdict(list), defaultdict(list)
    for p, t in zip(predictions, truths):
        pp, tt = _phrases(p, slots), _phrases(t, slots)
        for s in slots:
            cols_p[s].append(pp[s])
            cols_t[s].append(tt[s])
    per_slot = {s: slot_metrics(cols_p[s], cols_t[s], s, canonical) for s in slots}
    mean = {}
    for k in ("accuracy", "mA", "known_accuracy"):
        vals = [m[k] for m in per_slot.values() if m[k] == m[k]]  # skip NaN
        mean[k] = sum(vals) / len(vals) if vals else float("nan")
    return {"n": len(truths), "slots": per_slot, "mean": mean}


def format_table(result: dict, title: str | None = None) -> str:
    """A plain-text table of :func:`evaluate`'s result (one line per slot, then the mean)."""
    lines = [title] if title else []
    lines.append(f"{'slot':<12}{'accuracy':>10}{'mA':>8}{'known acc':>11}{'classes':>9}")
    for s, m in result["slots"].items():
        lines.append(f"{s:<12}{m['accuracy']:>10.1f}{m['mA']:>8.1f}{m['known_accuracy']:>11.1f}{m['classes']:>9d}")
    mean = result["mean"]
    lines.append(f"{'mean':<12}{mean['accuracy']:>10.1f}{mean['mA']:>8.1f}{mean['known_accuracy']:>11.1f}"
                 f"{'':>9}")
    lines.append(f"({result['n']} images; percent; phrases compared after canonicalisation)")
    return "\n".join(lines)
