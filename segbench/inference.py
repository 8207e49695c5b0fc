"""Test-time inference as mmsegmentation runs it: whole image, sliding window, multi-scale + flip.

Everything here runs on the device that holds the batch: images arrive as uint8 (or 0..255
float) RGB (N, 3, H, W), are normalized and resized there, and scores come back at the input
(H, W), the label's resolution. Images are resized as mmseg's `Resize(keep_ratio=True)` does:
as large as they fit in the test size with their aspect ratio kept. Image resizing is bilinear
with half-pixel centres (align_corners=False), as cv2 does in mmseg's test pipeline; logits are
resized with the model's own align_corners setting.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from segbench.layers import resize
from segbench.manifest import IMAGENET_MEAN, IMAGENET_STD, TestSpec

MS_FLIP_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
"""The ratios of mmseg's Cityscapes mIoU(ms+flip), applied to the test size (see `multi_scale_size`)."""


@dataclass(frozen=True)
class InferenceSettings:
    """How one model is tested: mmseg's test_cfg (mode, crop, stride) plus its test pipeline.

    `test_size` is the (H, W) scale an image is fitted into, aspect ratio kept, before inference
    (None: as loaded); scores are always returned at the loaded size. `mean`/`std` are per RGB
    channel on the 0..255 scale.
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


def keep_ratio_size(size: tuple[int, int], scale: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of an image of `size` made as large as fits in `scale` with its aspect ratio kept.

    mmcv's rescale_size, which mmseg's Resize(keep_ratio=True) uses: the long side at most
    max(scale), the short side at most min(scale) (so the scale's orientation does not matter),
    each side times the factor rounded half up. 1024x2048 in (1024, 2048) stays; 48x80 in
    (32, 64) becomes 32x53.
    """
    factor = min(max(scale) / max(size), min(scale) / min(size))
    return int(size[0] * factor + 0.5), int(size[1] * factor + 0.5)


def multi_scale_size(size: tuple[int, int], scale: tuple[int, int], ratio: float) -> tuple[int, int]:
    """(H, W) of an image of `size` at one ratio of the ms+flip test.

    mmseg's MultiScaleFlipAug: the test scale times the ratio (each side truncated), then the
    image fitted into it with its aspect ratio kept. Ratio 1.0 gives the single-scale size.
    """
    return keep_ratio_size(size, (int(scale[0] * ratio), int(scale[1] * ratio)))


def forward_sizes(settings: InferenceSettings) -> dict[tuple[int, int], int]:
    """How many forward passes of each (H, W) one prediction at the settings' test size makes, as
    `class_scores` runs them: one per sliding window in slide mode, for every scale and both flips
    with multi-scale + flip."""
    if settings.test_size is None:
        raise ValueError("forward_sizes needs the settings' test_size")
    if settings.multi_scale_flip:
        images = [multi_scale_size(settings.test_size, settings.test_size, scale) for scale in settings.scales for _flip in range(2)]
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

    Single scale: logits of the image resized to fit the test size (aspect ratio kept), resized
    back to the input size. Multi-scale + flip: the mean of the softmax probabilities over every
    ratio of the test size and both horizontal flips, each resized back to the input size first,
    as mmseg's SegTTAModel (1.x) and aug_test (0.x) average probabilities, not logits.
    """
    size = tuple(images.shape[-2:])
    test_size = settings.test_size or size
    x = normalize(images, settings.mean, settings.std)
    if not settings.multi_scale_flip:
        resized = resize(x, keep_ratio_size(size, test_size), False)
        return resize(logits_at_input_size(model, resized, settings), size, settings.align_corners)
    total = None
    for ratio in settings.scales:
        scaled = resize(x, multi_scale_size(size, test_size, ratio), False)
        for flip in (False, True):
            logits = logits_at_input_size(model, scaled.flip(-1) if flip else scaled, settings)
            logits = logits.flip(-1) if flip else logits
            probabilities = resize(logits, size, settings.align_corners).softmax(dim=1)
            total = probabilities if total is None else total + probabilities
    return total / (2 * len(settings.scales))


def predicted_labels(model: nn.Module, images: torch.Tensor, settings: InferenceSettings) -> torch.Tensor:
    """(N, H, W) int64 class indices: the argmax of `class_scores`."""
    return class_scores(model, images, settings).argmax(dim=1)
