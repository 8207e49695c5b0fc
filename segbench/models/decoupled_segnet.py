"""DecoupledSegNet (Li et al., ECCV 2020, "Improving Semantic Segmentation via Decoupled Body and
Edge Supervision") in PaddleSeg 2.8's state_dict layout: ResNet_vd at output stride 8 (multi-grid
1, 2, 4), ASPP with image pooling, then the ASPP map split into a body (the map warped along a
flow learned against a twice-strided depthwise summary of itself) and an edge (the map minus its
body); the edge is fused with stage 1 at 1/4, the body added back, and the final classifier runs
on [ASPP, body + edge] at 1/4. Its `.pdparams` weights load through the `paddleseg` key adapter.

PaddleSeg's choices, kept: its strided depthwise convs pad as Paddle's 'same' does (TF-style: an
even side gets its one pixel of padding at the bottom/right only), the warp is SFNet's (flow /
(W, H), grid_sample with align_corners=True), every resize uses the model's align_corners. The body
and edge heads (`dsn_seg_body`, `edge_out`) train only, with the configs' loss weights 1 and 25
(the edge as logits; PaddleSeg applies the sigmoid before its BCE); PaddleSeg also computes them in
eval and drops them, segbench does not run them at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import resize
from segbench.models.backbones.resnet_vd import ConvBN, ResNetVd
from segbench.models.registry import register_architecture
from segbench.models.sfnet import flow_warp


class SamePaddedConvBN(ConvBN):
    """ConvBN padded as Paddle's padding='same' at stride 2: total padding max((ceil(n/s) - 1) * s
    + k - n, 0) per side pair, the smaller half first."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int, **kwargs) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, **kwargs)
        self._conv.padding = (0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in reversed(x.shape[-2:]):  # F.pad takes the last dimension first
            total = max((-(-size // self._conv.stride[0]) - 1) * self._conv.stride[0] + self._conv.kernel_size[0] - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class PaddleASPP(nn.Module):
    """PaddleSeg's layers.ASPPModule with image pooling: 1x1 and dilated 3x3 conv-BN-ReLU blocks
    (with bias), a pooled 1x1 block (no bias) resized back, concatenated, 1x1 conv-BN-ReLU (with
    bias), dropout."""

    def __init__(self, in_channels: int, channels: int, ratios: tuple[int, ...], *, align_corners: bool) -> None:
        super().__init__()
        self.aspp_blocks = nn.ModuleList(
            ConvBN(in_channels, channels, 1 if r == 1 else 3, dilation=r, relu=True, bias=True) for r in ratios
        )
        self.global_avg_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBN(in_channels, channels, 1, relu=True))
        self.conv_bn_relu = ConvBN(channels * (len(ratios) + 1), channels, 1, relu=True, bias=True)
        self.dropout = nn.Dropout(0.1)
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = resize(self.global_avg_pool(x), tuple(x.shape[-2:]), self.align_corners)
        return self.dropout(self.conv_bn_relu(torch.cat([*(block(x) for block in self.aspp_blocks), pooled], dim=1)))


class SqueezeBodyEdge(nn.Module):
    """Body: x warped along a flow from [x, two stride-2 depthwise conv-BN-ReLU of x resized back];
    edge: x minus its body."""

    def __init__(self, channels: int, *, align_corners: bool) -> None:
        super().__init__()
        self.down = nn.Sequential(
            SamePaddedConvBN(channels, channels, 3, stride=2, groups=channels, bias=True, relu=True),
            SamePaddedConvBN(channels, channels, 3, stride=2, groups=channels, bias=True, relu=True),
        )
        self.flow_make = nn.Conv2d(2 * channels, 2, 3, padding=1, bias=False)
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        down = resize(self.down(x), tuple(x.shape[-2:]), self.align_corners)
        body = flow_warp(x, self.flow_make(torch.cat([x, down], dim=1)))
        return body, x - body


class DecoupledSegNetHead(nn.Module):
    def __init__(self, fine_channels: int, in_channels: int, num_classes: int, *, align_corners: bool) -> None:
        super().__init__()
        self.aspp = PaddleASPP(in_channels, 256, (1, 12, 24, 36), align_corners=align_corners)
        self.bot_fine = nn.Conv2d(fine_channels, 48, 1, bias=False)
        self.squeeze_body_edge = SqueezeBodyEdge(256, align_corners=align_corners)
        self.edge_fusion = nn.Conv2d(256 + 48, 256, 1, bias=False)
        self.edge_out = nn.Sequential(ConvBN(256, 48, 3, relu=True), nn.Conv2d(48, 1, 1, bias=False))
        self.dsn_seg_body = nn.Sequential(ConvBN(256, 256, 3, relu=True), nn.Conv2d(256, num_classes, 1, bias=False))
        self.final_seg = nn.Sequential(
            ConvBN(512, 256, 3, relu=True), ConvBN(256, 256, 3, relu=True), nn.Conv2d(256, num_classes, 1, bias=False)
        )
        self.align_corners = align_corners

    def forward(self, fine: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(final logits, body, edge) at 1/4 and 1/8; the two latter feed only the training heads."""
        size = tuple(fine.shape[-2:])
        aspp = self.aspp(x)
        body, edge = self.squeeze_body_edge(aspp)
        edge = self.edge_fusion(torch.cat([resize(edge, size, self.align_corners), self.bot_fine(fine)], dim=1))
        fused = torch.cat([resize(aspp, size, self.align_corners), edge + resize(body, size, self.align_corners)], dim=1)
        return self.final_seg(fused), body, edge


class DecoupledSegNet(nn.Module):
    """Logits at the input size (bilinear, the model's align_corners); in train mode also the body
    logits and the edge logits, each with its loss weight in `loss_weights`."""

    training_only = ("head.edge_out", "head.dsn_seg_body")
    loss_weights = (1.0, 1.0, 25.0)

    def __init__(self, backbone: ResNetVd, num_classes: int, *, align_corners: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        channels = backbone.out_channels
        self.head = DecoupledSegNetHead(channels[0], channels[3], num_classes, align_corners=align_corners)
        self.align_corners = align_corners

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        features = self.backbone(image)
        logits, body, edge = self.head(features[0], features[3])
        size = tuple(image.shape[-2:])
        if not self.training:
            return resize(logits, size, self.align_corners)
        outputs = (logits, self.head.dsn_seg_body(body), self.head.edge_out(edge))
        return tuple(resize(x, size, self.align_corners) for x in outputs)


@register_architecture("decoupled_segnet_resnet_vd")
def decoupled_segnet_resnet_vd(*, depth: int = 50, num_classes: int = 19, align_corners: bool = False) -> DecoupledSegNet:
    """PaddleSeg's DecoupledSegNet on ResNet{depth}_vd at output stride 8, multi-grid 1, 2, 4
    (`decoupledsegnet_resnet50_os8_*`)."""
    return DecoupledSegNet(ResNetVd(depth, output_stride=8, multi_grid=(1, 2, 4)), num_classes, align_corners=align_corners)
