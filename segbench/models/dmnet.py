"""DMNet (He et al., ICCV 2019): dynamic convolutional modules (DCM) with 1, 3, 5, 7 filters on a
dilated ResNet, as mmsegmentation's DMHead."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import ConvBNReLU
from segbench.models.fcn import auxiliary_fcn_head, dilated_head_channels
from segbench.models.registry import register_architecture
from segbench.models.backbones.resnet import ResNet
from segbench.models.segmentor import EncoderDecoder


def dynamic_depthwise_conv(x: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Each sample's channels convolved with its own k x k filters (B, C, k, k), zero padding
    keeping the size (an even k pads one more on the top and left, as mmseg). One grouped conv
    over the batch folded into channels: B·C·k²·H·W multiply-adds, which FlopCounterMode counts."""
    b, c, h, w = x.shape
    k = filters.shape[-1]
    pad = (k - 1) // 2
    padding = (pad, pad, pad, pad) if k % 2 else (pad + 1, pad, pad + 1, pad)
    out = F.conv2d(F.pad(x.reshape(1, b * c, h, w), padding), filters.reshape(b * c, 1, k, k), groups=b * c)
    return out.view(b, c, h, w)


class DCM(nn.Module):
    """Filters generated from the input pooled to k x k, applied depthwise to the reduced input,
    then BN and ReLU (mmseg's fusion=False: no fusion conv)."""

    def __init__(self, filter_size: int, in_channels: int, channels: int) -> None:
        super().__init__()
        self.filter_size = filter_size
        self.filter_gen_conv = nn.Conv2d(in_channels, channels, 1)
        self.input_redu_conv = ConvBNReLU(in_channels, channels, 1)
        self.norm = nn.BatchNorm2d(channels)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        filters = self.filter_gen_conv(F.adaptive_avg_pool2d(x, self.filter_size))
        return self.activate(self.norm(dynamic_depthwise_conv(self.input_redu_conv(x), filters)))


class DMHead(nn.Module):
    """The input concatenated with one DCM per filter size, then a 3x3 bottleneck."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        filter_sizes: tuple[int, ...] = (1, 3, 5, 7),
        in_index: int = -1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.dcm_modules = nn.ModuleList(DCM(size, in_channels, channels) for size in filter_sizes)
        self.bottleneck = ConvBNReLU(in_channels + len(filter_sizes) * channels, channels, 3, padding=1)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[self.in_index]
        out = self.bottleneck(torch.cat([x, *(dcm(x) for dcm in self.dcm_modules)], dim=1))
        return self.conv_seg(self.dropout(out))


@register_architecture("dmnet_resnet")
def dmnet_resnet(
    *, depth: int = 50, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False
) -> EncoderDecoder:
    """DMNet on a dilated ResNet-D8: mmseg's `dmnet_r{depth}-d8`."""
    channels, aux_channels = dilated_head_channels(depth)
    backbone = ResNet(depth)
    head = DMHead(backbone.out_channels[3], channels, num_classes)
    aux = auxiliary_fcn_head(backbone, aux_channels, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
