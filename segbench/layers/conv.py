"""Conv-BN-ReLU and resizing, with mmsegmentation's attribute names (`conv`, `bn`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Module):
    """Bias-free conv, BatchNorm (eps 1e-5 unless a config says otherwise), ReLU; keys
    `conv.weight`, `bn.*` as in mmcv's ConvModule."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        relu: bool = True,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=eps)
        self.activate = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


class BNReLUConv(nn.Module):
    """Pre-activation: BatchNorm over the input, ReLU, bias-free conv; mmcv's ConvModule with
    order ('norm', 'act', 'conv'), so `bn` has the input's width (DDRNet's and PIDNet's heads and PPMs)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, padding: int = 0, groups: int = 1
    ) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.activate = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.activate(self.bn(x)))


def resize(x: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """Bilinear resize to (H, W); a no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def head_input(features: list[torch.Tensor], in_index: int | tuple[int, ...], align_corners: bool) -> torch.Tensor:
    """What a decode head reads: one level, or for a tuple of levels mmseg's 'resize_concat' (each
    resized to the first one's size, concatenated over channels), as HRNet's heads use."""
    if isinstance(in_index, int):
        return features[in_index]
    size = tuple(features[in_index[0]].shape[-2:])
    return torch.cat([resize(features[i], size, align_corners) for i in in_index], dim=1)


class ConvNoNorm(nn.Module):
    """Conv without normalization, optionally followed by ReLU: mmcv's ConvModule with norm_cfg=None
    (key `conv.*`; its bias is on unless the config turns it off)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, padding: int = 0, bias: bool = True, relu: bool = False
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
        self.activate = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.conv(x))
