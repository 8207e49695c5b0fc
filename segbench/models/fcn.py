"""FCN head (Long et al., CVPR 2015) as mmsegmentation builds it, and the FCN-ResNet segmentor.

The FCN head also serves as the auxiliary head on ResNet stage 3 for every dilated-ResNet
family, so the helpers for it live here.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU, head_input
from segbench.models.registry import register_architecture
from segbench.models.backbones.resnet import ResNet
from segbench.models.segmentor import EncoderDecoder


class FCNHead(nn.Module):
    """`num_convs` 3x3 ConvBNReLU on one backbone level, optionally concatenated with its input.

    `dilation` applies to the stacked convs only; the concat conv stays undilated, as in mmseg.
    A tuple `in_index` reads those levels resized to the first and concatenated (HRNet's heads,
    with `kernel_size` 1).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        in_index: int | tuple[int, ...] = -1,
        kernel_size: int = 3,
        num_convs: int = 2,
        concat_input: bool = True,
        dilation: int = 1,
        dropout: float = 0.1,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.align_corners = align_corners
        widths = [in_channels] + [channels] * num_convs
        padding = kernel_size // 2 * dilation
        self.convs = nn.Sequential(
            *(ConvBNReLU(cin, channels, kernel_size, padding=padding, dilation=dilation) for cin in widths[:-1])
        ) if num_convs else nn.Identity()  # fmt: skip
        self.conv_cat = (
            ConvBNReLU(in_channels + channels, channels, kernel_size, padding=kernel_size // 2) if concat_input else None
        )
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = head_input(features, self.in_index, self.align_corners)
        out = self.convs(x)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.conv_seg(self.dropout(out))


class ContextFCNHead(FCNHead):
    """An FCN head with a context block between its two convs: mmseg's NLHead, DNLHead, GCHead and
    CCHead (the block under its own key in each subclass, run by `context`)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, in_index: int = -1) -> None:
        super().__init__(in_channels, channels, num_classes, in_index=in_index, num_convs=2)

    def context(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[self.in_index]
        out = self.convs[1](self.context(self.convs[0](x)))
        return self.conv_seg(self.dropout(self.conv_cat(torch.cat([x, out], dim=1))))


def dilated_head_channels(depth: int) -> tuple[int, int]:
    """(decode head, auxiliary head) channels of mmseg's dilated-ResNet configs: narrower for R-18/34."""
    return (128, 64) if depth in (18, 34) else (512, 256)


def auxiliary_fcn_head(backbone: ResNet, channels: int, num_classes: int, *, dilation: int = 1) -> FCNHead:
    """The auxiliary FCN head on stage 3 that mmsegmentation's ResNet configs train with."""
    return FCNHead(
        backbone.out_channels[2], channels, num_classes, in_index=2, num_convs=1, concat_input=False, dilation=dilation
    )


@register_architecture("fcn_resnet")
def fcn_resnet(
    *,
    depth: int = 50,
    num_classes: int = 19,
    deep_stem: bool = True,
    output_stride: int = 8,
    multi_grid: tuple[int, ...] | None = None,
    head_dilation: int = 1,
    auxiliary_head: bool = True,
    align_corners: bool = False,
) -> EncoderDecoder:
    """FCN on a dilated ResNet: mmseg's `fcn_r{depth}-d8` by default, `fcn-d6_r50-d16` with
    output_stride=16 and head_dilation=6 (which mmseg applies to the auxiliary head too)."""
    channels, aux_channels = dilated_head_channels(depth)
    backbone = ResNet(depth, deep_stem=deep_stem, output_stride=output_stride, multi_grid=multi_grid)
    head = FCNHead(backbone.out_channels[3], channels, num_classes, in_index=3, dilation=head_dilation)
    aux = auxiliary_fcn_head(backbone, aux_channels, num_classes, dilation=head_dilation) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
