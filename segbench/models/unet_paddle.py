"""PaddleSeg's U-Net (Ronneberger et al., MICCAI 2015) in PaddleSeg 2.8's state_dict layout.

Not mmseg's UNet (segbench/models/unet.py): four 2x2 max-pool steps from a 64-channel double conv
(64-128-256-512-512), then four steps back, each a bilinear resize to the skip's size
(align_corners false, or a 2x2 transposed conv with use_deconv) concatenated with the skip before
a double conv, and a 3x3 classifier at full resolution. PaddleSeg binds that classifier to two
attributes (`self.cls = self.conv`), so its state_dict holds it twice (`cls.*` and `conv.*`);
kept here so its weights load as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers.paddle_conv import PaddleConvBNReLU
from segbench.models.registry import register_architecture


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(PaddleConvBNReLU(in_channels, out_channels, 3), PaddleConvBNReLU(out_channels, out_channels, 3))


class Encoder(nn.Module):
    """A double conv, then four steps of 2x2 max-pool + double conv; `widths` are the five levels'
    channels (U-Net's 64-128-256-512-512; Attention U-Net's 64 to 1024)."""

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (64, 128, 256, 512, 512)) -> None:
        super().__init__()
        self.double_conv = double_conv(in_channels, widths[0])
        self.down_sample_list = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2, 2), *double_conv(cin, cout)) for cin, cout in zip(widths, widths[1:])
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        x = self.double_conv(x)
        for down in self.down_sample_list:
            skips.append(x)
            x = down(x)
        return x, skips


class UpSampling(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, *, align_corners: bool, use_deconv: bool) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.deconv = nn.ConvTranspose2d(in_channels, out_channels // 2, 2, stride=2) if use_deconv else None
        self.double_conv = double_conv(in_channels + out_channels // 2 if use_deconv else 2 * in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.deconv is not None:
            x = self.deconv(x)
        else:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        return self.double_conv(torch.cat([x, skip], dim=1))


class Decoder(nn.Module):
    def __init__(self, *, align_corners: bool, use_deconv: bool) -> None:
        super().__init__()
        self.up_sample_list = nn.ModuleList(
            UpSampling(cin, cout, align_corners=align_corners, use_deconv=use_deconv)
            for cin, cout in ((512, 256), (256, 128), (128, 64), (64, 64))
        )

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for up, skip in zip(self.up_sample_list, reversed(skips)):
            x = up(x, skip)
        return x


class UNetPaddle(nn.Module):
    """Logits at the input's resolution."""

    def __init__(self, num_classes: int, *, align_corners: bool = False, use_deconv: bool = False, in_channels: int = 3) -> None:
        super().__init__()
        self.encode = Encoder(in_channels)
        self.decode = Decoder(align_corners=align_corners, use_deconv=use_deconv)
        self.cls = self.conv = nn.Conv2d(64, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, skips = self.encode(x)
        return self.cls(self.decode(x, skips))


@register_architecture("unet_paddleseg")
def unet_paddleseg(*, num_classes: int = 19, use_deconv: bool = False, align_corners: bool = False) -> UNetPaddle:
    """PaddleSeg's `unet_cityscapes_1024x512_160k` (use_deconv false)."""
    return UNetPaddle(num_classes, align_corners=align_corners, use_deconv=use_deconv)
