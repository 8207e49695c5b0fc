"""EncNet (Zhang et al., CVPR 2018): context encoding on a dilated ResNet, as mmsegmentation's EncHead.

The Encoding layer (learned codewords, soft-assigned residuals) is plain PyTorch in mmseg too
(mmseg/models/utils/encoding.py); no mmcv op is involved. mmseg computes it on an expanded
(batch, pixels, codes, channels) tensor, which FlopCounterMode sees as elementwise work only and
which takes gigabytes at Cityscapes size; here it is two matrix products (counted, and small).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import ConvBNReLU
from segbench.models.fcn import auxiliary_fcn_head, dilated_head_channels
from segbench.models.registry import register_architecture
from segbench.models.backbones.resnet import ResNet
from segbench.models.segmentor import EncoderDecoder


class Encoding(nn.Module):
    """(B, C, H, W) -> (B, K, C): for each codeword c_k, the sum over pixels x_n of a_nk (x_n - c_k),
    where a_n = softmax_k(s_k ||x_n - c_k||^2). Keys `codewords` (K, C), `scale` (K,) as mmseg's.

    ||x - c||^2 is expanded to ||x||^2 - 2 x.c + ||c||^2 and the aggregation to A^T X - (sum_n a_nk) c_k,
    so both are matrix products: 2·B·HW·K·C multiply-adds, as mmseg's expanded form does elementwise.
    """

    def __init__(self, channels: int, num_codes: int) -> None:
        super().__init__()
        std = (num_codes * channels) ** -0.5
        self.codewords = nn.Parameter(torch.empty(num_codes, channels).uniform_(-std, std))
        self.scale = nn.Parameter(torch.empty(num_codes).uniform_(-1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x.flatten(2).transpose(1, 2)  # (B, N, C)
        distances = (
            pixels.pow(2).sum(-1, keepdim=True) - 2 * torch.matmul(pixels, self.codewords.t()) + self.codewords.pow(2).sum(-1)
        )  # fmt: skip
        assignment = F.softmax(self.scale * distances, dim=2)  # (B, N, K)
        weighted = torch.matmul(assignment.transpose(1, 2), pixels)  # (B, K, C)
        return weighted - assignment.sum(1).unsqueeze(2) * self.codewords


class EncModule(nn.Module):
    """Encode the projected features, gate the input's channels by a sigmoid FC on the mean code."""

    def __init__(self, channels: int, num_codes: int) -> None:
        super().__init__()
        self.encoding_project = ConvBNReLU(channels, channels, 1)
        self.encoding = nn.Sequential(Encoding(channels, num_codes), nn.BatchNorm1d(num_codes), nn.ReLU(inplace=True))
        self.fc = nn.Sequential(nn.Linear(channels, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean encoding (B, C), gated features)."""
        encoded = self.encoding(self.encoding_project(x)).mean(dim=1)
        gamma = self.fc(encoded).view(*x.shape[:2], 1, 1)
        return encoded, F.relu(x + x * gamma)


class EncHead(nn.Module):
    """mmseg's EncHead (add_lateral=False, as every config): 3x3 bottleneck, EncModule, classifier.

    The SE-loss branch (`se_layer`, class presence from the mean encoding, loss weight 0.2) is
    trained only: mmseg's predict drops its output, so eval mode does not run it.
    """

    training_only = ("se_layer",)
    loss_weights = (1.0, 0.2)

    def __init__(
        self, in_channels: int, channels: int, num_classes: int, *, num_codes: int = 32, in_index: int = -1, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.bottleneck = ConvBNReLU(in_channels, channels, 3, padding=1)
        self.enc_module = EncModule(channels, num_codes)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.se_layer = nn.Linear(channels, num_classes)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        encoded, out = self.enc_module(self.bottleneck(features[self.in_index]))
        logits = self.conv_seg(self.dropout(out))
        return (logits, self.se_layer(encoded)) if self.training else logits


@register_architecture("encnet_resnet")
def encnet_resnet(
    *, depth: int = 50, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False
) -> EncoderDecoder:
    """EncNet on a dilated ResNet-D8: mmseg's `encnet_r{depth}-d8`."""
    channels, aux_channels = dilated_head_channels(depth)
    backbone = ResNet(depth)
    head = EncHead(backbone.out_channels[3], channels, num_classes)
    aux = auxiliary_fcn_head(backbone, aux_channels, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
