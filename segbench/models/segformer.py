"""SegFormer (Xie et al., NeurIPS 2021): MiT backbone + all-MLP head, as mmsegmentation builds it."""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU, resize
from segbench.models.backbones.mit import MixVisionTransformer
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder

MIT_VARIANTS = {
    "b0": (32, (2, 2, 2, 2)),
    "b1": (64, (2, 2, 2, 2)),
    "b2": (64, (3, 4, 6, 3)),
    "b3": (64, (3, 4, 18, 3)),
    "b4": (64, (3, 8, 27, 3)),
    "b5": (64, (3, 6, 40, 3)),
}
"""MiT variant -> (embed_dims, blocks per stage), from mmseg's segformer_mit-b*_ configs."""


class SegformerHead(nn.Module):
    """Each stage to `channels` by a 1x1 ConvBNReLU, all upsampled to stride 4 (bilinear), concatenated
    in stage order, fused by a 1x1 ConvBNReLU, then dropout and the 1x1 classifier."""

    def __init__(
        self, in_channels: list[int], channels: int, num_classes: int, *, align_corners: bool, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(ConvBNReLU(cin, channels, 1) for cin in in_channels)
        self.fusion_conv = ConvBNReLU(channels * len(in_channels), channels, 1)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.align_corners = align_corners

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = tuple(features[0].shape[2:])
        outs = [resize(conv(x), size, self.align_corners) for conv, x in zip(self.convs, features)]
        return self.conv_seg(self.dropout(self.fusion_conv(torch.cat(outs, dim=1))))


@register_architecture("segformer_mit")
def segformer_mit(
    *,
    variant: str = "b0",
    num_classes: int = 19,
    channels: int = 256,
    drop_path_rate: float = 0.1,
    align_corners: bool = False,
) -> EncoderDecoder:
    """SegFormer on MiT-`variant` (b0..b5): mmseg's `segformer_mit-<variant>` configs (head width 256
    in every Cityscapes config; drop_path_rate as they train)."""
    if variant not in MIT_VARIANTS:
        raise ValueError(f"unknown MiT variant {variant!r}: choose one of {', '.join(MIT_VARIANTS)}")
    embed_dims, num_layers = MIT_VARIANTS[variant]
    backbone = MixVisionTransformer(embed_dims, num_layers, drop_path_rate=drop_path_rate)
    head = SegformerHead(backbone.out_channels, channels, num_classes, align_corners=align_corners)
    return EncoderDecoder(backbone, head, align_corners=align_corners)
