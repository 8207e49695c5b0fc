"""Evaluate a model on a Cityscapes split: one process, or every rank of a torchrun job.

Workers only decode PNGs; copies to the device are non-blocking from pinned memory, and
normalization, inference, argmax and the confusion matrix all stay on the device. Under
torch.distributed each rank takes images rank, rank + world_size, ... (no padding, so no image is
counted twice), the confusion matrices are summed with all_reduce, and only rank 0 gets a result.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Subset

from segbench.cityscapes import CLASSES, CityscapesDataset
from segbench.errors import SegbenchError
from segbench.inference import InferenceSettings, predicted_labels
from segbench.metrics import SegmentationMetrics, confusion_matrix, segmentation_metrics
from segbench.timing import synchronize


@dataclass(frozen=True)
class EvaluationResult:
    """What one evaluation measured. On a synthetic dataset the scores are demo numbers only.

    `num_images` and `forward_time_s` are totals over all ranks; `wall_time_s` is rank 0's.
    """

    confusion: torch.Tensor
    metrics: SegmentationMetrics
    class_names: tuple[str, ...]
    num_images: int
    mode: str
    settings: InferenceSettings
    dataset_root: str
    split: str
    is_synthetic: bool
    device: str
    world_size: int
    wall_time_s: float
    forward_time_s: float
    images_per_s: float
    wall_to_forward: float

    def as_record(self) -> dict:
        """JSON-safe: scores in percent, per-class lists in `classes` order, null where a class has none."""

        def percent(value: float) -> float | None:
            return None if math.isnan(value) else 100.0 * value

        m = self.metrics
        return {
            "unit": "percent",
            "miou": percent(m.miou),
            "macc": percent(m.macc),
            "aacc": percent(m.aacc),
            "classes": list(self.class_names),
            "iou": [percent(v) for v in m.iou],
            "accuracy": [percent(v) for v in m.accuracy],
            "confusion": self.confusion.tolist(),
            "mode": self.mode,
            "dataset_root": self.dataset_root,
            "split": self.split,
            "is_synthetic": self.is_synthetic,
            "num_images": self.num_images,
            "world_size": self.world_size,
            "wall_time_s": self.wall_time_s,
            "forward_time_s": self.forward_time_s,
            "images_per_s": self.images_per_s,
            "wall_to_forward": None if math.isnan(self.wall_to_forward) else self.wall_to_forward,
        }


class _ForwardTimer:
    """Calls the model and adds the synchronized time of every forward pass to `seconds`."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model = model
        self.device = device
        self.seconds = 0.0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        synchronize(self.device)
        start = time.perf_counter()
        logits = self.model(images)
        synchronize(self.device)
        self.seconds += time.perf_counter() - start
        return logits


_ORIGINAL_ERROR = f"{SegbenchError.__module__}.{SegbenchError.__qualname__}: "


def _worker_error_message(text: str) -> str | None:
    """The one-line message of a SegbenchError raised in a DataLoader worker, else None.

    torch raises such an error again in the main process as "Caught SegbenchError in DataLoader
    worker process N." followed by the worker's traceback; the message (with the file) is only
    on the traceback's last line.
    """
    lines = text.splitlines()
    if not lines or not lines[0].startswith("Caught SegbenchError in DataLoader worker"):
        return None
    return next((line[len(_ORIGINAL_ERROR) :] for line in reversed(lines) if line.startswith(_ORIGINAL_ERROR)), None)


def _mode_name(settings: InferenceSettings) -> str:
    return f"{settings.mode}+ms_flip" if settings.multi_scale_flip else settings.mode


def evaluate(
    model: nn.Module,
    dataset: CityscapesDataset,
    settings: InferenceSettings = InferenceSettings(),
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 1,
    num_workers: int = 2,
) -> EvaluationResult | None:
    """Confusion matrix and scores of `model` (put in eval mode on `device`) over `dataset`.

    Returns None on every rank but 0 when torch.distributed is initialized. Wall time covers the
    whole loop (workers starting, loading, copies, inference, metric, all_reduce); forward time
    only the model calls. `wall_to_forward` is wall time over the mean forward time per rank.
    """
    device = torch.device(device)
    distributed = dist.is_available() and dist.is_initialized()
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    shard = Subset(dataset, range(rank, len(dataset), world_size))
    loader = DataLoader(
        shard, batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda", shuffle=False
    )
    timer = _ForwardTimer(model.eval().to(device), device)
    matrix = torch.zeros(len(CLASSES), len(CLASSES), dtype=torch.int64, device=device)

    synchronize(device)
    start = time.perf_counter()
    try:
        for images, labels, _ in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            matrix += confusion_matrix(predicted_labels(timer, images, settings), labels)
    except SegbenchError as exc:
        message = _worker_error_message(str(exc))
        if message is None:
            raise
        raise SegbenchError(message) from exc
    totals = torch.tensor([len(shard), timer.seconds], dtype=torch.float64, device=device)
    if distributed:
        dist.all_reduce(matrix)
        dist.all_reduce(totals)
    synchronize(device)
    wall = time.perf_counter() - start

    if rank != 0:
        return None
    num_images, forward_total = int(totals[0]), float(totals[1])
    return EvaluationResult(
        confusion=matrix.cpu(),
        metrics=segmentation_metrics(matrix),
        class_names=CLASSES,
        num_images=num_images,
        mode=_mode_name(settings),
        settings=settings,
        dataset_root=str(dataset.root),
        split=dataset.split,
        is_synthetic=dataset.is_synthetic,
        device=str(device),
        world_size=world_size,
        wall_time_s=wall,
        forward_time_s=forward_total,
        images_per_s=num_images / wall,
        wall_to_forward=wall * world_size / forward_total if forward_total else float("nan"),
    )
