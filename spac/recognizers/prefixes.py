"""The SPAC captioner's attribute prefixes as a recognizer (``captioner``), so the union can weigh them against
the other recognizers slot by slot (``UnionRecognizer``; ``plip spac calibrate`` fits the weights).

A slot's score is the probability the decoder gives the whole phrase it wrote (greedy decoding), which the
union's Platt scaling turns into the probability that the phrase is right.
"""
from __future__ import annotations

import os
from typing import Sequence

from synth_pedes.schema import SLOTS

from ..attributes import AttributeSet
from .base import AttributePrediction, Recognizer, register

LABEL = "captioner"  # the member label the union and the rows' attribute sources use


def prediction_from_captioner(phrases: dict, scores: dict) -> AttributePrediction:
    """One image's captioner attributes (``{slot: phrase}``, ``{slot: probability}``) as a prediction."""
    return AttributePrediction(AttributeSet.from_dict(phrases), {s: float(scores[s]) for s in SLOTS})


@register(LABEL)
class CaptionerRecognizer(Recognizer):
    """``create("captioner", checkpoint=DIR)``, or ``CaptionerRecognizer(captioner=loaded)`` to share a loaded
    :class:`spac.captioner.Captioner`."""

    name = LABEL

    def __init__(self, checkpoint: str | os.PathLike | None = None, *, captioner=None, device: str = "cpu",
                 batch_size: int = 32):
        if captioner is None:
            if checkpoint is None:
                raise ValueError("the captioner recognizer needs checkpoint=DIR (a SPAC captioner) or captioner=")
            from ..captioner import load_captioner

            captioner = load_captioner(checkpoint, device)
        self.captioner, self.batch_size = captioner, int(batch_size)
        self.checkpoint = None if checkpoint is None else str(checkpoint)

    def predict_images(self, images: Sequence) -> list[AttributePrediction]:
        import torch

        from ..captioner.data import image_tensor

        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = [image_tensor(img, self.captioner.config.image_size) for img in images[start:start + self.batch_size]]
            phrases, scores = self.captioner.attributes(torch.stack(chunk))
            out += [prediction_from_captioner(p, s) for p, s in zip(phrases, scores)]
        return out

    def describe(self) -> dict:
        return {"name": self.name, "checkpoint": self.checkpoint, "config": self.captioner.config.name}
