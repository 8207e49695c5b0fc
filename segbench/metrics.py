"""Confusion matrix on the device, and the scores the model zoos report from it.

IoU per class is tp / (tp + fp + fn) over pixels whose ground truth is not ignored, as
cityscapesScripts' evalPixelLevelSemanticLabeling computes it; a class absent from both ground
truth and prediction has no IoU (NaN) and is left out of mIoU, as that script's average does.
Per-class accuracy (tp / ground-truth pixels; NaN for a class absent from the ground truth),
mAcc and aAcc follow mmsegmentation's IoUMetric, since the official script has no such scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from segbench.cityscapes import CLASSES, IGNORE_INDEX


def confusion_matrix(
    prediction: torch.Tensor,
    target: torch.Tensor,
    num_classes: int = len(CLASSES),
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts on the inputs' device; rows ground truth, columns prediction.

    `prediction` holds class indices in [0, num_classes); `target` the same or `ignore_index`.
    """
    valid = target != ignore_index
    codes = target[valid].long() * num_classes + prediction[valid].long()
    return torch.bincount(codes, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class SegmentationMetrics:
    """Scores in [0, 1]; per-class tuples in class order, NaN where a class has no score."""

    iou: tuple[float, ...]
    accuracy: tuple[float, ...]
    miou: float
    macc: float
    aacc: float


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise numerator / denominator, NaN where the denominator is 0."""
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _mean_of_defined(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def segmentation_metrics(matrix: torch.Tensor) -> SegmentationMetrics:
    """IoU, accuracy, mIoU, mAcc, aAcc from a confusion matrix (rows ground truth), in float64."""
    counts = matrix.detach().cpu().numpy().astype(np.float64)
    tp = np.diag(counts)
    gt_pixels = counts.sum(axis=1)
    predicted_pixels = counts.sum(axis=0)
    iou = _ratio(tp, gt_pixels + predicted_pixels - tp)
    accuracy = _ratio(tp, gt_pixels)
    total = counts.sum()
    return SegmentationMetrics(
        iou=tuple(iou.tolist()),
        accuracy=tuple(accuracy.tolist()),
        miou=_mean_of_defined(iou),
        macc=_mean_of_defined(accuracy),
        aacc=float(tp.sum() / total) if total else float("nan"),
    )
