"""mmsegmentation parity (keys, shapes, parameter counts) and output shapes of the ResNet families."""

from __future__ import annotations

import pytest
import torch

from mmseg_reference import logits_on_a_random_image, mmseg_config_tests
from segbench.models import architecture_builder, list_architectures
from segbench.models.backbones.resnet import ResNet
from segbench.models.segmentor import AUXILIARY_PREFIX


# mmsegmentation config -> (segbench architecture, builder arguments)
MMSEG_CONFIGS = {
    "fcn_r50-d8_4xb2-80k_cityscapes-512x1024": ("fcn_resnet", {"depth": 50}),
    "fcn_r101-d8_4xb2-80k_cityscapes-512x1024": ("fcn_resnet", {"depth": 101}),
    "fcn-d6_r50-d16_4xb2-80k_cityscapes-512x1024": ("fcn_resnet", {"output_stride": 16, "head_dilation": 6}),
    "fcn-d6_r50-d16_4xb2-80k_cityscapes-769x769": (
        "fcn_resnet",
        {"output_stride": 16, "head_dilation": 6, "align_corners": True},
    ),
    "pspnet_r50-d8_4xb2-80k_cityscapes-512x1024": ("pspnet_resnet", {"depth": 50}),
    "pspnet_r101-d8_4xb2-80k_cityscapes-512x1024": ("pspnet_resnet", {"depth": 101}),
    "pspnet_r50b-d8_4xb2-80k_cityscapes-512x1024": ("pspnet_resnet", {"depth": 50, "deep_stem": False}),
    "deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024": ("deeplabv3_resnet", {"depth": 18}),
    "deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024": ("deeplabv3_resnet", {"depth": 50}),
    "deeplabv3_r101-d8_4xb2-80k_cityscapes-512x1024": ("deeplabv3_resnet", {"depth": 101}),
    "deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024": ("deeplabv3plus_resnet", {"depth": 50}),
    "deeplabv3plus_r101-d8_4xb2-80k_cityscapes-512x1024": ("deeplabv3plus_resnet", {"depth": 101}),
    "deeplabv3plus_r101-d16-mg124_4xb2-80k_cityscapes-512x1024": (
        "deeplabv3plus_resnet",
        {"depth": 101, "output_stride": 16, "multi_grid": (1, 2, 4)},
    ),
    "upernet_r18_4xb2-80k_cityscapes-512x1024": ("upernet_resnet", {"depth": 18}),
    "upernet_r50_4xb2-80k_cityscapes-512x1024": ("upernet_resnet", {"depth": 50}),
    "upernet_r101_4xb2-80k_cityscapes-512x1024": ("upernet_resnet", {"depth": 101}),
    "fpn_r50_4xb2-80k_cityscapes-512x1024": ("fpn_resnet", {"depth": 50}),
}


test_every_config_has_its_reference_file, test_state_dict_and_params_match_mmsegmentation = mmseg_config_tests(MMSEG_CONFIGS)


# builder arguments -> expected logits (classes, H, W) for a 1x3x64x128 input
OUTPUT_SHAPES = [
    ("fcn_resnet", {"depth": 18}, (19, 8, 16)),
    ("fcn_resnet", {"output_stride": 16, "head_dilation": 6}, (19, 4, 8)),
    ("pspnet_resnet", {"depth": 18}, (19, 8, 16)),
    ("pspnet_resnet", {"deep_stem": False}, (19, 8, 16)),
    ("deeplabv3_resnet", {"depth": 18, "num_classes": 5}, (5, 8, 16)),
    ("deeplabv3plus_resnet", {"depth": 18}, (19, 16, 32)),
    ("deeplabv3plus_resnet", {"output_stride": 16, "multi_grid": (1, 2, 4)}, (19, 16, 32)),
    ("upernet_resnet", {"depth": 18}, (19, 16, 32)),
    ("upernet_resnet", {"depth": 50, "align_corners": True}, (19, 16, 32)),
    ("fpn_resnet", {"depth": 50}, (19, 16, 32)),
    ("deeplabv3_torchvision", {"depth": 50}, (21, 8, 16)),
]


RESNET_FAMILY_MODULES = {"fcn", "pspnet", "deeplabv3", "deeplabv3plus", "upernet", "fpn"}


def test_every_builder_has_an_output_shape_case():
    ours = {n for n in list_architectures() if architecture_builder(n).__module__.rsplit(".", 1)[-1] in RESNET_FAMILY_MODULES}
    assert {name for name, _, _ in OUTPUT_SHAPES} == ours


@pytest.mark.parametrize(("architecture", "kwargs", "expected"), OUTPUT_SHAPES)
def test_output_shape(architecture, kwargs, expected):
    _, _, logits = logits_on_a_random_image(architecture, kwargs)
    assert tuple(logits.shape) == (1, *expected)
    assert torch.isfinite(logits).all()


def test_auxiliary_head_is_optional_and_never_run():
    model = architecture_builder("pspnet_resnet")(depth=18, auxiliary_head=False)
    assert not any(key.startswith(AUXILIARY_PREFIX) for key in model.state_dict())


@pytest.mark.parametrize(
    ("output_stride", "multi_grid", "expected"),
    [
        (8, None, {"layer3": [1, 2, 2, 2, 2, 2], "layer4": [2, 4, 4]}),  # contracted first block
        (16, None, {"layer3": [1] * 6, "layer4": [1, 2, 2]}),
        (16, (1, 2, 4), {"layer3": [1] * 6, "layer4": [1, 2, 4]}),  # mmseg: the grid *is* the dilation
        (32, None, {"layer3": [1] * 6, "layer4": [1, 1, 1]}),
    ],
)
def test_dilation_placement_follows_mmsegmentation(output_stride, multi_grid, expected):
    backbone = ResNet(50, output_stride=output_stride, multi_grid=multi_grid)
    for stage, dilations in expected.items():
        assert [block.conv2.dilation[0] for block in getattr(backbone, stage)] == dilations
        assert [block.conv2.padding[0] for block in getattr(backbone, stage)] == dilations


@pytest.mark.parametrize(("output_stride", "top_size"), [(8, (8, 16)), (16, (4, 8)), (32, (2, 4))])
def test_upernet_output_stride_dilates_the_backbone_and_keeps_the_layout(output_stride, top_size):
    torch.manual_seed(0)
    model = architecture_builder("upernet_resnet")(depth=18, output_stride=output_stride).eval()
    image = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        assert tuple(model.backbone(image)[-1].shape[-2:]) == top_size
        logits = model(image)
    assert tuple(logits.shape) == (1, 19, 16, 32)  # the fused output stays at stride 4
    assert torch.isfinite(logits).all()
    undilated = architecture_builder("upernet_resnet")(depth=18)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in undilated.state_dict().items()}
