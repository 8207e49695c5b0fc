"""MobileNetV2 (FCN, PSPNet, DeepLabV3, DeepLabV3+ heads) and MobileNetV3 + LR-ASPP against mmsegmentation 1.2.2.

Expected values come from the reference key files and from reading mmseg's code
(mmseg/models/backbones/mobilenet_v2.py, mobilenet_v3.py, utils/inverted_residual.py,
utils/se_layer.py, decode_heads/lraspp_head.py, mmcv's Conv2dAdaptivePadding).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmseg_reference import PARAMS, REFERENCE, logits_on_a_random_image, mmseg_config_tests, reference_shapes
from segbench.complexity import count_macs
from segbench.models import architecture_builder, list_architectures

# mmsegmentation config -> (segbench architecture, builder arguments)
CONFIGS = {
    "mobilenet-v2-d8_fcn_4xb2-80k_cityscapes-512x1024": ("fcn_mobilenet_v2", {}),
    "mobilenet-v2-d8_pspnet_4xb2-80k_cityscapes-512x1024": ("pspnet_mobilenet_v2", {}),
    "mobilenet-v2-d8_deeplabv3_4xb2-80k_cityscapes-512x1024": ("deeplabv3_mobilenet_v2", {}),
    "mobilenet-v2-d8_deeplabv3plus_4xb2-80k_cityscapes-512x1024": ("deeplabv3plus_mobilenet_v2", {}),
    "mobilenet-v3-d8_lraspp_4xb4-320k_cityscapes-512x1024": ("lraspp_mobilenet_v3", {"arch": "large"}),
}

# builder arguments -> logits (classes, H, W) for a 1x3x64x128 input: D8 heads at 1/8, DeepLabV3+
# at 1/4 (stage-1 decoder), LR-ASPP at 1/2 (its first branch is the stride-2 stem output)
OUTPUT_SHAPES = [
    ("fcn_mobilenet_v2", {}, (19, 8, 16)),
    ("pspnet_mobilenet_v2", {}, (19, 8, 16)),
    ("deeplabv3_mobilenet_v2", {"num_classes": 5}, (5, 8, 16)),
    ("deeplabv3plus_mobilenet_v2", {}, (19, 16, 32)),
    ("lraspp_mobilenet_v3", {"arch": "large"}, (19, 32, 64)),
    ("lraspp_mobilenet_v3", {"arch": "small"}, (19, 32, 64)),
]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny inputs run faster on one thread


def test_every_config_has_its_reference_file_and_every_builder_a_shape_case():
    assert set(CONFIGS) <= {p.name.removesuffix(".keys.txt") for p in REFERENCE.glob("*.keys.txt")} & set(PARAMS)
    assert {name for name, _, _ in OUTPUT_SHAPES} == set(list_architectures("*mobilenet*"))


_, test_state_dict_and_params_match_mmsegmentation = mmseg_config_tests(CONFIGS)


# The small LR-ASPP has no file in the shared reference set: its key list was written from mmseg
# 1.2.2's own model (MODELS.build of the config, state_dict in order, the same script reproduces the
# large model's shared file byte for byte) and its parameter count is that model's.
SMALL_LRASPP = "mobilenet-v3-d8-s_lraspp_4xb4-320k_cityscapes-512x1024"
SMALL_LRASPP_PARAMS = 1_140_787


def test_small_lraspp_matches_mmsegmentation():
    model = architecture_builder("lraspp_mobilenet_v3")(arch="small")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == reference_shapes(SMALL_LRASPP)
    assert sum(p.numel() for p in model.parameters()) == SMALL_LRASPP_PARAMS


@pytest.mark.parametrize(("architecture", "kwargs", "expected"), OUTPUT_SHAPES)
def test_output_shape(architecture, kwargs, expected):
    _, _, logits = logits_on_a_random_image(architecture, kwargs)
    assert tuple(logits.shape) == (1, *expected)
    assert torch.isfinite(logits).all()


def test_mobilenet_v3_small_layout_follows_mmseg_code():
    """No reference file for the small model: shapes read off mmseg's arch table and SELayer
    (squeeze width make_divisible(c // 4, 8)), out_indices (0, 1, 12), head in_channels (16, 16, 576)."""
    shapes = {k: tuple(v.shape) for k, v in architecture_builder("lraspp_mobilenet_v3")(arch="small").state_dict().items()}
    expected = {
        "backbone.layer0.conv.weight": (16, 3, 3, 3),
        "backbone.layer1.depthwise_conv.conv.weight": (16, 1, 3, 3),  # mid == in: no expand conv
        "backbone.layer1.se.conv1.conv.weight": (8, 16, 1, 1),  # make_divisible(4, 8) = 8
        "backbone.layer4.depthwise_conv.conv.weight": (96, 1, 5, 5),
        "backbone.layer4.se.conv1.conv.weight": (24, 96, 1, 1),
        "backbone.layer5.se.conv1.conv.weight": (64, 240, 1, 1),  # 60 -> 64
        "backbone.layer8.se.conv1.conv.weight": (40, 144, 1, 1),  # 36 -> 40
        "backbone.layer11.linear_conv.conv.weight": (96, 576, 1, 1),
        "backbone.layer12.conv.weight": (576, 96, 1, 1),
        "decode_head.convs.conv0.weight": (32, 16, 1, 1),
        "decode_head.convs.conv1.weight": (64, 16, 1, 1),
        "decode_head.aspp_conv.conv.weight": (128, 576, 1, 1),
        "decode_head.image_pool.1.conv.weight": (128, 576, 1, 1),
    }
    assert {k: shapes.get(k) for k in expected} == expected
    assert "backbone.layer1.expand_conv.conv.weight" not in shapes and "backbone.layer2.se.conv1.conv.weight" not in shapes
    assert "backbone.layer13.conv.weight" not in shapes
    # the large model's keys per block name pattern, renumbered: same layout, other widths
    large = architecture_builder("lraspp_mobilenet_v3")(arch="large").state_dict()
    assert {k.split(".", 2)[0] for k in shapes} == {k.split(".", 2)[0] for k in large}


def test_an_unknown_mobilenet_v3_arch_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"\['large', 'small'\], got 'medium'"):
        architecture_builder("lraspp_mobilenet_v3")(arch="medium")


def test_mobilenet_v2_dilates_only_the_first_block_of_each_stage():
    """mmseg's MobileNetV2.make_layer: `dilation if i == 0 else 1` (strides 1,2,2,1,1,1,1; dilations 1,1,1,2,2,4,4)."""
    backbone = architecture_builder("fcn_mobilenet_v2")().backbone
    depthwise = {name: [block.conv[-2].conv for block in getattr(backbone, name)] for name in ("layer4", "layer5", "layer6", "layer7")}
    assert {name: [c.dilation[0] for c in convs] for name, convs in depthwise.items()} == {
        "layer4": [2, 1, 1, 1], "layer5": [2, 1, 1], "layer6": [4, 1, 1], "layer7": [4],
    }  # fmt: skip
    assert {name: [c.padding[0] for c in convs] for name, convs in depthwise.items()} == {
        "layer4": [2, 1, 1, 1], "layer5": [2, 1, 1], "layer6": [4, 1, 1], "layer7": [4],
    }  # fmt: skip
    assert all(isinstance(m, nn.ReLU6) for m in (backbone.conv1.activate, backbone.layer2[0].conv[0].activate))
    assert isinstance(backbone.layer2[0].conv[-1].activate, nn.Identity)  # the linear bottleneck


@pytest.mark.parametrize(("size", "pad"), [((8, 10), (0, 1, 0, 1)), ((9, 7), (1, 1, 1, 1)), ((8, 9), (1, 1, 0, 1))])
def test_strided_convs_pad_as_mmcv_conv2d_adaptive_padding(size, pad):
    """TF 'same' padding: total (ceil(n/2)-1)*2 + k - n, the odd pixel at the end (right/bottom).
    F.pad order is (left, right, top, bottom). The small model returns its stem (layer0) output first."""
    torch.manual_seed(0)
    backbone = architecture_builder("lraspp_mobilenet_v3")(arch="small").backbone.eval()
    stem = backbone.layer0
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        expected = F.hardswish(stem.bn(F.conv2d(F.pad(x, pad), stem.conv.weight, stride=2)))
        torch.testing.assert_close(backbone(x)[0], expected, rtol=0, atol=0)


def test_lraspp_image_pool_is_mmsegs_49x49_window_at_real_sizes():
    """At 512x1024 the 1/8 features are 64x128: AvgPool2d(49, stride=(16, 20)) gives 1x4 there."""
    head = architecture_builder("lraspp_mobilenet_v3")(arch="large").decode_head
    features = torch.randn(1, 960, 64, 128)
    pooled = head.image_pool[0](features)
    assert tuple(pooled.shape[-2:]) == (1, 4)
    torch.testing.assert_close(pooled, nn.AvgPool2d(49, stride=(16, 20))(features), rtol=0, atol=0)
    # smaller than the window (mmseg raises): the window shrinks to the feature map
    torch.testing.assert_close(head.image_pool[0](features[..., :8, :16]), features[..., :8, :16].mean((2, 3), keepdim=True))


def test_lraspp_batchnorm_eps_and_activations_follow_the_config():
    """lraspp_m-v3-d8.py: norm_cfg eps=0.001 for backbone and head; HSwish/ReLU per block, Hardsigmoid in SE."""
    model = architecture_builder("lraspp_mobilenet_v3")(arch="large")
    assert {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-3}
    backbone = model.backbone
    assert isinstance(backbone.layer0.activate, nn.Hardswish) and isinstance(backbone.layer16.activate, nn.Hardswish)
    assert isinstance(backbone.layer4.depthwise_conv.activate, nn.ReLU)
    assert isinstance(backbone.layer7.depthwise_conv.activate, nn.Hardswish)
    assert isinstance(backbone.layer4.se.conv2.activate, nn.Hardsigmoid)
    assert isinstance(backbone.layer4.linear_conv.activate, nn.Identity)
    v2 = architecture_builder("fcn_mobilenet_v2")()
    assert {m.eps for m in v2.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-5}


@pytest.mark.parametrize(("arch", "dilations", "features"), [
    ("large", {"layer6": 1, "layer7": 2, "layer12": 2, "layer13": 4, "layer15": 4}, [(16, 32, 64), (24, 16, 32), (960, 8, 16)]),
    ("small", {"layer3": 1, "layer4": 2, "layer8": 2, "layer9": 4, "layer11": 4}, [(16, 32, 64), (16, 16, 32), (576, 8, 16)]),
])  # fmt: skip
def test_mobilenet_v3_is_dilated_to_output_stride_8(arch, dilations, features):
    """mmseg's segmentation conversion: the strides of large layer7/13 (small layer4/9) set to 1,
    dilation 2 from there and 4 from the second, padding dilation * (k - 1) / 2."""
    backbone = architecture_builder("lraspp_mobilenet_v3")(arch=arch).backbone
    convs = {name: getattr(backbone, name).depthwise_conv.conv for name in dilations}
    assert {name: (c.stride[0], c.dilation[0]) for name, c in convs.items()} == {n: (1, d) for n, d in dilations.items()}
    assert all(c.padding[0] == c.dilation[0] * (c.kernel_size[0] // 2) for c in convs.values())
    with torch.no_grad():
        outputs = backbone(torch.randn(1, 3, 64, 128))
    assert [tuple(f.shape[1:]) for f in outputs] == features


def test_auxiliary_head_is_left_out_of_the_inference_macs():
    """Real-size counting on the meta device (what `segbench profile` does) and the auxiliary
    head never counted: the MACs with and without it are equal."""
    with_aux = count_macs(architecture_builder("fcn_mobilenet_v2")(), (512, 1024), cross_check=False)
    without = count_macs(architecture_builder("fcn_mobilenet_v2")(auxiliary_head=False), (512, 1024), cross_check=False)
    assert with_aux["primary"] == "flop_counter" and with_aux["per_forward"] == without["per_forward"]
    lraspp = count_macs(architecture_builder("lraspp_mobilenet_v3")(arch="small"), (1024, 2048), cross_check=False)
    assert lraspp["primary"] == "flop_counter" and lraspp["per_forward"] > 0


def test_a_training_step_of_the_large_lraspp_reaches_every_parameter():
    """tests/test_zoo.py trains the smallest entry of each architecture (the small model); the large too."""
    from segbench.training import training_loss

    torch.manual_seed(0)
    model = architecture_builder("lraspp_mobilenet_v3")(arch="large").train()
    labels = torch.randint(0, 19, (2, 64, 128))
    training_loss(model, torch.randn(2, 3, 64, 128), labels).backward()
    assert [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()] == []
