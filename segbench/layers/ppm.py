"""Pyramid pooling module (Zhao et al., PSPNet, CVPR 2017), shared by PSPNet and UPerNet."""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers.conv import ConvBNReLU, resize


class PyramidPooling(nn.ModuleList):
    """Average-pool to each scale, 1x1 ConvBNReLU, upsample back; keys `<i>.1.conv/bn` as mmseg's PPM.

    A ModuleList (not a wrapper) so that the head's `psp_modules.<i>` keys carry no extra level.
    """

    def __init__(
        self, in_channels: int, channels: int, *, pool_scales: tuple[int, ...], align_corners: bool
    ) -> None:
        super().__init__(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), ConvBNReLU(in_channels, channels, 1)) for scale in pool_scales
        )
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [resize(branch(x), x.shape[-2:], self.align_corners) for branch in self]
