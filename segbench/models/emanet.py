"""EMANet (Li et al., ICCV 2019): expectation-maximization attention on a dilated ResNet, as
mmsegmentation's EMAHead."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import ConvBNReLU, ConvNoNorm
from segbench.models.fcn import auxiliary_fcn_head, dilated_head_channels
from segbench.models.registry import register_architecture
from segbench.models.backbones.resnet import ResNet
from segbench.models.segmentor import EncoderDecoder


class EMAModule(nn.Module):
    """`num_stages` EM iterations (without gradient, as mmseg) from the stored bases (1, C, K): the
    E step softmaxes pixel-base similarities over the bases, the M step takes the L1-normalized
    (over pixels) weighted mean of the pixels and L2-normalizes it. The features are rebuilt from
    the final bases and assignments. Training moves the stored bases towards the batch mean
    (momentum); inference leaves them as they are. 2·stages+1 products of B·HW·K·C MACs."""

    def __init__(self, channels: int, num_bases: int, num_stages: int, momentum: float) -> None:
        super().__init__()
        self.num_stages = num_stages
        self.momentum = momentum
        bases = torch.empty(1, channels, num_bases).normal_(0, math.sqrt(2.0 / num_bases))
        self.register_buffer("bases", F.normalize(bases, dim=1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        b, c, h, w = feats.shape
        feats = feats.view(b, c, h * w)
        bases = self.bases.repeat(b, 1, 1)
        with torch.no_grad():
            for _ in range(self.num_stages):
                attention = F.softmax(torch.einsum("bcn,bck->bnk", feats, bases), dim=2)
                bases = F.normalize(torch.einsum("bcn,bnk->bck", feats, F.normalize(attention, dim=1, p=1)), dim=1)
        recon = torch.einsum("bck,bnk->bcn", bases, attention).view(b, c, h, w)
        if self.training:
            # one process here; mmseg also averages the bases across distributed workers
            mean = F.normalize(bases.mean(dim=0, keepdim=True), dim=1)
            self.bases = (1 - self.momentum) * self.bases + self.momentum * mean
        return recon


class EMAHead(nn.Module):
    """3x3 ConvBNReLU in, a fixed (never trained, as mmseg) biased 1x1 conv, EMA, ReLU, 1x1 ConvBN,
    residual and ReLU, 3x3 bottleneck, the input concatenated back (conv_cat), classifier."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        ema_channels: int = 512,
        num_bases: int = 64,
        num_stages: int = 3,
        momentum: float = 0.1,
        in_index: int = -1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.ema_module = EMAModule(ema_channels, num_bases, num_stages, momentum)
        self.ema_in_conv = ConvBNReLU(in_channels, ema_channels, 3, padding=1)
        self.ema_mid_conv = ConvNoNorm(ema_channels, ema_channels, 1)
        self.ema_mid_conv.requires_grad_(False)
        self.ema_out_conv = ConvBNReLU(ema_channels, ema_channels, 1, relu=False)
        self.bottleneck = ConvBNReLU(ema_channels, channels, 3, padding=1)
        self.conv_cat = ConvBNReLU(in_channels + channels, channels, 3, padding=1)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[self.in_index]
        feats = self.ema_in_conv(x)
        recon = self.ema_out_conv(F.relu(self.ema_module(self.ema_mid_conv(feats))))
        out = self.bottleneck(F.relu(feats + recon))
        out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.conv_seg(self.dropout(out))


@register_architecture("emanet_resnet")
def emanet_resnet(
    *, depth: int = 50, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False
) -> EncoderDecoder:
    """EMANet on a dilated ResNet-D8: mmseg's `emanet_r{depth}-d8` (256-channel head, 512 EMA channels)."""
    backbone = ResNet(depth)
    _, aux_channels = dilated_head_channels(depth)
    head = EMAHead(backbone.out_channels[3], 256, num_classes)
    aux = auxiliary_fcn_head(backbone, aux_channels, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
