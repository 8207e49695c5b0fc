"""PIDNet (Xu et al., CVPR 2023), as mmsegmentation 1.2.2 builds it.

Three branches after a 1/8 stem, named after a PID controller: P (proportional, detail, 1/8),
I (integral, context, down to 1/64) and D (derivative, boundaries, 1/8). P takes context from I
through pixel-attention-guided fusion (PagFM); D adds I's differences; a pyramid pooling module
(PAPPM for S/M, DAPPM for L) closes I; boundary-attention-guided fusion (LightBag for S/M, Bag
for L) merges the three, gated by D. The decode head's P and D heads exist for training only
(mmseg's PIDHead runs them only in train mode, on the P and D features after stages 3 and 4);
inference, its params and its MACs leave them out. The backbone's resizes use align_corners
False, the head's (loss and post-processing) True, as mmseg's configs set them.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import DAPPM, PAPPM, BNReLUConv, ConvBNReLU, resize
from segbench.layers.residual import BasicBlock, Bottleneck, residual_stage
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1) -> ConvBNReLU:
    """mmcv's ConvModule without activation (keys `conv`, `bn`): PIDNet's shortcuts, compressions, diffs."""
    return ConvBNReLU(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, relu=False)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> ConvBNReLU:
    return _conv_bn(in_channels, out_channels, stride=stride)


def _stage(block, in_channels: int, channels: int, num_blocks: int, stride: int = 1) -> nn.Sequential:
    return residual_stage(block, in_channels, channels, num_blocks, stride=stride, downsample=_shortcut)


def _single_block(block, in_channels: int, channels: int) -> nn.Module:
    """mmseg's `_make_single_layer`: one block, no closing ReLU, a shortcut conv if the width changes."""
    out_channels = channels * block.expansion
    shortcut = _conv_bn(in_channels, out_channels) if in_channels != out_channels else None
    return block(in_channels, channels, downsample=shortcut, final_relu=False)


class PagFM(nn.Module):
    """Pixel-attention-guided fusion: sigma = sigmoid(<f_p(x_p), up(f_i(x_i))>) over channels;
    out = sigma * up(x_i) + (1 - sigma) * x_p (bilinear, align_corners False)."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.f_i = _conv_bn(in_channels, channels)
        self.f_p = _conv_bn(in_channels, channels)

    def forward(self, x_p: torch.Tensor, x_i: torch.Tensor) -> torch.Tensor:
        size = x_p.shape[-2:]
        f_i = resize(self.f_i(x_i), size, align_corners=False)
        sigma = torch.sigmoid(torch.sum(self.f_p(x_p) * f_i, dim=1, keepdim=True))
        return sigma * resize(x_i, size, align_corners=False) + (1 - sigma) * x_p


class Bag(nn.Module):
    """Boundary-attention-guided fusion (PIDNet-L): pre-activation 3x3 conv of
    sigma * x_p + (1 - sigma) * x_i, sigma = sigmoid(x_d)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = BNReLUConv(in_channels, out_channels, 3, padding=1)

    def forward(self, x_p: torch.Tensor, x_i: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        sigma = torch.sigmoid(x_d)
        return self.conv(sigma * x_p + (1 - sigma) * x_i)


class LightBag(nn.Module):
    """Light Bag (PIDNet-S/M): f_p((1 - sigma) * x_i + x_p) + f_i(x_i + sigma * x_p), 1x1 ConvBN each."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.f_p = _conv_bn(in_channels, out_channels)
        self.f_i = _conv_bn(in_channels, out_channels)

    def forward(self, x_p: torch.Tensor, x_i: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        sigma = torch.sigmoid(x_d)
        return self.f_p((1 - sigma) * x_i + x_p) + self.f_i(x_i + sigma * x_p)


class PIDNet(nn.Module):
    """PIDNet backbone with mmseg's keys. S: channels 32, M: 64 (both 2 stem / 3 branch blocks,
    PAPPM, LightBag); L: 64 with 3 stem / 4 branch blocks, DAPPM and Bag.

    Returns the fused 1/8 features (4 * channels wide); in train mode (P after stage 3, fused,
    D after stage 4), which the P and D heads read.
    """

    def __init__(
        self, *, channels: int = 32, ppm_channels: int = 96, num_stem_blocks: int = 2, num_branch_blocks: int = 3
    ) -> None:
        super().__init__()
        c = channels
        self.align_corners = False  # every mmseg PIDNet config
        self.stem = nn.Sequential(
            ConvBNReLU(3, c, 3, stride=2, padding=1),
            ConvBNReLU(c, c, 3, stride=2, padding=1),
            _stage(BasicBlock, c, c, num_stem_blocks),
            nn.ReLU(),
            _stage(BasicBlock, c, 2 * c, num_stem_blocks, stride=2),
            nn.ReLU(),
        )
        self.relu = nn.ReLU()
        self.i_branch_layers = nn.ModuleList(
            [
                _stage(BasicBlock, 2 * c, 4 * c, num_branch_blocks, stride=2),
                _stage(BasicBlock, 4 * c, 8 * c, num_branch_blocks, stride=2),
                _stage(Bottleneck, 8 * c, 8 * c, 2, stride=2),
            ]
        )
        self.p_branch_layers = nn.ModuleList(
            [
                _stage(BasicBlock, 2 * c, 2 * c, num_stem_blocks),
                _stage(BasicBlock, 2 * c, 2 * c, num_stem_blocks),
                _stage(Bottleneck, 2 * c, 2 * c, 1),
            ]
        )
        self.compression_1 = _conv_bn(4 * c, 2 * c)
        self.compression_2 = _conv_bn(8 * c, 2 * c)
        self.pag_1 = PagFM(2 * c, c)
        self.pag_2 = PagFM(2 * c, c)
        light = num_stem_blocks == 2
        if light:
            d_layers = [_single_block(BasicBlock, 2 * c, c), _stage(Bottleneck, c, c, 1)]
        else:
            d_layers = [_single_block(BasicBlock, 2 * c, 2 * c), _single_block(BasicBlock, 2 * c, 2 * c)]
        self.d_branch_layers = nn.ModuleList(d_layers)
        self.diff_1 = _conv_bn(4 * c, c if light else 2 * c, 3)
        self.diff_2 = _conv_bn(8 * c, 2 * c, 3)
        self.spp = (PAPPM if light else DAPPM)(16 * c, ppm_channels, 4 * c, num_scales=5)
        self.dfm = (LightBag if light else Bag)(4 * c, 4 * c)
        self.d_branch_layers.append(_stage(Bottleneck, 2 * c, 2 * c, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = (image.shape[-2] // 8, image.shape[-1] // 8)  # as mmseg: the floor, not the branch's own size
        x = self.stem(image)
        # stage 3
        x_i = self.relu(self.i_branch_layers[0](x))
        x_p = self.pag_1(self.p_branch_layers[0](x), self.compression_1(x_i))
        x_d = self.d_branch_layers[0](x) + resize(self.diff_1(x_i), size, self.align_corners)
        p_after_stage_3 = x_p
        # stage 4
        x_i = self.relu(self.i_branch_layers[1](x_i))
        x_p = self.pag_2(self.p_branch_layers[1](self.relu(x_p)), self.compression_2(x_i))
        x_d = self.d_branch_layers[1](self.relu(x_d)) + resize(self.diff_2(x_i), size, self.align_corners)
        d_after_stage_4 = x_d
        # stage 5
        x_i = resize(self.spp(self.i_branch_layers[2](x_i)), size, self.align_corners)
        x_p = self.p_branch_layers[2](self.relu(x_p))
        x_d = self.d_branch_layers[2](self.relu(x_d))
        fused = self.dfm(x_p, x_i, x_d)
        return (p_after_stage_3, fused, d_after_stage_4) if self.training else fused


class PIDHeadBranch(nn.Module):
    """mmseg's BasePIDHead: pre-activation 3x3 conv, BN, ReLU (keys `conv.bn`, `conv.conv`, `norm`)."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv = BNReLUConv(in_channels, channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class PIDHead(nn.Module):
    """The I head on the fused features (dropout 0.1, mmseg's default, then `conv_seg`); in train
    mode also the P head (classes) and the D head (one boundary channel), outputs (P, I, D) with
    mmseg's loss weights 0.4, 1 and 20 (its fourth loss, boundary-masked, reuses I's logits)."""

    training_only = ("p_head", "p_cls_seg", "d_head", "d_cls_seg")
    loss_weights = (0.4, 1.0, 20.0)

    def __init__(self, in_channels: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(0.1)
        self.i_head = PIDHeadBranch(in_channels, channels)
        self.p_head = PIDHeadBranch(in_channels // 2, channels)
        self.d_head = PIDHeadBranch(in_channels // 2, in_channels // 4)
        self.p_cls_seg = nn.Conv2d(channels, num_classes, 1)
        self.d_cls_seg = nn.Conv2d(in_channels // 4, 1, 1)

    def forward(self, features) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.training:
            return self.conv_seg(self.dropout(self.i_head(features)))
        x_p, x_i, x_d = features
        return (
            self.p_cls_seg(self.p_head(x_p)),
            self.conv_seg(self.dropout(self.i_head(x_i))),
            self.d_cls_seg(self.d_head(x_d)),
        )


@register_architecture("pidnet")
def pidnet(
    *,
    channels: int = 32,
    ppm_channels: int = 96,
    num_stem_blocks: int = 2,
    num_branch_blocks: int = 3,
    head_channels: int = 128,
    num_classes: int = 19,
    align_corners: bool = True,
) -> EncoderDecoder:
    """PIDNet-S by default. M: channels=64; L: channels=64, ppm_channels=112, num_stem_blocks=3,
    num_branch_blocks=4, head_channels=256. `align_corners` is the head's (mmseg's configs: True)."""
    backbone = PIDNet(
        channels=channels, ppm_channels=ppm_channels, num_stem_blocks=num_stem_blocks, num_branch_blocks=num_branch_blocks
    )
    return EncoderDecoder(backbone, PIDHead(4 * channels, head_channels, num_classes), align_corners=align_corners)
