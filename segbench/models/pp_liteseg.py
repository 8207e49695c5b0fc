"""PP-LiteSeg (Peng et al. 2022, "PP-LiteSeg: A Superior Real-Time Semantic Segmentation Model") on
STDC1/STDC2 in PaddleSeg 2.8's state_dict layout; its `.pdparams` weights load through the
`paddleseg` key adapter.

A simple pyramid pooling module (SPPM: pooled 1/2/4 bins, each 1x1 ConvBNReLU, resized and summed,
then a 3x3 ConvBNReLU) on the stride-32 feature, then from coarse to fine a unified attention fusion
module (UAFM with spatial attention) per level, and a seg head per level. Only the stride-8 seg
head runs at inference; the stride-16 and -32 ones train only (PaddleSeg's loss on all three), so
they are in `training_only`, out of the inference parameter count and MACs.

PaddleSeg's choices, kept: every resize is bilinear with align_corners=False (Paddle's default),
the attention mixes x * a + y * (scale - a) with a fixed `_scale` parameter (1, no gradient), and
the ConvBNReLU of the SPPM has a conv bias while the UAFM's and seg heads' do not.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import resize
from segbench.models.backbones.resnet_vd import ConvBN
from segbench.models.backbones.stdc_paddle import STDCNetPaddle
from segbench.models.registry import register_architecture


class SimplePyramidPooling(nn.Module):
    """PaddleSeg's PPContextModule (SPPM): the pooled branches are summed, not concatenated."""

    def __init__(self, in_channels: int, channels: int, bins: tuple[int, ...]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(size), ConvBN(in_channels, channels, 1, relu=True, bias=True)) for size in bins
        )
        self.conv_out = ConvBN(channels, channels, 3, relu=True, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        return self.conv_out(sum(resize(stage(x), size, False) for stage in self.stages))


class SpatialAttentionFusion(nn.Module):
    """PaddleSeg's UAFM_SpAtten: the low-level x through a 3x3 ConvBNReLU to y's width, y upsampled
    to x; a spatial attention map from the channel mean and max of both (in the order mean x, max x,
    mean y, max y) weighs x against y; a 3x3 ConvBNReLU to out_channels."""

    def __init__(self, x_channels: int, y_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_x = ConvBN(x_channels, y_channels, 3, relu=True)
        self.conv_out = ConvBN(y_channels, out_channels, 3, relu=True)
        self.conv_xy_atten = nn.Sequential(ConvBN(4, 2, 3, relu=True), ConvBN(2, 1, 3))
        self._scale = nn.Parameter(torch.ones(1), requires_grad=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = self.conv_x(x)
        y = resize(y, tuple(x.shape[-2:]), False)
        reduced = [t for f in (x, y) for t in (f.mean(1, keepdim=True), f.amax(1, keepdim=True))]
        attention = torch.sigmoid(self.conv_xy_atten(torch.cat(reduced, dim=1)))
        return self.conv_out(x * attention + y * (self._scale - attention))


class PPLiteSegHead(nn.Module):
    """SPPM on the coarsest feature, then one UAFM per level from coarse to fine; returns the fused
    map of every level, finest first."""

    def __init__(self, in_channels: list[int], arm_channels: list[int], context_channels: int, bins: tuple[int, ...]) -> None:
        super().__init__()
        self.cm = SimplePyramidPooling(in_channels[-1], context_channels, bins)
        high = [*arm_channels[1:], context_channels]
        self.arm_list = nn.ModuleList(SpatialAttentionFusion(c, h, o) for c, h, o in zip(in_channels, high, arm_channels))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        high = self.cm(features[-1])
        fused = []
        for i in reversed(range(len(features))):
            high = self.arm_list[i](features[i], high)
            fused.insert(0, high)
        return fused


class SegHead(nn.Module):
    def __init__(self, in_channels: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = ConvBN(in_channels, channels, 3, relu=True)
        self.conv_out = nn.Conv2d(channels, num_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class PPLiteSeg(nn.Module):
    """PaddleSeg's PPLiteSeg layout (`backbone`, `ppseg_head`, `seg_heads`) on backbone features 2, 3, 4
    (strides 8, 16, 32). Eval: the stride-8 logits resized to the input. Train: all three, each
    resized to the input, with PaddleSeg's loss weights (1, 1, 1)."""

    training_only = ("seg_heads.1", "seg_heads.2")
    loss_weights = (1.0, 1.0, 1.0)

    def __init__(
        self,
        backbone: STDCNetPaddle,
        num_classes: int,
        *,
        arm_out_chs: tuple[int, ...] = (64, 96, 128),
        seg_head_inter_chs: tuple[int, ...] = (64, 64, 64),
        cm_out_ch: int = 128,
        cm_bin_sizes: tuple[int, ...] = (1, 2, 4),
        backbone_indices: tuple[int, ...] = (2, 3, 4),
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.backbone_indices = backbone_indices
        in_channels = [backbone.feat_channels[i] for i in backbone_indices]
        self.ppseg_head = PPLiteSegHead(in_channels, list(arm_out_chs), cm_out_ch, tuple(cm_bin_sizes))
        self.seg_heads = nn.ModuleList(SegHead(c, m, num_classes) for c, m in zip(arm_out_chs, seg_head_inter_chs))

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        size = tuple(image.shape[-2:])
        features = self.backbone(image)
        fused = self.ppseg_head([features[i] for i in self.backbone_indices])
        if not self.training:
            return resize(self.seg_heads[0](fused[0]), size, False)
        return tuple(resize(head(f), size, False) for head, f in zip(self.seg_heads, fused))


@register_architecture("pp_liteseg_stdc")
def pp_liteseg_stdc(
    *,
    version: int = 1,
    num_classes: int = 19,
    arm_out_chs: tuple[int, ...] = (64, 96, 128),
    seg_head_inter_chs: tuple[int, ...] = (64, 64, 64),
) -> PPLiteSeg:
    """PaddleSeg's PP-LiteSeg on STDC{version}: the Cityscapes configs narrow STDC1's decoder
    (arm_out_chs 32, 64, 128; seg_head_inter_chs 32, 64, 64) and keep the defaults on STDC2."""
    return PPLiteSeg(
        STDCNetPaddle(version), num_classes, arm_out_chs=tuple(arm_out_chs), seg_head_inter_chs=tuple(seg_head_inter_chs)
    )
