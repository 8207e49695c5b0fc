"""Conv-BN-activation, conv-activation and resizing, with mmcv ConvModule's attribute names (`conv`, `bn`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hswish": lambda: nn.Hardswish(inplace=True),  # mmcv's HSwish
    "hsigmoid": nn.Hardsigmoid,  # mmcv's HSigmoid(bias=3, divisor=6): clamp((x + 3) / 6, 0, 1)
    "sigmoid": nn.Sigmoid,
}
"""mmcv activation names (lower case) -> module; in place where mmcv's ConvModule makes them so."""


def activation_module(name: str | None) -> nn.Module:
    """The activation `name` (see ACTIVATIONS); None is none (mmcv's act_cfg=None)."""
    return nn.Identity() if name is None else ACTIVATIONS[name]()


class ConvBNReLU(nn.Module):
    """Bias-free conv, BatchNorm, activation (ReLU unless told); keys `conv.weight`, `bn.*` as in
    mmcv's ConvModule. `eps` is the config's norm_cfg eps (mmseg's MobileNetV3 configs use 1e-3)."""

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
        activation: str | None = "relu",
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
        self.activate = activation_module(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


class ConvAct(nn.Module):
    """1x1 conv then an activation, no norm: mmcv's ConvModule without norm_cfg (key `conv.*`),
    as in squeeze-and-excitation and LR-ASPP's image pooling."""

    def __init__(self, in_channels: int, out_channels: int, *, activation: str, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
        self.activate = activation_module(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.conv(x))


def resize(x: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """Bilinear resize to (H, W); a no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
