"""mmsegmentation's own residual blocks (mmseg.models.utils BasicBlock, Bottleneck), used by the
two-branch real-time networks DDRNet and PIDNet.

Unlike the ResNet backbone's blocks, each conv is a ConvModule (keys `conv1.conv`, `conv1.bn`),
the Bottleneck expands by 2, not 4, and the closing ReLU is optional: mmseg leaves it out of the
last block of a stage (its `act_cfg_out=None`), because the networks add a fusion term first.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from segbench.layers.conv import ConvBNReLU


class BasicBlock(nn.Module):
    """3x3 ConvBNReLU, 3x3 ConvBN, plus the (downsampled) input, then ReLU if `final_relu`."""

    expansion = 1
    final_relu_by_default = True  # mmseg's BasicBlock defaults act_cfg_out to ReLU

    def __init__(
        self, in_channels: int, channels: int, *, stride: int = 1, downsample: nn.Module | None, final_relu: bool
    ) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(in_channels, channels, 3, stride=stride, padding=1)
        self.conv2 = ConvBNReLU(channels, channels, 3, padding=1, relu=False)
        self.downsample = downsample
        self.act = nn.ReLU(inplace=True) if final_relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return self.act(self.conv2(self.conv1(x)) + residual)


class Bottleneck(nn.Module):
    """1x1 ConvBNReLU, 3x3 ConvBNReLU (strided), 1x1 ConvBN to 2x width, plus the input, ReLU if `final_relu`."""

    expansion = 2
    final_relu_by_default = False  # mmseg's Bottleneck defaults act_cfg_out to None

    def __init__(
        self, in_channels: int, channels: int, *, stride: int = 1, downsample: nn.Module | None, final_relu: bool
    ) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(in_channels, channels, 1)
        self.conv2 = ConvBNReLU(channels, channels, 3, stride=stride, padding=1)
        self.conv3 = ConvBNReLU(channels, channels * self.expansion, 1, relu=False)
        self.downsample = downsample
        self.act = nn.ReLU(inplace=True) if final_relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return self.act(self.conv3(self.conv2(self.conv1(x))) + residual)


Block = type[BasicBlock] | type[Bottleneck]
Downsample = Callable[[int, int, int], nn.Module]
"""(in_channels, out_channels, stride) -> the shortcut's 1x1 conv + BN (its key layout is the family's)."""


def residual_stage(
    block: Block, in_channels: int, channels: int, num_blocks: int, *, stride: int = 1, downsample: Downsample
) -> nn.Sequential:
    """mmseg's `_make_layer` of DDRNet/PIDNet: the first block strides (and takes the shortcut conv
    when the shape changes) and keeps its class's default closing ReLU; later blocks close with
    ReLU except the last."""
    out_channels = channels * block.expansion
    shortcut = downsample(in_channels, out_channels, stride) if stride != 1 or in_channels != out_channels else None
    blocks = [block(in_channels, channels, stride=stride, downsample=shortcut, final_relu=block.final_relu_by_default)]
    blocks += [
        block(out_channels, channels, downsample=None, final_relu=i < num_blocks - 1) for i in range(1, num_blocks)
    ]
    return nn.Sequential(*blocks)
