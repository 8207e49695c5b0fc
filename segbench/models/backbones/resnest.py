"""ResNeSt (Zhang et al., CVPRW 2022, "ResNeSt: Split-Attention Networks") with mmsegmentation's
state_dict layout (its `ResNeSt` backbone, a ResNetV1d).

Differences from segbench's ResNet: a 3x3 conv of a bottleneck is a split-attention conv (radix
2: two grouped 3x3 branches weighted per channel by a softmax over a pooled descriptor); a
stride-2 block strides by a 3x3 average pool after that conv (`avd_layer`) rather than in it;
shortcuts downsample by average pooling before their 1x1 conv (`avg_down`, keys `downsample.1/2`);
the deep stem is 64-64-128 wide. Dilations are placed as in the dilated ResNet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.backbones.resnet import _OUTPUT_STRIDES, block_dilations

_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}


class SplitAttentionConv(nn.Module):
    """A 3x3 conv into `radix` branches of `channels` each, summed with per-channel softmax weights."""

    def __init__(self, channels: int, *, dilation: int = 1, radix: int = 2, reduction_factor: int = 4) -> None:
        super().__init__()
        inter_channels = max(channels * radix // reduction_factor, 32)
        self.radix = radix
        self.conv = nn.Conv2d(channels, channels * radix, 3, padding=dilation, dilation=dilation, groups=radix, bias=False)
        self.bn0 = nn.BatchNorm2d(channels * radix)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Conv2d(channels, inter_channels, 1)
        self.bn1 = nn.BatchNorm2d(inter_channels)
        self.fc2 = nn.Conv2d(inter_channels, channels * radix, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn0(self.conv(x)))
        batch, _, height, width = x.shape
        splits = x.view(batch, self.radix, -1, height, width)
        descriptor = self.relu(self.bn1(self.fc1(F.adaptive_avg_pool2d(splits.sum(dim=1), 1))))
        weights = self.fc2(descriptor).view(batch, self.radix, -1, 1, 1).softmax(dim=1)
        return (weights * splits).sum(dim=1)


class SplitAttentionBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, dilation: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = SplitAttentionConv(planes, dilation=dilation)
        self.avd_layer = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else None
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.relu(self.bn1(self.conv1(x))))
        if self.avd_layer is not None:
            out = self.avd_layer(out)
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _stage(inplanes: int, planes: int, num_blocks: int, stride: int, dilation: int) -> nn.Sequential:
    out_planes = planes * SplitAttentionBottleneck.expansion
    downsample = None
    if stride != 1 or inplanes != out_planes:
        downsample = nn.Sequential(
            nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
            nn.Conv2d(inplanes, out_planes, 1, bias=False),
            nn.BatchNorm2d(out_planes),
        )
    dilations = block_dilations(num_blocks, dilation, contract_dilation=True, multi_grid=None)
    blocks = [SplitAttentionBottleneck(inplanes, planes, stride, dilations[0], downsample)]
    blocks += [SplitAttentionBottleneck(out_planes, planes, 1, d, None) for d in dilations[1:]]
    return nn.Sequential(*blocks)


class ResNeSt(nn.Module):
    """Returns the four stage outputs, as segbench's ResNet (strides 4, 8, and 8/16/32 by output stride)."""

    def __init__(self, depth: int = 101, *, output_stride: int = 8, stem_channels: int = 128) -> None:
        super().__init__()
        if depth not in _DEPTHS:
            raise ValueError(f"ResNeSt depth must be one of {sorted(_DEPTHS)}, got {depth}")
        if output_stride not in _OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {sorted(_OUTPUT_STRIDES)}, got {output_stride}")
        half = stem_channels // 2
        self.stem = nn.Sequential(
            nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, padding=1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, stem_channels, 3, padding=1, bias=False), nn.BatchNorm2d(stem_channels), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        strides, dilations = _OUTPUT_STRIDES[output_stride]
        inplanes = stem_channels
        self.out_channels: list[int] = []
        for i, (n, s, d) in enumerate(zip(_DEPTHS[depth], strides, dilations)):
            planes = 64 * 2**i
            self.add_module(f"layer{i + 1}", _stage(inplanes, planes, n, s, d))
            inplanes = planes * SplitAttentionBottleneck.expansion
            self.out_channels.append(inplanes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.stem(x))
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs
