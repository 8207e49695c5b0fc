"""DeepLabV3 (Chen et al., 2017): atrous spatial pyramid pooling (ASPP) on a dilated ResNet.

Two layouts: mmsegmentation's `ASPPHead` (its checkpoints load as they are), and torchvision's
DeepLabHead (`deeplabv3_torchvision`, for torchvision's checkpoints through the
`torchvision_deeplabv3` key adapter in segbench.checkpoint).
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU, DepthwiseSeparableConvBNReLU, resize
from segbench.models.fcn import auxiliary_fcn_head, dilated_head_channels
from segbench.models.registry import register_architecture
from segbench.models.backbones.resnet import ResNet
from segbench.models.segmentor import EncoderDecoder


def image_pooling(in_channels: int, channels: int) -> nn.Sequential:
    """Global average pool then 1x1 ConvBNReLU; keys `1.conv`, `1.bn`."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNReLU(in_channels, channels, 1))


def aspp_branches(in_channels: int, channels: int, dilations: tuple[int, ...], *, separable: bool) -> nn.ModuleList:
    """1x1 ConvBNReLU for dilation 1, else a dilated 3x3 one (depthwise-separable for DeepLabV3+)."""
    branches = nn.ModuleList()
    for d in dilations:
        if d == 1:
            branches.append(ConvBNReLU(in_channels, channels, 1))
        elif separable:
            branches.append(DepthwiseSeparableConvBNReLU(in_channels, channels, 3, padding=d, dilation=d))
        else:
            branches.append(ConvBNReLU(in_channels, channels, 3, padding=d, dilation=d))
    return branches


def default_aspp_dilations(output_stride: int) -> tuple[int, ...]:
    """ASPP rates of mmseg's configs: (1, 12, 24, 36) at output stride 8, halved at 16 and coarser."""
    return (1, 12, 24, 36) if output_stride == 8 else (1, 6, 12, 18)


class ASPPHead(nn.Module):
    """mmseg's ASPPHead: [image pool, ASPP branches] concatenated, then a 3x3 bottleneck."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        dilations: tuple[int, ...] = (1, 12, 24, 36),
        separable: bool = False,
        in_index: int = -1,
        align_corners: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.align_corners = align_corners
        self.image_pool = image_pooling(in_channels, channels)
        self.aspp_modules = aspp_branches(in_channels, channels, dilations, separable=separable)
        self.bottleneck = ConvBNReLU((len(dilations) + 1) * channels, channels, 3, padding=1)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def aspp(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck over the pooled image feature and every branch (pooled first, as mmseg)."""
        pooled = resize(self.image_pool(x), x.shape[-2:], self.align_corners)
        return self.bottleneck(torch.cat([pooled, *(branch(x) for branch in self.aspp_modules)], dim=1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.conv_seg(self.dropout(self.aspp(features[self.in_index])))


@register_architecture("deeplabv3_resnet")
def deeplabv3_resnet(
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
    """DeepLabV3 on a dilated ResNet, as mmsegmentation's `deeplabv3_r{depth}-d8` configs.

    `aspp_dilations=None` takes the rates for the output stride (see `default_aspp_dilations`).
    """
    channels, aux_channels = dilated_head_channels(depth)
    backbone = ResNet(depth, deep_stem=deep_stem, output_stride=output_stride, multi_grid=multi_grid)
    head = ASPPHead(
        backbone.out_channels[3],
        channels,
        num_classes,
        dilations=aspp_dilations or default_aspp_dilations(output_stride),
        in_index=3,
        align_corners=align_corners,
    )
    aux = auxiliary_fcn_head(backbone, aux_channels, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)


class TorchvisionDeepLabHead(nn.Module):
    """torchvision's DeepLabHead: [branches, image pool] -> 1x1 project -> 3x3 ConvBNReLU -> classifier.

    Differs from mmseg's ASPPHead in the concat order (pool last), the 1x1 projection before
    the 3x3 conv, and its dropout (0.5, after the projection; none before the classifier).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        channels: int = 256,
        dilations: tuple[int, ...] = (1, 12, 24, 36),
    ) -> None:
        super().__init__()
        self.image_pool = image_pooling(in_channels, channels)
        self.aspp_modules = aspp_branches(in_channels, channels, dilations, separable=False)
        self.project = ConvBNReLU((len(dilations) + 1) * channels, channels, 1)
        self.project_dropout = nn.Dropout(0.5)
        self.bottleneck = ConvBNReLU(channels, channels, 3, padding=1)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        pooled = resize(self.image_pool(x), x.shape[-2:], align_corners=False)
        out = self.project(torch.cat([*(branch(x) for branch in self.aspp_modules), pooled], dim=1))
        return self.conv_seg(self.bottleneck(self.project_dropout(out)))


@register_architecture("deeplabv3_torchvision")
def deeplabv3_torchvision(*, depth: int = 50, num_classes: int = 21, auxiliary_head: bool = True) -> EncoderDecoder:
    """torchvision's deeplabv3_resnet{50,101}: 7x7-stem ResNet at output stride 8, 256-channel ASPP.

    torchvision's dilated ResNet places dilations exactly as mmseg's contracted one (first
    block of a dilated stage keeps the previous stage's dilation), so `ResNet` serves as is.
    """
    backbone = ResNet(depth, deep_stem=False, output_stride=8)
    head = TorchvisionDeepLabHead(backbone.out_channels[3], num_classes)
    aux = auxiliary_fcn_head(backbone, backbone.out_channels[2] // 4, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=False)
