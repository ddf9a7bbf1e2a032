"""The union recognizer: several recognizers combined slot by slot by calibrated confidence.

Calibration: each member's raw slot score ``s`` becomes ``p = sigmoid(a * logit(s) + b)``, the probability
that its phrase is right. ``a, b`` are fitted per (member, slot) by Platt scaling on rows with ground
truth (:meth:`UnionRecognizer.fit`: logistic regression of "canonical phrase == canonical truth" on
``logit(s)``, with Platt's smoothed targets and a small pull towards the identity map, so a member that is
always right, or whose scores never vary, stays finite). Without a
fit, ``a = 1, b = 0``: the raw scores are taken as probabilities (documented normalisation; every
built-in recognizer scores in [0, 1] as a softmax probability).

Combination per slot: members that name the same phrase (after canonicalisation) pool their evidence by
noisy-OR, ``1 - prod(1 - w_m * p_m)`` (``w_m``: optional member weight, default 1); the phrase with the
highest pooled probability wins (``unknown`` is a phrase like the others, so a confident "not visible"
can win). A winning phrase below ``threshold`` becomes ``unknown`` with score ``1 - p``. Members that
could not read a row are left out for that row; a row no member could read gets an error prediction.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from synth_pedes.schema import SLOTS, UNKNOWN

from ..attributes import AttributeSet
from .base import AttributePrediction, Recognizer, create, register
from .canon import canonical_phrase

_log = logging.getLogger(__name__)
_EPS = 1e-4


def _logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _sigmoid(z):
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


def fit_platt(scores: Sequence[float], correct: Sequence[bool], iterations: int = 100,
              ridge: float = 1.0) -> tuple[float, float]:
    """Platt scaling: ``(a, b)`` with ``P(correct) = sigmoid(a * logit(score) + b)``.

    Minimises the cross-entropy against Platt's smoothed targets plus ``ridge/2 * ((a-1)^2 + b^2)`` (a pull
    towards the identity map, so a member whose scores never vary still gets a finite, sensible fit) by
    Newton steps with backtracking. ``x`` is ``logit(score)``, ``y`` the 0/1 labels.
    """
    x = _logit(scores)
    y = np.asarray(correct, dtype=np.float64)
    if len(x) == 0:
        return 1.0, 0.0
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    target = np.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))  # Platt's smoothed labels

    def objective(a: float, b: float) -> float:
        z = a * x + b
        return float(np.sum(np.logaddexp(0, z) - target * z) + 0.5 * ridge * ((a - 1) ** 2 + b ** 2))

    a, b = 1.0, 0.0
    loss = objective(a, b)
    for _ in range(iterations):
        prob = _sigmoid(a * x + b)
        grad = np.array([np.sum((prob - target) * x) + ridge * (a - 1), np.sum(prob - target) + ridge * b])
        w = prob * (1 - prob)  # the Hessian's per-row weights
        hessian = np.array([[np.sum(w * x * x) + ridge, np.sum(w * x)], [np.sum(w * x), np.sum(w) + ridge]])
        step = np.linalg.solve(hessian, grad)
        lr = 1.0
        while lr > 1e-6:
            new_a, new_b = a - lr * step[0], b - lr * step[1]
            new_loss = objective(new_a, new_b)
            if new_loss <= loss:
                break
            lr /= 2
        else:
            break
        converged = abs(loss - new_loss) < 1e-10
        a, b, loss = new_a, new_b, new_loss
        if converged:
            break
    return float(a), float(b)


def member_labels(names: Sequence[str]) -> list[str]:
    """The union's label of each member: its name, with ``#2``, ``#3`` ... for repeats."""
    labels: list[str] = []
    for name in names:
        repeat = 1
        while (label := name if repeat == 1 else f"{name}#{repeat}") in labels:
            repeat += 1
        labels.append(label)
    return labels


def check_calibration(calibration, labels: Sequence[str], where: str = "calibration") -> dict:
    """``{member label: {slot: [a, b]}}`` with known members and slots and finite numbers, as floats."""
    if not isinstance(calibration, dict):
        raise ValueError(f"{where}: must be {{member: {{slot: [a, b]}}}} (from plip spac calibrate)")
    out = {}
    for label, per_slot in calibration.items():
        if label not in labels:
            raise ValueError(f"{where}: names member {label!r}, but the members are {list(labels)}; calibrate "
                             "again with the same --recognizers")
        if not isinstance(per_slot, dict):
            raise ValueError(f"{where}[{label!r}] must be {{slot: [a, b]}}")
        out[label] = {}
        for slot, ab in per_slot.items():
            ok = slot in SLOTS and isinstance(ab, (list, tuple)) and len(ab) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in ab)
            if not ok:
                raise ValueError(f"{where}[{label!r}][{slot!r}] must be a slot with two finite numbers [a, b]")
            out[label][slot] = [float(ab[0]), float(ab[1])]
    return out


def load_calibration(path: str | os.PathLike, labels: Sequence[str]) -> dict:
    """A calibration file (``plip spac calibrate --out``), checked against the union's member labels."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable calibration JSON file ({e}); write one with plip spac calibrate") \
            from None
    return check_calibration(raw, labels, str(path))


def _member(spec) -> Recognizer:
    if isinstance(spec, Recognizer):
        return spec
    if isinstance(spec, str):
        return create(spec)
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        cfg = {k: v for k, v in spec.items() if k != "name"}
        return create(spec["name"], **cfg)
    raise ValueError(f"a union member must be a Recognizer, a recognizer name or {{'name': ..., **config}}, got "
                     f"{spec!r}")


@register("union")
class UnionRecognizer(Recognizer):
    """``create("union", members=[...], threshold=0.5, calibration=None, weights=None)``.

    ``members``: Recognizer objects, registry names or ``{"name": ..., **config}`` dicts (at least two are
    typical; one works). ``calibration``: ``{member label: {slot: [a, b]}}`` or a JSON file of it (from
    :meth:`fit` / :meth:`save_calibration`); member labels are the member names, with ``#2``, ``#3`` ...
    for repeats. ``weights``: ``{member label: w}`` in [0, 1].
    """

    name = "union"

    def __init__(self, members: Sequence, threshold: float = 0.5, calibration=None, weights: dict | None = None):
        if not members:
            raise ValueError("the union recognizer needs at least one member")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        self.members = [_member(m) for m in members]
        self.labels = member_labels([member.name for member in self.members])
        self.threshold = float(threshold)
        self.weights = {label: 1.0 for label in self.labels}
        for label, weight in (weights or {}).items():
            if label not in self.weights or not 0.0 <= float(weight) <= 1.0:
                raise ValueError(f"weights: {label!r} must be one of {self.labels} with a weight in [0, 1]")
            self.weights[label] = float(weight)
        self.calibration = {label: {slot: (1.0, 0.0) for slot in SLOTS} for label in self.labels}
        if calibration is not None:
            self.set_calibration(calibration)

    # ---- calibration ----------------------------------------------------------------------------------------
    def set_calibration(self, calibration) -> None:
        if isinstance(calibration, (str, os.PathLike)):
            calibration = load_calibration(calibration, self.labels)
        for label, per_slot in check_calibration(calibration, self.labels).items():
            for slot, ab in per_slot.items():
                self.calibration[label][slot] = (float(ab[0]), float(ab[1]))

    def calibrated(self, label: str, slot: str, score: float) -> float:
        a, b = self.calibration[label][slot]
        return float(_sigmoid(a * _logit(score) + b))

    def fit(self, rows: Sequence[dict], truths: Sequence | None = None, key: str = "attributes",
            member_predictions: Sequence[list] | None = None) -> dict:
        """Fit Platt scaling per (member, slot) on ``rows`` (ground truth from ``truths`` or ``row[key]``);
        returns the calibration (also kept). ``member_predictions``: each member's predictions of ``rows``, when
        the caller has them already (else the members predict here)."""
        if truths is None:
            missing = [r.get("key") for r in rows if r.get(key) is None]
            if missing:
                raise ValueError(f"union.fit: row {missing[0]!r} has no ground truth under {key!r}")
            truths = [r[key] for r in rows]
        gold = [t.to_dict() if hasattr(t, "to_dict") else dict(t) for t in truths]
        if member_predictions is None:
            member_predictions = [member.predict(rows) for member in self.members]
        for label, preds in zip(self.labels, member_predictions):
            for slot in SLOTS:
                pairs = [(pred.score(slot), canonical_phrase(pred.phrase(slot), slot) == canonical_phrase(
                    truth.get(slot), slot)) for pred, truth in zip(preds, gold) if pred.error is None]
                self.calibration[label][slot] = fit_platt([score for score, _ in pairs],
                                                          [right for _, right in pairs])
        _log.info("union calibration fitted on %d rows", len(rows))
        return self.calibration_dict()

    def calibration_dict(self) -> dict:
        return {label: {slot: list(ab) for slot, ab in per_slot.items()}
                for label, per_slot in self.calibration.items()}

    def save_calibration(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.calibration_dict(), indent=2) + "\n")

    # ---- prediction -----------------------------------------------------------------------------------------
    def combine(self, member_preds: Sequence[AttributePrediction]) -> AttributePrediction:
        """One prediction from the members' predictions of the same image (in member order)."""
        live = [(label, pred) for label, pred in zip(self.labels, member_preds) if pred.error is None]
        if not live:
            errors = "; ".join(f"{label}: {pred.error}" for label, pred in zip(self.labels, member_preds))
            return AttributePrediction.failed(errors)
        phrases, scores, sources = {}, {}, {}
        for slot in SLOTS:
            pooled: dict[str, list] = {}  # canonical phrase -> [prod(1 - p), best p, phrase text, its member]
            for label, pred in live:
                prob = self.weights[label] * self.calibrated(label, slot, pred.score(slot))
                canon = canonical_phrase(pred.phrase(slot), slot)
                entry = pooled.setdefault(canon, [1.0, -1.0, pred.phrase(slot), label])
                entry[0] *= 1.0 - prob
                if prob > entry[1]:
                    entry[1], entry[2], entry[3] = prob, pred.phrase(slot), label
            best = max(pooled, key=lambda canon: (1.0 - pooled[canon][0], canon != UNKNOWN))
            prob, text, source = 1.0 - pooled[best][0], pooled[best][2], pooled[best][3]
            if best != UNKNOWN and prob < self.threshold:
                text, prob, source = UNKNOWN, 1.0 - prob, "threshold"
            phrases[slot], scores[slot], sources[slot] = text, prob, source
        return AttributePrediction(AttributeSet(**phrases), scores, sources=sources)

    def predict(self, rows: Sequence[dict]) -> list[AttributePrediction]:
        per_member = [member.predict(rows) for member in self.members]
        return [self.combine(list(preds)) for preds in zip(*per_member)]

    def predict_images(self, images: Sequence) -> list[AttributePrediction]:
        per_member = [member.predict_images(images) for member in self.members]
        return [self.combine(list(preds)) for preds in zip(*per_member)]

    def describe(self) -> dict:
        return {"name": self.name, "members": [member.describe() for member in self.members], "labels": self.labels,
                "threshold": self.threshold, "weights": self.weights, "calibration": self.calibration_dict()}
