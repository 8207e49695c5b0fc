"""ISANet (Huang et al., 2019): interlaced sparse self-attention on a dilated ResNet, as
mmsegmentation's ISAHead. The feature map is split into an 8x8 grid of local groups: a global
relation attends among pixels at the same position of every group (long range), then a local
relation among the pixels of one group (short range); both are batched self-attention."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import ConvBNReLU, SelfAttentionBlock
from segbench.models.fcn import auxiliary_fcn_head, dilated_head_channels
from segbench.models.registry import register_architecture
from segbench.models.backbones.resnet import ResNet
from segbench.models.segmentor import EncoderDecoder


class ISARelation(SelfAttentionBlock):
    """Self-attention with two-conv key/query projections, then a 1x1 ConvBNReLU on its output
    (mmseg's ISA SelfAttentionBlock)."""

    def __init__(self, channels: int, isa_channels: int) -> None:
        super().__init__(channels, channels, isa_channels, channels, share_key_query=False, key_query_num_convs=2, with_out=False)
        self.output_project = ConvBNReLU(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.output_project(super().forward(x, x))


def interlaced_groups(x: torch.Tensor, down_factor: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Zero-pad (B, C, H, W) to multiples of the local group size (centred, as mmseg), then regroup
    to (B·lh·lw, C, gh, gw): one batch item per position inside a group, spanning every group."""
    n, c, h, w = x.shape
    loc_h, loc_w = down_factor
    glb_h, glb_w = math.ceil(h / loc_h), math.ceil(w / loc_w)
    pad_h, pad_w = glb_h * loc_h - h, glb_w * loc_w - w
    x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    x = x.view(n, c, glb_h, loc_h, glb_w, loc_w).permute(0, 3, 5, 1, 2, 4).reshape(-1, c, glb_h, glb_w)
    return x, (n, c, h, w, glb_h, glb_w, loc_h, loc_w)


class ISAHead(nn.Module):
    """3x3 ConvBNReLU in, global then local relation, the result concatenated with the input conv's
    output and fused by a 1x1 ConvBNReLU, classifier."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        isa_channels: int = 256,
        down_factor: tuple[int, int] = (8, 8),
        in_index: int = -1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.down_factor = down_factor
        self.in_conv = ConvBNReLU(in_channels, channels, 3, padding=1)
        self.global_relation = ISARelation(channels, isa_channels)
        self.local_relation = ISARelation(channels, isa_channels)
        self.out_conv = ConvBNReLU(2 * channels, channels, 1)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        residual = self.in_conv(features[self.in_index])
        x, (n, c, h, w, glb_h, glb_w, loc_h, loc_w) = interlaced_groups(residual, self.down_factor)
        x = self.global_relation(x)
        x = x.view(n, loc_h, loc_w, c, glb_h, glb_w).permute(0, 4, 5, 3, 1, 2).reshape(-1, c, loc_h, loc_w)
        x = self.local_relation(x)
        x = x.view(n, glb_h, glb_w, c, loc_h, loc_w).permute(0, 3, 1, 4, 2, 5).reshape(n, c, glb_h * loc_h, glb_w * loc_w)
        top, left = (glb_h * loc_h - h) // 2, (glb_w * loc_w - w) // 2
        x = x[:, :, top : top + h, left : left + w]
        return self.conv_seg(self.dropout(self.out_conv(torch.cat([x, residual], dim=1))))


@register_architecture("isanet_resnet")
def isanet_resnet(
    *, depth: int = 50, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False
) -> EncoderDecoder:
    """ISANet on a dilated ResNet-D8: mmseg's `isanet_r{depth}-d8`."""
    channels, aux_channels = dilated_head_channels(depth)
    backbone = ResNet(depth)
    head = ISAHead(backbone.out_channels[3], channels, num_classes)
    aux = auxiliary_fcn_head(backbone, aux_channels, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
