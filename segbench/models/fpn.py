"""Semantic FPN (Kirillov et al., CVPR 2019, "Panoptic Feature Pyramid Networks"): an FPN neck on
an undilated ResNet and mmsegmentation's `FPNHead`, which merges all levels at stride 4."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import ConvBNReLU, resize
from segbench.models.registry import register_architecture
from segbench.models.backbones.resnet import ResNet
from segbench.models.segmentor import EncoderDecoder


class BiasedConv(nn.Module):
    """A plain conv with bias, under mmcv ConvModule's `conv` key (FPN's convs have no norm, no activation)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FPN(nn.Module):
    """Feature pyramid (Lin et al., CVPR 2017): 1x1 laterals, nearest-neighbour top-down sum, 3x3 outputs."""

    def __init__(self, in_channels: tuple[int, ...], out_channels: int) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(BiasedConv(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(BiasedConv(out_channels, out_channels, 3, padding=1) for _ in in_channels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, features)]
        for i in range(len(laterals) - 1, 0, -1):
            upsampled = F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest")
            laterals[i - 1] = laterals[i - 1] + upsampled
        return [conv(x) for conv, x in zip(self.fpn_convs, laterals)]


class SemanticFPNHead(nn.Module):
    """Per level: 3x3 ConvBNReLU + 2x bilinear upsampling until stride 4; the levels summed, then classified."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        feature_strides: tuple[int, ...] = (4, 8, 16, 32),
        align_corners: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.scale_heads = nn.ModuleList()
        for stride in feature_strides:
            num_upsamples = int(math.log2(stride // feature_strides[0]))
            layers: list[nn.Module] = []
            for k in range(max(1, num_upsamples)):
                layers.append(ConvBNReLU(in_channels if k == 0 else channels, channels, 3, padding=1))
                if num_upsamples:
                    layers.append(nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=align_corners))
            self.scale_heads.append(nn.Sequential(*layers))
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        out = self.scale_heads[0](features[0])
        for head, x in zip(self.scale_heads[1:], features[1:]):
            out = out + resize(head(x), out.shape[-2:], self.align_corners)
        return self.conv_seg(self.dropout(out))


@register_architecture("fpn_resnet")
def fpn_resnet(
    *,
    depth: int = 50,
    num_classes: int = 19,
    deep_stem: bool = True,
    align_corners: bool = False,
) -> EncoderDecoder:
    """Semantic FPN on an undilated ResNet, as mmseg's `fpn_r{depth}` configs (no auxiliary head)."""
    backbone = ResNet(depth, deep_stem=deep_stem, output_stride=32)
    neck = FPN(tuple(backbone.out_channels), 256)
    head = SemanticFPNHead(256, 128, num_classes, align_corners=align_corners)
    return EncoderDecoder(backbone, head, neck=neck, align_corners=align_corners)
