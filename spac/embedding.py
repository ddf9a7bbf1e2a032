"""Global image embeddings for the seed filter: average-pooled backbone features, L2-normalised.

The paper does not say which features its seed filter used, but its thresholds (0.6/0.65/0.62) only
make sense for re-identification features: on ProcPedes, EfficientNet-Lite0's ImageNet features give
a mean cosine of 0.71 within an identity and 0.60 across identities. Use a person ReID model (e.g. a
PLIP image tower once trained) through any backbone ``spac.recognizers.backbones.build_backbone``
knows plus a local weights file; EfficientNet-Lite0 (real weights) and ``tiny`` serve experiments.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .recognizers.backbones import build_backbone
from .recognizers.base import decode_rows

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EmbedderConfig:
    backbone: str = "efficientnet_lite0"
    pretrained: bool | str = True  # True: the packaged ImageNet weights; a path: local weights
    height: int = 256
    width: int = 128
    batch_size: int = 64
    device: str = "cpu"
    seed: int = 0  # random-init weights (no pretrained file) must be the same in every worker process


class ImageEmbedder:
    def __init__(self, config: EmbedderConfig = EmbedderConfig()):
        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = build_backbone(config.backbone, pretrained=config.pretrained)
        self.model = model.eval().to(config.device)
        self.dim = int(self.model.out_channels)

    def _tensor(self, image) -> torch.Tensor:
        from PIL import Image

        img = image.resize((self.config.width, self.config.height), Image.BICUBIC)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)  # [3,H,W]
        mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
        return (x - mean) / std

    @torch.inference_mode()
    def embed_rows(self, rows: Sequence[dict]) -> tuple[np.ndarray, list[str | None]]:
        """Embeddings [n, dim] float32 (zeros for undecodable rows) and an error (or None) per row."""
        images, errors = decode_rows(rows)
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        ok = [i for i, img in enumerate(images) if img is not None]
        for start in range(0, len(ok), self.config.batch_size):
            idx = ok[start:start + self.config.batch_size]
            x = torch.stack([self._tensor(images[i]) for i in idx]).to(self.config.device)  # [b,3,H,W]
            feats = self.model(x).mean(dim=(2, 3))  # [b,C]
            out[idx] = torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy()
        return out, errors
