"""HRNetW48Contrast (Wang et al., ICCV 2021, "Exploring Cross-Image Pixel Contrast for Semantic
Segmentation") in PaddleSeg 2.8's state_dict layout; its `.pdparams` weights load through the
`paddleseg` key adapter.

HRNet_W48's concatenated stride-4 map (720 channels) goes into `cls_head` (3x3 ConvBNReLU with a
conv bias, dropout, 1x1 classifier without bias), logits resized to the input bilinearly with
align_corners=False. `proj_head` (1x1 ConvBNReLU, 1x1 conv to proj_dim, L2-normalized) gives the
pixel embeddings of the contrastive loss: PaddleSeg runs it in training only, so it is in
`training_only`, out of the inference forward, its parameter count and MACs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import resize
from segbench.models.backbones.hrnet_paddle import HRNetPaddle
from segbench.models.backbones.resnet_vd import ConvBN
from segbench.models.registry import register_architecture


class ProjectionHead(nn.Module):
    def __init__(self, in_channels: int, proj_dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(ConvBN(in_channels, in_channels, 1, relu=True, bias=True), nn.Conv2d(in_channels, proj_dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(x), p=2, dim=1)


class HRNetContrast(nn.Module):
    """PaddleSeg's HRNetW48Contrast layout (`backbone`, `cls_head`, `proj_head`). Eval: the logits.
    Train: the logits and the embeddings at feature resolution (stride 4), as PaddleSeg returns
    them. segbench trains the embeddings with cross-entropy over their channels against the labels
    taken nearest at that size, a stand-in for the pixel-contrast loss (PaddleSeg's weight 0.1)."""

    training_only = ("proj_head",)
    loss_weights = (1.0, 0.1)

    def __init__(self, backbone: HRNetPaddle, num_classes: int, *, proj_dim: int = 720, drop_prob: float = 0.1) -> None:
        super().__init__()
        channels = backbone.feat_channels[0]
        self.backbone = backbone
        self.cls_head = nn.Sequential(
            ConvBN(channels, channels, 3, relu=True, bias=True), nn.Dropout2d(drop_prob), nn.Conv2d(channels, num_classes, 1, bias=False)
        )
        self.proj_head = ProjectionHead(channels, proj_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        size = tuple(image.shape[-2:])
        features = self.backbone(image)[0]
        logits = resize(self.cls_head(features), size, False)
        if not self.training:
            return logits
        return logits, self.proj_head(features)


@register_architecture("hrnet_contrast")
def hrnet_contrast(*, width: int = 48, num_classes: int = 19, proj_dim: int = 720, drop_prob: float = 0.1) -> HRNetContrast:
    """PaddleSeg's HRNetW48Contrast (HRNet_W{width}; the Cityscapes config: W48, proj_dim 720)."""
    return HRNetContrast(HRNetPaddle(width), num_classes, proj_dim=proj_dim, drop_prob=drop_prob)
