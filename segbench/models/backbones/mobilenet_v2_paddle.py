"""MobileNetV2 (Sandler et al., CVPR 2018) in PaddleSeg 2.8's layout (`MobileNetV2_x1_0` etc.).

Not mmseg's layout (backbones/mobilenet_v2.py): a 3x3 stride-2 stem (`conv1`), then seven groups
of inverted residual units `conv2`..`conv8` (expansion, channels, units, stride: 1-16-1-1,
6-24-2-2, 6-32-3-2, 6-64-4-2, 6-96-3-1, 6-160-3-2, 6-320-1-1), each unit a 1x1 expansion (also
with expansion 1), a 3x3 depthwise and a 1x1 linear conv, bias-free, BN and ReLU6 but after the
last; units after a group's first add their input. Outputs the features of groups 3, 4, 6 and 8
(strides 4, 8, 16, 32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BOTTLENECKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
OUT_GROUPS = (1, 2, 4, 6)  # indices into BOTTLENECKS


class ConvBNLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self._conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False)
        self._batch_norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, act: bool = True) -> torch.Tensor:
        x = self._batch_norm(self._conv(x))
        return F.relu6(x) if act else x


class InvertedResidualUnit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = int(round(in_channels * expansion))
        self._expand_conv = ConvBNLayer(in_channels, hidden, 1)
        self._bottleneck_conv = ConvBNLayer(hidden, hidden, 3, stride=stride, groups=hidden)
        self._linear_conv = ConvBNLayer(hidden, out_channels, 1)

    def forward(self, x: torch.Tensor, shortcut: bool) -> torch.Tensor:
        y = self._linear_conv(self._bottleneck_conv(self._expand_conv(x)), act=False)
        return x + y if shortcut else y


class InvresiBlocks(nn.Module):
    """One group: `_first_block` (no shortcut), then `conv<group>_<j>` for j = 2..n (with shortcut)."""

    def __init__(self, name: str, in_channels: int, expansion: int, channels: int, units: int, stride: int) -> None:
        super().__init__()
        self._first_block = InvertedResidualUnit(in_channels, channels, stride, expansion)
        self.unit_names = [f"{name}_{j}" for j in range(2, units + 1)]
        for unit_name in self.unit_names:
            setattr(self, unit_name, InvertedResidualUnit(channels, channels, 1, expansion))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._first_block(x, shortcut=False)
        for unit_name in self.unit_names:
            x = getattr(self, unit_name)(x, shortcut=True)
        return x


class MobileNetV2Paddle(nn.Module):
    def __init__(self, scale: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()
        channels = int(32 * scale)
        self.conv1 = ConvBNLayer(in_channels, channels, 3, stride=2)
        self.group_names = []
        for i, (expansion, width, units, stride) in enumerate(BOTTLENECKS, start=2):
            name = f"conv{i}"
            setattr(self, name, InvresiBlocks(name, channels, expansion, int(width * scale), units, stride))
            self.group_names.append(name)
            channels = int(width * scale)
        self.feat_channels = [int(BOTTLENECKS[i][1] * scale) for i in OUT_GROUPS]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.conv1(x)
        features = []
        for i, name in enumerate(self.group_names):
            x = getattr(self, name)(x)
            if i in OUT_GROUPS:
                features.append(x)
        return features
