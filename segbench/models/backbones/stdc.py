"""STDCNet (Fan et al., CVPR 2021, "Rethinking BiSeNet"): short-term dense concatenation modules.

Two 3x3/2 ConvBNReLU (1/2, 1/4), then three stages of STDC modules (1/8, 1/16, 1/32), each
starting with a strided one. An STDC module ('cat' fusion, 4 convs, as every mmseg config): a 1x1
ConvBNReLU to half the width, then 3x3 ConvBNReLU of a half, a quarter and an eighth of it (twice),
whose outputs are concatenated. A strided module puts a depthwise 3x3/2 ConvBN (no ReLU) before
the second conv and a 3x3/2 average pool on the first output. STDC1 has 2 modules per stage,
STDC2 4, 5 and 3.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU

_STAGE_STRIDES = {1: ((2, 1), (2, 1), (2, 1)), 2: ((2, 1, 1, 1), (2, 1, 1, 1, 1), (2, 1, 1))}
_CHANNELS = (32, 64, 256, 512, 1024)


class STDCModule(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, num_convs: int = 4) -> None:
        super().__init__()
        widths = [out_channels // 2] + [out_channels // 2 ** (i + 1 if i < num_convs - 1 else i) for i in range(1, num_convs)]
        self.layers = nn.ModuleList([ConvBNReLU(in_channels, widths[0], 1)])
        self.layers.extend(ConvBNReLU(widths[i - 1], widths[i], 3, padding=1) for i in range(1, num_convs))
        self.downsample = None
        if stride == 2:
            half = out_channels // 2
            self.downsample = ConvBNReLU(half, half, 3, stride=2, padding=1, groups=half, relu=False)
            self.skip = nn.AvgPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.layers[0](x)
        x = first if self.downsample is None else self.downsample(first)
        outputs = [first if self.downsample is None else self.skip(first)]
        for layer in self.layers[1:]:
            x = layer(x)
            outputs.append(x)
        return torch.cat(outputs, dim=1)


class STDCNet(nn.Module):
    """Returns the outputs at 1/8, 1/16 and 1/32 (256, 512 and 1024 channels); mmseg's key layout
    `stages.<i>`, the two plain convs first."""

    def __init__(self, variant: int) -> None:
        super().__init__()
        if variant not in _STAGE_STRIDES:
            raise ValueError(f"STDC variant must be one of {sorted(_STAGE_STRIDES)}, got {variant}")
        stages: list[nn.Module] = [
            ConvBNReLU(3, _CHANNELS[0], 3, stride=2, padding=1),
            ConvBNReLU(_CHANNELS[0], _CHANNELS[1], 3, stride=2, padding=1),
        ]
        for i, strides in enumerate(_STAGE_STRIDES[variant], start=1):
            cin, cout = _CHANNELS[i], _CHANNELS[i + 1]
            stages.append(nn.Sequential(*(STDCModule(cin if j == 0 else cout, cout, s) for j, s in enumerate(strides))))
        self.stages = nn.ModuleList(stages)
        self.out_channels = list(_CHANNELS[2:])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 2:
                outs.append(x)
        return outs
