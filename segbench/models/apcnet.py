"""APCNet (He et al., CVPR 2019): adaptive context modules (ACM) at pooling scales 1, 2, 3, 6 on a
dilated ResNet, as mmsegmentation's APCHead."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import ConvBNReLU
from segbench.models.fcn import auxiliary_fcn_head, dilated_head_channels
from segbench.models.registry import register_architecture
from segbench.models.backbones.resnet import ResNet
from segbench.models.segmentor import EncoderDecoder


class ACM(nn.Module):
    """Each pixel's affinities to the s x s pooled regions (sigmoid of a 1x1 conv on the pixel plus
    the global context) weight the regions' reduced features; a residual 1x1 conv and a fusion conv
    follow (mmseg's fusion=True)."""

    def __init__(self, pool_scale: int, in_channels: int, channels: int) -> None:
        super().__init__()
        self.pool_scale = pool_scale
        self.pooled_redu_conv = ConvBNReLU(in_channels, channels, 1)
        self.input_redu_conv = ConvBNReLU(in_channels, channels, 1)
        self.global_info = ConvBNReLU(channels, channels, 1)
        self.gla = nn.Conv2d(channels, pool_scale**2, 1)
        self.residual_conv = ConvBNReLU(channels, channels, 1)
        self.fusion_conv = ConvBNReLU(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        regions = self.pooled_redu_conv(F.adaptive_avg_pool2d(x, self.pool_scale)).flatten(2)  # (B, C, s*s)
        x = self.input_redu_conv(x)
        # mmseg resizes the 1x1 global feature (nearest) to x's size: a broadcast add
        affinity = torch.sigmoid(self.gla(x + self.global_info(F.adaptive_avg_pool2d(x, 1))))  # (B, s*s, H, W)
        context = torch.matmul(regions, affinity.flatten(2)).view_as(x)  # (B, C, H, W)
        return self.fusion_conv(F.relu(self.residual_conv(context) + x))


class APCHead(nn.Module):
    """The input concatenated with one ACM per pooling scale, then a 3x3 bottleneck."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        pool_scales: tuple[int, ...] = (1, 2, 3, 6),
        in_index: int = -1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.acm_modules = nn.ModuleList(ACM(scale, in_channels, channels) for scale in pool_scales)
        self.bottleneck = ConvBNReLU(in_channels + len(pool_scales) * channels, channels, 3, padding=1)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[self.in_index]
        out = self.bottleneck(torch.cat([x, *(acm(x) for acm in self.acm_modules)], dim=1))
        return self.conv_seg(self.dropout(out))


@register_architecture("apcnet_resnet")
def apcnet_resnet(
    *, depth: int = 50, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False
) -> EncoderDecoder:
    """APCNet on a dilated ResNet-D8: mmseg's `apcnet_r{depth}-d8`."""
    channels, aux_channels = dilated_head_channels(depth)
    backbone = ResNet(depth)
    head = APCHead(backbone.out_channels[3], channels, num_classes)
    aux = auxiliary_fcn_head(backbone, aux_channels, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
