"""Depthwise-separable convolution with mmcv's `DepthwiseSeparableConvModule` layout."""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers.conv import ConvBNReLU


class DepthwiseSeparableConvBNReLU(nn.Module):
    """Depthwise KxK ConvBNReLU then pointwise 1x1 ConvBNReLU; keys `depthwise_conv.*`, `pointwise_conv.*`.

    `depthwise_relu=False` is mmcv's `dw_act_cfg=None` (Fast-SCNN): no ReLU after the depthwise conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        depthwise_relu: bool = True,
    ) -> None:
        super().__init__()
        self.depthwise_conv = ConvBNReLU(
            in_channels,
            in_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=in_channels,
            relu=depthwise_relu,
        )
        self.pointwise_conv = ConvBNReLU(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))
