"""Point sampling and uncertain-point selection of PointRend (Kirillov et al., CVPR 2020), in plain
PyTorch: mmcv's `point_sample` and mmseg's `PointHead.get_points_test` / `get_points_train`,
vectorized over points.

Points are (x, y) in [0, 1] x [0, 1] of the whole map, x along the width, as mmcv's. Everything
here works on the meta device (the number of points is fixed by the caller), so MACs count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def point_sample(features: torch.Tensor, points: torch.Tensor, *, align_corners: bool = False) -> torch.Tensor:
    """Bilinear samples of (N, C, H, W) features at (N, P, 2) points -> (N, C, P); points outside
    the map read zeros (grid_sample's zero padding, as mmcv)."""
    grid = (2.0 * points - 1.0).unsqueeze(2)  # [0, 1] -> grid_sample's [-1, 1], as (N, P, 1, 2)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners).squeeze(3)


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """(N, 1, ...) of (N, classes, ...) logits: second-best minus best logit of each pixel or point;
    the closest call scores highest."""
    top2 = logits.topk(2, dim=1).values
    return (top2[:, 1] - top2[:, 0]).unsqueeze(1)


def most_uncertain_points(logits: torch.Tensor, num_points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat indices (N, P), cell-centre points (N, P, 2)) of the P = min(num_points, H*W) most
    uncertain pixels of (N, C, H, W) logits, in torch.topk's order (as mmseg's get_points_test)."""
    batch, _, height, width = logits.shape
    scores = uncertainty(logits).view(batch, height * width)
    indices = scores.topk(min(num_points, height * width), dim=1).indices
    x_step, y_step = 1.0 / width, 1.0 / height
    x = x_step / 2.0 + (indices % width).float() * x_step
    y = y_step / 2.0 + (indices // width).float() * y_step
    return indices, torch.stack([x, y], dim=2)


def training_points(coarse: torch.Tensor, num_points: int, *, oversample_ratio: int = 3, importance_ratio: float = 0.75) -> torch.Tensor:
    """mmseg's PointHead.get_points_train: of `oversample_ratio * num_points` random points the
    `importance_ratio` share most uncertain (uncertainty of the logits sampled there, with
    align_corners=False whatever the head's, as mmseg), the rest random."""
    batch = coarse.shape[0]
    candidates = torch.rand(batch, num_points * oversample_ratio, 2, device=coarse.device)
    scores = uncertainty(point_sample(coarse, candidates))[:, 0]
    num_uncertain = int(importance_ratio * num_points)
    chosen = scores.topk(num_uncertain, dim=1).indices
    uncertain = candidates.gather(1, chosen.unsqueeze(2).expand(-1, -1, 2))
    return torch.cat([uncertain, torch.rand(batch, num_points - num_uncertain, 2, device=coarse.device)], dim=1)
