"""Depthwise-separable convolution with mmcv's `DepthwiseSeparableConvModule` layout."""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers.conv import ConvBNReLU


class DepthwiseSeparableConvBNReLU(nn.Module):
    """Depthwise KxK ConvBNReLU then pointwise 1x1 ConvBNReLU; keys `depthwise_conv.*`, `pointwise_conv.*`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        padding: int = 0,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.depthwise_conv = ConvBNReLU(
            in_channels, in_channels, kernel_size, padding=padding, dilation=dilation, groups=in_channels
        )
        self.pointwise_conv = ConvBNReLU(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))
