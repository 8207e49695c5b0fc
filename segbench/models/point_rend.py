"""PointRend (Kirillov et al., CVPR 2020, "PointRend: Image Segmentation as Rendering") on a
Semantic FPN, in mmsegmentation's `CascadeEncoderDecoder` layout: `decode_head.0` is the FPN head
(coarse logits at stride 4), `decode_head.1` the point head, a shared MLP over points.

Inference is mmseg's subdivision: `subdivision_steps` times, upsample the logits by
`scale_factor`, take the `num_points` most uncertain pixels, and replace their logits by the point
head's prediction from the fine-grained (FPN level 0) and coarse features sampled there. The
number of points is fixed, so the forward runs on the meta device and its MACs include the steps.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import resize
from segbench.layers.points import most_uncertain_points, point_sample, training_points
from segbench.models.backbones.resnet import ResNet
from segbench.models.fpn import FPN, SemanticFPNHead
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder


class PointMLPLayer(nn.Module):
    """A 1x1 Conv1d with bias and ReLU under mmcv ConvModule's `conv` key."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


class PointHead(nn.Module):
    """mmseg's PointHead: an MLP over [fine-grained, coarse] point features, the coarse logits
    concatenated again after every layer (`coarse_pred_each_layer`)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, num_fcs: int = 3) -> None:
        super().__init__()
        self.fcs = nn.ModuleList(
            PointMLPLayer((in_channels if k == 0 else channels) + num_classes, channels) for k in range(num_fcs)
        )
        self.fc_seg = nn.Conv1d(channels + num_classes, num_classes, 1)

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """(N, C_fine, P) and (N, classes, P) point features -> (N, classes, P) point logits."""
        x = fine
        for fc in self.fcs:
            x = fc(torch.cat([x, coarse], dim=1))
        return self.fc_seg(torch.cat([x, coarse], dim=1))


class PointRendHeads(nn.ModuleList):
    """[FPN head, point head] under mmseg's `decode_head.0` / `decode_head.1` keys.

    Eval mode: the coarse logits refined by subdivision (stride 1 after two 2x steps from stride 4).
    Train mode: (coarse logits, point logits) on mmseg's training points (`training_points`), the
    point logits as a (N, classes, 1, P) map: segbench's training step resizes every output to the
    labels, where mmseg takes labels at the points; the step's cost does not depend on the labels.
    """

    loss_weights = (1.0, 1.0)

    def __init__(
        self,
        coarse_head: SemanticFPNHead,
        point_head: PointHead,
        *,
        subdivision_steps: int = 2,
        subdivision_num_points: int = 8196,
        scale_factor: int = 2,
        train_num_points: int = 2048,
        align_corners: bool = False,
    ) -> None:
        super().__init__([coarse_head, point_head])
        self.subdivision_steps = subdivision_steps
        self.subdivision_num_points = subdivision_num_points
        self.scale_factor = scale_factor
        self.train_num_points = train_num_points
        self.align_corners = align_corners

    def point_logits(self, features: list[torch.Tensor], coarse: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """The point head's logits at `points`: FPN level 0 and the coarse logits sampled there."""
        fine = point_sample(features[0], points, align_corners=self.align_corners)
        return self[1](fine, point_sample(coarse, points, align_corners=self.align_corners))

    def refine(self, features: list[torch.Tensor], coarse: torch.Tensor) -> torch.Tensor:
        """mmseg's PointHead.predict before its final resize: upsample, re-predict the most uncertain points."""
        refined = coarse
        for _ in range(self.subdivision_steps):
            height, width = refined.shape[-2:]
            refined = resize(refined, (height * self.scale_factor, width * self.scale_factor), self.align_corners)
            batch, classes, height, width = refined.shape
            indices, points = most_uncertain_points(refined, self.subdivision_num_points)
            logits = self.point_logits(features, coarse, points)
            flat = refined.reshape(batch, classes, height * width)
            refined = flat.scatter(2, indices.unsqueeze(1).expand(-1, classes, -1), logits).view_as(refined)
        return refined

    def forward(self, features: list[torch.Tensor]):
        coarse = self[0](features)
        if not self.training:
            return self.refine(features, coarse)
        points = training_points(coarse.detach(), self.train_num_points)
        return coarse, self.point_logits(features, coarse, points).unsqueeze(2)


@register_architecture("pointrend_resnet")
def pointrend_resnet(
    *,
    depth: int = 50,
    num_classes: int = 19,
    subdivision_steps: int = 2,
    subdivision_num_points: int = 8196,
    align_corners: bool = False,
) -> EncoderDecoder:
    """PointRend on ResNetV1c + FPN as mmseg's `pointrend_r{depth}` configs (test_cfg: 2 steps,
    8196 points, scale factor 2; no auxiliary head)."""
    backbone = ResNet(depth, output_stride=32)
    neck = FPN(tuple(backbone.out_channels), 256)
    coarse_head = SemanticFPNHead(256, 128, num_classes, align_corners=align_corners, dropout=0.0)
    heads = PointRendHeads(
        coarse_head,
        PointHead(256, 256, num_classes),
        subdivision_steps=subdivision_steps,
        subdivision_num_points=subdivision_num_points,
        align_corners=align_corners,
    )
    return EncoderDecoder(backbone, heads, neck=neck, align_corners=align_corners)
