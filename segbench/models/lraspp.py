"""LR-ASPP (Lite Reduced ASPP, Howard et al., ICCV 2019) on MobileNetV3, as mmsegmentation's
`LRASPPHead` and `configs/mobilenet_v3` build it.

The last (stride 8) features are gated by a sigmoid of their 49x49-window average (stride 16x20),
then refined twice, coarse to fine, with 1x1 projections of the two earlier feature maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import ConvBNReLU, ConvNoNorm, resize
from segbench.models.backbones.mobilenet_v3 import MobileNetV3
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder


class WindowAvgPool(nn.Module):
    """mmseg's AvgPool2d(49, stride=(16, 20)). Along a side shorter than 49 (an input under 392
    pixels), where mmseg raises, the window shrinks to that side: a global average along it."""

    kernel_size, stride = 49, (16, 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, tuple(min(self.kernel_size, n) for n in x.shape[-2:]), stride=self.stride)


class LRASPPHead(nn.Module):
    """mmseg's LRASPPHead (input_transform 'multiple_select' over three feature maps)."""

    def __init__(
        self,
        in_channels: tuple[int, int, int],
        num_classes: int,
        *,
        channels: int = 128,
        branch_channels: tuple[int, int] = (32, 64),
        align_corners: bool = False,
        eps: float = 1e-3,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.convs = nn.Sequential()
        self.conv_ups = nn.Sequential()
        for i, branch in enumerate(branch_channels):
            self.convs.add_module(f"conv{i}", nn.Conv2d(in_channels[i], branch, 1, bias=False))
            self.conv_ups.add_module(f"conv_up{i}", ConvBNReLU(channels + branch, channels, 1, eps=eps))
        self.conv_up_input = nn.Conv2d(channels, channels, 1)
        self.aspp_conv = ConvBNReLU(in_channels[-1], channels, 1, eps=eps)
        gate = ConvNoNorm(in_channels[-1], channels, 1, bias=False)
        gate.activate = nn.Sigmoid()
        self.image_pool = nn.Sequential(WindowAvgPool(), gate)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        gate = resize(self.image_pool(x), x.shape[-2:], self.align_corners)
        x = self.conv_up_input(self.aspp_conv(x) * gate)
        for i in reversed(range(len(self.convs))):
            x = resize(x, features[i].shape[-2:], self.align_corners)
            x = self.conv_ups[i](torch.cat([x, self.convs[i](features[i])], dim=1))
        return self.conv_seg(self.dropout(x))


@register_architecture("lraspp_mobilenet_v3")
def lraspp_mobilenet_v3(*, arch: str = "large", num_classes: int = 19, align_corners: bool = False) -> EncoderDecoder:
    """mmseg's `mobilenet-v3-d8_lraspp` (arch "large") and `mobilenet-v3-d8-s_lraspp` ("small"),
    with or without ImageNet pre-training (the `-scratch` configs): BatchNorm eps 1e-3, no auxiliary head."""
    backbone = MobileNetV3(arch)
    head = LRASPPHead(tuple(backbone.out_channels), num_classes, align_corners=align_corners)
    return EncoderDecoder(backbone, head, align_corners=align_corners)
