"""BiSeNetV1, BiSeNetV2 and STDC: mmsegmentation parity, output shapes, and the training-only heads
(auxiliary heads, STDC's detail head) kept out of the inference forward, its params and its MACs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmseg_reference import logits_on_a_random_image, mmseg_config_tests, reference_shapes
from segbench.complexity import count_macs, count_params
from segbench.inference import slide_logits
from segbench.manifest import load_zoo
from segbench.models import architecture_builder
from segbench.models.segmentor import AUXILIARY_PREFIX
from segbench.training import training_loss, training_outputs

ZOO = Path(__file__).resolve().parent.parent / "zoo"

# mmsegmentation config -> (segbench architecture, builder arguments)
CONFIGS = {
    "bisenetv1_r18-d32_4xb4-160k_cityscapes-1024x1024": ("bisenetv1_resnet", {"depth": 18}),
    "bisenetv1_r50-d32_4xb4-160k_cityscapes-1024x1024": ("bisenetv1_resnet", {"depth": 50}),
    "bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024": ("bisenetv2", {}),
    "stdc1_4xb12-80k_cityscapes-512x1024": ("stdc", {"variant": 1}),
    "stdc2_4xb12-80k_cityscapes-512x1024": ("stdc", {"variant": 2}),
}
ARCHITECTURES = sorted({architecture for architecture, _ in CONFIGS.values()})


def build(config: str):
    architecture, kwargs = CONFIGS[config]
    torch.manual_seed(0)
    return architecture_builder(architecture)(**kwargs).eval()


test_every_config_has_its_reference_file, test_state_dict_and_params_match_mmsegmentation = mmseg_config_tests(CONFIGS)


def reference_of(name: str) -> str:
    """The reference config with the same architecture as a zoo entry (pre-training, batch, OHEM and
    fp16 change training only)."""
    if name.startswith("stdc"):
        return f"stdc{name[4]}_4xb12-80k_cityscapes-512x1024"
    if name.startswith("bisenetv2"):
        return "bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024"
    return f"bisenetv1_r{name.split('_r')[1][:2]}-d32_4xb4-160k_cityscapes-1024x1024"


ENTRIES = [s for s in load_zoo(ZOO) if s.build.architecture in ARCHITECTURES]


def test_the_zoo_has_every_cityscapes_config_and_the_company_rows():
    names = {s.name for s in ENTRIES}
    assert len([n for n in names if n.startswith("bisenetv1_")]) == 5
    assert len([n for n in names if n.startswith("bisenetv2_")]) == 4
    assert len([n for n in names if n.startswith("stdc")]) == 4
    company = [s for s in ENTRIES if s.family == "company"]
    assert sorted(s.reported[0].miou for s in company) == [75.0, 75.8, 76.4]
    assert {(s.build.architecture, s.build.kwargs["depth"]) for s in company} == {("bisenetv1_resnet", 18)}


@pytest.mark.parametrize("spec", [s for s in ENTRIES if s.family != "company"], ids=lambda s: s.name)
def test_every_mmseg_entry_has_its_reference_layout(spec):
    ours = {k: tuple(v.shape) for k, v in architecture_builder(spec.build.architecture)(**spec.build.kwargs).state_dict().items()}
    assert ours == reference_shapes(reference_of(spec.name))
    # the test settings of the config: whole 1024x2048; STDC's decode head resizes with align_corners
    assert (spec.test.mode, spec.test.size) == ("whole", (1024, 2048))
    assert spec.test.align_corners is spec.name.startswith("stdc")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny inputs run faster on one thread


# builder arguments -> logits (classes, H, W) for a 1x3x64x128 input: all three decode at 1/8
OUTPUT_SHAPES = [
    ("bisenetv1_resnet", {"depth": 18}, (19, 8, 16)),
    ("bisenetv1_resnet", {"depth": 18, "deep_stem": True, "num_classes": 5}, (5, 8, 16)),
    ("bisenetv2", {}, (19, 8, 16)),
    ("stdc", {"variant": 1}, (19, 8, 16)),
    ("stdc", {"variant": 2, "num_classes": 7}, (7, 8, 16)),
]


@pytest.mark.parametrize(("architecture", "kwargs", "expected"), OUTPUT_SHAPES)
def test_output_shape_whole_and_slide(architecture, kwargs, expected):
    model, image, logits = logits_on_a_random_image(architecture, kwargs)
    with torch.no_grad():
        slid = slide_logits(model, image, (64, 64), (64, 32), model.align_corners)
    assert tuple(logits.shape) == (1, *expected)
    assert tuple(slid.shape) == (1, expected[0], 64, 128)
    assert torch.isfinite(logits).all() and torch.isfinite(slid).all()


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_training_only_heads_stay_out_of_inference_params_and_macs(config):
    model = build(config)
    calls = []
    for head in model.auxiliary_head:
        head.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 128))
    assert calls == []
    auxiliary = sum(p.numel() for n, p in model.named_parameters() if n.startswith(AUXILIARY_PREFIX))
    assert count_params(model)["total"] - count_params(model)["inference"] == auxiliary > 0
    macs = count_macs(model, (64, 128), cross_check=False)["per_forward"]
    del model.auxiliary_head
    assert count_macs(model, (64, 128), cross_check=False)["per_forward"] == macs


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_training_trains_every_head(config):
    model = build(config)
    heads = training_outputs(model, torch.randn(1, 3, 64, 128))
    classes = [logits.shape[1] for logits, *_ in heads]
    expected = {"bisenetv1": [19] * 3, "bisenetv2": [19] * 5, "stdc1_": [19, 19, 19, 2], "stdc2_": [19, 19, 19, 2]}
    assert classes == next(v for k, v in expected.items() if config.startswith(k))


def test_stdc_detail_head_learns_the_boundaries_of_the_labels():
    """mmseg's detail ground truth: Laplacian of the labels at strides 1, 2, 4, fused 0.6/0.3/0.1,
    thresholded at 0.1. One labelled pixel at (8, 8) of 16x16: itself (0.6+0.3+0.1) and the
    2x2 block the stride-2 response covers (0.3+0.1) are boundary; the stride-4 block alone (0.1) is not."""
    head = build("stdc1_4xb12-80k_cityscapes-512x1024").auxiliary_head[2]
    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    labels[0, 8, 8] = 1
    boundary = head.training_labels(labels)
    assert boundary.dtype == torch.long and boundary.shape == (1, 16, 16)
    assert sorted(map(tuple, boundary[0].nonzero().tolist())) == [(8, 8), (8, 9), (9, 8), (9, 9)]
    assert not head.training_labels(torch.zeros(1, 16, 16, dtype=torch.long)).any()


def test_stdc_training_step_reaches_the_detail_head():
    model = build("stdc1_4xb12-80k_cityscapes-512x1024").train()
    labels = torch.randint(0, 19, (2, 64, 128))
    training_loss(model, torch.randn(2, 3, 64, 128), labels).backward()
    detail = model.auxiliary_head[2]
    assert detail.conv_seg.weight.grad.abs().sum() > 0
    assert detail.fusion_kernel.grad is None  # a fixed kernel, as in mmseg (requires_grad=False)
