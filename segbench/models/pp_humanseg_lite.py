"""PP-HumanSeg-Lite (PaddleSeg's own ultra-light portrait model) in PaddleSeg 2.8's state_dict layout.

A strided conv (36 channels, 1/2) with a 1x1 shortcut branch (18 channels), a 3x3 max-pool, then
ShuffleNetV2-style blocks: 4 at 72 channels (1/8) and 8 at 144 (1/16). A block splits its input
in halves (stride 1) or feeds it whole to two branches (stride 2), runs 1x1 conv-BN-ReLU then a
depthwise-separable conv on one, and channel-shuffles the concatenation. Decoder: a separable
conv to 64, bilinear resize to the shortcut (align_corners false), concatenation (82 channels),
two separable convs, the last to the classes, and a resize to the input. Convs are bias-free;
the separable convs' depthwise half has no ReLU.

PaddleSeg builds every stride-1 block with a `_depthwise_separable_0` that only stride-2 blocks
run: its checkpoints carry those weights, so they are here, frozen and marked unused (left out
of the inference parameter count, as PaddleSeg's Params count leaves them out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers.paddle_conv import PaddleConvBN, PaddleConvBNReLU
from segbench.models.registry import register_architecture
from segbench.models.segmentor import mark_unused


class SeparableConvBNReLU(nn.Module):
    """Depthwise 3x3 conv-BN (stride `stride`), pointwise 1x1 conv-BN-ReLU (PaddleSeg spells it `piontwise_conv`)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise_conv = PaddleConvBN(in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels, bias=False)
        self.piontwise_conv = PaddleConvBNReLU(in_channels, out_channels, 1, padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.piontwise_conv(self.depthwise_conv(x))


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, stride: int, out_channels: int | None = None) -> None:
        super().__init__()
        self.stride = stride
        branch_channels = in_channels // 2 if stride == 1 else in_channels
        half = out_channels // 2 if out_channels is not None else branch_channels
        self._depthwise_separable_0 = SeparableConvBNReLU(in_channels, half, stride)  # run by stride-2 blocks only
        self._conv = PaddleConvBNReLU(branch_channels, half, 1, padding=0, bias=False)
        self._depthwise_separable_1 = SeparableConvBNReLU(half, half, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            shortcut, branch = x.chunk(2, dim=1)
        else:
            shortcut, branch = self._depthwise_separable_0(x), x
        return channel_shuffle(torch.cat([shortcut, self._depthwise_separable_1(self._conv(branch))], dim=1))


class PPHumanSegLite(nn.Module):
    """Logits at the input's resolution."""

    def __init__(self, num_classes: int, *, in_channels: int = 3, align_corners: bool = False) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.conv_bn0 = PaddleConvBNReLU(in_channels, 36, 3, stride=2, padding=1, bias=False)
        self.conv_bn1 = PaddleConvBNReLU(36, 18, 1, padding=0, bias=False)
        self.block1 = nn.Sequential(InvertedResidual(36, 2, 72), *(InvertedResidual(72, 1) for _ in range(3)))
        self.block2 = nn.Sequential(InvertedResidual(72, 2), *(InvertedResidual(144, 1) for _ in range(7)))
        self.depthwise_separable0 = SeparableConvBNReLU(144, 64)
        self.depthwise_separable1 = SeparableConvBNReLU(82, 64)
        self.depthwise_separable2 = SeparableConvBNReLU(64, num_classes)
        unused = (f"{name}._depthwise_separable_0." for name, block in self.named_modules() if getattr(block, "stride", None) == 1)
        mark_unused(self, tuple(unused))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.conv_bn0(image)
        shortcut = self.conv_bn1(x)
        x = self.block2(self.block1(F.max_pool2d(x, 3, 2, 1)))
        x = self.depthwise_separable0(x)
        x = F.interpolate(x, size=shortcut.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        logits = self.depthwise_separable2(self.depthwise_separable1(torch.cat([shortcut, x], dim=1)))
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=self.align_corners)


@register_architecture("pp_humanseg_lite")
def pp_humanseg_lite(*, num_classes: int = 2, align_corners: bool = False) -> PPHumanSegLite:
    """PaddleSeg's `pp_humanseg_lite_mini_supervisely` (2 classes: background, person)."""
    return PPHumanSegLite(num_classes, align_corners=align_corners)
