"""Image towers: a trunk giving four feature maps (strides 4, 8, 16, 32) and a head giving the global embedding.

Every tower has ``feature_channels`` (channels of the four maps), ``forward(x) -> (B, D)``,
``forward_features(x) -> [x1, x2, x3, x4]`` and ``forward_all(x) -> ((B, D), [x1..x4])`` (one trunk pass).

State-dict layout (``PlipModel`` puts the tower under ``image_tower.``):

* ``modified_resnet``: ``trunk.*`` has the CLIP / official PLIP key names (``conv1 bn1 conv2 bn2 conv3 bn3
  layer1..4``, and with the attention-pool head ``attnpool.positional_embedding``, ``attnpool.{q,k,v,c}_proj``),
  so the official ``ImgEncoder_state_dict`` loads under ``image_tower.trunk.``. The max-pool head is ``head.proj``.
* ``efficientnet_lite0``: ``trunk.*`` has the ``efficientnet_lite_pytorch`` names (``_conv_stem``, ``_blocks.N``,
  ``_conv_head``...), ``head.*`` the head.
* ``timm``: ``trunk.*`` is timm's ``features_only`` wrapper, ``head.*`` the head.
"""
from __future__ import annotations

import logging
import math
import os

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import AttentionPool2d, ModifiedResNet
from torch import nn

from plip_runtime.weights import efficientnet_lite0_weights_path, read_state_dict

from .config import EFFICIENTNET_PACKAGE, ImageTowerConfig

_log = logging.getLogger(__name__)


class AttentionPool2dGrid(AttentionPool2d):
    """open_clip's ``AttentionPool2d`` with a positional embedding for a non-square ``rows x cols`` grid
    (``rows*cols + 1`` tokens: the mean token first). Same parameter names, so CLIP/PLIP weights load. The query
    is the mean token only (as in the official PLIP code; the output equals open_clip's ``x[0]``)."""

    def __init__(self, grid: tuple[int, int], embed_dim: int, num_heads: int, output_dim: int | None = None):
        super().__init__(1, embed_dim, num_heads, output_dim)
        if embed_dim % num_heads:
            raise ValueError(f"ImageTowerConfig.attn_heads: {num_heads} heads do not divide the {embed_dim} channels "
                             "of the last feature map")
        self.grid = tuple(grid)
        self.positional_embedding = nn.Parameter(torch.randn(grid[0] * grid[1] + 1, embed_dim) / embed_dim ** 0.5)
        std = embed_dim ** -0.5
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.c_proj):
            nn.init.normal_(proj.weight, std=std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.grid:
            raise ValueError(f"attention pool: sized for a {self.grid[0]}x{self.grid[1]} stride-32 grid (input "
                             f"{self.grid[0] * 32}x{self.grid[1] * 32}), got a {x.shape[2]}x{x.shape[3]} map; resize "
                             "the images to the config's image_size or use head 'maxpool'")
        x = x.flatten(2).permute(2, 0, 1)  # NCHW -> (HW)NC
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)  # (HW+1)NC
        x = x + self.positional_embedding[:, None, :].to(x.dtype)
        x, _ = F.multi_head_attention_forward(
            query=x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=self.num_heads,
            q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight,
            in_proj_weight=None, in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=self.c_proj.weight, out_proj_bias=self.c_proj.bias, use_separate_proj_weight=True,
            training=self.training, need_weights=False)
        return x.squeeze(0)


def resize_positional_embedding(embedding: torch.Tensor, old_grid: tuple[int, int],
                                new_grid: tuple[int, int]) -> torch.Tensor:
    """An :class:`AttentionPool2dGrid` positional embedding ((rows*cols + 1) x C: the mean token's, then the grid's)
    for another grid: the grid part resized bicubically, the mean token's kept; as open_clip's
    ``resize_pos_embed`` does when a model is fine-tuned at another image size."""
    old_grid, new_grid = tuple(old_grid), tuple(new_grid)
    if embedding.shape[0] != old_grid[0] * old_grid[1] + 1:
        raise ValueError(f"a positional embedding of {embedding.shape[0]} tokens is not that of a {old_grid[0]}x"
                         f"{old_grid[1]} grid (+1 mean token)")
    if old_grid == new_grid:
        return embedding
    channels = embedding.shape[1]
    grid = embedding[1:].float().reshape(1, *old_grid, channels).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], channels).to(embedding.dtype)
    return torch.cat([embedding[:1], grid])


class MaxPoolHead(nn.Module):
    """Global max pool over the last map, then Linear to the embedding (paper v2 default head)."""

    def __init__(self, in_channels: int, output_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_channels, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.amax(x, dim=(2, 3)))


def _group_count(channels: int) -> int:
    g = math.gcd(32, channels)
    while g > 1 and channels // g < 2:  # avoid one channel per group (instance norm) where possible
        g //= 2
    return g


def _batchnorm_to_groupnorm(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.GroupNorm(_group_count(child.num_features), child.num_features))
        else:
            _batchnorm_to_groupnorm(child)


class PlipModifiedResNet(ModifiedResNet):
    """open_clip's ``ModifiedResNet`` (3-conv stem, anti-aliased bottlenecks, bn3 of every bottleneck zero-init)
    for a non-square input: the attention pool is an :class:`AttentionPool2dGrid` (``attnpool=None`` for the
    max-pool head, which then lives outside the trunk). ``norm='group'`` swaps every BatchNorm2d for GroupNorm
    (same parameter names)."""

    def __init__(self, layers, output_dim: int, heads: int, image_size: tuple[int, int], width: int = 64,
                 attnpool: bool = True, norm: str = "batch"):
        super().__init__(list(layers), output_dim, heads, image_size=32, width=width)
        self.image_size = tuple(image_size)
        grid = (image_size[0] // 32, image_size[1] // 32)
        self.attnpool = AttentionPool2dGrid(grid, width * 32, heads, output_dim) if attnpool else None
        if norm == "group":
            _batchnorm_to_groupnorm(self)
        self.init_parameters()  # again: the new attention pool, and bn3 = 0 on the (possibly group) norms

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x.to(self.conv1.weight.dtype))
        x1 = self.layer1(x)
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return [x1, x2, x3, x4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.attnpool is None:
            raise RuntimeError("this trunk has no attention pool (max-pool head); use the ImageTower")
        return self.attnpool(self.forward_features(x)[-1])


class ImageTower(nn.Module):
    """Base: subclasses set ``trunk``, ``feature_channels`` and implement ``forward_features`` and ``pool``."""

    feature_channels: tuple[int, int, int, int]
    output_dim: int

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def pool(self, x4: torch.Tensor) -> torch.Tensor:
        return self.head(x4)

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = self.forward_features(x)
        return self.pool(feats[-1]), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_features(x)[-1])


def _make_head(cfg: ImageTowerConfig, channels: int, output_dim: int) -> nn.Module:
    if cfg.head == "attnpool":
        return AttentionPool2dGrid(cfg.grid, channels, cfg.attn_heads, output_dim)
    return MaxPoolHead(channels, output_dim)


class ModifiedResNetTower(ImageTower):
    def __init__(self, cfg: ImageTowerConfig, output_dim: int):
        super().__init__()
        attn = cfg.head == "attnpool"
        self.trunk = PlipModifiedResNet(cfg.layers, output_dim, cfg.attn_heads, cfg.image_size, cfg.width,
                                        attnpool=attn, norm=cfg.norm)
        if not attn:
            self.head = MaxPoolHead(cfg.width * 32, output_dim)
        w = cfg.width
        self.feature_channels = (w * 4, w * 8, w * 16, w * 32)
        self.output_dim = output_dim

    def forward_features(self, x):
        return self.trunk.forward_features(x)

    def pool(self, x4):
        return self.trunk.attnpool(x4) if self.trunk.attnpool is not None else self.head(x4)


class EfficientNetLite0Tower(ImageTower):
    """``efficientnet_lite_pytorch.EfficientNet('efficientnet-lite0')`` without its classifier. Maps: the last
    MBConv block at strides 4, 8 and 16 (24, 40, 112 channels) and the head conv at stride 32 (1280)."""

    def __init__(self, cfg: ImageTowerConfig, output_dim: int):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0")
        del net._fc, net._dropout, net._avg_pooling
        self.trunk = net
        stride, taps = 2, {}
        for i, block in enumerate(net._blocks):
            s = block._block_args.stride
            stride *= s[0] if isinstance(s, (list, tuple)) else s
            taps[stride] = i  # the last block at each stride
        if not all(s in taps for s in (4, 8, 16)):
            raise RuntimeError(f"unexpected EfficientNet-Lite0 strides {sorted(taps)}")
        self._taps = {taps[4]: 0, taps[8]: 1, taps[16]: 2}
        chans = [net._blocks[taps[s]]._block_args.output_filters for s in (4, 8, 16)]
        self.feature_channels = (*chans, net._conv_head.out_channels)
        self.head = _make_head(cfg, self.feature_channels[-1], output_dim)
        self.output_dim = output_dim

    def forward_features(self, x):
        n = self.trunk
        x = n._swish(n._bn0(n._conv_stem(x)))
        out = []
        rate0 = n._global_params.drop_connect_rate
        for i, block in enumerate(n._blocks):
            rate = rate0 * float(i) / len(n._blocks) if rate0 else rate0
            x = block(x, drop_connect_rate=rate)
            if i in self._taps:
                out.append(x)
        out.append(n._swish(n._bn1(n._conv_head(x))))
        return out


class TimmTower(ImageTower):
    """A timm CNN built with ``features_only=True`` (never downloads); the maps at strides 4, 8, 16, 32 are taken
    from its feature list (the last one at each stride)."""

    def __init__(self, cfg: ImageTowerConfig, output_dim: int, weights: str | None = None):
        super().__init__()
        import timm

        kwargs = {}
        if weights is not None:
            kwargs = {"pretrained": True, "pretrained_cfg_overlay": {"file": weights}}
        try:
            self.trunk = timm.create_model(cfg.timm_name, features_only=True, **kwargs)
        except RuntimeError as e:
            if weights is not None:
                raise ValueError(f"ImageTowerConfig.pretrained: could not load {weights} into timm model "
                                 f"{cfg.timm_name!r}: {e}") from e
            raise ValueError(f"ImageTowerConfig.timm_name: timm cannot build {cfg.timm_name!r} with features_only "
                             f"(a CNN with stride-4..32 feature maps is needed): {e}") from e
        except Exception as e:  # unknown model name and the like
            raise ValueError(f"ImageTowerConfig.timm_name: timm cannot build {cfg.timm_name!r} with features_only "
                             f"(a CNN with stride-4..32 feature maps is needed): {e}") from e
        reductions = list(self.trunk.feature_info.reduction())
        channels = list(self.trunk.feature_info.channels())
        idx = []
        for s in (4, 8, 16, 32):
            hits = [i for i, r in enumerate(reductions) if r == s]
            if not hits:
                raise ValueError(f"ImageTowerConfig.timm_name: {cfg.timm_name!r} has feature maps at strides "
                                 f"{reductions}; the PLIP tower needs 4, 8, 16 and 32 (use a hierarchical CNN)")
            idx.append(hits[-1])
        self._idx = idx
        self.feature_channels = tuple(channels[i] for i in idx)
        self.head = _make_head(cfg, self.feature_channels[-1], output_dim)
        self.output_dim = output_dim

    def forward_features(self, x):
        feats = self.trunk(x)
        return [feats[i] for i in self._idx]


def _strip_prefixes(sd: dict, own: dict, prefixes=("module.", "visual.", "trunk.", "image_tower.trunk.")) -> dict:
    """Strip wrapper prefixes (DDP ``module.``, CLIP ``visual.``...) while that makes more keys match."""
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if any(k.startswith(p) for k in sd) and not any(k in own for k in sd):
                sd = {k[len(p):] if k.startswith(p) else k: v for k, v in sd.items()}
                changed = True
    return sd


def load_trunk_weights(trunk: nn.Module, path: str, optional_prefixes: tuple[str, ...] = ()) -> None:
    """Load a backbone state dict into ``trunk``: every trunk tensor must be present with its shape, except those
    under ``optional_prefixes`` (e.g. ``attnpool.``, whose shape depends on the grid and embedding size); tensors
    the trunk does not have (a classifier) are skipped."""
    own = trunk.state_dict()
    sd = _strip_prefixes(read_state_dict(path), own)
    usable = {k: v for k, v in sd.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    bad = sorted(k for k in own if k not in usable and not k.startswith(optional_prefixes))
    if bad:
        shapes = [k for k in bad if k in sd]
        raise ValueError(f"ImageTowerConfig.pretrained: {path} does not fit the image trunk: {len(bad)} tensors "
                         f"missing or of another shape (e.g. {', '.join(bad[:4])}"
                         f"{'; shape mismatch: ' + ', '.join(shapes[:3]) if shapes else ''}); check layers/width/type")
    trunk.load_state_dict(usable, strict=False)
    skipped = sorted(set(sd) - set(usable))
    kept_random = sorted(k for k in own if k not in usable)
    _log.info("loaded image trunk weights from %s (%d tensors; %d unused%s)", path, len(usable), len(skipped),
              f"; random init kept for {', '.join(kept_random)}" if kept_random else "")


def build_image_tower(cfg: ImageTowerConfig, output_dim: int, load_pretrained: bool = True) -> ImageTower:
    """The image tower for ``cfg`` with a head projecting to ``output_dim``. With ``load_pretrained=False`` the
    architecture only (no weights read: for restoring a checkpoint)."""
    weights = cfg.pretrained if load_pretrained else None
    if weights == EFFICIENTNET_PACKAGE:
        weights = efficientnet_lite0_weights_path()
    if weights is not None and not os.path.isfile(weights):
        raise ValueError(f"ImageTowerConfig.pretrained: weights file {weights} does not exist (give a local "
                         "state-dict file, 'package' for efficientnet_lite0, or null)")
    if cfg.type == "modified_resnet":
        tower = ModifiedResNetTower(cfg, output_dim)
        if weights:
            load_trunk_weights(tower.trunk, weights, optional_prefixes=("attnpool.",))
    elif cfg.type == "efficientnet_lite0":
        tower = EfficientNetLite0Tower(cfg, output_dim)
        if weights:
            load_trunk_weights(tower.trunk, weights)
    elif cfg.type == "timm":
        tower = TimmTower(cfg, output_dim, weights=weights)
    else:  # unreachable: the config validates the type
        raise ValueError(f"ImageTowerConfig.type: unknown {cfg.type!r}")
    return tower
