"""SFNet (Li et al., ECCV 2020, "Semantic Flow for Fast and Accurate Scene Parsing") in PaddleSeg
2.8's state_dict layout: ResNet_vd (output stride 8), a pyramid pooling module on the last stage,
and an FPN-like decoder whose flow alignment modules (FAM) warp each coarser map onto the finer
one with a learned flow before adding them. Its `.pdparams` weights load through the `paddleseg`
key adapter.

PaddleSeg's choices, kept: every resize inside the head is bilinear with align_corners=True, the
warp is grid_sample with Paddle's default align_corners=True and zero padding, the flow is
divided by (W, H) of the finer map, the logits are resized to the input with the model's
align_corners (False in the Cityscapes configs), and the PPM concatenates the input before its
pooled branches in reverse order (6, 3, 2, 1). No auxiliary head (the configs leave
enable_auxiliary_loss off), so all parameters run at inference.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import resize
from segbench.models.backbones.resnet_vd import ConvBN, ResNetVd
from segbench.models.registry import register_architecture

ConvBNReLUFactory = Callable[[int, int, int], nn.Module]
"""(in_channels, out_channels, kernel_size) -> a conv-BN-ReLU block in some codebase's layout."""


class AlignedModule(nn.Module):
    """FAM: flow from the finer map and the upsampled coarser one (both reduced to half width),
    then the coarser map (at full width, its own size) sampled along that flow at the finer size."""

    def __init__(self, channels: int, *, grid_align_corners: bool = True) -> None:
        super().__init__()
        self.down_h = nn.Conv2d(channels, channels // 2, 1, bias=False)
        self.down_l = nn.Conv2d(channels, channels // 2, 1, bias=False)
        self.flow_make = nn.Conv2d(channels, 2, 3, padding=1, bias=False)
        self.grid_align_corners = grid_align_corners

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        size = tuple(low.shape[-2:])
        high_reduced = resize(self.down_h(high), size, align_corners=True)
        flow = self.flow_make(torch.cat([high_reduced, self.down_l(low)], dim=1))
        return self.flow_warp(high, flow)

    def flow_warp(self, x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        return flow_warp(x, flow, align_corners=self.grid_align_corners)


def flow_warp(x: torch.Tensor, flow: torch.Tensor, *, align_corners: bool = True) -> torch.Tensor:
    """Sample x at an identity grid over flow's size in [-1, 1], moved by flow / (W, H), as
    PaddleSeg's flow warps do (bilinear, zero padding; Paddle's grid_sample default align_corners=True)."""
    height, width = flow.shape[-2:]
    ys = torch.linspace(-1.0, 1.0, height, dtype=x.dtype, device=x.device)
    xs = torch.linspace(-1.0, 1.0, width, dtype=x.dtype, device=x.device)
    grid = torch.stack([xs.expand(height, width), ys[:, None].expand(height, width)], dim=-1)
    norm = torch.tensor([width, height], dtype=x.dtype, device=x.device)
    grid = grid + flow.permute(0, 2, 3, 1) / norm
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners)


class PaddlePyramidPooling(nn.Module):
    """PaddleSeg's layers.PPModule with dim_reduction: pool to 1/2/3/6 bins, 1x1 ConvBNReLU (with
    bias) to in/4 channels, resize back; concatenate [input, bin 6, 3, 2, 1]; 3x3 ConvBNReLU (with bias)."""

    def __init__(self, in_channels: int, out_channels: int, *, bins: tuple[int, ...] = (1, 2, 3, 6), align_corners: bool = True) -> None:
        super().__init__()
        inter = in_channels // len(bins)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(size), ConvBN(in_channels, inter, 1, relu=True, bias=True)) for size in bins
        )
        self.conv_bn_relu2 = ConvBN(in_channels + inter * len(bins), out_channels, 3, relu=True, bias=True)
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        pooled = [resize(stage(x), size, self.align_corners) for stage in self.stages]
        return self.conv_bn_relu2(torch.cat([x, *reversed(pooled)], dim=1))


class SFNetHead(nn.Module):
    """PPM on the last feature, then from coarse to fine: lateral 1x1 conv-BN-ReLU (with bias), FAM
    warp of the running map onto it, sum, an `fpn_out` block; every level resized to the finest and
    concatenated into `conv_last` (a block, then a 1x1 classifier with bias).

    `ppm` and `conv_bn_relu` (the block of fpn_out and conv_last, at `kernel_size`) are the parts
    PaddleSeg's SFNet and the company's sf_seg build differently; the data flow is the same.
    """

    def __init__(
        self,
        in_channels: list[int],
        channels: int,
        num_classes: int,
        *,
        ppm: nn.Module,
        conv_bn_relu: ConvBNReLUFactory,
        kernel_size: int,
        grid_align_corners: bool,
    ) -> None:
        super().__init__()
        self.ppm = ppm
        self.fpn_in = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, channels, 1), nn.BatchNorm2d(channels), nn.ReLU()) for c in in_channels[:-1]
        )
        lateral = range(len(in_channels) - 1)
        self.fpn_out = nn.ModuleList(nn.Sequential(conv_bn_relu(channels, channels, kernel_size)) for _ in lateral)
        self.fpn_out_align = nn.ModuleList(AlignedModule(channels, grid_align_corners=grid_align_corners) for _ in lateral)
        self.conv_last = nn.Sequential(
            conv_bn_relu(len(in_channels) * channels, channels, kernel_size), nn.Conv2d(channels, num_classes, 1)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        f = self.ppm(features[-1])
        levels = [f]
        for i in reversed(range(len(features) - 1)):
            lateral = self.fpn_in[i](features[i])
            f = lateral + self.fpn_out_align[i](lateral, f)
            levels.append(self.fpn_out[i](f))
        levels.reverse()
        size = tuple(levels[0].shape[-2:])
        return self.conv_last(torch.cat([levels[0], *(resize(x, size, True) for x in levels[1:])], dim=1))


class PaddleSegmentor(nn.Module):
    """PaddleSeg's model layout (`backbone`, `head`): logits resized to the input inside the forward,
    bilinearly with the model's align_corners, as PaddleSeg's models return them."""

    def __init__(self, backbone: nn.Module, head: nn.Module, *, align_corners: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.align_corners = align_corners

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return resize(self.head(self.backbone(image)), tuple(image.shape[-2:]), self.align_corners)


def paddle_conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
    """PaddleSeg's layers.ConvBNReLU as SFNet builds it (bias_attr=False, 'same' padding at stride 1)."""
    return ConvBN(in_channels, out_channels, kernel_size, relu=True)


@register_architecture("sfnet_resnet_vd")
def sfnet_resnet_vd(*, depth: int = 18, num_classes: int = 19, align_corners: bool = False) -> PaddleSegmentor:
    """PaddleSeg's SFNet on ResNet{depth}_vd at output stride 8 (`sfnet_resnet{18,50}_os8_*`):
    fpn_dim 128 on ResNet-18, 256 on deeper ones, as PaddleSeg sets them."""
    backbone = ResNetVd(depth, output_stride=8)
    channels = 128 if depth == 18 else 256
    ppm = PaddlePyramidPooling(backbone.out_channels[-1], channels)
    head = SFNetHead(
        backbone.out_channels, channels, num_classes,
        ppm=ppm, conv_bn_relu=paddle_conv_bn_relu, kernel_size=3, grid_align_corners=True,
    )  # fmt: skip
    return PaddleSegmentor(backbone, head, align_corners=align_corners)
