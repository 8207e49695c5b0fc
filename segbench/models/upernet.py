"""UPerNet (Xiao et al., ECCV 2018) as mmsegmentation's `UPerHead`: pyramid pooling on the last
stage, an FPN-style top-down path over all four stages, and a fused 3x3 bottleneck."""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU, PyramidPooling, resize
from segbench.models.fcn import auxiliary_fcn_head
from segbench.models.registry import register_architecture
from segbench.models.backbones.resnet import ResNet
from segbench.models.segmentor import EncoderDecoder


class UPerHead(nn.Module):
    """Top of the pyramid = PSP bottleneck of the last stage; laterals for the others; output at stride 4."""

    def __init__(
        self,
        in_channels: tuple[int, ...],
        channels: int,
        num_classes: int,
        *,
        pool_scales: tuple[int, ...] = (1, 2, 3, 6),
        align_corners: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        top = in_channels[-1]
        self.psp_modules = PyramidPooling(top, channels, pool_scales=pool_scales, align_corners=align_corners)
        self.bottleneck = ConvBNReLU(top + len(pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, 3, padding=1) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvBNReLU(len(in_channels) * channels, channels, 3, padding=1)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        top = features[-1]
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, features)]
        laterals.append(self.bottleneck(torch.cat([top, *self.psp_modules(top)], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):  # top-down: add each level upsampled into the one below
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[-2:], self.align_corners)
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)] + [laterals[-1]]
        size = outs[0].shape[-2:]
        fused = self.fpn_bottleneck(torch.cat([resize(x, size, self.align_corners) for x in outs], dim=1))
        return self.conv_seg(self.dropout(fused))


@register_architecture("upernet_resnet")
def upernet_resnet(
    *,
    depth: int = 50,
    num_classes: int = 19,
    deep_stem: bool = True,
    output_stride: int = 32,
    auxiliary_head: bool = True,
    align_corners: bool = False,
) -> EncoderDecoder:
    """UPerNet on a ResNet, undilated (output stride 32) as mmseg's `upernet_r{depth}` configs.

    output_stride=8 or 16 dilates the last stages as the dilated families do (the D8/D16 UPerNets
    of sssegmentation, in mmseg's layout); the head then sees several levels at the same stride.
    Unlike the dilated families, the head widths stay 512 (decode) and 256 (auxiliary) for R-18.
    """
    backbone = ResNet(depth, deep_stem=deep_stem, output_stride=output_stride)
    head = UPerHead(tuple(backbone.out_channels), 512, num_classes, align_corners=align_corners)
    aux = auxiliary_fcn_head(backbone, 256, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
