"""U-Net3+ (Huang et al., ICASSP 2020) in PaddleSeg 2.8's state_dict layout, as its Cityscapes
config builds it (no deep supervision, no classification-guided module).

Encoder: five double-conv levels (64 to 1024 channels, conv with bias, BN, ReLU) over 2x2
max-pools. Full-scale decoder: every decoder level k (4, 3, 2, 1) takes all five scales, each
brought to its resolution and to 64 channels by conv3x3-BN-ReLU: shallower encoder levels
max-pooled (ceil mode), its own encoder level as is, deeper decoder levels (and the bottom
encoder level) upsampled bilinearly (align_corners false); the 320-channel concatenation goes
through one more conv3x3-BN-ReLU. A 3x3 classifier on level 1 at full resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.registry import register_architecture

FILTERS = (64, 128, 256, 512, 1024)
CAT_CHANNELS = FILTERS[0]
UP_CHANNELS = CAT_CHANNELS * 5


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU())


class UnetConv2D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(in_channels, out_channels)
        self.conv2 = conv_bn_relu(out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class Encoder(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv1 = UnetConv2D(in_channels, FILTERS[0])
        for level in range(2, 6):
            setattr(self, f"poolconv{level}", nn.Sequential(nn.MaxPool2d(2), UnetConv2D(FILTERS[level - 2], FILTERS[level - 1])))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = [self.conv1(x)]
        for level in range(2, 6):
            levels.append(getattr(self, f"poolconv{level}")(levels[-1]))
        return levels


def source_name(source: int, level: int) -> str:
    """PaddleSeg's name of the conv bringing scale `source` (1-5) to decoder level `level`."""
    if source < level:
        return f"h{source}_PT_hd{level}_cbr"
    if source == level:
        return f"h{source}_Cat_hd{level}_cbr"
    return f"hd{source}_UT_hd{level}_cbr"


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        for level in (4, 3, 2, 1):
            for source in range(1, 6):
                channels = FILTERS[source - 1] if source <= level or source == 5 else UP_CHANNELS
                setattr(self, source_name(source, level), conv_bn_relu(channels, CAT_CHANNELS))
            setattr(self, f"cbr{level}d_1", conv_bn_relu(UP_CHANNELS, UP_CHANNELS))

    def forward(self, encoded: list[torch.Tensor]) -> torch.Tensor:
        scales = list(encoded)  # scales[s - 1]: encoder level s, replaced by decoder level s once decoded
        for level in (4, 3, 2, 1):
            parts = []
            for source in range(1, 6):
                x = scales[source - 1]
                if source < level:
                    factor = 2 ** (level - source)
                    x = F.max_pool2d(x, factor, factor, ceil_mode=True)
                elif source > level:
                    x = F.interpolate(x, scale_factor=2 ** (source - level), mode="bilinear", align_corners=False)
                parts.append(getattr(self, source_name(source, level))(x))
            scales[level - 1] = getattr(self, f"cbr{level}d_1")(torch.cat(parts, dim=1))
        return scales[0]


class UNet3Plus(nn.Module):
    """Logits at the input's resolution."""

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.encoder = Encoder(in_channels)
        self.decoder = Decoder()
        self.outconv1 = nn.Conv2d(UP_CHANNELS, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outconv1(self.decoder(self.encoder(x)))


@register_architecture("unet_3plus")
def unet_3plus(*, num_classes: int = 19) -> UNet3Plus:
    """PaddleSeg's `unet_3plus_cityscapes_1024x512_160k` (is_deepsup and is_CGM false)."""
    return UNet3Plus(num_classes)
