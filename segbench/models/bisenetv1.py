"""BiSeNetV1 (Yu et al., ECCV 2018): a shallow spatial path at 1/8 fused with a ResNet context path.

mmsegmentation's configs put its type 'ResNet' (the 7x7 stem, not ResNetV1c) in the context path,
undilated (output stride 32), with and without ImageNet pre-training alike; the `in1k-pre` configs
load ResNetV1c weights into it, which changes training only. The context path upsamples with
'nearest'. The FCN decode head reads the fused 1/8 map; two auxiliary FCN heads read the context
path's 1/8 and 1/16 maps (training only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import ConvBNReLU
from segbench.models.backbones.resnet import ResNet
from segbench.models.fcn import FCNHead
from segbench.models.registry import register_architecture
from segbench.models.segmentor import AuxiliaryHeads, EncoderDecoder


def _upsample_nearest(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


class SpatialPath(nn.Module):
    """7x7/2, 3x3/2, 3x3/2 and 1x1 ConvBNReLU: 1/8 of the input, `channels[3]` wide."""

    def __init__(self, channels: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.layer1 = ConvBNReLU(3, channels[0], 7, stride=2, padding=3)
        self.layer2 = ConvBNReLU(channels[0], channels[1], 3, stride=2, padding=1)
        self.layer3 = ConvBNReLU(channels[1], channels[2], 3, stride=2, padding=1)
        self.layer4 = ConvBNReLU(channels[2], channels[3], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class AttentionRefinement(nn.Module):
    """3x3 ConvBNReLU, then a channel gate: global pool, 1x1 ConvBN (no ReLU), sigmoid.
    Shared with STDC's context path, whose mmseg code imports BiSeNetV1's."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_layer = ConvBNReLU(in_channels, out_channels, 3, padding=1)
        self.atten_conv_layer = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), ConvBNReLU(out_channels, out_channels, 1, relu=False), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_layer(x)
        return x * self.atten_conv_layer(x)


class ContextPath(nn.Module):
    """ResNet stages 3 and 4 refined, plus global context, upsampled (nearest) to 1/16 and 1/8."""

    def __init__(self, backbone: ResNet, channels: tuple[int, int, int]) -> None:
        super().__init__()
        self.backbone = backbone
        self.arm16 = AttentionRefinement(channels[1], channels[0])
        self.arm32 = AttentionRefinement(channels[2], channels[0])
        self.conv_head32 = ConvBNReLU(channels[0], channels[0], 3, padding=1)
        self.conv_head16 = ConvBNReLU(channels[0], channels[0], 3, padding=1)
        self.gap_conv = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNReLU(channels[2], channels[0], 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(context at 1/8, context at 1/16)."""
        _, x8, x16, x32 = self.backbone(x)
        up32 = self.conv_head32(_upsample_nearest(self.arm32(x32) + self.gap_conv(x32), x16))
        up16 = self.conv_head16(_upsample_nearest(self.arm16(x16) + up32, x8))
        return up16, up32


class FeatureFusion(nn.Module):
    """Concatenate, 1x1 ConvBNReLU, then add a channel-gated copy (pool, 1x1 ConvBNReLU, sigmoid)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(in_channels, out_channels, 1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.conv_atten = nn.Sequential(ConvBNReLU(out_channels, out_channels, 1), nn.Sigmoid())

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        fused = self.conv1(torch.cat([spatial, context], dim=1))
        return fused * self.conv_atten(self.gap(fused)) + fused


class BiSeNetV1(nn.Module):
    """Returns (fused 1/8 map, context 1/8, context 1/16): decode head, then the auxiliary heads' inputs."""

    def __init__(
        self, resnet: ResNet, *, context_channels: tuple[int, int, int], spatial_channels: tuple[int, int, int, int], out_channels: int
    ) -> None:
        super().__init__()
        self.context_path = ContextPath(resnet, context_channels)
        self.spatial_path = SpatialPath(spatial_channels)
        self.ffm = FeatureFusion(context_channels[1], out_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        context8, context16 = self.context_path(x)
        return [self.ffm(self.spatial_path(x), context8), context8, context16]


# depth -> (context channels, spatial channels, fused channels, auxiliary head channels), as mmseg's configs
_WIDTHS = {18: ((128, 256, 512), (64, 64, 64, 128), 256, 64), 50: ((512, 1024, 2048), (256, 256, 256, 512), 1024, 256)}


@register_architecture("bisenetv1_resnet")
def bisenetv1_resnet(
    *,
    depth: int = 18,
    num_classes: int = 19,
    deep_stem: bool = False,
    auxiliary_head: bool = True,
    align_corners: bool = False,
) -> EncoderDecoder:
    """mmseg's `bisenetv1_r{18,50}-d32`; `deep_stem=True` puts a ResNetV1c stem in the context path
    (not mmseg's layout: for checkpoints trained that way)."""
    if depth not in _WIDTHS:
        raise ValueError(f"BiSeNetV1 depth must be one of {sorted(_WIDTHS)}, got {depth}")
    context, spatial, fused, aux_channels = _WIDTHS[depth]
    backbone = BiSeNetV1(
        ResNet(depth, deep_stem=deep_stem, output_stride=32), context_channels=context, spatial_channels=spatial, out_channels=fused
    )
    head = FCNHead(fused, fused, num_classes, in_index=0, num_convs=1, concat_input=False)
    aux = None
    if auxiliary_head:
        aux = AuxiliaryHeads(
            FCNHead(context[0], aux_channels, num_classes, in_index=i, num_convs=1, concat_input=False) for i in (1, 2)
        )
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
