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
    Newton steps with backtracking.
    """
    x = _logit(scores)
    y = np.asarray(correct, dtype=np.float64)
    if len(x) == 0:
        return 1.0, 0.0
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    t = np.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def objective(a: float, b: float) -> float:
        z = a * x + b
        return float(np.sum(np.logaddexp(0, z) - t * z) + 0.5 * ridge * ((a - 1) ** 2 + b ** 2))

    a, b = 1.0, 0.0
    f = objective(a, b)
    for _ in range(iterations):
        p = _sigmoid(a * x + b)
        g = np.array([np.sum((p - t) * x) + ridge * (a - 1), np.sum(p - t) + ridge * b])
        w = p * (1 - p)
        h = np.array([[np.sum(w * x * x) + ridge, np.sum(w * x)], [np.sum(w * x), np.sum(w) + ridge]])
        step = np.linalg.solve(h, g)
        lr = 1.0
        while lr > 1e-6:
            na, nb = a - lr * step[0], b - lr * step[1]
            nf = objective(na, nb)
            if nf <= f:
                break
            lr /= 2
        else:
            break
        converged = abs(f - nf) < 1e-10
        a, b, f = na, nb, nf
        if converged:
            break
    return float(a), float(b)


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
        self.labels: list[str] = []
        for m in self.members:
            base, k = m.name, 1
            while (label := base if k == 1 else f"{base}#{k}") in self.labels:
                k += 1
            self.labels.append(label)
        self.threshold = float(threshold)
        self.weights = {lab: 1.0 for lab in self.labels}
        for lab, w in (weights or {}).items():
            if lab not in self.weights or not 0.0 <= float(w) <= 1.0:
                raise ValueError(f"weights: {lab!r} must be one of {self.labels} with a weight in [0, 1]")
            self.weights[lab] = float(w)
        self.calibration = {lab: {s: (1.0, 0.0) for s in SLOTS} for lab in self.labels}
        if calibration is not None:
            self.set_calibration(calibration)

    # ---- calibration ----------------------------------------------------------------------------------------
    def set_calibration(self, calibration) -> None:
        if isinstance(calibration, (str, os.PathLike)):
            calibration = json.loads(Path(calibration).read_text())
        if not isinstance(calibration, dict):
            raise ValueError("calibration must be {member: {slot: [a, b]}} or a JSON file of it")
        for lab, per_slot in calibration.items():
            if lab not in self.calibration:
                raise ValueError(f"calibration names member {lab!r}; the members are {self.labels}")
            for s, ab in per_slot.items():
                if s not in SLOTS or len(ab) != 2 or not all(math.isfinite(float(v)) for v in ab):
                    raise ValueError(f"calibration[{lab!r}][{s!r}] must be a slot with two finite numbers [a, b]")
                self.calibration[lab][s] = (float(ab[0]), float(ab[1]))

    def calibrated(self, label: str, slot: str, score: float) -> float:
        a, b = self.calibration[label][slot]
        return float(_sigmoid(a * _logit(score) + b))

    def fit(self, rows: Sequence[dict], truths: Sequence | None = None, key: str = "attributes") -> dict:
        """Fit Platt scaling per (member, slot) on ``rows`` (ground truth from ``truths`` or ``row[key]``);
        returns the calibration (also kept)."""
        if truths is None:
            missing = [r.get("key") for r in rows if r.get(key) is None]
            if missing:
                raise ValueError(f"union.fit: row {missing[0]!r} has no ground truth under {key!r}")
            truths = [r[key] for r in rows]
        gold = [t.to_dict() if hasattr(t, "to_dict") else dict(t) for t in truths]
        for lab, m in zip(self.labels, self.members):
            preds = m.predict(rows)
            for s in SLOTS:
                pairs = [(p.score(s), canonical_phrase(p.phrase(s), s) == canonical_phrase(g.get(s), s))
                         for p, g in zip(preds, gold) if p.error is None]
                self.calibration[lab][s] = fit_platt([x for x, _ in pairs], [c for _, c in pairs])
        _log.info("union calibration fitted on %d rows", len(rows))
        return self.calibration_dict()

    def calibration_dict(self) -> dict:
        return {lab: {s: list(ab) for s, ab in per.items()} for lab, per in self.calibration.items()}

    def save_calibration(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.calibration_dict(), indent=2) + "\n")

    # ---- prediction -----------------------------------------------------------------------------------------
    def combine(self, member_preds: Sequence[AttributePrediction]) -> AttributePrediction:
        """One prediction from the members' predictions of the same image (in member order)."""
        live = [(lab, p) for lab, p in zip(self.labels, member_preds) if p.error is None]
        if not live:
            errors = "; ".join(f"{lab}: {p.error}" for lab, p in zip(self.labels, member_preds))
            return AttributePrediction.failed(errors)
        phrases, scores = {}, {}
        for s in SLOTS:
            pooled: dict[str, list] = {}  # canonical phrase -> [prod(1 - p), best p, phrase text]
            for lab, p in live:
                prob = self.weights[lab] * self.calibrated(lab, s, p.score(s))
                c = canonical_phrase(p.phrase(s), s)
                entry = pooled.setdefault(c, [1.0, -1.0, p.phrase(s)])
                entry[0] *= 1.0 - prob
                if prob > entry[1]:
                    entry[1], entry[2] = prob, p.phrase(s)
            best = max(pooled, key=lambda c: (1.0 - pooled[c][0], c != UNKNOWN))
            prob, text = 1.0 - pooled[best][0], pooled[best][2]
            if best != UNKNOWN and prob < self.threshold:
                text, prob = UNKNOWN, 1.0 - prob
            phrases[s], scores[s] = text, prob
        return AttributePrediction(AttributeSet(**phrases), scores)

    def predict(self, rows: Sequence[dict]) -> list[AttributePrediction]:
        per_member = [m.predict(rows) for m in self.members]
        return [self.combine(list(ps)) for ps in zip(*per_member)]

    def predict_images(self, images: Sequence) -> list[AttributePrediction]:
        per_member = [m.predict_images(images) for m in self.members]
        return [self.combine(list(ps)) for ps in zip(*per_member)]

    def describe(self) -> dict:
        return {"name": self.name, "members": [m.describe() for m in self.members], "labels": self.labels,
                "threshold": self.threshold, "weights": self.weights, "calibration": self.calibration_dict()}
