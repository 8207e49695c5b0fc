"""MobileNetV2 (Sandler et al., CVPR 2018) with mmsegmentation's state_dict layout.

mmseg's segmentation configs (`mobilenet-v2-d8_*`) dilate it to output stride 8: strides
1,2,2,1,1,1,1 and dilations 1,1,1,2,2,4,4 over its seven stages. As in mmseg's
`MobileNetV2.make_layer`, only the first block of a stage takes the stage's dilation; the others
stay undilated. ReLU6 throughout, BatchNorm eps 1e-5, no activation after the projection.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU, InvertedResidual

# per stage: expand ratio, output channels, blocks (widen_factor 1: every width already a multiple of 8)
_STAGES = ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1))
_D8 = ((1, 2, 2, 1, 1, 1, 1), (1, 1, 1, 2, 2, 4, 4))


class MobileNetV2(nn.Module):
    """Returns the outputs of stages 2, 3, 5 and 7 (mmseg's out_indices 1, 2, 4, 6): 24, 32, 96
    and 320 channels, at strides 4, 8, 8, 8 for the D8 settings."""

    OUT_STAGES = (1, 2, 4, 6)

    def __init__(self, *, strides: tuple[int, ...] = _D8[0], dilations: tuple[int, ...] = _D8[1]) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(3, 32, 3, stride=2, padding=1)
        self.conv1.activate = nn.ReLU6(inplace=True)
        in_channels = 32
        for i, ((ratio, channels, blocks), stride, dilation) in enumerate(zip(_STAGES, strides, dilations, strict=True)):
            stage = [InvertedResidual(in_channels, channels, stride=stride, expand_ratio=ratio, dilation=dilation)]
            stage += [InvertedResidual(channels, channels, stride=1, expand_ratio=ratio, dilation=1) for _ in range(blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            in_channels = channels
        self.out_channels = [_STAGES[i][1] for i in self.OUT_STAGES]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.conv1(x)
        outs = []
        for i in range(len(_STAGES)):
            x = getattr(self, f"layer{i + 1}")(x)
            if i in self.OUT_STAGES:
                outs.append(x)
        return outs
