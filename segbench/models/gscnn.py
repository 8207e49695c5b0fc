"""GSCNN (Takikawa et al., ICCV 2019, "Gated-SCNN: Gated Shape CNNs for Semantic Segmentation") in
PaddleSeg 2.8's state_dict layout: ResNet_vd at output stride 8 (multi-grid 1, 2, 4), a shape
stream (from the stem's output, three residual blocks and gated convolutions driven by 1x1
side outputs of stages 2-4) whose edge map, with the Canny edges of the input image, gates an ASPP
(image pooling and an edge branch), and DeepLabV3+'s decoder on stage 1. Its `.pdparams` weights
load through the `paddleseg` key adapter. Every layer runs at inference: the logits depend on
the shape stream.

PaddleSeg computes the Canny edges with OpenCV at inference (cv2.Canny(image, 10, 100) on the
input taken back to 0..255 as PaddleSeg's Normalize(0.5, 0.5) made it, cast to uint8). segbench
computes the same edges in torch (`canny`), on the model's device; PaddleSeg copies the batch to
the host for OpenCV, so its latency includes a device sync that segbench's does not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import resize
from segbench.models.backbones.resnet_vd import BasicBlockVd, ConvBN, ResNetVd
from segbench.models.decoupled_segnet import PaddleASPP
from segbench.models.ginet import SeparableConvBNReLU
from segbench.models.registry import register_architecture

_TAN_22_5 = 13573  # OpenCV's tan(22.5 deg) in 15-bit fixed point: (int)(0.41421356 * 2**15 + 0.5)


def _sobel(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's 3x3 Sobel x and y derivatives (integers) with a replicated border."""
    p = F.pad(image, (1, 1, 1, 1), mode="replicate")
    row = p[..., :, :-2], p[..., :, 1:-1], p[..., :, 2:]  # columns x-1, x, x+1
    smooth_x = row[0] + 2 * row[1] + row[2]  # along x, every row of the padded image
    diff_x = row[2] - row[0]
    dx = diff_x[..., :-2, :] + 2 * diff_x[..., 1:-1, :] + diff_x[..., 2:, :]
    dy = smooth_x[..., 2:, :] - smooth_x[..., :-2, :]
    return dx, dy


def canny(image: torch.Tensor, low: int = 10, high: int = 100) -> torch.Tensor:
    """cv2.Canny(image, low, high) with its defaults (3x3 Sobel, L1 gradient) on a (B, C, H, W)
    uint8-valued image: at each pixel the channel with the largest |dx| + |dy| (the first on a
    tie), non-maximum suppression in OpenCV's four sectors with its strict/non-strict neighbour
    comparisons (zero magnitude outside the image), then hysteresis: pixels above `low` joined
    (8-connected) to one above `high`. Returns (B, 1, H, W) in {0, 1}. On the meta device, which
    only counts, the hysteresis (iterated until no pixel changes) is skipped."""
    dx, dy = _sobel(image.to(torch.int32))
    norm = dx.abs() + dy.abs()
    best = norm.argmax(dim=1, keepdim=True)  # torch's argmax returns the first maximum
    dx, dy, norm = dx.gather(1, best), dy.gather(1, best), norm.gather(1, best)
    padded, (height, width) = F.pad(norm, (1, 1, 1, 1)), norm.shape[-2:]

    def at(oy: int, ox: int) -> torch.Tensor:
        """The magnitude of the neighbour at (y + oy, x + ox)."""
        return padded[..., 1 + oy : 1 + oy + height, 1 + ox : 1 + ox + width]

    x, y = dx.abs().to(torch.int64), dy.abs().to(torch.int64) << 15
    tg22 = x * _TAN_22_5
    tg67 = tg22 + (x << 16)
    horizontal = (norm > at(0, -1)) & (norm >= at(0, 1))
    vertical = (norm > at(-1, 0)) & (norm >= at(1, 0))
    same_sign = (dx ^ dy) >= 0  # s = 1: compare above-left with below-right; s = -1: above-right, below-left
    diagonal = torch.where(same_sign, (norm > at(-1, -1)) & (norm > at(1, 1)), (norm > at(-1, 1)) & (norm > at(1, -1)))
    peak = torch.where(y < tg22, horizontal, torch.where(y > tg67, vertical, diagonal))
    weak = (peak & (norm > low)).float()
    edges = weak * (norm > high)
    if edges.device.type == "meta":
        return edges
    while True:
        grown = F.max_pool2d(edges, 3, 1, 1) * weak
        if torch.equal(grown, edges):
            return edges
        edges = grown


class GatedSpatialConv(nn.Module):
    """PaddleSeg's GatedSpatailConv2d: a gate from [features, gating map] (BN, 1x1 conv, ReLU, 1x1
    conv to one channel, BN, sigmoid) scales the features by 1 + gate, then a bias-free 1x1 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self._gate_conv = nn.Sequential(
            nn.BatchNorm2d(channels + 1),
            nn.Conv2d(channels + 1, channels + 1, 1),
            nn.ReLU(),
            nn.Conv2d(channels + 1, 1, 1),
            nn.BatchNorm2d(1),
            nn.Sigmoid(),
        )
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        return self.conv(x * (self._gate_conv(torch.cat([x, gating], dim=1)) + 1))


class EdgeASPP(PaddleASPP):
    """GSCNN's ASPP: PaddleSeg's ASPP with image pooling plus a branch of the edge map (resized to
    the features, 1x1 conv-BN-ReLU without bias) before the 1x1 projection."""

    def __init__(self, in_channels: int, channels: int, ratios: tuple[int, ...], *, align_corners: bool) -> None:
        super().__init__(in_channels, channels, ratios, align_corners=align_corners)
        self.edge_conv = ConvBN(1, channels, 1, relu=True)
        self.conv_bn_relu = ConvBN(channels * (len(ratios) + 2), channels, 1, relu=True, bias=True)

    def forward(self, x: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        branches = [*(block(x) for block in self.aspp_blocks), resize(self.global_avg_pool(x), size, self.align_corners)]
        branches.append(self.edge_conv(resize(edge, size, self.align_corners)))
        return self.dropout(self.conv_bn_relu(torch.cat(branches, dim=1)))


class DeepLabV3PlusDecoder(nn.Module):
    """PaddleSeg's deeplab.Decoder: low-level 1x1 conv-BN-ReLU to 48, the ASPP map resized to it,
    two separable conv-BN-ReLU (with bias) to 256, a 1x1 classifier."""

    def __init__(self, in_channels: int, num_classes: int, *, align_corners: bool) -> None:
        super().__init__()
        self.conv_bn_relu1 = ConvBN(in_channels, 48, 1, relu=True, bias=True)
        self.conv_bn_relu2 = SeparableConvBNReLU(304, 256, bias=True)
        self.conv_bn_relu3 = SeparableConvBNReLU(256, 256, bias=True)
        self.conv = nn.Conv2d(256, num_classes, 1)
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        low = self.conv_bn_relu1(low)
        x = torch.cat([resize(x, tuple(low.shape[-2:]), self.align_corners), low], dim=1)
        return self.conv(self.conv_bn_relu3(self.conv_bn_relu2(x)))


class GSCNNHead(nn.Module):
    def __init__(self, channels: list[int], num_classes: int, *, align_corners: bool) -> None:
        super().__init__()
        self.dsn1, self.dsn2, self.dsn3 = (nn.Conv2d(c, 1, 1) for c in channels[1:])
        for i, width in enumerate((64, 32, 16), start=1):
            self.add_module(f"res{i}", BasicBlockVd(width, width, stride=1, dilation=1, shortcut=True, vd_pool=False))
            self.add_module(f"d{i}", nn.Conv2d(width, width // 2, 1))
            self.add_module(f"gate{i}", GatedSpatialConv(width // 2))
        self.fuse = nn.Conv2d(8, 1, 1, bias=False)
        self.cw = nn.Conv2d(2, 1, 1, bias=False)
        self.aspp = EdgeASPP(channels[-1], 256, (1, 12, 24, 36), align_corners=align_corners)
        self.decoder = DeepLabV3PlusDecoder(channels[0], num_classes, align_corners=align_corners)
        self.align_corners = align_corners

    def forward(self, image: torch.Tensor, stem: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        size = tuple(image.shape[-2:])
        up = lambda x: resize(x, size, self.align_corners)  # noqa: E731  (every map of the shape stream is at the input size)
        cs = up(stem)
        sides = (self.dsn1(features[1]), self.dsn2(features[2]), self.dsn3(features[3]))
        for i, side in enumerate(sides, start=1):
            cs = getattr(self, f"res{i}")(cs)
            cs = getattr(self, f"gate{i}")(getattr(self, f"d{i}")(up(cs)), up(side))
        edge = torch.sigmoid(up(self.fuse(cs)))
        pixels = ((image * 0.5 + 0.5) * 255).to(torch.uint8)  # PaddleSeg's Normalize undone, cast as numpy does
        gate = torch.sigmoid(self.cw(torch.cat([edge, canny(pixels).to(edge.dtype)], dim=1)))
        return self.decoder(self.aspp(features[3], gate), features[0])


class GSCNN(nn.Module):
    """Logits at the input size (bilinear, the model's align_corners)."""

    def __init__(self, backbone: ResNetVd, num_classes: int, *, align_corners: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = GSCNNHead(backbone.out_channels, num_classes, align_corners=align_corners)
        self.align_corners = align_corners

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        stem, features = self.backbone.forward_with_stem(image)
        return resize(self.head(image, stem, features), tuple(image.shape[-2:]), self.align_corners)


@register_architecture("gscnn_resnet_vd")
def gscnn_resnet_vd(*, depth: int = 50, num_classes: int = 19, align_corners: bool = False) -> GSCNN:
    """PaddleSeg's GSCNN on ResNet{depth}_vd at output stride 8, multi-grid 1, 2, 4 (`gscnn_resnet50_os8_*`)."""
    return GSCNN(ResNetVd(depth, output_stride=8, multi_grid=(1, 2, 4)), num_classes, align_corners=align_corners)
