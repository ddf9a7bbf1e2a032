"""TIC: text-guided image colorization (docs/reimplementation.md#tic; the official first-upload
``Image_decoder_ModifiedResNet``).

The image tower runs on the grayscale copy of the augmented image (3 channels, normalised); its four feature maps
(strides 4, 8, 16, 32) are fused FPN-style, modulated twice by the caption's global embedding through multimodal SE
blocks, and decoded by two stride-2 transposed convolutions (no nonlinearity between them, no output activation) to
3 channels at 4x the stride-4 map, i.e. the input resolution. The target is the normalised colour image; the loss is
the per-image L2 norm over all 3*H*W values, averaged over the batch.

Deviation from the official code, only where it would crash: the top-down upsampling uses ``size=`` (the next map's
size) instead of ``scale_factor=2``, and the output is bilinearly resized to the target size when 4x the stride-4 map
is not exactly the input size (input sides not divisible by the backbone's strides). For 256x128 with a ModifiedResNet
both are identical to the official code.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import init


class SEBlockMM(nn.Module):
    """Multimodal squeeze-and-excitation (``SE_block_mm``): a = sigmoid(fc2(relu(fc1([avgpool(F), t])))), out = F * a.
    fc1: (C + text_dim) -> C, fc2: C -> C, weights kaiming-normal fan_out (as the official code)."""

    def __init__(self, channels: int, text_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(channels + text_dim, channels)
        self.fc2 = nn.Linear(channels, channels)
        init.kaiming_normal_(self.fc1.weight, mode="fan_out")
        init.kaiming_normal_(self.fc2.weight, mode="fan_out")

    def gate(self, feature: Tensor, text: Tensor) -> Tensor:
        """The sigmoid gate a (B x C), in (0, 1)."""
        v = feature.mean(dim=(2, 3))  # AdaptiveAvgPool2d(1) + flatten
        a = self.fc2(F.relu(self.fc1(torch.cat([v, text.to(v.dtype)], dim=-1))))
        return torch.sigmoid(a)

    def forward(self, feature: Tensor, text: Tensor) -> Tensor:
        return feature * self.gate(feature, text)[:, :, None, None]


def _up(x: Tensor, size) -> Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class ColorizationDecoder(nn.Module):
    """FPN-like fusion of x1..x4, two text-conditioned SE blocks, two deconvolutions (docs/reimplementation.md#tic)."""

    def __init__(self, feature_channels: Sequence[int], text_dim: int, fpn_dim: int = 256):
        super().__init__()
        feature_channels = tuple(int(c) for c in feature_channels)
        if len(feature_channels) != 4:
            raise ValueError(f"ColorizationDecoder: need 4 feature channel counts (strides 4, 8, 16, 32), "
                             f"got {feature_channels}")
        self.feature_channels = feature_channels
        self.fpn_dim = fpn_dim
        self.lateral = nn.ModuleList([nn.Conv2d(c, fpn_dim, kernel_size=1) for c in feature_channels])  # channelunity
        self.se1 = SEBlockMM(4 * fpn_dim, text_dim)
        self.deconv1 = nn.ConvTranspose2d(4 * fpn_dim, fpn_dim, kernel_size=3, stride=2, padding=1, output_padding=1)
        self.se2 = SEBlockMM(fpn_dim, text_dim)
        self.deconv2 = nn.ConvTranspose2d(fpn_dim, 3, kernel_size=3, stride=2, padding=1, output_padding=1)

    def forward(self, features: Sequence[Tensor], text_global: Tensor, output_size=None) -> Tensor:
        if len(features) != 4:
            raise ValueError(f"ColorizationDecoder: expected 4 feature maps, got {len(features)}")
        c1, c2, c3, c4 = (lat(x) for lat, x in zip(self.lateral, features))
        y3 = _up(c4, c3.shape[-2:]) + c3
        y2 = _up(y3, c2.shape[-2:]) + c2
        y1 = _up(y2, c1.shape[-2:]) + c1
        size = c1.shape[-2:]
        z = torch.cat([y1, _up(y2, size), _up(y3, size), _up(c4, size)], dim=1)  # 4*fpn_dim x H/4 x W/4
        z = self.se1(z, text_global)
        z = self.deconv1(z)  # fpn_dim x H/2 x W/2
        z = self.se2(z, text_global)
        out = self.deconv2(z)  # 3 x H x W, no activation
        if output_size is not None and tuple(out.shape[-2:]) != tuple(output_size):
            out = _up(out, output_size)
        return out


def tic_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean over the batch of the per-image Euclidean distance ||pred_n - target_n||_2 over all values."""
    if pred.shape != target.shape:
        raise ValueError(f"tic_loss: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    diff = (pred.float() - target.float()).flatten(1)
    return torch.linalg.vector_norm(diff, ord=2, dim=1).mean()


class TICTask(nn.Module):
    """forward(features of the gray image, caption global embedding, colour target) ->
    ``{"tic_loss", "tic_mse"}`` (tic_mse: per-value mean squared error, no grad, comparable across image sizes)."""

    def __init__(self, feature_channels: Sequence[int], text_dim: int, fpn_dim: int = 256):
        super().__init__()
        self.decoder = ColorizationDecoder(feature_channels, text_dim, fpn_dim)

    def forward(self, features: Sequence[Tensor], text_global: Tensor, target_images: Tensor) -> dict[str, Tensor]:
        pred = self.decoder(features, text_global, output_size=target_images.shape[-2:])
        loss = tic_loss(pred, target_images)
        with torch.no_grad():
            mse = (pred.detach().float() - target_images.float()).pow(2).mean()
        return {"tic_loss": loss, "tic_mse": mse}
