"""PaddleSeg 2.8's ResNet_vd backbones (ResNet18_vd, ResNet50_vd, ResNet101_vd) in its state_dict
layout, for the PaddleSeg families whose `.pdparams` weights load through the `paddleseg` adapter.

"vd" (He et al. 2019, "Bag of Tricks"): a three-conv 3x3 stem (32, 32, 64) and, in a strided
block's projection shortcut, a 2x2 average pool (ceil mode) before a stride-1 1x1 conv. As in
PaddleSeg: the first block of every stage has a projection shortcut, even where the width does not
change; the stride sits on the 3x3 conv (bottleneck: the middle one); output stride 8 dilates
stages 3 and 4 by 2 and 4 (16: stage 4 by 2) and leaves them unstrided, every block alike, with
`multi_grid` multiplying stage 4's dilations. Keys: `conv1_1`..`conv1_3`, `bb_<stage>_<block>`
with `conv0`..`conv2` and `short`, each `_conv` + `_batch_norm`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.backbones.mobilenet_v3 import pad_same

_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
_DILATIONS = {8: {2: 2, 3: 4}, 16: {3: 2}, 32: {}}
_WIDTHS = (64, 128, 256, 512)


class ConvBN(nn.Module):
    """PaddleSeg's ConvBNLayer of ResNet_vd (and its layers.ConvBNReLU at stride 1): conv, BatchNorm
    (Paddle's eps 1e-5), optional ReLU, with `avg_pool_first` the vd shortcut's 2x2 average pool.
    A 3x3 conv pads by its dilation, as 'same' padding does at stride 1. `same_padding`: Paddle's
    padding='same' at stride 2 as well (HRNet), which pads the larger half after, as TF does."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        relu: bool = False,
        bias: bool = False,
        groups: int = 1,
        avg_pool_first: bool = False,
        same_padding: bool = False,
    ) -> None:
        super().__init__()
        self.avg_pool_first = avg_pool_first
        self.pad_same = same_padding and stride > 1
        padding = 0 if self.pad_same else (kernel_size - 1) // 2 * dilation
        self._conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=bias)
        self._batch_norm = nn.BatchNorm2d(out_channels)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.avg_pool_first:
            x = F.avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=False)
        if self.pad_same:
            x = pad_same(x, self._conv.kernel_size[0], self._conv.stride[0])
        x = self._batch_norm(self._conv(x))
        return F.relu(x) if self.relu else x


class BasicBlockVd(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, width: int, *, stride: int, dilation: int, shortcut: bool, vd_pool: bool) -> None:
        super().__init__()
        self.conv0 = ConvBN(in_channels, width, 3, stride=stride, dilation=dilation, relu=True)
        self.conv1 = ConvBN(width, width, 3, dilation=dilation)
        if not shortcut:
            self.short = ConvBN(in_channels, width, 1, avg_pool_first=vd_pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.short(x) if hasattr(self, "short") else x
        return F.relu(self.conv1(self.conv0(x)) + identity)


class BottleneckVd(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, *, stride: int, dilation: int, shortcut: bool, vd_pool: bool) -> None:
        super().__init__()
        self.conv0 = ConvBN(in_channels, width, 1, relu=True)
        self.conv1 = ConvBN(width, width, 3, stride=stride, dilation=dilation, relu=True)
        self.conv2 = ConvBN(width, width * 4, 1)
        if not shortcut:
            self.short = ConvBN(in_channels, width * 4, 1, avg_pool_first=vd_pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.short(x) if hasattr(self, "short") else x
        return F.relu(self.conv2(self.conv1(self.conv0(x))) + identity)


class ResNetVd(nn.Module):
    """Returns the four stage outputs; `out_channels` lists their widths (PaddleSeg's feat_channels)."""

    def __init__(self, depth: int, *, output_stride: int = 8, multi_grid: tuple[int, ...] = (1, 1, 1)) -> None:
        super().__init__()
        if depth not in _DEPTHS:
            raise ValueError(f"ResNet_vd depth must be one of {sorted(_DEPTHS)}, got {depth}")
        if output_stride not in _DILATIONS:
            raise ValueError(f"output_stride must be one of {sorted(_DILATIONS)}, got {output_stride}")
        block = BottleneckVd if depth >= 50 else BasicBlockVd
        self.conv1_1 = ConvBN(3, 32, 3, stride=2, relu=True)
        self.conv1_2 = ConvBN(32, 32, 3, relu=True)
        self.conv1_3 = ConvBN(32, 64, 3, relu=True)
        self.stage_names: list[list[str]] = []
        self.out_channels: list[int] = []
        in_channels = 64
        for stage, (blocks, width) in enumerate(zip(_DEPTHS[depth], _WIDTHS)):
            names = []
            for i in range(blocks):
                dilation = _DILATIONS[output_stride].get(stage, 1) * (multi_grid[i] if stage == 3 else 1)
                stride = 2 if i == 0 and stage != 0 and dilation == 1 else 1
                name = f"bb_{stage}_{i}"
                self.add_module(
                    name,
                    block(in_channels, width, stride=stride, dilation=dilation, shortcut=i > 0, vd_pool=stride == 2),
                )
                names.append(name)
                in_channels = width * block.expansion
            self.stage_names.append(names)
            self.out_channels.append(in_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_with_stem(x)[1]

    def forward_with_stem(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(the stem's output before its max pool, which GSCNN's shape stream reads; the four stages)."""
        stem = self.conv1_3(self.conv1_2(self.conv1_1(x)))
        x = F.max_pool2d(stem, 3, 2, 1)
        outs = []
        for names in self.stage_names:
            for name in names:
                x = getattr(self, name)(x)
            outs.append(x)
        return stem, outs
