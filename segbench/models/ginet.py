"""GINet (Wu et al., ECCV 2020, "GINet: Graph Interaction Network for Scene Parsing") in PaddleSeg
2.8's state_dict layout: ResNet_vd at output stride 8, FastFCN's joint pyramid upsampling (JPU) on
stages 2-4, and a graph interaction head: visual graph nodes projected from the pixels interact
with class nodes (one learned 300-d embedding per class) through a graph transfer, then go back to
the pixels. Its `.pdparams` weights load through the `paddleseg` key adapter.

PaddleSeg's choices, kept: the class embedding `head.inp` is a fixed (non-trainable) parameter, the
node states are averaged over the pixels, its GCN applies ReLU between its two convs, every resize
uses the model's align_corners (True in the configs; the JPU's own resizes are always True). The
auxiliary head (`auxlayer`, on stage 3 without JPU, conv without bias) trains with weight 0.4;
PaddleSeg also computes it in eval and drops it, segbench does not run it at inference.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import resize
from segbench.models.backbones.resnet_vd import ConvBN, ResNetVd
from segbench.models.glore import AUXILIARY_LOSS_WEIGHT, PaddleAuxLayer
from segbench.models.registry import register_architecture
from segbench.models.segmentor import mark_unused


class SeparableConvBNReLU(nn.Module):
    """PaddleSeg's layers.SeparableConvBNReLU: depthwise 3x3 conv-BN (dilated), pointwise 1x1
    conv-BN-ReLU; the JPU builds both convs without bias, DeepLabV3+'s decoder with. Keys keep
    Paddle's spelling `piontwise_conv`."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1, *, bias: bool = False) -> None:
        super().__init__()
        self.depthwise_conv = ConvBN(in_channels, in_channels, 3, dilation=dilation, groups=in_channels, bias=bias)
        self.piontwise_conv = ConvBN(in_channels, out_channels, 1, relu=True, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.piontwise_conv(self.depthwise_conv(x))


class JointPyramidUpsampling(nn.Module):
    """PaddleSeg's layers.JPU: stages 2-4 to `width` channels, resized to stage 2's size
    (align_corners=True), concatenated, four separable convs at dilation 1, 2, 4, 8 concatenated."""

    def __init__(self, in_channels: list[int], width: int = 512) -> None:
        super().__init__()
        self.conv5 = ConvBN(in_channels[-1], width, 3, relu=True)
        self.conv4 = ConvBN(in_channels[-2], width, 3, relu=True)
        self.conv3 = ConvBN(in_channels[-3], width, 3, relu=True)
        self.dilation1 = SeparableConvBNReLU(3 * width, width, 1)
        self.dilation2 = SeparableConvBNReLU(3 * width, width, 2)
        self.dilation3 = SeparableConvBNReLU(3 * width, width, 4)
        self.dilation4 = SeparableConvBNReLU(3 * width, width, 8)

    def forward(self, c2: torch.Tensor, c3: torch.Tensor, c4: torch.Tensor) -> torch.Tensor:
        size = tuple(c2.shape[-2:])
        x = torch.cat([resize(self.conv5(c4), size, True), resize(self.conv4(c3), size, True), self.conv3(c2)], dim=1)
        return torch.cat([self.dilation1(x), self.dilation2(x), self.dilation3(x), self.dilation4(x)], dim=1)


class GraphConvolution(nn.Module):
    """GINet's GCN on (B, states, nodes): a 1x1 conv across nodes added to its input, ReLU, a
    bias-free 1x1 conv across states."""

    def __init__(self, num_state: int, num_node: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(num_node, num_node, 1)
        self.conv2 = nn.Conv1d(num_state, num_state, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.conv1(x.transpose(1, 2)).transpose(1, 2) + x))


class GraphTransfer(nn.Module):
    """Attention between class nodes (word) and visual nodes; softmax over the classes carries the
    class graph to the visual nodes. PaddleSeg also carries the visual graph to the classes
    (`value_conv_vis`, softmax over the nodes) for a class-node output that GINet discards in
    training and eval alike; that branch is not computed here."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query_conv = nn.Conv1d(channels, channels // 2, 1)
        self.key_conv = nn.Conv1d(channels, channels // 2, 1)
        self.value_conv_vis = nn.Conv1d(channels, channels, 1)
        self.value_conv_word = nn.Conv1d(channels, channels, 1)

    def forward(self, word: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        energy = self.query_conv(word).transpose(1, 2) @ self.key_conv(vis)  # B, classes, nodes
        return self.value_conv_word(word) @ energy.softmax(dim=-2)


class GraphLayer(nn.Module):
    def __init__(self, num_state: int, num_node: int, num_classes: int) -> None:
        super().__init__()
        self.vis_gcn = GraphConvolution(num_state, num_node)
        self.word_gcn = GraphConvolution(num_state, num_classes)
        self.transfer = GraphTransfer(num_state)
        self.gamma_vis = nn.Parameter(torch.zeros(num_node))
        self.gamma_word = nn.Parameter(torch.zeros(num_classes))

    def forward(self, word: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        word = self.word_gcn(word)
        vis = self.vis_gcn(vis)
        return self.gamma_vis * self.transfer(word, vis) + vis


class GlobalReasonUnit(nn.Module):
    """Pixels -> visual nodes (projection, states averaged over the pixels), graph interaction
    with the class nodes, back to the pixels, extended to the input width, BN, added."""

    def __init__(self, channels: int, num_state: int, num_node: int, num_classes: int) -> None:
        super().__init__()
        self.conv_theta = nn.Conv2d(channels, num_node, 1)
        self.conv_phi = nn.Conv2d(channels, num_state, 1)
        self.graph = GraphLayer(num_state, num_node, num_classes)
        self.extend_dim = nn.Conv2d(num_state, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor, word: torch.Tensor) -> torch.Tensor:
        projection = self.conv_theta(x).flatten(2)  # B, nodes, HW
        states = self.conv_phi(x).flatten(2)  # B, states, HW
        vis = (projection @ states.transpose(1, 2)).transpose(1, 2) / (x.shape[-2] * x.shape[-1])
        y = (self.graph(word, vis) @ projection).unflatten(2, x.shape[-2:])
        return x + self.bn(self.extend_dim(y))


class GIHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        inter = in_channels // 4
        self.inp = nn.Parameter(torch.zeros(num_classes, 300), requires_grad=False)
        self.fc1 = nn.Sequential(nn.Linear(300, 128), nn.BatchNorm1d(128), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(128, 256), nn.BatchNorm1d(256), nn.ReLU())
        self.conv5 = ConvBN(in_channels, inter, 3, relu=True)
        self.gloru = GlobalReasonUnit(inter, num_state=256, num_node=84, num_classes=num_classes)
        self.conv6 = nn.Sequential(nn.Dropout(0.1), nn.Conv2d(inter, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        word = self.fc2(self.fc1(self.inp)).t().expand(x.shape[0], -1, -1)  # B, 256, classes
        return self.conv6(self.gloru(self.conv5(x), word))


class GINet(nn.Module):
    """Logits at the input size (bilinear, the model's align_corners); in train mode also the
    auxiliary logits on stage 3, each with its loss weight in `loss_weights`."""

    training_only = ("auxlayer",)
    loss_weights = (1.0, AUXILIARY_LOSS_WEIGHT)

    def __init__(self, backbone: ResNetVd, num_classes: int, *, align_corners: bool = True) -> None:
        super().__init__()
        self.backbone = backbone
        self.jpu = JointPyramidUpsampling(backbone.out_channels[1:])
        self.head = GIHead(4 * 512, num_classes)
        self.auxlayer = PaddleAuxLayer(backbone.out_channels[2], backbone.out_channels[2] // 4, num_classes, bias=False)
        self.align_corners = align_corners
        mark_unused(self, ("head.gloru.graph.transfer.value_conv_vis.", "head.gloru.graph.gamma_word"))  # the discarded class nodes

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        _, c2, c3, c4 = self.backbone(image)
        size = tuple(image.shape[-2:])
        logits = resize(self.head(self.jpu(c2, c3, c4)), size, self.align_corners)
        if not self.training:
            return logits
        return logits, resize(self.auxlayer(c3), size, self.align_corners)


@register_architecture("ginet_resnet_vd")
def ginet_resnet_vd(*, depth: int = 50, num_classes: int = 19, align_corners: bool = True) -> GINet:
    """PaddleSeg's GINet on ResNet{depth}_vd at output stride 8 with JPU (`ginet_resnet{50,101}_os8_*`)."""
    return GINet(ResNetVd(depth, output_stride=8), num_classes, align_corners=align_corners)
