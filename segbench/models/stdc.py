"""STDC-Seg (Fan et al., CVPR 2021): STDCNet with BiSeNetV1's context path and a feature fusion
module; FCN decode head on the fused 1/8 map.

Training only (present so mmseg's checkpoints load, never run at inference): two auxiliary FCN
heads on the context path's 1/16 and 1/8 maps, and the detail head on the backbone's 1/8 map,
which learns the labels' boundaries (`DetailHead.training_labels`). The context path upsamples
with 'nearest'; the decode head's logits are resized with align_corners=True, as mmseg's
STDC configs set it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import ConvBNReLU, ConvNoNorm
from segbench.models.backbones.stdc import STDCNet
from segbench.models.bisenetv1 import AttentionRefinement
from segbench.models.fcn import FCNHead
from segbench.models.registry import register_architecture
from segbench.models.segmentor import AuxiliaryHeads, EncoderDecoder


class FeatureFusion(nn.Module):
    """Concatenate, 1x1 ConvBNReLU, then add a copy gated by pool, 1x1 conv + ReLU, 1x1 conv, sigmoid
    (bias-free, no BN: unlike BiSeNetV1's)."""

    def __init__(self, in_channels: int, out_channels: int, *, scale_factor: int = 4) -> None:
        super().__init__()
        mid = out_channels // scale_factor
        self.conv0 = ConvBNReLU(in_channels, out_channels, 1)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            ConvNoNorm(out_channels, mid, 1, bias=False, relu=True),
            ConvNoNorm(mid, out_channels, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.conv0(torch.cat([spatial, context], dim=1))
        return x * self.attention(x) + x


class STDCContextPath(nn.Module):
    """Returns [backbone 1/8 (detail head), context 1/16, context 1/8, fused 1/8 (decode head)]."""

    def __init__(self, variant: int, *, channels: int = 128, fused_channels: int = 256) -> None:
        super().__init__()
        self.backbone = STDCNet(variant)
        x8, x16, x32 = self.backbone.out_channels
        self.arms = nn.ModuleList([AttentionRefinement(x32, channels), AttentionRefinement(x16, channels)])
        self.convs = nn.ModuleList([ConvBNReLU(channels, channels, 3, padding=1) for _ in range(2)])
        self.conv_avg = ConvBNReLU(x32, channels, 1)
        self.ffm = FeatureFusion(x8 + channels, fused_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = self.backbone(x)
        up = self.conv_avg(F.adaptive_avg_pool2d(outs[-1], 1))
        up = F.interpolate(up, size=outs[-1].shape[-2:], mode="nearest")
        context = []
        for i, (arm, conv) in enumerate(zip(self.arms, self.convs)):
            # deepest first: the 1/32 map refined, up to 1/16; the 1/16 map refined, up to 1/8
            up = conv(F.interpolate(arm(outs[-1 - i]) + up, size=outs[-2 - i].shape[-2:], mode="nearest"))
            context.append(up)
        return [outs[0], *context, self.ffm(outs[0], context[1])]


class DetailHead(FCNHead):
    """mmseg's STDCHead: an FCN head with 2 outputs trained on the labels' boundaries. The
    Laplacian kernel is a buffer and the pyramid's fusion weights a frozen parameter, as in mmseg
    (both are in its checkpoints)."""

    def __init__(self, in_channels: int, channels: int, *, boundary_threshold: float = 0.1) -> None:
        super().__init__(in_channels, channels, 2, in_index=0, num_convs=1, concat_input=False)
        self.boundary_threshold = boundary_threshold
        laplacian = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]])
        self.register_buffer("laplacian_kernel", laplacian.reshape(1, 1, 3, 3))
        self.fusion_kernel = nn.Parameter(torch.tensor([0.6, 0.3, 0.1]).reshape(1, 3, 1, 1), requires_grad=False)

    def training_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """(N, H, W) 0/1 boundaries: the Laplacian of the label map at strides 1, 2 and 4 (each
        thresholded, the coarser ones upsampled nearest), fused by `fusion_kernel`, thresholded."""
        label_map = labels.unsqueeze(1).to(self.laplacian_kernel.dtype)
        pyramid = []
        for stride in (1, 2, 4):
            edges = F.conv2d(label_map, self.laplacian_kernel, stride=stride, padding=1).clamp(min=0)
            edges = F.interpolate(edges, size=label_map.shape[-2:], mode="nearest")
            pyramid.append((edges > self.boundary_threshold).to(label_map.dtype))
        fused = F.conv2d(torch.cat(pyramid, dim=1), self.fusion_kernel)
        return (fused > self.boundary_threshold).squeeze(1).long()


@register_architecture("stdc")
def stdc(*, variant: int = 1, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = True) -> EncoderDecoder:
    """mmseg's `stdc1` / `stdc2` (STDCNet1 / STDCNet2 backbones)."""
    backbone = STDCContextPath(variant)
    head = FCNHead(256, 256, num_classes, in_index=3, num_convs=1, concat_input=False)
    aux = None
    if auxiliary_head:
        aux = AuxiliaryHeads(
            [
                FCNHead(128, 64, num_classes, in_index=2, num_convs=1, concat_input=False),
                FCNHead(128, 64, num_classes, in_index=1, num_convs=1, concat_input=False),
                DetailHead(256, 64),
            ]
        )
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
