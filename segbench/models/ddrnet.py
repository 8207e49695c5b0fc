"""DDRNet (Hong et al., 2021, "Deep Dual-resolution Networks"), as mmsegmentation 1.2.2 builds it.

Two branches after a 1/8 stem: a spatial branch that stays at 1/8 and a context branch that
goes down to 1/64, exchanging features twice (bilateral fusion), then DAPPM on the context
branch, added to the spatial branch at 1/8. The decode head's auxiliary branch reads the
spatial branch after the first fusion; it exists only for training (mmseg's DDRHead runs it
only in train mode, and so does segbench), so inference, its MACs and its params leave it out.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import DAPPM, BNReLUConv, ConvBNReLU, resize
from segbench.layers.residual import BasicBlock, Bottleneck, residual_stage
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """DDRNet's shortcut is a plain Sequential (keys `downsample.0`, `downsample.1`)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))


def _stage(block, in_channels: int, channels: int, num_blocks: int, stride: int = 1) -> nn.Sequential:
    return residual_stage(block, in_channels, channels, num_blocks, stride=stride, downsample=_shortcut)


class DDRNet(nn.Module):
    """DDRNet-23 backbone (`channels` 32 for -slim, 64 for the full one); keys as mmseg's DDRNet.

    Returns the fused 1/8 features (4 * channels wide); in train mode also, first, the spatial
    branch after the first fusion (2 * channels), which feeds the auxiliary head.
    """

    def __init__(self, *, channels: int = 32, ppm_channels: int = 128, align_corners: bool = False) -> None:
        super().__init__()
        self.align_corners = align_corners
        c = channels
        self.stem = nn.Sequential(
            ConvBNReLU(3, c, 3, stride=2, padding=1),
            ConvBNReLU(c, c, 3, stride=2, padding=1),
            _stage(BasicBlock, c, c, 2),
            nn.ReLU(),
            _stage(BasicBlock, c, 2 * c, 2, stride=2),
            nn.ReLU(),
        )
        self.relu = nn.ReLU()
        self.context_branch_layers = nn.ModuleList(
            [
                _stage(BasicBlock, 2 * c, 4 * c, 2, stride=2),
                _stage(BasicBlock, 4 * c, 8 * c, 2, stride=2),
                _stage(Bottleneck, 8 * c, 8 * c, 1, stride=2),
            ]
        )
        self.compression_1 = ConvBNReLU(4 * c, 2 * c, 1, relu=False)
        self.down_1 = ConvBNReLU(2 * c, 4 * c, 3, stride=2, padding=1, relu=False)
        self.compression_2 = ConvBNReLU(8 * c, 2 * c, 1, relu=False)
        self.down_2 = nn.Sequential(
            ConvBNReLU(2 * c, 4 * c, 3, stride=2, padding=1),
            ConvBNReLU(4 * c, 8 * c, 3, stride=2, padding=1, relu=False),
        )
        self.spatial_branch_layers = nn.ModuleList(
            [_stage(BasicBlock, 2 * c, 2 * c, 2), _stage(BasicBlock, 2 * c, 2 * c, 2), _stage(Bottleneck, 2 * c, 2 * c, 1)]
        )
        self.spp = DAPPM(16 * c, ppm_channels, 4 * c, num_scales=5)

    def _fuse(self, spatial, context, compression, down, size):
        """Bilateral fusion: context += down(spatial), spatial += upsampled compression(context),
        both from the branches' values before the exchange (ReLU first, not in place)."""
        fused_context = context + down(self.relu(spatial))
        fused_spatial = spatial + resize(compression(self.relu(context)), size, self.align_corners)
        return fused_spatial, fused_context

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        size = (image.shape[-2] // 8, image.shape[-1] // 8)  # as mmseg: the floor, not the branch's own size
        x = self.stem(image)
        x_s, x_c = self._fuse(
            self.spatial_branch_layers[0](x), self.context_branch_layers[0](x), self.compression_1, self.down_1, size
        )
        after_first_fusion = x_s
        x_s, x_c = self._fuse(
            self.spatial_branch_layers[1](self.relu(x_s)),
            self.context_branch_layers[1](self.relu(x_c)),
            self.compression_2,
            self.down_2,
            size,
        )
        x_s = self.spatial_branch_layers[2](self.relu(x_s))
        x_c = resize(self.spp(self.context_branch_layers[2](self.relu(x_c))), size, self.align_corners)
        fused = x_s + x_c
        return (after_first_fusion, fused) if self.training else fused


def _head_branch(in_channels: int, channels: int) -> nn.Sequential:
    """mmseg's DDRHead._make_base_head: pre-activation 3x3 conv, then BN and ReLU (keys `0.conv`, `0.bn`, `1`)."""
    return nn.Sequential(BNReLUConv(in_channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class DDRHead(nn.Module):
    """The main head on the fused features; in train mode also the auxiliary one on the spatial
    branch (its logits second, loss weight 0.4 as mmseg's configs). No dropout (ratio 0)."""

    training_only = ("aux_head", "aux_cls_seg")
    loss_weights = (1.0, 0.4)

    def __init__(self, in_channels: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.head = _head_branch(in_channels, channels)
        self.aux_head = _head_branch(in_channels // 2, channels)
        self.aux_cls_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if not self.training:
            return self.conv_seg(self.head(features))
        after_first_fusion, fused = features
        return self.conv_seg(self.head(fused)), self.aux_cls_seg(self.aux_head(after_first_fusion))


@register_architecture("ddrnet")
def ddrnet(
    *, channels: int = 32, head_channels: int = 64, ppm_channels: int = 128, num_classes: int = 19, align_corners: bool = False
) -> EncoderDecoder:
    """DDRNet-23-slim by default (mmseg's `ddrnet_23-slim`); channels=64, head_channels=128 is DDRNet-23."""
    backbone = DDRNet(channels=channels, ppm_channels=ppm_channels, align_corners=align_corners)
    return EncoderDecoder(backbone, DDRHead(4 * channels, head_channels, num_classes), align_corners=align_corners)
