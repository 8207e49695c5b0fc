"""GloRe (Chen et al., CVPR 2019, "Graph-Based Global Reasoning Networks") in PaddleSeg 2.8's
state_dict layout: ResNet_vd at output stride 8, a 1x1 conv-BN-ReLU to 512 channels, one global
reasoning unit (project the pixels onto 64 graph nodes of 128 states, a graph convolution, project
back, a 1x1 conv and BatchNorm added to its input), a 1x1 classifier. Its `.pdparams` weights load
through the `paddleseg` key adapter.

PaddleSeg's choices, kept: the unit's BatchNorm has eps 1e-4 (the others 1e-5), node states are
not normalized by the pixel count, and the graph convolution adds its input before the second conv
and applies ReLU after it. The auxiliary head (`head.auxlayer`, on stage 3) trains with weight
0.4; PaddleSeg also computes it in eval and drops it, segbench does not run it at inference.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import resize
from segbench.models.backbones.resnet_vd import ConvBN, ResNetVd
from segbench.models.registry import register_architecture

AUXILIARY_LOSS_WEIGHT = 0.4
"""PaddleSeg's loss coef for the auxiliary logits in the GloRe and GINet configs."""


class PaddleAuxLayer(nn.Module):
    """PaddleSeg's layers.AuxLayer: 3x3 conv-BN-ReLU (padding 1), dropout 0.1, 1x1 conv with bias."""

    def __init__(self, in_channels: int, inter_channels: int, num_classes: int, *, bias: bool = True) -> None:
        super().__init__()
        self.conv_bn_relu = ConvBN(in_channels, inter_channels, 3, relu=True, bias=bias)
        self.dropout = nn.Dropout(0.1)
        self.conv = nn.Conv2d(inter_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dropout(self.conv_bn_relu(x)))


class GraphConvolution(nn.Module):
    """GloRe's GCN on (B, states, nodes): a 1x1 conv across nodes added to its input, then a
    bias-free 1x1 conv across states and ReLU."""

    def __init__(self, num_state: int, num_node: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(num_node, num_node, 1)
        self.conv2 = nn.Conv1d(num_state, num_state, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x.transpose(1, 2)).transpose(1, 2) + x
        return torch.relu(self.conv2(h))


class GlobalReasoningUnit(nn.Module):
    """PaddleSeg's GruModule: states V = reduce(x) . project(x)^T over the pixels, the GCN, back
    to the pixels through the same projection, extended to the input width, BN (eps 1e-4), added."""

    def __init__(self, channels: int, num_state: int, num_node: int) -> None:
        super().__init__()
        self.reduction_dim = nn.Conv2d(channels, num_state, 1)
        self.projection_mat = nn.Conv2d(channels, num_node, 1)
        self.gcn = GraphConvolution(num_state, num_node)
        self.extend_dim = nn.Conv2d(num_state, channels, 1, bias=False)
        self.extend_bn = nn.BatchNorm2d(channels, eps=1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduction_dim(x).flatten(2)  # B, states, HW
        projection = self.projection_mat(x).flatten(2)  # B, nodes, HW
        nodes = self.gcn(reduced @ projection.transpose(1, 2))  # B, states, nodes
        y = (nodes @ projection).unflatten(2, x.shape[-2:])
        return x + self.extend_bn(self.extend_dim(y))


class GloReHead(nn.Module):
    def __init__(self, in_channels: int, aux_channels: int, num_classes: int, *, channels: int = 512) -> None:
        super().__init__()
        self.conv_bn_relu = ConvBN(in_channels, channels, 1, relu=True)
        self.gru_module = GlobalReasoningUnit(channels, num_state=128, num_node=64)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.auxlayer = PaddleAuxLayer(aux_channels, aux_channels // 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.gru_module(self.conv_bn_relu(x))))


class GloRe(nn.Module):
    """Logits at the input size (bilinear, the model's align_corners); in train mode also the
    auxiliary logits on stage 3, each with its loss weight in `loss_weights`."""

    training_only = ("head.auxlayer",)
    loss_weights = (1.0, AUXILIARY_LOSS_WEIGHT)

    def __init__(self, backbone: ResNetVd, num_classes: int, *, align_corners: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = GloReHead(backbone.out_channels[3], backbone.out_channels[2], num_classes)
        self.align_corners = align_corners

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(image)
        size = tuple(image.shape[-2:])
        logits = resize(self.head(features[3]), size, self.align_corners)
        if not self.training:
            return logits
        return logits, resize(self.head.auxlayer(features[2]), size, self.align_corners)


@register_architecture("glore_resnet_vd")
def glore_resnet_vd(*, depth: int = 50, num_classes: int = 19, align_corners: bool = False) -> GloRe:
    """PaddleSeg's GloRe on ResNet{depth}_vd at output stride 8 (`glore_resnet50_os8_*`)."""
    return GloRe(ResNetVd(depth, output_stride=8), num_classes, align_corners=align_corners)
