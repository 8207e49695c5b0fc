"""DeepLabV3+ (Chen et al., ECCV 2018): depthwise-separable ASPP plus a low-level (stage 1) decoder.

Layout and semantics of mmsegmentation's `DepthwiseSeparableASPPHead`.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU, DepthwiseSeparableConvBNReLU, resize
from segbench.models.deeplabv3 import ASPPHead, default_aspp_dilations
from segbench.models.fcn import auxiliary_fcn_head, dilated_head_channels
from segbench.models.registry import register_architecture
from segbench.models.backbones.resnet import ResNet
from segbench.models.segmentor import EncoderDecoder


class DeepLabV3PlusHead(ASPPHead):
    """Separable ASPP on the last stage, upsampled to stage 1 and fused with its 1x1-reduced features."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        c1_in_channels: int,
        c1_channels: int,
        dilations: tuple[int, ...] = (1, 12, 24, 36),
        in_index: int = -1,
        align_corners: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(
            in_channels,
            channels,
            num_classes,
            dilations=dilations,
            separable=True,
            in_index=in_index,
            align_corners=align_corners,
            dropout=dropout,
        )
        self.c1_bottleneck = ConvBNReLU(c1_in_channels, c1_channels, 1)
        self.sep_bottleneck = nn.Sequential(
            DepthwiseSeparableConvBNReLU(channels + c1_channels, channels, 3, padding=1),
            DepthwiseSeparableConvBNReLU(channels, channels, 3, padding=1),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        low_level = self.c1_bottleneck(features[0])
        out = resize(self.aspp(features[self.in_index]), low_level.shape[-2:], self.align_corners)
        out = self.sep_bottleneck(torch.cat([out, low_level], dim=1))
        return self.conv_seg(self.dropout(out))


@register_architecture("deeplabv3plus_resnet")
def deeplabv3plus_resnet(
    *,
    depth: int = 50,
    num_classes: int = 19,
    deep_stem: bool = True,
    output_stride: int = 8,
    multi_grid: tuple[int, ...] | None = None,
    aspp_dilations: tuple[int, ...] | None = None,
    auxiliary_head: bool = True,
    align_corners: bool = False,
) -> EncoderDecoder:
    """DeepLabV3+ on a dilated ResNet: mmseg's `deeplabv3plus_r{depth}-d8`; output_stride=16 with
    multi_grid=(1, 2, 4) gives `deeplabv3plus_r101-d16-mg124` (ASPP rates 1, 6, 12, 18)."""
    channels, aux_channels = dilated_head_channels(depth)
    backbone = ResNet(depth, deep_stem=deep_stem, output_stride=output_stride, multi_grid=multi_grid)
    head = DeepLabV3PlusHead(
        backbone.out_channels[3],
        channels,
        num_classes,
        c1_in_channels=backbone.out_channels[0],
        c1_channels=12 if depth in (18, 34) else 48,  # mmseg's r18 config narrows it too
        dilations=aspp_dilations or default_aspp_dilations(output_stride),
        in_index=3,
        align_corners=align_corners,
    )
    aux = auxiliary_fcn_head(backbone, aux_channels, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
