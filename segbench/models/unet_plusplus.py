"""U-Net++ (Zhou et al., DLMIA 2018) in PaddleSeg 2.8's state_dict layout.

Five double-conv levels (32 to 512 channels, convs with bias, BN, ReLU) over 2x2 max-pools, and
the nested dense skip grid: node X(i, j) upsamples X(i+1, j-1) (bilinear 2x then a 1x1 conv, or
a 2x2 transposed conv with use_deconv) and double-convs it concatenated with X(i, 0..j-1). Four
1x1 classifiers on X(0, 1..4); with deep supervision (is_ds, the config's choice) the logits are
their mean, else the last one alone (the other three classifiers then do not run).
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.models.registry import register_architecture

CHANNELS = (32, 64, 128, 256, 512)


class DoubleConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UpSampling(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, n_cat: int, *, use_deconv: bool, align_corners: bool) -> None:
        super().__init__()
        if use_deconv:
            self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=align_corners), nn.Conv2d(in_channels, out_channels, 1)
            )
        self.conv = DoubleConv(n_cat * out_channels, out_channels)

    def forward(self, high: torch.Tensor, *lows: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(high), *lows], dim=1))


class UNetPlusPlus(nn.Module):
    """Logits at the input's resolution."""

    def __init__(
        self, num_classes: int, *, in_channels: int = 3, use_deconv: bool = False, align_corners: bool = False, is_ds: bool = True
    ) -> None:
        super().__init__()
        self.is_ds = is_ds
        c = CHANNELS
        self.pool = nn.MaxPool2d(2, 2)
        for level, (cin, cout) in enumerate(zip((in_channels, *c), c)):
            setattr(self, f"conv{level}_0", DoubleConv(cin, cout))
        for j in range(1, 5):  # registration order as PaddleSeg's: column by column
            for i in range(5 - j):
                node = UpSampling(c[i + 1], c[i], j + 1, use_deconv=use_deconv, align_corners=align_corners)
                setattr(self, f"up_cat{i}_{j}", node)
        for j in range(1, 5):
            setattr(self, f"out_{j}", nn.Conv2d(c[0], num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[list[torch.Tensor]] = [[] for _ in range(5)]  # nodes[i][j] = X(i, j)
        for i in range(5):
            x = getattr(self, f"conv{i}_0")(x if i == 0 else self.pool(x))
            nodes[i].append(x)
        for j in range(1, 5):
            for i in range(5 - j):
                nodes[i].append(getattr(self, f"up_cat{i}_{j}")(nodes[i + 1][j - 1], *nodes[i][:j]))
        if not self.is_ds:
            return self.out_4(nodes[0][4])
        return sum(getattr(self, f"out_{j}")(nodes[0][j]) for j in range(1, 5)) / 4


@register_architecture("unet_plusplus")
def unet_plusplus(*, num_classes: int = 19, is_ds: bool = True) -> UNetPlusPlus:
    """PaddleSeg's `unet_plusplus_cityscapes_1024x512_160k` (deep supervision on, bilinear upsampling)."""
    return UNetPlusPlus(num_classes, is_ds=is_ds)
