"""CGNet (Wu et al., "A Light-weight Context Guided Network", TIP 2021) as mmsegmentation 1.2.2
builds it (M3N21: 3 context-guided blocks at stage 1, 21 at stage 2), with a bare FCN classifier.

mmseg's details kept here: every BatchNorm has eps 1e-3 (the config's norm_cfg) and every
activation is a PReLU with one slope per channel; the downsampled input image is injected
(3x3 average pools, stride 2, zero padding counted) at strides 2 and 4; a block's joint feature
is the concatenation of a depthwise 3x3 (local) and a dilated depthwise 3x3 (surrounding) conv,
BN and PReLU, reweighted per channel by a squeeze-and-excitation style global context.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.models.fcn import FCNHead
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder

BN_EPS = 1e-3


class ConvBNPReLU(nn.Module):
    """mmcv's ConvModule with PReLU: bias-free conv, BN (eps 1e-3), PReLU; keys `conv`, `bn`, `activate`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.activate = nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


def bn_prelu(channels: int) -> nn.Sequential:
    """BN then PReLU, keys `0.*` and `1.weight` (mmseg's norm_prelu_<i>)."""
    return nn.Sequential(nn.BatchNorm2d(channels, eps=BN_EPS), nn.PReLU(channels))


class GlobalContextExtractor(nn.Module):
    """Channel weights from global average pooling through a two-layer bottleneck MLP (sigmoid)."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels), nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        return x * self.fc(self.avg_pool(x).view(n, c)).view(n, c, 1, 1)


class ContextGuidedBlock(nn.Module):
    """A downsampling block (3x3 stride-2 conv in, 1x1 bottleneck out, no residual) or a regular
    one (1x1 conv to half the width, residual)."""

    def __init__(self, in_channels: int, out_channels: int, *, dilation: int, reduction: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = downsample
        channels = out_channels if downsample else out_channels // 2
        self.conv1x1 = ConvBNPReLU(in_channels, channels, 3 if downsample else 1, stride=2 if downsample else 1)
        self.f_loc = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.f_sur = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(2 * channels, eps=BN_EPS)
        self.activate = nn.PReLU(2 * channels)
        if downsample:
            self.bottleneck = nn.Conv2d(2 * channels, out_channels, 1, bias=False)
        self.f_glo = GlobalContextExtractor(out_channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x)
        joint = self.activate(self.bn(torch.cat([self.f_loc(out), self.f_sur(out)], dim=1)))
        if self.downsample:
            return self.f_glo(self.bottleneck(joint))
        return x + self.f_glo(joint)


class InputInjection(nn.Module):
    """The image average-pooled (3x3, stride 2, padding 1) `num_downsampling` times."""

    def __init__(self, num_downsampling: int) -> None:
        super().__init__()
        self.pool = nn.ModuleList(nn.AvgPool2d(3, stride=2, padding=1) for _ in range(num_downsampling))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for pool in self.pool:
            x = pool(x)
        return x


class CGNet(nn.Module):
    """Returns the three stage outputs (strides 2, 4, 8); the last has 2 * num_channels[2] channels."""

    def __init__(
        self,
        *,
        num_channels: tuple[int, int, int] = (32, 64, 128),
        num_blocks: tuple[int, int] = (3, 21),
        dilations: tuple[int, int] = (2, 4),
        reductions: tuple[int, int] = (8, 16),
    ) -> None:
        super().__init__()
        self.stem = nn.ModuleList(
            ConvBNPReLU(3 if i == 0 else num_channels[0], num_channels[0], 3, stride=2 if i == 0 else 1) for i in range(3)
        )
        self.inject_2x = InputInjection(1)
        self.inject_4x = InputInjection(2)
        width = num_channels[0] + 3
        self.norm_prelu_0 = bn_prelu(width)
        self.level1 = self._level(width, num_channels[1], num_blocks[0], dilations[0], reductions[0])
        width = 2 * num_channels[1] + 3
        self.norm_prelu_1 = bn_prelu(width)
        self.level2 = self._level(width, num_channels[2], num_blocks[1], dilations[1], reductions[1])
        self.norm_prelu_2 = bn_prelu(2 * num_channels[2])
        self.out_channels = [num_channels[0] + 3, 2 * num_channels[1] + 3, 2 * num_channels[2]]

    @staticmethod
    def _level(in_channels: int, channels: int, n: int, dilation: int, reduction: int) -> nn.ModuleList:
        return nn.ModuleList(
            ContextGuidedBlock(in_channels if i == 0 else channels, channels, dilation=dilation, reduction=reduction, downsample=i == 0)
            for i in range(n)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        image_2x, image_4x = self.inject_2x(x), self.inject_4x(x)
        for layer in self.stem:
            x = layer(x)
        x = self.norm_prelu_0(torch.cat([x, image_2x], dim=1))
        outputs = [x]
        x = down1 = self.level1[0](x)
        for layer in self.level1[1:]:
            x = layer(x)
        x = self.norm_prelu_1(torch.cat([x, down1, image_4x], dim=1))
        outputs.append(x)
        x = down2 = self.level2[0](x)
        for layer in self.level2[1:]:
            x = layer(x)
        outputs.append(self.norm_prelu_2(torch.cat([down2, x], dim=1)))
        return outputs


@register_architecture("cgnet_fcn")
def cgnet_fcn(*, num_classes: int = 19, align_corners: bool = False) -> EncoderDecoder:
    """mmseg's `cgnet_fcn_4xb*-60k_cityscapes-*`: the classifier alone (FCN head with no conv,
    no dropout) on the last stage; both crop sizes build the same model."""
    backbone = CGNet()
    width = backbone.out_channels[2]
    head = FCNHead(width, width, num_classes, in_index=2, num_convs=0, concat_input=False, dropout=0.0)
    return EncoderDecoder(backbone, head, align_corners=align_corners)
