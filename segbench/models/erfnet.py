"""ERFNet (Romera et al., T-ITS 2018) as mmsegmentation 1.2.2 builds it, with an FCN head.

The encoder downsamples three times (stride 8), the decoder upsamples twice with transposed
convs, so the FCN head classifies at stride 2. mmseg's details kept here: the blocks build their
BatchNorm with eps 1e-3 (their own default; the backbone's norm_cfg never reaches them) while
the FCN head keeps 1e-5; convs carry biases; a downsampler concatenates its strided conv with
a 2x2 max-pool (resized bilinearly to the conv's size, align_corners false) before BN and ReLU;
a non-bottleneck block is conv3x1-ReLU-conv1x3-BN-ReLU-conv3x1(dilated)-ReLU-conv1x3(dilated)-BN-
dropout, added to its input, then ReLU.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import resize
from segbench.models.fcn import FCNHead
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder

BLOCK_BN_EPS = 1e-3


class DownsamplerBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_channels, eps=BLOCK_BN_EPS)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv(x)
        pool = resize(self.pool(x), tuple(conv.shape[-2:]), align_corners=False)
        return self.act(self.bn(torch.cat([conv, pool], dim=1)))


class NonBottleneck1d(nn.Module):
    """Two factorized 3x3 convs (3x1 then 1x3), the second pair dilated; keys `convs_layers.<i>`
    where mmseg's ModuleList interleaves its (parameter-free) ReLU and dropout modules."""

    def __init__(self, channels: int, *, drop_rate: float = 0.0, dilation: int = 1) -> None:
        super().__init__()
        self.act = nn.ReLU()
        layers: list[nn.Module] = []
        for i, d in enumerate((1, dilation)):
            layers += [
                nn.Conv2d(channels, channels, (3, 1), padding=(d, 0), dilation=(d, 1)),
                self.act,
                nn.Conv2d(channels, channels, (1, 3), padding=(0, d), dilation=(1, d)),
                nn.BatchNorm2d(channels, eps=BLOCK_BN_EPS),
                self.act if i == 0 else nn.Dropout(drop_rate),
            ]
        self.convs_layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.convs_layers:
            out = layer(out)
        return self.act(out + x)


class UpsamplerBlock(nn.Module):
    """Transposed 3x3 conv (stride 2, output padding 1: exactly twice the size), BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)
        self.bn = nn.BatchNorm2d(out_channels, eps=BLOCK_BN_EPS)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ERFNet(nn.Module):
    """mmseg's default ERFNet: 16-64-128 channels, 5 blocks at 64, 8 dilated blocks (2, 4, 8, 16
    twice) at 128, decoder 64 and 16 with two blocks each. Returns [stride-2 features]."""

    def __init__(self, *, dropout: float = 0.1) -> None:
        super().__init__()
        encoder: list[nn.Module] = [DownsamplerBlock(3, 16), DownsamplerBlock(16, 64)]
        encoder += [NonBottleneck1d(64, drop_rate=dropout) for _ in range(5)]
        encoder.append(DownsamplerBlock(64, 128))
        encoder += [NonBottleneck1d(128, drop_rate=dropout, dilation=d) for _ in range(2) for d in (2, 4, 8, 16)]
        self.encoder = nn.ModuleList(encoder)
        decoder: list[nn.Module] = [UpsamplerBlock(128, 64), NonBottleneck1d(64), NonBottleneck1d(64)]
        decoder += [UpsamplerBlock(64, 16), NonBottleneck1d(16), NonBottleneck1d(16)]
        self.decoder = nn.ModuleList(decoder)
        self.out_channels = [16]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        for block in (*self.encoder, *self.decoder):
            x = block(x)
        return [x]


@register_architecture("erfnet_fcn")
def erfnet_fcn(*, num_classes: int = 19, align_corners: bool = False) -> EncoderDecoder:
    """mmseg's `erfnet_fcn_4xb4-160k_cityscapes-512x1024`: one 3x3 conv (128) FCN head, no concat."""
    backbone = ERFNet()
    head = FCNHead(backbone.out_channels[0], 128, num_classes, num_convs=1, concat_input=False)
    return EncoderDecoder(backbone, head, align_corners=align_corners)
