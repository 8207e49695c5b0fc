"""Conv-BN(-activation) blocks with PaddleSeg 2.8's attribute names (`_conv`, `_batch_norm`).

PaddleSeg's `layers.ConvBN`/`ConvBNReLU`/`ConvBNPReLU` keep Paddle's conv default of a bias and
its default `padding='same'`: for stride 1 that is the symmetric (k-1)*d/2 of PyTorch, for a
strided conv it is TensorFlow's rule (pad so that out = ceil(in / stride), the odd pixel after),
which `same_padding` reproduces. Paddle's BatchNorm eps is 1e-5 like PyTorch's; its momentum 0.9
is PyTorch's 0.1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SAME = "same"


def same_padding(x: torch.Tensor, kernel_size: int, stride: int, dilation: int = 1) -> torch.Tensor:
    """Pad as Paddle's padding='same' does for a strided conv: out = ceil(in / stride), the
    extra pixel of an odd total on the bottom/right."""
    pads = []
    for size in reversed(x.shape[-2:]):  # F.pad wants (left, right, top, bottom)
        total = max((math.ceil(size / stride) - 1) * stride + (kernel_size - 1) * dilation + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class PaddleConv(nn.Conv2d):
    """nn.Conv2d that also accepts padding='same' with a stride (Paddle's TF-style rule)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, padding: int | str = SAME, **kwargs) -> None:
        self.strided_same = padding == SAME and kwargs.get("stride", 1) != 1
        if padding == SAME and not self.strided_same:
            padding = (kernel_size - 1) // 2 * kwargs.get("dilation", 1)
        super().__init__(in_channels, out_channels, kernel_size, padding=0 if self.strided_same else padding, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.strided_same:
            x = same_padding(x, self.kernel_size[0], self.stride[0], self.dilation[0])
        return super().forward(x)


class PaddleConvBN(nn.Module):
    """PaddleSeg's `layers.ConvBN`: conv (bias unless bias=False), BatchNorm; keys `_conv`, `_batch_norm`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, **conv_kwargs) -> None:
        super().__init__()
        self._conv = PaddleConv(in_channels, out_channels, kernel_size, **conv_kwargs)
        self._batch_norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._batch_norm(self._conv(x))


class PaddleConvBNReLU(PaddleConvBN):
    """PaddleSeg's `layers.ConvBNReLU` (its ReLU has no parameters, so no key)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(x))


class PaddlePReLU(nn.Module):
    """Paddle's nn.PReLU: its slopes are the parameter `_weight` (one, or one per channel), 0.25 at first."""

    def __init__(self, num_parameters: int = 1) -> None:
        super().__init__()
        self._weight = nn.Parameter(torch.full((num_parameters,), 0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.prelu(x, self._weight)


class PaddleActivation(nn.Module):
    """PaddleSeg's `layers.Activation("prelu")` wrapper: the PReLU under `act_func` (key `act_func._weight`)."""

    def __init__(self) -> None:
        super().__init__()
        self.act_func = PaddlePReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act_func(x)


class PaddleConvBNPReLU(PaddleConvBN):
    """PaddleSeg's `layers.ConvBNPReLU`: one PReLU slope per layer (`_prelu.act_func._weight`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, **conv_kwargs) -> None:
        super().__init__(in_channels, out_channels, kernel_size, **conv_kwargs)
        self._prelu = PaddleActivation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._prelu(super().forward(x))
