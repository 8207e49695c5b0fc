"""FC-HarDNet-70 (Chao et al., ICCV 2019) in PaddleSeg 2.8's state_dict layout.

Stem of four conv3x3-BN-ReLU (16, 24, 32 stride 2, 48; bias-free, PaddleSeg's 'same' padding,
so the strided conv pads only bottom/right on even sizes). Encoder: five harmonic dense blocks
(growth 10, 16, 18, 24, 32; 4, 4, 8, 8, 8 layers; multiplier 1.7), each followed by a 1x1
conv-BN-ReLU (64, 96, 160, 224, 320) and, but for the last, a 2x2 average pool; the blocks'
outputs are the skips. Decoder: four steps of bilinear resize to the skip (align_corners false),
concatenation, 1x1 conv-BN-ReLU halving the channels, harmonic dense block. A 1x1 classifier
at 1/4 resolution, resized bilinearly to the input.

In a harmonic dense block layer k (1-based) reads the outputs of layers k - 2^i for every 2^i
dividing k (layer 0 being the block's input), and has growth * 1.7^(number of links - 1)
channels rounded to even; the block outputs the concatenation of its odd layers and its last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers.paddle_conv import PaddleConvBNReLU
from segbench.models.registry import register_architecture


def harmonic_link(layer: int, base_channels: int, growth_rate: int, multiplier: float) -> tuple[int, int, list[int]]:
    """(out channels, in channels, the layers it reads) of layer `layer` of a harmonic dense block."""
    if layer == 0:
        return base_channels, 0, []
    out_channels: float = growth_rate
    link = []
    for i in range(10):
        step = 2**i
        if layer % step == 0:
            link.insert(0, layer - step)
            if i > 0:
                out_channels *= multiplier
    out_channels = int(int(out_channels + 1) / 2) * 2
    in_channels = sum(harmonic_link(i, base_channels, growth_rate, multiplier)[0] for i in link)
    return out_channels, in_channels, link


class HarDBlock(nn.Module):
    def __init__(self, base_channels: int, growth_rate: int, multiplier: float, n_layers: int) -> None:
        super().__init__()
        self.links = []
        convs = []
        self.out_channels = 0
        for i in range(n_layers):
            out_channels, in_channels, link = harmonic_link(i + 1, base_channels, growth_rate, multiplier)
            self.links.append(link)
            convs.append(PaddleConvBNReLU(in_channels, out_channels, 3, bias=False))
            if i % 2 == 0 or i == n_layers - 1:
                self.out_channels += out_channels
        self.layers = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [x]
        for link, layer in zip(self.links, self.layers):
            outputs.append(layer(torch.cat([outputs[i] for i in link], dim=1)))
        last = len(outputs) - 1
        return torch.cat([out for i, out in enumerate(outputs) if i == last or i % 2 == 1], dim=1)


class Encoder(nn.Module):
    def __init__(self, in_channels: int, ch_list, growth_rates, multiplier: float, n_layers) -> None:
        super().__init__()
        self.skip_channels: list[int] = []
        self.skip_indices: list[int] = []
        blocks: list[nn.Module] = []
        channels = in_channels
        last = len(n_layers) - 1
        for i, (width, growth, depth) in enumerate(zip(ch_list, growth_rates, n_layers)):
            block = HarDBlock(channels, growth, multiplier, depth)
            blocks.append(block)
            if i < last:
                self.skip_channels.append(block.out_channels)
                self.skip_indices.append(len(blocks) - 1)
            blocks.append(PaddleConvBNReLU(block.out_channels, width, 1, bias=False))
            channels = width
            if i < last:
                blocks.append(nn.AvgPool2d(2, 2))
        self.blks = nn.ModuleList(blocks)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for i, block in enumerate(self.blks):
            x = block(x)
            if i in self.skip_indices:
                skips.append(x)
        return x, skips


class Decoder(nn.Module):
    def __init__(
        self, in_channels: int, skip_channels: list[int], growth_rates, multiplier: float, n_layers, align_corners: bool
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.dense_blocks_up = nn.ModuleList()
        self.conv1x1_up = nn.ModuleList()
        channels = in_channels
        for i in reversed(range(len(skip_channels))):
            joined = channels + skip_channels[i]
            self.conv1x1_up.append(PaddleConvBNReLU(joined, joined // 2, 1, bias=False))
            block = HarDBlock(joined // 2, growth_rates[i], multiplier, n_layers[i])
            self.dense_blocks_up.append(block)
            channels = block.out_channels
        self.out_channels = channels

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for conv, block, skip in zip(self.conv1x1_up, self.dense_blocks_up, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=self.align_corners)
            x = block(conv(torch.cat([x, skip], dim=1)))
        return x


class HarDNet(nn.Module):
    """Logits at the input's resolution."""

    def __init__(
        self,
        num_classes: int,
        *,
        stem_channels=(16, 24, 32, 48),
        ch_list=(64, 96, 160, 224, 320),
        multiplier: float = 1.7,
        growth_rates=(10, 16, 18, 24, 32),
        n_layers=(4, 4, 8, 8, 8),
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        s = stem_channels
        self.stem = nn.Sequential(
            PaddleConvBNReLU(3, s[0], 3, bias=False),
            PaddleConvBNReLU(s[0], s[1], 3, bias=False),
            PaddleConvBNReLU(s[1], s[2], 3, stride=2, bias=False),
            PaddleConvBNReLU(s[2], s[3], 3, bias=False),
        )
        self.encoder = Encoder(s[3], ch_list, growth_rates, multiplier, n_layers)
        encoder = self.encoder
        self.decoder = Decoder(encoder.out_channels, encoder.skip_channels, growth_rates, multiplier, n_layers, align_corners)
        self.cls_head = nn.Conv2d(self.decoder.out_channels, num_classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x, skips = self.encoder(self.stem(image))
        logits = self.cls_head(self.decoder(x, skips))
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=self.align_corners)


@register_architecture("hardnet")
def hardnet(*, num_classes: int = 19) -> HarDNet:
    """PaddleSeg's `hardnet_cityscapes_1024x1024_160k` (FC-HarDNet-70, its defaults)."""
    return HarDNet(num_classes)
