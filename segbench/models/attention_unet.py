"""Attention U-Net (Oktay et al., MIDL 2018) in PaddleSeg 2.8's state_dict layout.

PaddleSeg's U-Net encoder (unet_paddle.Encoder: double convs, 64 to 1024 channels over four max-pools);
each decoder step upsamples 2x (bilinear, align_corners false) then conv3x3-BN-ReLU (`upN.up`),
gates the skip with an attention block (1x1 conv+BN on gate and skip, ReLU, 1x1 conv+BN to one
channel, sigmoid, times the skip), concatenates gated skip and upsampled features and runs a
double conv (convs with bias). A 1x1 classifier at full resolution.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.models.registry import register_architecture
from segbench.models.unet_paddle import Encoder

FILTERS = (64, 128, 256, 512, 1024)


def conv_bn(in_channels: int, out_channels: int, kernel_size: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2), nn.BatchNorm2d(out_channels)]


class AttentionBlock(nn.Module):
    def __init__(self, gate_channels: int, skip_channels: int, mid_channels: int) -> None:
        super().__init__()
        self.W_g = nn.Sequential(*conv_bn(gate_channels, mid_channels, 1))
        self.W_x = nn.Sequential(*conv_bn(skip_channels, mid_channels, 1))
        self.psi = nn.Sequential(*conv_bn(mid_channels, 1, 1), nn.Sigmoid())

    def forward(self, gate: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return skip * self.psi(torch.relu(self.W_g(gate) + self.W_x(skip)))


class UpConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), *conv_bn(in_channels, out_channels, 3), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(*conv_bn(in_channels, out_channels, 3), nn.ReLU(), *conv_bn(out_channels, out_channels, 3), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class AttentionUNet(nn.Module):
    """Logits at the input's resolution."""

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        f = FILTERS
        self.encoder = Encoder(in_channels, FILTERS)
        for level, mid in ((5, f[2]), (4, f[1]), (3, f[0]), (2, f[0] // 2)):
            channels = f[level - 2]
            setattr(self, f"up{level}", UpConv(f[level - 1], channels))
            setattr(self, f"att{level}", AttentionBlock(channels, channels, mid))
            setattr(self, f"up_conv{level}", ConvBlock(f[level - 1], channels))
        self.conv_1x1 = nn.Conv2d(f[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d, skips = self.encoder(x)
        for level, skip in zip((5, 4, 3, 2), reversed(skips)):
            d = getattr(self, f"up{level}")(d)
            gated = getattr(self, f"att{level}")(d, skip)
            d = getattr(self, f"up_conv{level}")(torch.cat([gated, d], dim=1))
        return self.conv_1x1(d)


@register_architecture("attention_unet")
def attention_unet(*, num_classes: int = 19) -> AttentionUNet:
    """PaddleSeg's `attention_unet_cityscapes_1024x512_80k`."""
    return AttentionUNet(num_classes)
