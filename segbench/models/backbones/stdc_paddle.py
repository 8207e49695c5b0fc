"""PaddleSeg 2.8's STDCNet (STDC1, STDC2) in its state_dict layout, for PP-LiteSeg's `.pdparams`
weights (`paddleseg` adapter). segbench's mmseg-layout STDC (backbones/stdc.py) names the same
network differently (`stages`, `layers`), so the blocks are not shared.

Layout: `features` is one flat Sequential: two stride-2 3x3 ConvBNRelu (`conv`, `bn`), then the
Cat bottlenecks of the three stages. A strided bottleneck runs its first 1x1 conv, then a depthwise
3x3 stride-2 conv + BN (`avd_layer`) before the next conv, and pools the first conv's output for
the concat with Paddle's AvgPool2D(3, 2, 1), which leaves the padding out of the mean
(exclusive=True, count_include_pad=False in PyTorch terms).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_STAGE_BLOCKS = {1: (2, 2, 2), 2: (4, 5, 3)}


class ConvBNRelu(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class CatBottleneck(nn.Module):
    """Four convs of out/2, out/4, out/8, out/8 channels, each on the previous one's output, concatenated."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, block_num: int = 4) -> None:
        super().__init__()
        self.stride = stride
        widths = [out_channels // 2 ** (i + 1) for i in range(block_num - 1)] + [out_channels // 2 ** (block_num - 1)]
        if stride == 2:
            half = out_channels // 2
            self.avd_layer = nn.Sequential(nn.Conv2d(half, half, 3, 2, 1, groups=half, bias=False), nn.BatchNorm2d(half))
        self.conv_list = nn.ModuleList(
            ConvBNRelu(in_channels if i == 0 else widths[i - 1], widths[i], 1 if i == 0 else 3) for i in range(block_num)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.conv_list[0](x)
        out = self.avd_layer(first) if self.stride == 2 else first
        outs = []
        for conv in self.conv_list[1:]:
            out = conv(out)
            outs.append(out)
        if self.stride == 2:
            first = F.avg_pool2d(first, 3, 2, 1, count_include_pad=False)
        return torch.cat([first, *outs], dim=1)


class STDCNetPaddle(nn.Module):
    """Returns the five features at strides 2, 4, 8, 16, 32; `feat_channels` their widths."""

    def __init__(self, version: int, *, base: int = 64) -> None:
        super().__init__()
        if version not in _STAGE_BLOCKS:
            raise ValueError(f"STDC version must be one of {sorted(_STAGE_BLOCKS)}, got {version}")
        self.stage_blocks = _STAGE_BLOCKS[version]
        self.feat_channels = [base // 2, base, base * 4, base * 8, base * 16]
        features = [ConvBNRelu(3, base // 2, 3, 2), ConvBNRelu(base // 2, base, 3, 2)]
        in_channels = base
        for stage, blocks in enumerate(self.stage_blocks):
            out_channels = base * 4 * 2**stage
            for i in range(blocks):
                features.append(CatBottleneck(in_channels, out_channels, stride=2 if i == 0 else 1))
                in_channels = out_channels
        self.features = nn.Sequential(*features)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stride2 = self.features[0](x)
        x = self.features[1](stride2)
        outs = [stride2, x]
        index = 2
        for blocks in self.stage_blocks:
            for _ in range(blocks):
                x = self.features[index](x)
                index += 1
            outs.append(x)
        return outs
