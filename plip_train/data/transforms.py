"""Per-sample image and caption preparation (docs/reimplementation.md#data-and-transforms): resize
256×128 bicubic, horizontal flip, SYNTH-PEDES mean/std; the grayscale copy of the same augmented image
for TIC; captions tokenized with the attribute-phrase spans stored in the shards mapped onto tokens for
IAP."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from synth_pedes.imaging import open_rgb

SYNTH_PEDES_MEAN = (0.357, 0.323, 0.328)
SYNTH_PEDES_STD = (0.252, 0.242, 0.239)


@dataclass(frozen=True)
class ImageAugment:
    """The image-ReID augmentations of BoT (Luo et al.; reid-strong-baseline ``data/transforms``), after resize and
    flip: zero-pad ``pad`` pixels on every side and crop back to the size at a random place; then, with probability
    ``erasing``, one random rectangle (2-40 % of the area, aspect 0.3-3.3, up to 100 tries) is filled with ``fill``.
    BoT applies its erasing after normalisation and writes the ImageNet mean's numbers into the normalised tensor
    (not the mean colour, which would be 0 there); ``fill`` keeps that. Random draws come from the sample's
    generator, so a resumed run repeats them."""

    pad: int = 10
    erasing: float = 0.5
    erase_area: tuple = (0.02, 0.4)
    erase_aspect: float = 0.3
    fill: tuple = (0.485, 0.456, 0.406)

    def __call__(self, chw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _, height, width = chw.shape
        if self.pad:
            padded = np.zeros((3, height + 2 * self.pad, width + 2 * self.pad), chw.dtype)
            padded[:, self.pad:self.pad + height, self.pad:self.pad + width] = chw
            top, left = rng.integers(0, 2 * self.pad + 1, size=2)
            chw = padded[:, top:top + height, left:left + width]
        if self.erasing and rng.random() < self.erasing:
            chw = chw.copy()
            for _ in range(100):
                area = rng.uniform(*self.erase_area) * height * width
                aspect = rng.uniform(self.erase_aspect, 1 / self.erase_aspect)
                h, w = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
                if h < height and w < width:
                    top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
                    chw[:, top:top + h, left:left + w] = np.asarray(self.fill, chw.dtype)[:, None, None]
                    break
        return np.ascontiguousarray(chw)


class ImageTransform:
    """JPEG/PNG bytes -> (colour, gray) float tensors [3,H,W], both normalised with the same mean/std."""

    def __init__(self, size: tuple[int, int] = (256, 128), mean=SYNTH_PEDES_MEAN, std=SYNTH_PEDES_STD):
        self.height, self.width = size
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1)

    def load(self, data: bytes, key: str = "") -> Image.Image:
        try:  # JPEG: decode at a reduced scale when much larger
            return open_rgb(data, draft=(self.width, self.height)).resize((self.width, self.height), Image.BICUBIC)
        except Exception as e:  # the shard was verified, so this is a codec problem worth naming
            raise ValueError(f"image of row {key!r} could not be decoded: {e}") from e

    def __call__(self, data: bytes, flip: bool, key: str = "", gray: bool = True,
                 augment: ImageAugment | None = None, rng: np.random.Generator | None = None):
        img = self.load(data, key)
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        colour = self._normalise(np.asarray(img, np.float32).transpose(2, 0, 1))
        if augment is not None:
            colour = torch.from_numpy(augment(colour.numpy(), rng))
        if not gray:
            return colour, None
        g = np.asarray(img.convert("L"), np.float32)[None].repeat(3, 0)  # [3,H,W], ITU-R 601 luma
        return colour, self._normalise(g)

    def _normalise(self, chw: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((chw / 255.0 - self.mean) / self.std)


def phrase_index(offsets: np.ndarray, spans: list[dict]) -> np.ndarray:
    """For each token (``offsets`` [L,2] character offsets; (0,0) for special and padding tokens), the
    index of the attribute phrase (in caption order) that contains it, or -1."""
    out = np.full(len(offsets), -1, np.int64)
    starts, ends = offsets[:, 0], offsets[:, 1]
    real = ends > starts
    for j, span in enumerate(sorted(spans or [], key=lambda s: s["start"])):
        out[real & (starts >= span["start"]) & (ends <= span["end"])] = j
    return out


class CaptionEncoder:
    """Captions -> input_ids, attention_mask and phrase_index [B,L] (BERT WordPiece, max length 64)."""

    def __init__(self, tokenizer, max_length: int = 64):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, captions: list[dict]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer([c["text"] for c in captions], padding="max_length", truncation=True,
                             max_length=self.max_length, return_offsets_mapping=True, return_tensors="np")
        phrases = np.stack([phrase_index(off, c.get("spans")) for off, c in zip(enc["offset_mapping"], captions)])
        return {"input_ids": torch.from_numpy(enc["input_ids"].astype(np.int64)),
                "attention_mask": torch.from_numpy(enc["attention_mask"].astype(np.int64)),
                "phrase_index": torch.from_numpy(phrases)}
