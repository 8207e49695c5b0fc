"""Whole, sliding-window and multi-scale + flip inference against hand computations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segbench.inference import (
    MS_FLIP_SCALES,
    InferenceSettings,
    class_scores,
    keep_ratio_size,
    multi_scale_size,
    normalize,
    predicted_labels,
    slide_logits,
    slide_windows,
    whole_logits,
    window_count_map,
)
from segbench.layers import resize


def _pointwise_model(num_classes: int = 5) -> nn.Module:
    """A 1x1 conv: every output pixel depends on its input pixel only, so slide == whole."""
    torch.manual_seed(0)
    return nn.Conv2d(3, num_classes, 1).eval()


class _Downsampling(nn.Module):
    """Logits at 1/4 of the input, like a real segmentor (at 1/8)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, stride=4, padding=1)

    def forward(self, x):
        return self.conv(x)


class _Recording(nn.Module):
    """Pointwise model that remembers the (H, W) of every input it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = _pointwise_model()
        self.sizes = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return self.conv(x)


def _images(size=(64, 128), n=2):
    return torch.randint(0, 256, (n, 3, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def test_windows_and_count_map_by_hand():
    # rows: 10 long, crop 4, stride 3 -> (10-4+2)//3+1 = 3 windows: 0-4, 3-7, 6-10.
    # cols: 7 long, crop 4, stride 5 -> (7-4+4)//5+1 = 2 windows: 0-4, then 5-9 clamped to 3-7.
    windows = slide_windows((10, 7), (4, 4), (3, 5))
    assert windows == [(0, 4, 0, 4), (0, 4, 3, 7), (3, 7, 0, 4), (3, 7, 3, 7), (6, 10, 0, 4), (6, 10, 3, 7)]
    rows = torch.tensor([1, 1, 1, 2, 1, 1, 2, 1, 1, 1.0])
    cols = torch.tensor([1, 1, 1, 2, 1, 1, 1.0])
    assert torch.equal(window_count_map((10, 7), (4, 4), (3, 5)), rows[:, None] * cols[None, :])


def test_image_smaller_than_crop_is_one_window():
    assert slide_windows((5, 6), (8, 8), (4, 4)) == [(0, 5, 0, 6)]


def test_slide_equals_whole_for_a_pointwise_model():
    # overlaps of at most 2 per axis: sums of 1, 2 or 4 equal values divide back exactly
    x = normalize(_images(), (120.0, 110.0, 100.0), (60.0, 55.0, 50.0))
    model = _pointwise_model()
    with torch.no_grad():
        whole = whole_logits(model, x, align_corners=False)
        slide = slide_logits(model, x, (32, 48), (24, 40), align_corners=False)
    assert whole.shape == (2, 5, 64, 128)
    assert torch.equal(slide, whole)


def test_slide_resizes_each_crop_and_averages_overlaps():
    model = _Downsampling()
    x = torch.randn(1, 3, 16, 24)
    with torch.no_grad():
        got = slide_logits(model, x, (16, 16), (16, 8), align_corners=True)
        left = resize(model(x[..., 0:16]), (16, 16), True)
        right = resize(model(x[..., 8:24]), (16, 16), True)
    expected = torch.zeros(1, 4, 16, 24)
    expected[..., 0:16] += left
    expected[..., 8:24] += right
    expected[..., 8:16] /= 2
    torch.testing.assert_close(got, expected)


def test_normalize_per_rgb_channel():
    images = torch.full((1, 3, 2, 2), 100, dtype=torch.uint8)
    out = normalize(images, (100.0, 50.0, 0.0), (1.0, 2.0, 4.0))
    assert out.dtype == torch.float32
    assert out[0, :, 0, 0].tolist() == [0.0, 25.0, 25.0]


def test_whole_scores_at_input_size_with_test_size():
    model = _Downsampling()
    images = _images()
    settings = InferenceSettings(test_size=(32, 64), align_corners=True, mean=(0.0,) * 3, std=(1.0,) * 3)
    scores = class_scores(model, images, settings)
    with torch.no_grad():
        small = resize(model(resize(images.float(), (32, 64), False)), (32, 64), True)
    torch.testing.assert_close(scores, resize(small, (64, 128), True))
    assert torch.equal(predicted_labels(model, images, settings), scores.argmax(1))


def test_keep_ratio_size_by_hand():
    # mmcv's rescale_size: factor = min(max(scale) / long side, min(scale) / short side), half up
    assert keep_ratio_size((48, 80), (32, 64)) == (32, 53)  # f = min(64/80, 32/48) = 2/3; 80 * 2/3 = 53.3
    assert keep_ratio_size((1024, 2048), (1024, 2048)) == (1024, 2048)
    assert keep_ratio_size((1024, 2048), (512, 1024)) == (512, 1024)
    assert keep_ratio_size((100, 100), (32, 64)) == (32, 32)  # square: the short side of the scale binds
    assert keep_ratio_size((90, 30), (32, 64)) == (64, 21)  # portrait: long side to 64, f = 64/90, 30f = 21.3
    assert keep_ratio_size((5, 9), (10, 20)) == (10, 18)  # upscaled: f = min(20/9, 10/5) = 2


def test_whole_keeps_the_aspect_ratio_and_scores_at_the_input_size():
    # a 48x80 image with test size 32x64: the network sees 32x53, scores come back at 48x80
    model = _Recording()
    images = _images(size=(48, 80), n=1)
    settings = InferenceSettings(test_size=(32, 64), align_corners=True)
    scores = class_scores(model, images, settings)
    assert model.sizes == [(32, 53)] and scores.shape == (1, 5, 48, 80)
    x = normalize(images, settings.mean, settings.std)
    with torch.no_grad():
        expected = resize(model.conv(resize(x, (32, 53), False)), (48, 80), True)
    torch.testing.assert_close(scores, expected)


def test_slide_windows_run_over_the_keep_ratio_image():
    model = _Recording()
    settings = InferenceSettings(mode="slide", crop_size=(16, 60), stride=(12, 40), test_size=(32, 64))
    scores = class_scores(model, _images(size=(48, 80), n=1), settings)
    assert scores.shape == (1, 5, 48, 80)
    # over 32x53: 3 rows of windows, (32-16+11)//12+1; one column, the image being narrower than the crop
    assert model.sizes == [(16, 53)] * 3


def test_multi_scale_flip_sizes_follow_the_test_size():
    model = _Recording()
    settings = InferenceSettings(multi_scale_flip=True, test_size=(30, 50))
    scores = class_scores(model, _images(n=1), settings)
    assert scores.shape == (1, 5, 64, 128)
    # mmseg's MultiScaleFlipAug: scale (30, 50) * ratio, each side truncated, then the 64x128 image
    # fitted into it with its ratio kept: factor min(long/128, short/64), each side * factor, half up.
    # 0.5: (15, 25) -> f=25/128 -> (12.5, 25) -> (13, 25); 0.75: (22, 37) -> f=37/128 -> (18.5, 37) -> (19, 37)
    # 1.0: (30, 50) -> (25, 50); 1.25: (37, 62) -> (31, 62); 1.5: (45, 75) -> (37.5, 75) -> (38, 75)
    # 1.75: (52, 87) -> (43.5, 87) -> (44, 87)
    expected = [(13, 25), (19, 37), (25, 50), (31, 62), (38, 75), (44, 87)]
    assert model.sizes == [size for size in expected for _ in range(2)]


def test_multi_scale_flip_at_full_cityscapes_size():
    # 1024x2048 into (1024, 2048) * ratio: exactly each ratio, as mmseg's Cityscapes aug test
    expected = [(512, 1024), (768, 1536), (1024, 2048), (1280, 2560), (1536, 3072), (1792, 3584)]
    assert [multi_scale_size((1024, 2048), (1024, 2048), ratio) for ratio in MS_FLIP_SCALES] == expected


def test_multi_scale_flip_averages_probabilities():
    class Asymmetric(nn.Module):
        """Adds a left-to-right ramp, so flipped and unflipped logits differ."""

        def forward(self, x):
            ramp = torch.linspace(-3, 3, x.shape[-1])
            return torch.stack([x[:, 0] * 0.1 + ramp, x[:, 1] * 0.1 - ramp, x[:, 2] * 0.1], dim=1)

    model = Asymmetric()
    images = _images(size=(8, 12), n=1)
    settings = InferenceSettings(multi_scale_flip=True, scales=(1.0,))
    x = normalize(images, settings.mean, settings.std)
    plain = model(x).softmax(1)
    flipped = model(x.flip(-1)).flip(-1).softmax(1)
    torch.testing.assert_close(class_scores(model, images, settings), (plain + flipped) / 2)


def test_slide_settings_need_crop_and_stride():
    with pytest.raises(ValueError, match="crop_size and stride"):
        InferenceSettings(mode="slide", crop_size=(512, 1024))


@pytest.mark.parametrize(
    "settings",
    [
        InferenceSettings(mode="whole"),
        InferenceSettings(mode="slide", crop_size=(64, 64), stride=(43, 43), align_corners=True),
    ],
    ids=["whole", "slide"],
)
def test_real_architecture_scores_come_back_at_the_input_size(settings):
    from segbench.models import architecture_builder

    model = architecture_builder("pspnet_resnet")(depth=18, align_corners=settings.align_corners).eval()
    images = torch.randint(0, 256, (1, 3, 97, 130), dtype=torch.uint8)
    scores = class_scores(model, images, settings)
    assert scores.shape == (1, 19, 97, 130) and torch.isfinite(scores).all()
