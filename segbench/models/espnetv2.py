"""ESPNetV2 (Mehta et al., CVPR 2019) in PaddleSeg 2.8's state_dict layout.

Backbone (EESPNet): a 'same'-padded stride-2 ConvBNPReLU, then three downsamplers (each the
concatenation of a 3x3 average pool and a strided EESP unit, plus a shortcut from the image
average-pooled to that size through conv3x3-BN-PReLU and conv1x1-BN, then PReLU), with 3 and 7
EESP units after the second and third. An EESP unit: grouped 1x1 ConvBNPReLU to out/4 channels,
four depthwise 3x3 convs dilated by its kernel-size table (hierarchically added), BN+PReLU,
grouped 1x1 ConvBN, a residual when the shapes agree, PReLU (a strided unit returns before
that PReLU, whose slope PaddleSeg still saves: kept frozen and marked unused).
Head: the stride-16 level projected and upsampled into the stride-8 one, an EESP unit and a
pyramid module (four successive 3x3 stride-2 'same' average pools, each through a depthwise
conv and upsampled back), projections to the classes merged up through strides 4 and 2, and a
final 2x upsampling; every upsampling is bilinear with align_corners true.

Paddle details kept: average pools exclude padding (Paddle's `exclusive=True`); a strided
'same' conv or pool pads the odd pixel at the bottom/right; with scale 2.0 PaddleSeg caps the
first level at 32 channels but doubles the uncapped 64 for the rest (32, 128, 256, 512).
In training PaddleSeg also returns the stride-8 logits upsampled for a second loss; they feed
the main output too, so the forward returns the main logits alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers.paddle_conv import PaddleActivation, PaddleConv, PaddleConvBN, PaddleConvBNPReLU, PaddlePReLU, same_padding
from segbench.models.registry import register_architecture
from segbench.models.segmentor import mark_unused

DILATION_OF_KERNEL = {3: 1, 5: 2, 7: 3, 9: 4, 11: 5, 13: 6, 15: 7, 17: 8}


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


def same_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """Paddle's avg_pool2d(kernel 3, stride 2, padding='same'), padding excluded from each mean."""
    sums = F.avg_pool2d(same_padding(x, 3, 2), 3, 2, divisor_override=1)
    counts = F.avg_pool2d(same_padding(torch.ones_like(x[:1, :1]), 3, 2), 3, 2, divisor_override=1)
    return sums / counts


class BNPReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self._batch_norm = nn.BatchNorm2d(channels)
        self._prelu = PaddleActivation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._prelu(self._batch_norm(x))


class EESP(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int = 1, branches: int = 4, kernel_size_maximum: int = 7,
        downsample_unit: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        self.returns_before_act = stride == 2 and downsample_unit  # PaddleSeg's down_method='avg'
        self.residual = stride == 1 and in_channels == out_channels
        branch = out_channels // branches
        self.group_conv_in = PaddleConvBNPReLU(in_channels, branch, 1, groups=branches, bias=False)
        kernel_sizes = sorted(k if k <= kernel_size_maximum else 3 for k in (3 + 2 * i for i in range(branches)))
        self.spp_modules = nn.ModuleList(
            PaddleConv(branch, branch, 3, stride=stride, dilation=DILATION_OF_KERNEL[k], groups=branch, bias=False) for k in kernel_sizes
        )
        self.group_conv_out = PaddleConvBN(out_channels, out_channels, 1, groups=branches, bias=False)
        self.bn_act = BNPReLU(out_channels)
        self._act = PaddlePReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.group_conv_in(x)
        sums = [self.spp_modules[0](reduced)]
        for conv in self.spp_modules[1:]:
            sums.append(conv(reduced) + sums[-1])
        merged = self.group_conv_out(self.bn_act(torch.cat(sums, dim=1)))
        if self.returns_before_act:
            return merged
        return self._act(merged + x if self.residual else merged)


class PSPModule(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, sizes: int = 4) -> None:
        super().__init__()
        self.stages = nn.ModuleList(PaddleConv(in_channels, in_channels, 3, groups=in_channels, bias=False) for _ in range(sizes))
        self.project = PaddleConvBNPReLU(in_channels * (sizes + 1), out_channels, 1, bias=False)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        size = feats.shape[-2:]
        out = [feats]
        for stage in self.stages:
            feats = same_avg_pool(feats)
            out.append(F.interpolate(stage(feats), size=size, mode="bilinear", align_corners=True))
        return self.project(torch.cat(out, dim=1))


class DownSampler(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, *, branches: int, kernel_size_maximum: int) -> None:
        super().__init__()
        self.eesp = EESP(
            in_channels, out_channels - in_channels, stride=2, branches=branches, kernel_size_maximum=kernel_size_maximum,
            downsample_unit=True,
        )  # fmt: skip
        self.avg = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.shortcut_layer = nn.Sequential(PaddleConvBNPReLU(3, 3, 3, bias=False), PaddleConvBN(3, out_channels, 1, bias=False))
        self._act = PaddlePReLU()

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        pooled = self.avg(x)
        output = torch.cat([pooled, self.eesp(x)], dim=1)
        while image.shape[2] != pooled.shape[2]:
            image = self.avg(image)
        return self._act(output + self.shortcut_layer(image))


class EESPNetBackbone(nn.Module):
    def __init__(self, in_channels: int = 3, scale: float = 1.0) -> None:
        super().__init__()
        base = 32
        first = math.ceil(int(base * scale) / 4) * 4
        channels = [min(first, base)] + [first * 2**i for i in range(1, 4)]  # PaddleSeg's rule, cap on the first only
        self.level1 = PaddleConvBNPReLU(in_channels, channels[0], 3, stride=2, bias=False)
        self.level2 = DownSampler(channels[0], channels[1], branches=4, kernel_size_maximum=13)
        self.level3_0 = DownSampler(channels[1], channels[2], branches=4, kernel_size_maximum=11)
        self.level3 = nn.ModuleList(EESP(channels[2], channels[2], kernel_size_maximum=9) for _ in range(3))
        self.level4_0 = DownSampler(channels[2], channels[3], branches=4, kernel_size_maximum=9)
        self.level4 = nn.ModuleList(EESP(channels[3], channels[3], kernel_size_maximum=7) for _ in range(7))
        self.out_channels = channels

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        l1 = self.level1(image)
        l2 = self.level2(l1, image)
        l3 = self.level3_0(l2, image)
        for unit in self.level3:
            l3 = unit(l3)
        l4 = self.level4_0(l3, image)
        for unit in self.level4:
            l4 = unit(l4)
        return [l1, l2, l3, l4]


class ESPNetV2(nn.Module):
    """Logits at the input's resolution (for inputs divisible by 16)."""

    def __init__(self, num_classes: int, *, in_channels: int = 3, scale: float = 1.0, drop_prob: float = 0.1) -> None:
        super().__init__()
        self.backbone = EESPNetBackbone(in_channels, scale)
        c = self.backbone.out_channels
        self.proj_l4_c = PaddleConvBNPReLU(c[3], c[2], 1, bias=False)
        psp = 2 * c[2]
        self.eesp_psp = nn.Sequential(EESP(psp, psp // 2, kernel_size_maximum=7), PSPModule(psp // 2, psp // 2))
        self.project_l3 = nn.Sequential(nn.Dropout2d(drop_prob), nn.Conv2d(psp // 2, num_classes, 1, bias=False))
        self.act_l3 = BNPReLU(num_classes)
        self.project_l2 = PaddleConvBNPReLU(c[1] + num_classes, num_classes, 1, bias=False)
        self.project_l1 = nn.Sequential(nn.Dropout2d(drop_prob), nn.Conv2d(c[0] + num_classes, num_classes, 1, bias=False))
        mark_unused(self, tuple(f"backbone.{level}.eesp._act." for level in ("level2", "level3_0", "level4_0")))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        l1, l2, l3, l4 = self.backbone(image)
        merged = self.eesp_psp(torch.cat([l3, upsample2x(self.proj_l4_c(l4))], dim=1))
        merged = self.act_l3(self.project_l3(merged))
        merged = self.project_l2(torch.cat([l2, upsample2x(merged)], dim=1))
        merged = self.project_l1(torch.cat([l1, upsample2x(merged)], dim=1))
        return upsample2x(merged)


@register_architecture("espnetv2")
def espnetv2(*, num_classes: int = 19, scale: float = 2.0, drop_prob: float = 0.0) -> ESPNetV2:
    """PaddleSeg's `espnet_cityscapes_1024x512_120k` (scale 2.0, no dropout)."""
    return ESPNetV2(num_classes, scale=scale, drop_prob=drop_prob)
