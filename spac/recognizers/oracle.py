"""The oracle: a record's ground-truth ``attributes`` column as the prediction (score 1.0), for upper bounds
and tests. It does not look at pixels."""
from __future__ import annotations

from typing import Sequence

from synth_pedes.schema import SLOTS

from ..attributes import AttributeSet
from .base import AttributePrediction, Recognizer, register


@register("oracle")
class OracleRecognizer(Recognizer):
    """Ground truth from ``row["attributes"]`` (``key`` names another column holding the slot dict)."""

    name = "oracle"

    def __init__(self, key: str = "attributes"):
        self.key = key

    def predict(self, rows: Sequence[dict]) -> list[AttributePrediction]:
        out = []
        for row in rows:
            truth = row.get(self.key) if isinstance(row, dict) else None
            if truth is None:
                rid = row.get("key") if isinstance(row, dict) else None
                raise ValueError(f"oracle recognizer: row {rid!r} has no ground truth under {self.key!r}; the "
                                 f"oracle needs rows with a {self.key!r} column (e.g. a ProcPedes render)")
            out.append(AttributePrediction(AttributeSet.from_dict(truth), dict.fromkeys(SLOTS, 1.0)))
        return out

    def predict_images(self, images):
        raise NotImplementedError("the oracle reads ground truth from dataset rows; use predict(rows)")

    def describe(self) -> dict:
        return {"name": self.name, "key": self.key}
