"""Test-time inference as mmsegmentation runs it: whole image, sliding window, multi-scale + flip.

Everything here runs on the device that holds the batch: images arrive as uint8 (or 0..255
float) RGB (N, 3, H, W), are normalized and resized there, and scores come back at the input
(H, W). Image resizing is bilinear with half-pixel centres (align_corners=False), as cv2 does in
mmseg's test pipeline; logits are resized with the model's own align_corners setting.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from segbench.layers import resize
from segbench.manifest import IMAGENET_MEAN, IMAGENET_STD, TestSpec
MS_FLIP_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
"""The image ratios of mmseg's Cityscapes mIoU(ms+flip), relative to the test size."""


@dataclass(frozen=True)
class InferenceSettings:
    """How one model is tested: mmseg's test_cfg (mode, crop, stride) plus its test pipeline.

    `test_size` is the (H, W) an image is resized to before inference (None: as loaded); scores
    are always returned at the loaded size. `mean`/`std` are per RGB channel on the 0..255 scale.
    """

    mode: str = "whole"
    crop_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    test_size: tuple[int, int] | None = None
    align_corners: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    multi_scale_flip: bool = False
    scales: tuple[float, ...] = MS_FLIP_SCALES

    def __post_init__(self) -> None:
        if self.mode not in ("whole", "slide"):
            raise ValueError(f"mode must be 'whole' or 'slide', got {self.mode!r}")
        if self.mode == "slide" and (self.crop_size is None or self.stride is None):
            raise ValueError(f"slide mode needs crop_size and stride, got {self.crop_size} and {self.stride}")


def inference_settings(test: TestSpec, *, size: tuple[int, int] | None = None, multi_scale_flip: bool = False) -> InferenceSettings:
    """A manifest's Test section as InferenceSettings; `size` overrides its test size."""
    return InferenceSettings(
        mode=test.mode,
        crop_size=test.crop,
        stride=test.stride,
        test_size=size or test.size,
        align_corners=test.align_corners,
        mean=test.mean,
        std=test.std,
        multi_scale_flip=multi_scale_flip,
    )


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(images - mean) / std per channel, in float32 on the images' device."""
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images.float() - mean_t) / std_t


def slide_windows(
    size: tuple[int, int], crop_size: tuple[int, int], stride: tuple[int, int]
) -> list[tuple[int, int, int, int]]:
    """(y1, y2, x1, x2) of mmseg's sliding windows: a regular grid, the last ones clamped to the image.

    Per axis there are max(size - crop + stride - 1, 0) // stride + 1 windows; an image smaller
    than the crop gets a single window of its own size.
    """
    rows, cols = (_axis_windows(length, crop, step) for length, crop, step in zip(size, crop_size, stride))
    return [(y1, y2, x1, x2) for y1, y2 in rows for x1, x2 in cols]


def _axis_windows(length: int, crop: int, step: int) -> list[tuple[int, int]]:
    grids = max(length - crop + step - 1, 0) // step + 1
    ends = [min(i * step + crop, length) for i in range(grids)]
    return [(max(end - crop, 0), end) for end in ends]


def window_count_map(
    size: tuple[int, int], crop_size: tuple[int, int], stride: tuple[int, int], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(H, W) float32: how many sliding windows cover each pixel (never 0)."""
    counts = torch.zeros(size, device=device)
    for y1, y2, x1, x2 in slide_windows(size, crop_size, stride):
        counts[y1:y2, x1:x2] += 1
    return counts


def whole_logits(model: nn.Module, images: torch.Tensor, align_corners: bool) -> torch.Tensor:
    """Logits of the whole normalized batch, resized to its (H, W)."""
    return resize(model(images), tuple(images.shape[-2:]), align_corners)


def slide_logits(
    model: nn.Module,
    images: torch.Tensor,
    crop_size: tuple[int, int],
    stride: tuple[int, int],
    align_corners: bool,
) -> torch.Tensor:
    """Logits of a normalized batch by sliding window: each crop's logits resized to the crop,
    summed where windows overlap and divided by the count map, as mmseg's slide_inference does."""
    size = tuple(images.shape[-2:])
    total = None
    for y1, y2, x1, x2 in slide_windows(size, crop_size, stride):
        logits = resize(model(images[:, :, y1:y2, x1:x2]), (y2 - y1, x2 - x1), align_corners)
        if total is None:
            total = logits.new_zeros((images.shape[0], logits.shape[1], *size))
        total[:, :, y1:y2, x1:x2] += logits
    return total / window_count_map(size, crop_size, stride, total.device)


def logits_at_input_size(model: nn.Module, images: torch.Tensor, settings: InferenceSettings) -> torch.Tensor:
    """Logits of a normalized batch at its own (H, W), by the settings' whole or slide mode."""
    if settings.mode == "slide":
        return slide_logits(model, images, settings.crop_size, settings.stride, settings.align_corners)
    return whole_logits(model, images, settings.align_corners)


def _scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """mmcv's rescale of (H, W) by a factor: each side rounded half up."""
    return int(size[0] * scale + 0.5), int(size[1] * scale + 0.5)


def forward_sizes(settings: InferenceSettings) -> dict[tuple[int, int], int]:
    """How many forward passes of each (H, W) one prediction at the settings' test size makes, as
    `class_scores` runs them: one per sliding window in slide mode, for every scale and both flips
    with multi-scale + flip."""
    if settings.test_size is None:
        raise ValueError("forward_sizes needs the settings' test_size")
    if settings.multi_scale_flip:
        images = [_scaled_size(settings.test_size, scale) for scale in settings.scales for _flip in range(2)]
    else:
        images = [settings.test_size]
    counts: Counter[tuple[int, int]] = Counter()
    for size in images:
        if settings.mode == "slide":
            counts.update((y2 - y1, x2 - x1) for y1, y2, x1, x2 in slide_windows(size, settings.crop_size, settings.stride))
        else:
            counts[tuple(size)] += 1
    return dict(counts)


@torch.inference_mode()
def class_scores(model: nn.Module, images: torch.Tensor, settings: InferenceSettings) -> torch.Tensor:
    """(N, C, H, W) scores at the input size of a uint8 RGB batch (N, 3, H, W).

    Single scale: logits. Multi-scale + flip: the mean of the softmax probabilities over every
    scale of the test size and both horizontal flips, each resized back to the input size first,
    as mmseg's SegTTAModel (1.x) and aug_test (0.x) average probabilities, not logits.
    """
    size = tuple(images.shape[-2:])
    test_size = settings.test_size or size
    x = normalize(images, settings.mean, settings.std)
    if not settings.multi_scale_flip:
        return resize(logits_at_input_size(model, resize(x, test_size, False), settings), size, settings.align_corners)
    total = None
    for scale in settings.scales:
        scaled = resize(x, _scaled_size(test_size, scale), False)
        for flip in (False, True):
            logits = logits_at_input_size(model, scaled.flip(-1) if flip else scaled, settings)
            logits = logits.flip(-1) if flip else logits
            probabilities = resize(logits, size, settings.align_corners).softmax(dim=1)
            total = probabilities if total is None else total + probabilities
    return total / (2 * len(settings.scales))


def predicted_labels(model: nn.Module, images: torch.Tensor, settings: InferenceSettings) -> torch.Tensor:
    """(N, H, W) int64 class indices: the argmax of `class_scores`."""
    return class_scores(model, images, settings).argmax(dim=1)
