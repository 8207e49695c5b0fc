"""BiSeNetV2 (Yu et al., IJCV 2021): a wide detail branch at 1/8 and a narrow semantic branch at
1/32, fused by bilateral guided aggregation (BGA); FCN decode head on the fused 1/8 map.

The four auxiliary FCN heads (the paper's "booster", on the semantic stages at 1/4..1/32) exist
only so that mmseg's checkpoints load: they hold 77% of the parameters and never run at inference.
mmseg's fp16 and OHEM configs train this same model differently.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU, ConvNoNorm, resize
from segbench.models.fcn import FCNHead
from segbench.models.registry import register_architecture
from segbench.models.segmentor import AuxiliaryHeads, EncoderDecoder


class DepthwiseThenPointwise(nn.Module):
    """mmcv's DepthwiseSeparableConvModule as BiSeNetV2 configures it: depthwise 3x3 ConvBN without
    ReLU, then a 1x1 conv that is either ConvBN (no ReLU) or a plain conv with bias."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, pointwise_norm: bool) -> None:
        super().__init__()
        self.depthwise_conv = ConvBNReLU(in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels, relu=False)
        self.pointwise_conv = (
            ConvBNReLU(in_channels, out_channels, 1, relu=False) if pointwise_norm else ConvNoNorm(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class DetailBranch(nn.Module):
    """Three stages of 3x3 ConvBNReLU, each starting with stride 2 (2, 3 and 3 convs): 1/8."""

    def __init__(self, channels: tuple[int, int, int] = (64, 64, 128)) -> None:
        super().__init__()
        stages = []
        in_channels = 3
        for i, width in enumerate(channels):
            convs = [ConvBNReLU(in_channels, width, 3, stride=2, padding=1)]
            convs += [ConvBNReLU(width, width, 3, padding=1) for _ in range(1 if i == 0 else 2)]
            stages.append(nn.Sequential(*convs))
            in_channels = width
        self.detail_branch = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.detail_branch:
            x = stage(x)
        return x


class StemBlock(nn.Module):
    """3x3/2 conv, then a 1x1 + 3x3/2 conv path beside a 3x3/2 max-pool, concatenated and fused: 1/4."""

    def __init__(self, out_channels: int = 16) -> None:
        super().__init__()
        self.conv_first = ConvBNReLU(3, out_channels, 3, stride=2, padding=1)
        self.convs = nn.Sequential(
            ConvBNReLU(out_channels, out_channels // 2, 1),
            ConvBNReLU(out_channels // 2, out_channels, 3, stride=2, padding=1),
        )
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.fuse_last = ConvBNReLU(out_channels * 2, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_first(x)
        return self.fuse_last(torch.cat([self.convs(x), self.pool(x)], dim=1))


class GatherExpansion(nn.Module):
    """GE layer: 3x3 ConvBNReLU, depthwise expansion by `expansion` (two depthwise convs when
    striding, the first without ReLU), 1x1 ConvBN projection, residual, ReLU. The residual of a
    strided layer is a depthwise-separable conv (both halves BN, no ReLU)."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, expansion: int = 6) -> None:
        super().__init__()
        mid = in_channels * expansion
        self.conv1 = ConvBNReLU(in_channels, in_channels, 3, padding=1)
        if stride == 1:
            self.dwconv = nn.Sequential(ConvBNReLU(in_channels, mid, 3, padding=1, groups=in_channels))
            self.shortcut = None
        else:
            self.dwconv = nn.Sequential(
                ConvBNReLU(in_channels, mid, 3, stride=stride, padding=1, groups=in_channels, relu=False),
                ConvBNReLU(mid, mid, 3, padding=1, groups=mid),
            )
            self.shortcut = nn.Sequential(DepthwiseThenPointwise(in_channels, out_channels, stride=stride, pointwise_norm=True))
        self.conv2 = nn.Sequential(ConvBNReLU(mid, out_channels, 1, relu=False))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.act(self.conv2(self.dwconv(self.conv1(x))) + identity)


class ContextEmbedding(nn.Module):
    """CE block: global pool + BN, 1x1 ConvBNReLU, added to the input (broadcast), 3x3 ConvBNReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.BatchNorm2d(channels))
        self.conv_gap = ConvBNReLU(channels, channels, 1)
        self.conv_last = ConvBNReLU(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_last(x + self.conv_gap(self.gap(x)))


class SemanticBranch(nn.Module):
    """Stem (1/4), GE stages to 1/8, 1/16, 1/32 (2, 2 and 4 layers), CE block; every stage's output."""

    def __init__(self, channels: tuple[int, int, int, int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.stage1 = StemBlock(channels[0])
        for i, layers in ((1, 2), (2, 2), (3, 4)):
            stage = [GatherExpansion(channels[i - 1], channels[i], stride=2)]
            stage += [GatherExpansion(channels[i], channels[i], stride=1) for _ in range(layers - 1)]
            self.add_module(f"stage{i + 1}", nn.Sequential(*stage))
        self.stage4_CEBlock = ContextEmbedding(channels[3])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for stage in (self.stage1, self.stage2, self.stage3, self.stage4, self.stage4_CEBlock):
            x = stage(x)
            outs.append(x)
        return outs


class BilateralGuidedAggregation(nn.Module):
    """Each branch gates the other at its own resolution (sigmoid), the 1/32 product is upsampled
    (bilinear) and added, then a 3x3 ConvBNReLU."""

    def __init__(self, channels: int = 128, *, align_corners: bool = False) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.detail_dwconv = nn.Sequential(DepthwiseThenPointwise(channels, channels, pointwise_norm=False))
        self.detail_down = nn.Sequential(
            ConvBNReLU(channels, channels, 3, stride=2, padding=1, relu=False), nn.AvgPool2d(3, stride=2, padding=1)
        )
        self.semantic_conv = nn.Sequential(ConvBNReLU(channels, channels, 3, padding=1, relu=False))
        self.semantic_dwconv = nn.Sequential(DepthwiseThenPointwise(channels, channels, pointwise_norm=False))
        self.conv = ConvBNReLU(channels, channels, 3, padding=1)

    def forward(self, detail: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        detail_dwconv = self.detail_dwconv(detail)
        semantic_conv = resize(self.semantic_conv(semantic), tuple(detail_dwconv.shape[-2:]), self.align_corners)
        fuse_1 = detail_dwconv * torch.sigmoid(semantic_conv)
        fuse_2 = self.detail_down(detail) * torch.sigmoid(self.semantic_dwconv(semantic))
        fuse_2 = resize(fuse_2, tuple(fuse_1.shape[-2:]), self.align_corners)
        return self.conv(fuse_1 + fuse_2)


class BiSeNetV2(nn.Module):
    """Returns [BGA output (1/8), semantic stages 1/4, 1/8, 1/16, 1/32]: decode head, then the boosters."""

    def __init__(self, *, align_corners: bool = False) -> None:
        super().__init__()
        self.detail = DetailBranch()
        self.semantic = SemanticBranch()
        self.bga = BilateralGuidedAggregation(align_corners=align_corners)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        semantic = self.semantic(x)
        return [self.bga(self.detail(x), semantic[-1]), *semantic[:-1]]


@register_architecture("bisenetv2")
def bisenetv2(*, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False) -> EncoderDecoder:
    """mmseg's `bisenetv2_fcn`: FCN head (1024 channels) on the BGA output; four auxiliary FCN heads."""
    backbone = BiSeNetV2(align_corners=align_corners)
    head = FCNHead(128, 1024, num_classes, in_index=0, num_convs=1, concat_input=False)
    aux = None
    if auxiliary_head:
        aux = AuxiliaryHeads(
            FCNHead(in_channels, channels, num_classes, in_index=i, num_convs=2, concat_input=False)
            for i, (in_channels, channels) in enumerate(((16, 16), (32, 64), (64, 256), (128, 1024)), start=1)
        )
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
