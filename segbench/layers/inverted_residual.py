"""MobileNetV2's inverted residual block (Sandler et al., CVPR 2018) with mmsegmentation's layout."""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers.conv import ConvBNReLU


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise (stride, dilation), 1x1 linear projection; keys `conv.<i>.conv/bn`.

    `activation` is the module after the expansion and depthwise convs: mmseg's InvertedResidual
    defaults to ReLU6, Fast-SCNN passes ReLU. The input is added back when stride is 1 and the
    width is unchanged.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int,
        expand_ratio: int,
        dilation: int = 1,
        activation: type[nn.Module] = nn.ReLU6,
    ) -> None:
        super().__init__()
        self.use_residual = stride == 1 and in_channels == out_channels
        hidden = int(round(in_channels * expand_ratio))
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(in_channels, hidden, 1))
        layers.append(ConvBNReLU(hidden, hidden, 3, stride=stride, padding=dilation, dilation=dilation, groups=hidden))
        layers.append(ConvBNReLU(hidden, out_channels, 1, relu=False))
        for layer in layers[:-1]:
            layer.activate = activation(inplace=True)
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)
