"""Pyramid pooling modules: PSPNet's (Zhao et al., CVPR 2017; PSPNet and UPerNet), and DDRNet's
DAPPM and PIDNet's PAPPM (DDRNet and PIDNet)."""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers.conv import BNReLUConv, ConvBNReLU, resize


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


def _pooled_branch(pool: nn.Module, in_channels: int, channels: int) -> nn.Sequential:
    return nn.Sequential(pool, BNReLUConv(in_channels, channels, 1))


class DAPPM(nn.Module):
    """Deep aggregation pyramid pooling (DDRNet; PIDNet-L): the input, average-pooled with kernels
    5/9/17 (strides 2/4/8) and globally, each through pre-activation 1x1 convs; every upsampled
    scale (bilinear, align_corners False) is added to the previous one's output and refined by a
    3x3 conv; all scales concatenated and compressed, plus a 1x1 shortcut. Keys as mmseg's DAPPM."""

    def __init__(self, in_channels: int, branch_channels: int, out_channels: int, *, num_scales: int = 5) -> None:
        super().__init__()
        pools = [nn.AvgPool2d(k, stride=s, padding=s) for k, s in ((5, 2), (9, 4), (17, 8))][: num_scales - 2]
        self.scales = nn.ModuleList(
            [
                BNReLUConv(in_channels, branch_channels, 1),
                *(_pooled_branch(pool, in_channels, branch_channels) for pool in pools),
                _pooled_branch(nn.AdaptiveAvgPool2d(1), in_channels, branch_channels),
            ]
        )
        self.processes = self._make_processes(branch_channels, num_scales)
        self.compression = BNReLUConv(branch_channels * num_scales, out_channels, 1)
        self.shortcut = BNReLUConv(in_channels, out_channels, 1)

    @staticmethod
    def _make_processes(branch_channels: int, num_scales: int) -> nn.Module:
        return nn.ModuleList(BNReLUConv(branch_channels, branch_channels, 3, padding=1) for _ in range(num_scales - 1))

    def _upsampled(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return resize(self.scales[i](x), x.shape[-2:], align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [self.scales[0](x)]
        for i, process in enumerate(self.processes, start=1):
            feats.append(process(self._upsampled(i, x) + feats[-1]))
        return self.compression(torch.cat(feats, dim=1)) + self.shortcut(x)


class PAPPM(DAPPM):
    """Parallel aggregation PPM (PIDNet-S/M): every upsampled scale adds the first scale's output
    (not its neighbour's), and one grouped 3x3 conv refines them all at once."""

    @staticmethod
    def _make_processes(branch_channels: int, num_scales: int) -> nn.Module:
        width = branch_channels * (num_scales - 1)
        return BNReLUConv(width, width, 3, padding=1, groups=num_scales - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.scales[0](x)
        scaled = [self._upsampled(i, x) + first for i in range(1, len(self.scales))]
        refined = self.processes(torch.cat(scaled, dim=1))
        return self.compression(torch.cat([first, refined], dim=1)) + self.shortcut(x)
