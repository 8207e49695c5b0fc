"""ANN (Zhu et al., ICCV 2019): asymmetric non-local blocks on a dilated ResNet, as
mmsegmentation's ANNHead. Keys and values are sampled by pyramid pooling (1, 3, 6, 8: 110
positions), so attention costs HW·110 per channel instead of (HW)²."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import ConvBNReLU, SelfAttentionBlock
from segbench.models.fcn import auxiliary_fcn_head, dilated_head_channels
from segbench.models.registry import register_architecture
from segbench.models.backbones.resnet import ResNet
from segbench.models.segmentor import EncoderDecoder


class PyramidSampling(nn.Module):
    """(B, C, H, W) -> (B, C, sum s²): each scale's adaptive average pool, flattened and concatenated."""

    def __init__(self, pool_scales: tuple[int, ...]) -> None:
        super().__init__()
        self.pool_scales = pool_scales

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.adaptive_avg_pool2d(x, s).flatten(2) for s in self.pool_scales], dim=2)


def _attention(low: int, high: int, channels: int, out: int, *, share: bool, pool_scales: tuple[int, ...]) -> SelfAttentionBlock:
    return SelfAttentionBlock(
        low, high, channels, out, share_key_query=share, key_query_num_convs=1, with_out=True,
        key_downsample=PyramidSampling(pool_scales),
    )  # fmt: skip


class AFNB(nn.Module):
    """Asymmetric fusion: stage-4 queries attend to pyramid-sampled stage-3 keys and values; the
    context concatenated with the stage-4 features goes through a 1x1 ConvBN (no ReLU)."""

    def __init__(self, low_channels: int, high_channels: int, channels: int, *, pool_scales: tuple[int, ...]) -> None:
        super().__init__()
        attention = _attention(low_channels, high_channels, channels, high_channels, share=False, pool_scales=pool_scales)
        self.stages = nn.ModuleList([attention])  # one query scale (1), under mmseg's `stages.0`
        self.bottleneck = ConvBNReLU(2 * high_channels, high_channels, 1, relu=False)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(torch.cat([self.stages[0](high, low), high], dim=1))


class APNB(nn.Module):
    """Asymmetric pyramid non-local: self-attention with one projection for keys and queries."""

    def __init__(self, in_channels: int, channels: int, *, pool_scales: tuple[int, ...]) -> None:
        super().__init__()
        attention = _attention(in_channels, in_channels, channels, in_channels, share=True, pool_scales=pool_scales)
        self.stages = nn.ModuleList([attention])  # as AFNB's
        self.bottleneck = ConvBNReLU(2 * in_channels, in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(torch.cat([self.stages[0](x, x), x], dim=1))


class ANNHead(nn.Module):
    """AFNB on stages 3 and 4, dropout, 3x3 bottleneck, APNB, classifier (mmseg's order: its
    dropout runs twice in training, after AFNB and before the classifier)."""

    def __init__(
        self,
        in_channels: tuple[int, int],
        channels: int,
        num_classes: int,
        *,
        project_channels: int = 256,
        pool_scales: tuple[int, ...] = (1, 3, 6, 8),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        low_channels, high_channels = in_channels
        self.fusion = AFNB(low_channels, high_channels, project_channels, pool_scales=pool_scales)
        self.dropout = nn.Dropout2d(dropout)
        self.bottleneck = ConvBNReLU(high_channels, channels, 3, padding=1)
        self.context = APNB(channels, project_channels, pool_scales=pool_scales)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        out = self.dropout(self.fusion(features[2], features[3]))
        out = self.context(self.bottleneck(out))
        return self.conv_seg(self.dropout(out))


@register_architecture("ann_resnet")
def ann_resnet(
    *, depth: int = 50, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False
) -> EncoderDecoder:
    """ANN on a dilated ResNet-D8: mmseg's `ann_r{depth}-d8`."""
    channels, aux_channels = dilated_head_channels(depth)
    backbone = ResNet(depth)
    head = ANNHead((backbone.out_channels[2], backbone.out_channels[3]), channels, num_classes)
    aux = auxiliary_fcn_head(backbone, aux_channels, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
