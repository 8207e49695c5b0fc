"""FCN head (Long et al., CVPR 2015) as mmsegmentation builds it, and the FCN-ResNet segmentor."""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU
from segbench.models.registry import register_architecture
from segbench.models.resnet import ResNet
from segbench.models.segmentor import EncoderDecoder


class FCNHead(nn.Module):
    """`num_convs` 3x3 ConvBNReLU on one backbone level, optionally concatenated with its input."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        in_index: int = -1,
        num_convs: int = 2,
        concat_input: bool = True,
        dilation: int = 1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_index = in_index
        widths = [in_channels] + [channels] * num_convs
        self.convs = nn.Sequential(
            *(ConvBNReLU(cin, channels, 3, padding=dilation, dilation=dilation) for cin in widths[:-1])
        ) if num_convs else nn.Identity()  # fmt: skip
        self.conv_cat = ConvBNReLU(in_channels + channels, channels, 3, padding=1) if concat_input else None
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[self.in_index]
        out = self.convs(x)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.conv_seg(self.dropout(out))


def head_widths(depth: int) -> tuple[int, int, int, int]:
    """(last-stage channels, head channels, stage-3 channels, aux channels) as the mmseg configs set them."""
    if depth in (18, 34):
        return 512, 128, 256, 64
    return 2048, 512, 1024, 256


def auxiliary_fcn_head(depth: int, num_classes: int) -> FCNHead:
    """The auxiliary FCN head on stage 3 that mmsegmentation's ResNet configs train with."""
    _, _, in_channels, channels = head_widths(depth)
    return FCNHead(in_channels, channels, num_classes, in_index=2, num_convs=1, concat_input=False)


@register_architecture("fcn_resnet")
def fcn_resnet(
    *,
    depth: int = 50,
    num_classes: int = 19,
    deep_stem: bool = True,
    output_stride: int = 8,
    auxiliary_head: bool = True,
) -> EncoderDecoder:
    """FCN on a dilated ResNet, as mmsegmentation's `fcn_r{depth}-d8` configs."""
    last, channels, _, _ = head_widths(depth)
    backbone = ResNet(depth, deep_stem=deep_stem, output_stride=output_stride)
    head = FCNHead(last, channels, num_classes, in_index=3)
    aux = auxiliary_fcn_head(depth, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux)
