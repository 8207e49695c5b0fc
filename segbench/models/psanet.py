"""PSANet (Zhao et al., ECCV 2018): point-wise spatial attention, collected and distributed."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import ConvBNReLU
from segbench.layers.attention_ops import psa_mask
from segbench.models.backbones.resnet import ResNet
from segbench.models.fcn import auxiliary_fcn_head, dilated_head_channels
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder


def _attention_branch(channels: int, mask_size: tuple[int, int]) -> nn.Sequential:
    """1x1 ConvBNReLU, then a bias-free 1x1 conv to one channel per mask offset (keys `0.*`, `1.weight`)."""
    return nn.Sequential(ConvBNReLU(channels, channels, 1), nn.Conv2d(channels, mask_size[0] * mask_size[1], 1, bias=False))


class PSAHead(nn.Module):
    """mmseg's PSAHead as every Cityscapes config sets it: bi-directional (a collect and a
    distribute branch), not compact, features shrunk by 2 before the attention, softmax over each
    pixel's weights, normalization factor 1.

    As mmseg does: the shrink resizes with align_corners=True when both sides are odd (769x769
    crops) and False otherwise, and the final resize back reuses that choice; the 1x1 `proj`
    conv is padded by 1, so its map is 2 pixels larger than the shrunk one before that resize.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        mask_size: tuple[int, int] = (97, 97),
        shrink_factor: int = 2,
        in_index: int = -1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.mask_size = tuple(mask_size)
        self.shrink_factor = shrink_factor
        self.reduce = ConvBNReLU(in_channels, channels, 1)
        self.attention = _attention_branch(channels, self.mask_size)
        self.reduce_p = ConvBNReLU(in_channels, channels, 1)
        self.attention_p = _attention_branch(channels, self.mask_size)
        self.proj = ConvBNReLU(2 * channels, in_channels, 1, padding=1)
        self.bottleneck = ConvBNReLU(2 * in_channels, channels, 3, padding=1)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def _attend(self, features: torch.Tensor, weights: torch.Tensor, mode: str) -> torch.Tensor:
        """Each pixel's features as the softmax-weighted sum the PSA mask of `mode` assigns it."""
        n, c, h, w = features.shape
        attention = psa_mask(weights, self.mask_size, mode).softmax(dim=1)
        return torch.bmm(features.reshape(n, c, h * w), attention.reshape(n, h * w, h * w)).reshape(n, c, h, w)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[self.in_index]
        collect, distribute = self.reduce(x), self.reduce_p(x)
        h, w = x.shape[2:]
        align_corners = False
        if self.shrink_factor != 1:
            if h % self.shrink_factor and w % self.shrink_factor:
                size, align_corners = ((h - 1) // self.shrink_factor + 1, (w - 1) // self.shrink_factor + 1), True
            else:
                size = (h // self.shrink_factor, w // self.shrink_factor)
            collect = F.interpolate(collect, size=size, mode="bilinear", align_corners=align_corners)
            distribute = F.interpolate(distribute, size=size, mode="bilinear", align_corners=align_corners)
        out = torch.cat([
            self._attend(collect, self.attention(collect), "collect"),
            self._attend(distribute, self.attention_p(distribute), "distribute"),
        ], dim=1)  # fmt: skip
        out = F.interpolate(self.proj(out), size=(h, w), mode="bilinear", align_corners=align_corners)
        return self.conv_seg(self.dropout(self.bottleneck(torch.cat([x, out], dim=1))))


@register_architecture("psanet_resnet")
def psanet_resnet(
    *,
    depth: int = 50,
    num_classes: int = 19,
    mask_size: tuple[int, int] = (97, 97),
    auxiliary_head: bool = True,
    align_corners: bool = False,
) -> EncoderDecoder:
    """PSANet on a dilated ResNet-D8: mmseg's `psanet_r{depth}-d8` (mask 97x97, bi-directional).

    The head's own resizes follow the feature size (see PSAHead); `align_corners` is the
    segmentor's post-processing resize."""
    channels, aux_channels = dilated_head_channels(depth)
    backbone = ResNet(depth)
    head = PSAHead(backbone.out_channels[3], channels, num_classes, mask_size=mask_size, in_index=3)
    aux = auxiliary_fcn_head(backbone, aux_channels, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
