"""DeepLabV3 (Chen et al., 2017): ASPP head with image pooling, on a dilated ResNet."""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU, resize
from segbench.models.fcn import auxiliary_fcn_head, head_widths
from segbench.models.registry import register_architecture
from segbench.models.resnet import ResNet
from segbench.models.segmentor import EncoderDecoder


class ASPPHead(nn.Module):
    """Image pooling + one 1x1 and three dilated 3x3 branches, concatenated, then a 3x3 bottleneck."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        dilations: tuple[int, ...] = (1, 12, 24, 36),
        in_index: int = -1,
        align_corners: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.align_corners = align_corners
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNReLU(in_channels, channels, 1))
        self.aspp_modules = nn.ModuleList(
            ConvBNReLU(in_channels, channels, 1 if d == 1 else 3, padding=0 if d == 1 else d, dilation=d)
            for d in dilations
        )
        self.bottleneck = ConvBNReLU((len(dilations) + 1) * channels, channels, 3, padding=1)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[self.in_index]
        pooled = resize(self.image_pool(x), x.shape[-2:], self.align_corners)
        out = self.bottleneck(torch.cat([pooled, *(branch(x) for branch in self.aspp_modules)], dim=1))
        return self.conv_seg(self.dropout(out))


@register_architecture("deeplabv3_resnet")
def deeplabv3_resnet(
    *,
    depth: int = 50,
    num_classes: int = 19,
    deep_stem: bool = True,
    output_stride: int = 8,
    auxiliary_head: bool = True,
    align_corners: bool = False,
) -> EncoderDecoder:
    """DeepLabV3 on a dilated ResNet, as mmsegmentation's `deeplabv3_r{depth}-d8` configs."""
    last, channels, _, _ = head_widths(depth)
    backbone = ResNet(depth, deep_stem=deep_stem, output_stride=output_stride)
    head = ASPPHead(last, channels, num_classes, align_corners=align_corners)
    aux = auxiliary_fcn_head(depth, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux)
