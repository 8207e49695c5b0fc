"""ResNet backbones with mmsegmentation's state_dict layout.

ResNetV1c (He et al. 2019, "Bag of Tricks"): the 7x7 stem replaced by three 3x3 convs
(`deep_stem=True`); `deep_stem=False` is mmseg's type 'ResNet' (the `r50b` configs), whose keys
are also torchvision's. The stride sits on the 3x3 conv of a bottleneck ("pytorch" style).
Dilated variants keep the resolution of the last stages: output stride 8 uses strides 1,2,1,1
and dilations 1,1,2,4, output stride 16 strides 1,2,2,1 and dilations 1,1,1,2.
`contract_dilation` halves the dilation of the first block of a dilated stage; mmseg's class
defaults it to False but every ResNet config sets it True, so segbench defaults to True.
`multi_grid` (last stage only) replaces that stage's dilations outright: mmseg's `mg124` at
output stride 16 gives 1, 2, 4, not the paper's 2, 4, 8.
`dilations` replaces the output stride's dilations: FastFCN's `r50-d32` keeps D8's (1, 1, 2, 4)
at strides (1, 2, 2, 2).
"""

from __future__ import annotations

import torch
from torch import nn

_DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))}
_OUTPUT_STRIDES = {8: ((1, 2, 1, 1), (1, 1, 2, 4)), 16: ((1, 2, 2, 1), (1, 1, 1, 2)), 32: ((1, 2, 2, 2), (1, 1, 1, 1))}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, dilation: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        # mmsegmentation's BasicBlock dilates only its first conv.
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, dilation: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def block_dilations(num_blocks: int, dilation: int, contract_dilation: bool, multi_grid: tuple[int, ...] | None) -> list[int]:
    """Dilation of each block of a stage, as mmsegmentation's ResLayer places them."""
    if multi_grid is not None:
        # mmsegmentation uses the grid as the dilations themselves (mg124: 1, 2, 4).
        return list(multi_grid)
    first = dilation // 2 if contract_dilation and dilation > 1 else dilation
    return [first] + [dilation] * (num_blocks - 1)


def resnet_layer(
    block: type[BasicBlock] | type[Bottleneck],
    inplanes: int,
    planes: int,
    num_blocks: int,
    stride: int = 1,
    dilation: int = 1,
    contract_dilation: bool = False,
    multi_grid: tuple[int, ...] | None = None,
) -> nn.Sequential:
    """mmseg's ResLayer: the first block strides and takes the 1x1 conv + BN shortcut where the shape
    changes (also HRNet's stage 1 and its branches)."""
    out_planes = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out_planes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes))
    dilations = block_dilations(num_blocks, dilation, contract_dilation, multi_grid)
    blocks = [block(inplanes, planes, stride, dilations[0], downsample)]
    blocks += [block(out_planes, planes, 1, d, None) for d in dilations[1:]]
    return nn.Sequential(*blocks)


class ResNet(nn.Module):
    """Returns the four stage outputs (strides 4, 8, and 8/16/32 depending on dilation)."""

    def __init__(
        self,
        depth: int,
        *,
        deep_stem: bool = True,
        output_stride: int = 8,
        contract_dilation: bool = True,
        multi_grid: tuple[int, ...] | None = None,
        dilations: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if depth not in _DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(_DEPTHS)}, got {depth}")
        if output_stride not in _OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {sorted(_OUTPUT_STRIDES)}, got {output_stride}")
        kind, num_blocks = _DEPTHS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        strides, stride_dilations = _OUTPUT_STRIDES[output_stride]
        dilations = dilations or stride_dilations
        if deep_stem:
            self.stem = nn.Sequential(
                nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
                nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
                nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            )  # fmt: skip
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
        self.deep_stem = deep_stem
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        self.out_channels: list[int] = []
        for i, (n, s, d) in enumerate(zip(num_blocks, strides, dilations)):
            planes = 64 * 2**i
            grid = multi_grid if i == 3 else None
            self.add_module(f"layer{i + 1}", resnet_layer(block, inplanes, planes, n, s, d, contract_dilation, grid))
            inplanes = planes * block.expansion
            self.out_channels.append(inplanes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x) if self.deep_stem else self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(x)
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs
