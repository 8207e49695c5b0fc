"""SegNet (Badrinarayanan et al., TPAMI 2017) in PaddleSeg 2.8's state_dict layout.

A VGG-16-shaped encoder of five conv stages (`enco1`..`enco5`, PaddleSeg's ConvBNReLU: conv with
bias, BN) each followed by a 2x2 max-pool that keeps its argmax indices; the decoder max-unpools
with those indices (to the pre-pool size) before each of its five stages (`deco1`..`deco5`), the
last ending in a plain 3x3 classifier conv. Logits at the input's resolution. As in PaddleSeg,
the last unpooling takes its default size (twice its input), so an input of odd size comes out
one pixel smaller there; the others unpool to the size before their pooling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers.paddle_conv import PaddleConvBNReLU
from segbench.models.registry import register_architecture


def stage(*channels: int) -> nn.Sequential:
    return nn.Sequential(*(PaddleConvBNReLU(cin, cout, 3, padding=1) for cin, cout in zip(channels, channels[1:])))


class SegNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.enco1 = stage(in_channels, 64, 64)
        self.enco2 = stage(64, 128, 128)
        self.enco3 = stage(128, 256, 256, 256)
        self.enco4 = stage(256, 512, 512, 512)
        self.enco5 = stage(512, 512, 512, 512)
        self.deco1 = stage(512, 512, 512, 512)
        self.deco2 = stage(512, 512, 512, 256)
        self.deco3 = stage(256, 256, 256, 128)
        self.deco4 = stage(128, 128, 128, 64)
        self.deco5 = nn.Sequential(PaddleConvBNReLU(64, 64, 3, padding=1), nn.Conv2d(64, num_classes, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []  # (indices, size before pooling) per encoder stage
        for encoder in (self.enco1, self.enco2, self.enco3, self.enco4, self.enco5):
            x = encoder(x)
            size = x.shape[-2:]
            x, indices = F.max_pool2d(x, 2, 2, return_indices=True)
            pooled.append((indices, size))
        pooled[0] = (pooled[0][0], None)
        for decoder, (indices, size) in zip((self.deco1, self.deco2, self.deco3, self.deco4, self.deco5), reversed(pooled)):
            x = decoder(F.max_unpool2d(x, indices, 2, 2, output_size=size))
        return x


@register_architecture("segnet")
def segnet(*, num_classes: int = 19) -> SegNet:
    """PaddleSeg's `segnet_cityscapes_1024x512_80k`."""
    return SegNet(num_classes)
