"""PFPNet: PaddleSeg 2.8's PFPNNet (after Kirillov et al., CVPR 2019, "Panoptic Feature Pyramid
Networks") in its state_dict layout: ResNet_vd at output stride 8, an FPN (1x1 lateral conv-BN-ReLU
with bias, top-down bilinear sum with align_corners=True, a 3x3 `fpn_out` block), per-level scale
heads (3x3 conv-BN-ReLU with bias, each followed by a 2x upsample) summed at the finest level, a
1x1 classifier. Its `.pdparams` weights load through the `paddleseg` key adapter.

PaddleSeg's forward, kept as it runs: the coarsest level (stage 4's lateral) feeds no scale head,
and the scale heads are applied one level off (head 1 to stage 3's map, head 2 to stage 2's), so
with stages 2-4 all at 1/8 head 2 upsamples to 1/2 before the resize back to 1/4. Its checkpoints
also hold layers no forward uses (`fpn_out.3`, `scale_heads.3`, `conv_last`): they exist so the
weights load with strict=True, and are marked unused (`never_run`: out of the inference count and the
training step). The Cityscapes config has no auxiliary head.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from segbench.layers import resize
from segbench.models.backbones.resnet_vd import ConvBN, ResNetVd
from segbench.models.registry import register_architecture
from segbench.models.segmentor import mark_unused


def _scale_head(channels: int, steps: int, upsample: bool) -> nn.Sequential:
    """`steps` 3x3 conv-BN-ReLU blocks (with bias), each followed by a 2x bilinear upsample if asked."""
    layers: list[nn.Module] = []
    for _ in range(steps):
        layers.append(ConvBN(channels, channels, 3, relu=True, bias=True))
        if upsample:
            layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    return nn.Sequential(*layers)


class PFPNHead(nn.Module):
    def __init__(self, in_channels: list[int], channels: int, num_classes: int) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, channels, 1), nn.BatchNorm2d(channels), nn.ReLU()) for c in in_channels
        )
        self.fpn_out = nn.ModuleList(nn.Sequential(ConvBN(channels, channels, 3, relu=True)) for _ in in_channels)
        self.scale_heads = nn.ModuleList(
            _scale_head(channels, max(1, int(math.log2(c) - math.log2(in_channels[0]))), c != in_channels[0])
            for c in in_channels
        )
        self.dropout = nn.Dropout2d(0.1)
        self.conv_last = nn.Sequential(
            ConvBN(len(in_channels) * channels, channels, 3, relu=True), nn.Conv2d(channels, num_classes, 1)
        )
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        f = self.lateral_convs[-1](features[-1])
        levels = [f]  # coarsest first, as PaddleSeg lists them: the coarsest has no fpn_out
        for i in reversed(range(len(features) - 1)):
            f = self.lateral_convs[i](features[i]) + resize(f, tuple(features[i].shape[-2:]), True)
            levels.append(self.fpn_out[i](f))
        size = tuple(levels[-1].shape[-2:])
        x = self.scale_heads[0](levels[-1])
        for index in range(len(self.scale_heads) - 2, 0, -1):
            x = x + resize(self.scale_heads[index](levels[index]), size, False)
        return self.conv_seg(self.dropout(x))


class PFPNNet(nn.Module):
    """Logits resized to the input (bilinear, the model's align_corners)."""

    def __init__(self, backbone: ResNetVd, num_classes: int, *, channels: int = 256, align_corners: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = PFPNHead(backbone.out_channels, channels, num_classes)
        self.align_corners = align_corners
        mark_unused(self, ("head.fpn_out.3.", "head.scale_heads.3.", "head.conv_last."))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return resize(self.head(self.backbone(image)), tuple(image.shape[-2:]), self.align_corners)


@register_architecture("pfpnet_resnet_vd")
def pfpnet_resnet_vd(*, depth: int = 101, num_classes: int = 19, align_corners: bool = False) -> PFPNNet:
    """PaddleSeg's PFPNNet on ResNet{depth}_vd at output stride 8 (`pfpn_resnet101_os8_*`)."""
    return PFPNNet(ResNetVd(depth, output_stride=8), num_classes, align_corners=align_corners)
