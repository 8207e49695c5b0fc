"""U²-Net and U²-Netp (Qin et al., Pattern Recognition 2020) in PaddleSeg 2.8's state_dict layout.

Six residual U-blocks (RSU-7, 6, 5, 4 and two dilated RSU-4F) down, five back up, each decoder
block on the bilinear upsampling (align_corners false) of the one below concatenated with its
encoder twin; 2x2 max-pools in ceil mode. An RSU-L block is a small U-Net of height L on
conv3x3-BN-ReLU units (`REBNCONV`: conv with bias) added to its input conv; RSU-4F replaces the
pools by dilations 2, 4, 8. Six 3x3 side classifiers (one per decoder level and the bottom),
upsampled to full resolution and fused by a 1x1 conv: that fusion is the prediction
(PaddleSeg returns the six side outputs after it for its training losses; every parameter
already feeds the fusion, so here the forward returns it alone). U²-Netp is the small variant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.registry import register_architecture


def upsample_like(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=target.shape[-2:], mode="bilinear", align_corners=False)


class REBNCONV(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation)
        self.bn_s1 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn_s1(self.conv_s1(x)))


class RSU(nn.Module):
    """RSU-`height`: `rebnconv1`..`rebnconv{height-1}` down (pooled between, or with growing
    dilation when `dilated`: RSU-4F), `rebnconv{height}` dilated at the bottom, then
    `rebnconv{height-1}d`..`rebnconv1d` up."""

    def __init__(self, height: int, in_channels: int, mid_channels: int, out_channels: int, *, dilated: bool = False) -> None:
        super().__init__()
        self.height, self.dilated = height, dilated
        self.rebnconvin = REBNCONV(in_channels, out_channels)
        down_dilations = [2**i for i in range(height - 1)] if dilated else [1] * (height - 1)
        for level, dilation in enumerate(down_dilations, start=1):
            setattr(self, f"rebnconv{level}", REBNCONV(out_channels if level == 1 else mid_channels, mid_channels, dilation))
        setattr(self, f"rebnconv{height}", REBNCONV(mid_channels, mid_channels, 2 ** (height - 1) if dilated else 2))
        for level in range(height - 1, 0, -1):
            out = out_channels if level == 1 else mid_channels
            setattr(self, f"rebnconv{level}d", REBNCONV(2 * mid_channels, out, down_dilations[level - 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in = self.rebnconvin(x)
        down = [getattr(self, "rebnconv1")(x_in)]
        for level in range(2, self.height):
            previous = down[-1] if self.dilated else F.max_pool2d(down[-1], 2, 2, ceil_mode=True)
            down.append(getattr(self, f"rebnconv{level}")(previous))
        x = getattr(self, f"rebnconv{self.height}")(down[-1])
        for level in range(self.height - 1, 0, -1):
            skip = down[level - 1]
            if level < self.height - 1 and not self.dilated:
                x = upsample_like(x, skip)
            x = getattr(self, f"rebnconv{level}d")(torch.cat([x, skip], dim=1))
        return x + x_in


class U2Net(nn.Module):
    """`stages`: (height, in, mid, out) of stage1..stage6, then stage5d..stage1d; logits at the input's resolution."""

    def __init__(self, num_classes: int, stages: list[tuple[int, int, int, int]], side_channels: list[int]) -> None:
        super().__init__()
        names = [f"stage{i}" for i in range(1, 7)] + [f"stage{i}d" for i in range(5, 0, -1)]
        for name, (height, cin, mid, cout) in zip(names, stages, strict=True):
            setattr(self, name, RSU(height, cin, mid, cout, dilated=name in ("stage5", "stage6", "stage5d")))
        for i, channels in enumerate(side_channels, start=1):
            setattr(self, f"side{i}", nn.Conv2d(channels, num_classes, 3, padding=1))
        self.outconv = nn.Conv2d(6 * num_classes, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = [self.stage1(x)]
        for i in range(2, 7):
            encoded.append(getattr(self, f"stage{i}")(F.max_pool2d(encoded[-1], 2, 2, ceil_mode=True)))
        decoded = {6: encoded[5]}
        for i in range(5, 0, -1):
            up = upsample_like(decoded[i + 1], encoded[i - 1])
            decoded[i] = getattr(self, f"stage{i}d")(torch.cat([up, encoded[i - 1]], dim=1))
        sides = [self.side1(decoded[1])]
        sides += [upsample_like(getattr(self, f"side{i}")(decoded[i]), sides[0]) for i in range(2, 7)]
        return self.outconv(torch.cat(sides, dim=1))


@register_architecture("u2net")
def u2net(*, num_classes: int = 19) -> U2Net:
    """PaddleSeg's `u2net_cityscapes_1024x512_160k`."""
    stages = [
        (7, 3, 32, 64), (6, 64, 32, 128), (5, 128, 64, 256), (4, 256, 128, 512), (4, 512, 256, 512), (4, 512, 256, 512),
        (4, 1024, 256, 512), (4, 1024, 128, 256), (5, 512, 64, 128), (6, 256, 32, 64), (7, 128, 16, 64),
    ]  # fmt: skip
    return U2Net(num_classes, stages, [64, 64, 128, 256, 512, 512])


@register_architecture("u2netp")
def u2netp(*, num_classes: int = 19) -> U2Net:
    """PaddleSeg's `u2netp_cityscapes_1024x512_160k`: 16 middle and 64 outer channels throughout."""
    stages = [(7, 3, 16, 64), (6, 64, 16, 64), (5, 64, 16, 64), (4, 64, 16, 64), (4, 64, 16, 64), (4, 64, 16, 64)]
    stages += [(4, 128, 16, 64), (4, 128, 16, 64), (5, 128, 16, 64), (6, 128, 16, 64), (7, 128, 16, 64)]
    return U2Net(num_classes, stages, [64] * 6)
