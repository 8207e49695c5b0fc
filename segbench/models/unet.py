"""UNet (Ronneberger et al., MICCAI 2015) as mmsegmentation 1.2.2's UNet-S5-D16 backbone, with the
three heads mmsegmentation puts on it: FCN (its Cityscapes config), PSP and ASPP (its DRIVE,
STARE, CHASE_DB1 and HRF configs).

S5-D16: five encoder stages of two 3x3 ConvBNReLU, max-pooled 2x between them (total downsampling
16), and four decoder stages, each upsampling 2x (bilinear, align_corners False, then a 1x1
ConvBNReLU), concatenating the skip and fusing with two 3x3 ConvBNReLU. The backbone returns the
bottom and every decoder output, coarse to fine; the decode head reads the last (full resolution),
the auxiliary FCN head (training only) the one at 1/2.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU
from segbench.models.deeplabv3 import ASPPHead
from segbench.models.fcn import FCNHead
from segbench.models.pspnet import PSPHead
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder


class ConvBlock(nn.Module):
    """mmseg's BasicConvBlock: two 3x3 ConvBNReLU (keys `convs.<i>.conv/bn`)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            ConvBNReLU(in_channels, out_channels, 3, padding=1), ConvBNReLU(out_channels, out_channels, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class InterpUpsample(nn.Module):
    """mmseg's InterpConv: 2x bilinear upsampling (align_corners False), then a 1x1 ConvBNReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.interp_upsample = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), ConvBNReLU(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.interp_upsample(x)


class UpConvBlock(nn.Module):
    """Upsample the coarser map to the skip's width, concatenate [skip, upsampled], fuse."""

    def __init__(self, in_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.conv_block = ConvBlock(2 * skip_channels, skip_channels)
        self.upsample = InterpUpsample(in_channels, skip_channels)

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([skip, self.upsample(x)], dim=1))


class UNet(nn.Module):
    """mmseg's UNet with its S5-D16 settings; input height and width must be multiples of 16."""

    def __init__(self, *, base_channels: int = 64, num_stages: int = 5) -> None:
        super().__init__()
        widths = [base_channels * 2**i for i in range(num_stages)]
        self.encoder = nn.ModuleList([nn.Sequential(ConvBlock(3, widths[0]))])
        self.encoder.extend(nn.Sequential(nn.MaxPool2d(2), ConvBlock(widths[i - 1], widths[i])) for i in range(1, num_stages))
        self.decoder = nn.ModuleList(UpConvBlock(widths[i + 1], widths[i]) for i in range(num_stages - 1))
        self.out_channels = widths[::-1]  # of the outputs, coarse to fine

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        outputs = [x]
        for i in reversed(range(len(self.decoder))):
            x = self.decoder[i](skips[i], x)
            outputs.append(x)
        return outputs


def _unet_segmentor(head: nn.Module, backbone: UNet, num_classes: int, auxiliary_head: bool) -> EncoderDecoder:
    """The FCN auxiliary head of mmseg's UNet configs reads the 1/2-resolution decoder output (in_index 3)."""
    aux = (
        FCNHead(backbone.out_channels[3], 64, num_classes, in_index=3, num_convs=1, concat_input=False)
        if auxiliary_head
        else None
    )
    return EncoderDecoder(backbone, head, aux, align_corners=False)


@register_architecture("fcn_unet")
def fcn_unet(*, num_classes: int = 19, auxiliary_head: bool = True) -> EncoderDecoder:
    """mmseg's `unet-s5-d16_fcn`: one 3x3 conv (64 channels, no input concat) on the full-resolution output."""
    backbone = UNet()
    head = FCNHead(backbone.out_channels[4], 64, num_classes, in_index=4, num_convs=1, concat_input=False)
    return _unet_segmentor(head, backbone, num_classes, auxiliary_head)


@register_architecture("pspnet_unet")
def pspnet_unet(*, num_classes: int = 19, auxiliary_head: bool = True) -> EncoderDecoder:
    """mmseg's `unet-s5-d16_pspnet`: pyramid pooling (scales 1, 2, 3, 6; 16 channels) on the full-resolution output."""
    backbone = UNet()
    head = PSPHead(backbone.out_channels[4], 16, num_classes, in_index=4)
    return _unet_segmentor(head, backbone, num_classes, auxiliary_head)


@register_architecture("deeplabv3_unet")
def deeplabv3_unet(*, num_classes: int = 19, auxiliary_head: bool = True) -> EncoderDecoder:
    """mmseg's `unet-s5-d16_deeplabv3`: ASPP (dilations 1, 12, 24, 36; 16 channels) on the full-resolution output."""
    backbone = UNet()
    head = ASPPHead(backbone.out_channels[4], 16, num_classes, dilations=(1, 12, 24, 36), in_index=4)
    return _unet_segmentor(head, backbone, num_classes, auxiliary_head)
