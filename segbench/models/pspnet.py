"""PSPNet (Zhao et al., CVPR 2017): pyramid pooling over the last stage of a dilated ResNet."""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU, PyramidPooling
from segbench.models.fcn import auxiliary_fcn_head, dilated_head_channels
from segbench.models.registry import register_architecture
from segbench.models.backbones.resnet import ResNet
from segbench.models.segmentor import EncoderDecoder


class PSPHead(nn.Module):
    """The input concatenated with its pooled pyramid (scales 1, 2, 3, 6), then a 3x3 bottleneck."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        pool_scales: tuple[int, ...] = (1, 2, 3, 6),
        in_index: int = -1,
        align_corners: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.psp_modules = PyramidPooling(in_channels, channels, pool_scales=pool_scales, align_corners=align_corners)
        self.bottleneck = ConvBNReLU(in_channels + len(pool_scales) * channels, channels, 3, padding=1)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[self.in_index]
        out = self.bottleneck(torch.cat([x, *self.psp_modules(x)], dim=1))
        return self.conv_seg(self.dropout(out))


@register_architecture("pspnet_resnet")
def pspnet_resnet(
    *,
    depth: int = 50,
    num_classes: int = 19,
    deep_stem: bool = True,
    output_stride: int = 8,
    multi_grid: tuple[int, ...] | None = None,
    auxiliary_head: bool = True,
    align_corners: bool = False,
) -> EncoderDecoder:
    """PSPNet on a dilated ResNet: mmseg's `pspnet_r{depth}-d8`; deep_stem=False gives `pspnet_r50b-d8`."""
    channels, aux_channels = dilated_head_channels(depth)
    backbone = ResNet(depth, deep_stem=deep_stem, output_stride=output_stride, multi_grid=multi_grid)
    head = PSPHead(backbone.out_channels[3], channels, num_classes, in_index=3, align_corners=align_corners)
    aux = auxiliary_fcn_head(backbone, aux_channels, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
