"""MobileNetV3 large and small (Howard et al., ICCV 2019) with mmsegmentation's state_dict layout.

As mmseg's `MobileNetV3` converts it for segmentation: the strides of large's layer7 and layer13
(small's layer4 and layer9) set to 1, the depthwise convs dilated by 2 from the first of those and
by 4 from the second, so the last feature map is at stride 8. Strided convs pad as mmcv's
`Conv2dAdaptivePadding` (TensorFlow's 'SAME': the odd pixel of padding goes right and bottom),
the rest symmetrically. BatchNorm eps comes from the config (1e-3 in every mmseg config).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import ConvBNReLU, ConvNoNorm

# per block: kernel, expanded width, output width, squeeze-excitation, activation, stride (before conversion)
_ARCHS = {
    "large": (
        (3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
        (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
        (3, 240, 80, False, "hswish", 2), (3, 200, 80, False, "hswish", 1), (3, 184, 80, False, "hswish", 1),
        (3, 184, 80, False, "hswish", 1), (3, 480, 112, True, "hswish", 1), (3, 672, 112, True, "hswish", 1),
        (5, 672, 160, True, "hswish", 2), (5, 960, 160, True, "hswish", 1), (5, 960, 160, True, "hswish", 1),
    ),
    "small": (
        (3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
        (5, 96, 40, True, "hswish", 2), (5, 240, 40, True, "hswish", 1), (5, 240, 40, True, "hswish", 1),
        (5, 120, 48, True, "hswish", 1), (5, 144, 48, True, "hswish", 1), (5, 288, 96, True, "hswish", 2),
        (5, 576, 96, True, "hswish", 1), (5, 576, 96, True, "hswish", 1),
    ),
}  # fmt: skip
# the layers whose stride becomes 1: from the first, dilation 2; from the second, dilation 4
_UNSTRIDED = {"large": (7, 13), "small": (4, 9)}
_LAST_CHANNELS = {"large": 960, "small": 576}
# mmseg's out_indices: the layers whose outputs the LR-ASPP head takes (strides 2, 4 or 2, 4; 8)
OUT_LAYERS = {"large": (1, 3, 16), "small": (0, 1, 12)}


def conv_bn_act(in_channels: int, out_channels: int, kernel_size: int, *, activation: str | None, eps: float, **conv) -> ConvBNReLU:
    """ConvBNReLU with the block's activation: "relu", "hswish" (mmcv's HSwish) or None (linear)."""
    layer = ConvBNReLU(in_channels, out_channels, kernel_size, relu=activation is not None, eps=eps, **conv)
    if activation == "hswish":
        layer.activate = nn.Hardswish(inplace=True)
    return layer


def make_divisible(value: float, divisor: int = 8) -> int:
    """The nearest multiple of `divisor` (at least `divisor`), never 10% below `value` (mmseg's helper)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def pad_same(x: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """Zero padding of mmcv's Conv2dAdaptivePadding (undilated): total (ceil(n/s) - 1) * s + k - n
    per side pair, the larger half after (right, bottom)."""
    pads: list[int] = []
    for n in reversed(x.shape[-2:]):  # F.pad takes the last dimension first
        total = max((math.ceil(n / stride) - 1) * stride + kernel_size - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class SqueezeExcitation(nn.Module):
    """mmseg's SELayer (ratio 4): global pool, 1x1 ReLU, 1x1 hard sigmoid, scale; keys `conv1`, `conv2`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = make_divisible(channels // 4)
        self.conv1 = ConvNoNorm(channels, squeezed, 1, relu=True)
        self.conv2 = ConvNoNorm(squeezed, channels, 1)
        self.conv2.activate = nn.Hardsigmoid()  # mmcv's HSigmoid(bias=3, divisor=6): clamp((x + 3) / 6, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv2(self.conv1(F.adaptive_avg_pool2d(x, 1)))


class InvertedResidualV3(nn.Module):
    """1x1 expand (absent when the width does not change), KxK depthwise, SE, linear 1x1 projection."""

    def __init__(
        self, in_channels: int, mid_channels: int, out_channels: int, *, kernel_size: int, stride: int, dilation: int,
        se: bool, activation: str, eps: float,
    ) -> None:  # fmt: skip
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.expand_conv = (
            conv_bn_act(in_channels, mid_channels, 1, activation=activation, eps=eps) if in_channels != mid_channels else None
        )
        padding = 0 if stride == 2 else dilation * (kernel_size // 2)  # stride 2: padded in forward
        self.depthwise_conv = conv_bn_act(
            mid_channels, mid_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
            groups=mid_channels, activation=activation, eps=eps,
        )  # fmt: skip
        self.se = SqueezeExcitation(mid_channels) if se else None
        self.linear_conv = conv_bn_act(mid_channels, out_channels, 1, activation=None, eps=eps)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand_conv is None else self.expand_conv(x)
        if self.stride == 2:
            out = pad_same(out, self.kernel_size, self.stride)
        out = self.depthwise_conv(out)
        if self.se is not None:
            out = self.se(out)
        out = self.linear_conv(out)
        return x + out if self.residual else out


class MobileNetV3(nn.Module):
    """Returns the outputs of OUT_LAYERS[arch]: (16, 24, 960) channels for large, (16, 16, 576) for small."""

    def __init__(self, arch: str = "large", *, eps: float = 1e-3) -> None:
        super().__init__()
        if arch not in _ARCHS:
            raise ValueError(f"MobileNetV3 arch must be one of {sorted(_ARCHS)}, got {arch!r}")
        self.layer0 = conv_bn_act(3, 16, 3, stride=2, activation="hswish", eps=eps)  # padded in forward
        first, second = _UNSTRIDED[arch]
        widths = [16]
        for i, (kernel, mid, out, se, activation, stride) in enumerate(_ARCHS[arch], start=1):
            # the unstrided layers change width, so mmseg's shortcut (decided before the conversion) stays off
            block = InvertedResidualV3(
                widths[-1], mid, out, kernel_size=kernel, stride=1 if i in (first, second) else stride,
                dilation=4 if i >= second else 2 if i >= first else 1, se=se, activation=activation, eps=eps,
            )  # fmt: skip
            self.add_module(f"layer{i}", block)
            widths.append(out)
        # the last layer, a 1x1 conv (mmseg's dilation 4 on it changes nothing)
        self.add_module(f"layer{len(widths)}", conv_bn_act(widths[-1], _LAST_CHANNELS[arch], 1, activation="hswish", eps=eps))
        widths.append(_LAST_CHANNELS[arch])
        self.num_layers = len(widths)
        self.out_layers = OUT_LAYERS[arch]
        self.out_channels = [widths[i] for i in self.out_layers]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.layer0(pad_same(x, 3, 2))
        outs = [x] if 0 in self.out_layers else []
        for i in range(1, self.num_layers):
            x = getattr(self, f"layer{i}")(x)
            if i in self.out_layers:
                outs.append(x)
        return outs
