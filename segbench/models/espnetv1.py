"""ESPNet (v1, Mehta et al., ECCV 2018) in PaddleSeg 2.8's state_dict layout.

Encoder (ESPNet-C): a 'same'-padded stride-2 ConvBNPReLU (16 channels; Paddle pads a strided
'same' conv bottom/right only), then two levels of an ESP downsampler and ESP blocks (64 and 128
channels; the config uses 2 and 8 blocks), the image average-pooled to each level and
concatenated in, with BN+PReLU and a 1x1 ConvBNPReLU projection to the classes at each of the
three levels. An ESP block reduces with a 1x1 conv (a 3x3 stride-2 conv in a downsampler) to
out/5 channels, runs parallel 3x3 convs dilated 1, 2, 4, 8, 16, adds them hierarchically
(d2, d2+d4, ...), concatenates, adds its input (blocks) and applies BN+PReLU (per-channel slopes).
Decoder: the stride-8 projection upsampled by a 2x2 transposed conv, concatenated with the
stride-4 one, fused by a non-residual ESP block, upsampled again (+BN+PReLU), concatenated with
the stride-2 projection, a 3x3 ConvBNPReLU, a last 2x2 transposed conv to full resolution.

PaddleSeg's out_proj takes 16 + 3 + classes input channels while its forward feeds it twice the
classes: equal for 19 classes only, so other class counts fail there as in PaddleSeg. Its
`br3` and `level2_proj` are built and saved but never run: kept frozen and marked unused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers.paddle_conv import PaddleConvBNPReLU, PaddlePReLU
from segbench.models.registry import register_architecture
from segbench.models.segmentor import mark_unused


class BNPReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.act = PaddlePReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class ESPBlock(nn.Module):
    """ESP block (`DilatedResidualBlock`), or the `DownSampler` when `downsample`: the same
    dilated pyramid after a 3x3 stride-2 reduction, BN and PReLU as separate `bn`/`act`."""

    def __init__(self, in_channels: int, out_channels: int, *, residual: bool = True, downsample: bool = False) -> None:
        super().__init__()
        self.residual = residual and not downsample
        branch = out_channels // 5
        if downsample:
            self.conv1 = nn.Conv2d(in_channels, branch, 3, stride=2, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, branch, 1, bias=False)
        self.d_conv1 = nn.Conv2d(branch, out_channels - 4 * branch, 3, padding=1, bias=False)
        for d in (2, 4, 8, 16):
            setattr(self, f"d_conv{d}", nn.Conv2d(branch, branch, 3, padding=d, dilation=d, bias=False))
        if downsample:
            self.bn = nn.BatchNorm2d(out_channels)
            self.act = PaddlePReLU(out_channels)
        else:
            self.bn = BNPReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.conv1(x)
        sums = [self.d_conv2(reduced)]
        for d in (4, 8, 16):
            sums.append(sums[-1] + getattr(self, f"d_conv{d}")(reduced))
        out = torch.cat([self.d_conv1(reduced), *sums], dim=1)
        if self.residual:
            out = out + x
        out = self.bn(out)
        return self.act(out) if hasattr(self, "act") else out


class ESPNetEncoder(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, level2_depth: int, level3_depth: int) -> None:
        super().__init__()
        self.level1 = PaddleConvBNPReLU(in_channels, 16, 3, stride=2)
        self.br1 = BNPReLU(in_channels + 16)
        self.proj1 = PaddleConvBNPReLU(in_channels + 16, num_classes, 1)
        self.level2_0 = ESPBlock(in_channels + 16, 64, downsample=True)
        self.level2 = nn.Sequential(*(ESPBlock(64, 64) for _ in range(level2_depth)))
        self.br2 = BNPReLU(in_channels + 128)
        self.proj2 = PaddleConvBNPReLU(in_channels + 128, num_classes, 1)
        self.level3_0 = ESPBlock(in_channels + 128, 128, downsample=True)
        self.level3 = nn.Sequential(*(ESPBlock(128, 128) for _ in range(level3_depth)))
        self.br3 = BNPReLU(256)
        self.proj3 = PaddleConvBNPReLU(256, num_classes, 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f1 = self.level1(image)
        feat1 = self.br1(torch.cat([f1, F.adaptive_avg_pool2d(image, f1.shape[-2:])], dim=1))
        f2_res = self.level2_0(feat1)
        f2 = self.level2(f2_res)
        feat2 = self.br2(torch.cat([f2, f2_res, F.adaptive_avg_pool2d(image, f2.shape[-2:])], dim=1))
        f3_res = self.level3_0(feat2)
        feat3 = self.br3(torch.cat([self.level3(f3_res), f3_res], dim=1))
        return self.proj1(feat1), self.proj2(feat2), self.proj3(feat3)


class ESPNetV1(nn.Module):
    """Logits at the input's resolution."""

    def __init__(self, num_classes: int, *, in_channels: int = 3, level2_depth: int = 2, level3_depth: int = 3) -> None:
        super().__init__()
        c = num_classes
        self.encoder = ESPNetEncoder(c, in_channels, level2_depth, level3_depth)
        self.level3_up = nn.ConvTranspose2d(c, c, 2, stride=2, bias=False)
        self.br3 = nn.BatchNorm2d(c)
        self.level2_proj = nn.Conv2d(in_channels + 128, c, 1, bias=False)
        self.combine_l2_l3 = nn.Sequential(BNPReLU(2 * c), ESPBlock(2 * c, c, residual=False))
        self.level2_up = nn.Sequential(nn.ConvTranspose2d(c, c, 2, stride=2, bias=False), BNPReLU(c))
        self.out_proj = PaddleConvBNPReLU(16 + in_channels + c, c, 3)
        self.out_up = nn.ConvTranspose2d(c, c, 2, stride=2, bias=False)
        mark_unused(self, ("br3.", "level2_proj."))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        p1, p2, p3 = self.encoder(image)
        combined = self.combine_l2_l3(torch.cat([self.level3_up(p3), p2], dim=1))
        combined = self.out_proj(torch.cat([self.level2_up(combined), p1], dim=1))
        return self.out_up(combined)


@register_architecture("espnetv1")
def espnetv1(*, num_classes: int = 19, level2_depth: int = 2, level3_depth: int = 8) -> ESPNetV1:
    """PaddleSeg's `espnetv1_cityscapes_1024x512_120k` (2 and 8 ESP blocks)."""
    return ESPNetV1(num_classes, level2_depth=level2_depth, level3_depth=level3_depth)
