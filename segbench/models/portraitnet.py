"""PortraitNet (Zhang et al., Computers & Graphics 2019) in PaddleSeg 2.8's state_dict layout.

PaddleSeg's MobileNetV2 (x1.0) backbone; the decoder goes from stride 32 to 1 in five steps, each
a residual block (depthwise-separable conv, then depthwise 3x3 and 1x1 conv, BN, a 1x1 conv+BN
shortcut when the width changes, ReLU after the sum) and a 4x4 stride-2 transposed conv, adding
the backbone's stride-16, 8 and 4 features on the way; a 3x3 classifier at full resolution. Its
edge head (add_edge) is off in both published configs. Its BatchNorms take Paddle momentum 0.1
(the running statistics keep 10% of the old value: PyTorch momentum 0.9); convs are bias-free.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.models.backbones.mobilenet_v2_paddle import MobileNetV2Paddle
from segbench.models.registry import register_architecture

BN_MOMENTUM = 0.9  # PyTorch's for Paddle's momentum=0.1


def bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)


class ConvDw(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=in_channels, bias=False),
            bn(in_channels), nn.ReLU(),
            nn.Conv2d(in_channels, out_channels, 1, bias=False), bn(out_channels), nn.ReLU(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            ConvDw(in_channels, out_channels, 3, 1),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, groups=out_channels, bias=False), bn(out_channels), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 1, bias=False), bn(out_channels),
        )  # fmt: skip
        self.residual = None
        if in_channels != out_channels:
            self.residual = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), bn(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.residual is None else self.residual(x)
        return torch.relu(self.block(x) + shortcut)


class PortraitNetHead(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        widths = (96, 32, 24, 16, 8)
        for i, width in enumerate(widths, start=1):
            setattr(self, f"deconv{i}", nn.ConvTranspose2d(width, width, 4, stride=2, padding=1, bias=False))
        for i, (cin, cout) in enumerate(zip((320, *widths), widths), start=1):
            setattr(self, f"transit{i}", ResidualBlock(cin, cout))
        self.pred = nn.Conv2d(8, num_classes, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        f4, f8, f16, f32 = features
        up = self.deconv1(self.transit1(f32))
        up = self.deconv2(self.transit2(f16 + up))
        up = self.deconv3(self.transit3(f8 + up))
        up = self.deconv4(self.transit4(f4 + up))
        return self.pred(self.deconv5(self.transit5(up)))


class PortraitNet(nn.Module):
    """Logits at the input's resolution (for inputs divisible by 32)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.backbone = MobileNetV2Paddle()
        self.head = PortraitNetHead(num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(image))


@register_architecture("portraitnet")
def portraitnet(*, num_classes: int = 2) -> PortraitNet:
    """PaddleSeg's `portraitnet_eg1800_224x224_46k` and `portraitnet_supervisely_224x224_60k`
    (MobileNetV2_x1_0, add_edge false): the same network."""
    return PortraitNet(num_classes)
