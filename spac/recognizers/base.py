"""The recognizer interface (:class:`Recognizer`), its output (:class:`AttributePrediction`) and the registry."""
from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

from synth_pedes.schema import SLOTS, UNKNOWN

from ..attributes import AttributeSet

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttributePrediction:
    """The six slot phrases of one image (``unknown`` where not recognised), a confidence in [0, 1] per slot,
    and, for rows that could not be read, ``error`` (then every slot is ``unknown`` with score 0). A union's
    prediction names the member whose phrase won each slot in ``sources``."""

    attributes: AttributeSet = field(default_factory=AttributeSet)
    scores: dict = field(default_factory=lambda: dict.fromkeys(SLOTS, 0.0))
    error: str | None = None
    sources: dict | None = None  # slot -> member label (union predictions only)

    def __post_init__(self):
        missing = set(SLOTS) - set(self.scores)
        if missing:
            raise ValueError(f"AttributePrediction.scores: no score for slots {sorted(missing)}")
        object.__setattr__(self, "scores", {s: float(self.scores[s]) for s in SLOTS})

    @classmethod
    def failed(cls, error: str) -> "AttributePrediction":
        """All slots ``unknown`` with score 0, for a row whose image could not be read."""
        return cls(AttributeSet(), dict.fromkeys(SLOTS, 0.0), error)

    def phrase(self, slot: str) -> str:
        return getattr(self.attributes, slot)

    def score(self, slot: str) -> float:
        return self.scores[slot]

    def to_record(self) -> dict:
        """``{"attributes": {...}, "attribute_scores": {...}}`` in the record-schema layout."""
        return {"attributes": self.attributes.to_dict(), "attribute_scores": dict(self.scores)}


def decode_image(row: dict):
    """The RGB PIL image of a record (``row["image"]["bytes"]``, or an already decoded PIL image under
    ``row["image"]``). Raises ``ValueError`` saying why a row has no readable image."""
    from PIL import Image

    from synth_pedes.imaging import open_rgb, to_rgb

    img = row.get("image") if isinstance(row, dict) else None
    if isinstance(img, Image.Image):
        return to_rgb(img)
    data = img.get("bytes") if isinstance(img, dict) else None
    if not data:
        raise ValueError("no image bytes")
    try:
        return open_rgb(data)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot decode image: {type(e).__name__}: {e}") from e


def decode_rows(rows: Sequence[dict]) -> tuple[list, list[str | None]]:
    """Decode every row; returns (images with None for failures, error message or None per row)."""
    images, errors = [], []
    for row in rows:
        try:
            images.append(decode_image(row))
            errors.append(None)
        except ValueError as e:
            key = row.get("key") if isinstance(row, dict) else None
            _log.debug("row %r: %s", key, e)
            images.append(None)
            errors.append(str(e))
    return images, errors


class Recognizer(abc.ABC):
    """Recognises the six SPAC attribute slots of person images.

    Subclasses implement :meth:`predict_images` (PIL images -> predictions); :meth:`predict` decodes dataset
    records and never fails a batch because of one bad row (that row gets :meth:`AttributePrediction.failed`).
    Recognizers that need more than pixels (the oracle) override :meth:`predict`.
    """

    name: str = "recognizer"
    slots: tuple = SLOTS

    def predict(self, rows: Sequence[dict]) -> list[AttributePrediction]:
        """One prediction per record (image bytes in ``row["image"]["bytes"]``), in order."""
        images, errors = decode_rows(rows)
        good = [i for i, e in enumerate(errors) if e is None]
        preds = self.predict_images([images[i] for i in good]) if good else []
        out: list[AttributePrediction] = [AttributePrediction.failed(e) if e else None for e in errors]
        for i, p in zip(good, preds):
            out[i] = p
        return out

    @abc.abstractmethod
    def predict_images(self, images: Sequence) -> list[AttributePrediction]:
        """One prediction per RGB PIL image."""

    def describe(self) -> dict:
        """What this recognizer is (name and config), for run records and evaluation JSON."""
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


_REGISTRY: dict[str, Callable[..., Recognizer]] = {}


def register(name: str) -> Callable:
    """Class or factory decorator: make it available as ``create(name, **config)``."""
    def deco(factory):
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"a recognizer named {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory
    return deco


def available() -> list[str]:
    """The registered recognizer names, sorted."""
    return sorted(_REGISTRY)


def create(name: str, **config) -> Recognizer:
    """A recognizer by registry name (``available()``) with its config keywords."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown recognizer {name!r}; the recognizers are {', '.join(available())}")
    return _REGISTRY[name](**config)


def unknown_prediction(score: float = 0.0) -> AttributePrediction:
    """All slots ``unknown`` with the same score (no error)."""
    return AttributePrediction(AttributeSet(), dict.fromkeys(SLOTS, score))


__all__ = ["AttributePrediction", "Recognizer", "register", "available", "create", "decode_image", "decode_rows",
           "unknown_prediction", "UNKNOWN"]
